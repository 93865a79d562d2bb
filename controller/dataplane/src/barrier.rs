//! The reader barrier: returns once every XDP program run that began before
//! the call has finished.
//!
//! The kernel offers no direct call for this, but every update of an
//! array-of-maps element from userspace waits an RCU grace period before
//! it returns (`synchronize_rcu()`), and XDP programs run inside RCU
//! read-side sections. So the barrier is a private one-slot array of maps
//! whose slot is rewritten; no program uses it. It costs one grace period,
//! about 8 ms here (`DESIGN.md` §5), which is why the programmer pays it
//! only when it must reuse what a packet may still hold.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::error::DataplaneError;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// A private array of maps and the one inner map it holds.
pub(crate) struct ReaderBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl ReaderBarrier {
    pub(crate) fn new() -> Result<Self, DataplaneError> {
        let inner = create_map(BPF_MAP_TYPE_ARRAY, 0)?;
        let outer = create_map(BPF_MAP_TYPE_ARRAY_OF_MAPS, inner.as_raw_fd() as u32)?;
        Ok(Self { outer, inner })
    }

    /// Waits out every program run that started before this call.
    pub(crate) fn wait(&self) -> Result<(), DataplaneError> {
        let key = 0u32;
        let value = self.inner.as_raw_fd() as u32;
        let mut attr = [0u64; 16];
        attr[0] = u64::from(self.outer.as_raw_fd() as u32);
        attr[1] = &key as *const u32 as u64;
        attr[2] = &value as *const u32 as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

/// A one-entry array (of u32, or of maps with `inner_fd`).
fn create_map(map_type: u32, inner_fd: u32) -> Result<OwnedFd, DataplaneError> {
    // union bpf_attr, BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries, map_flags, inner_map_fd, as u32s from offset 0.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(map_type) | 4 << 32;
    attr[1] = 4 | 1 << 32;
    attr[2] = u64::from(inner_fd) << 32;
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> Result<i32, DataplaneError> {
    // SAFETY: `attr` is a zeroed 128-byte bpf_attr laid out for `cmd`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if ret < 0 {
        return Err(DataplaneError::Barrier(io::Error::last_os_error()));
    }
    Ok(ret as i32)
}
