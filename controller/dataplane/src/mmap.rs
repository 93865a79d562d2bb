//! Arrays written through a memory mapping: the maps created with
//! `lb_abi::MMAPABLE`. A write is a store into memory the XDP program reads
//! at once — no syscall, no grace period — so rings go live in
//! microseconds and epochs move with one atomic add.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;

use crate::error::DataplaneError;

/// A `BPF_F_MMAPABLE` array's values, mapped shared and writable. Elements
/// are `elem_size` bytes apart (the value size rounded up to 8).
pub(crate) struct MappedArray {
    base: NonNull<u8>,
    len: usize,
    elem_size: usize,
    entries: u32,
    /// Map name, for errors.
    name: &'static str,
    /// The map itself, kept open as long as the mapping is used.
    map: Option<MapData>,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access goes through `&self`/`&mut self` methods that keep in bounds.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Maps `map`, an array of `entries` values of `value_size` bytes.
    pub(crate) fn new(
        map: &MapData,
        name: &'static str,
        entries: u32,
        value_size: usize,
    ) -> Result<Self, DataplaneError> {
        let elem_size = value_size.next_multiple_of(8);
        let page = page_size();
        let len = (elem_size * entries as usize).next_multiple_of(page);
        let fd = map.fd().as_fd();
        // SAFETY: a fresh shared mapping of the map's value area; the
        // kernel checks the length against the map.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(DataplaneError::Mmap {
                map: name,
                bytes: len,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Self {
            base: NonNull::new(addr.cast()).expect("mmap returned null"),
            len,
            elem_size,
            entries,
            name,
            map: None,
        })
    }

    /// This mapping, holding `map` open for as long as it lives.
    pub(crate) fn owning(mut self, map: MapData) -> Self {
        self.map = Some(map);
        self
    }

    /// The map mapped; only for a mapping made [`Self::owning`] it.
    pub(crate) fn map(&self) -> &MapData {
        self.map.as_ref().expect("a mapping that owns its map")
    }

    /// Entries of the array.
    pub(crate) fn entries(&self) -> u32 {
        self.entries
    }

    fn at(&self, index: u32) -> *mut u8 {
        assert!(
            index < self.entries,
            "{}: index {index} out of {}",
            self.name,
            self.entries
        );
        // SAFETY: in bounds of the mapping, checked above.
        unsafe { self.base.as_ptr().add(index as usize * self.elem_size) }
    }

    /// The `u64` at the start of element `index`, for atomic access.
    pub(crate) fn atomic_u64(&self, index: u32) -> &AtomicU64 {
        // SAFETY: elements are 8-aligned (page-aligned base, 8-multiple
        // stride) and live as long as the mapping; the kernel side touches
        // them only with aligned 8-byte loads and atomic adds.
        unsafe { &*self.at(index).cast::<AtomicU64>() }
    }

    /// Adds one to the `u64` element `index` (an epoch).
    pub(crate) fn bump(&self, index: u32) {
        self.atomic_u64(index).fetch_add(1, Ordering::SeqCst);
    }

    /// Writes `value` at byte `offset` of element `index`. The caller keeps
    /// to bytes no program reads meanwhile, or that it reads only after a
    /// store that orders this write before it.
    pub(crate) fn write_field<T: aya::Pod>(&mut self, index: u32, offset: usize, value: &T) {
        assert!(offset + std::mem::size_of::<T>() <= self.elem_size);
        // SAFETY: in bounds of element `index` (checked here and in `at`);
        // unaligned-safe.
        unsafe {
            self.at(index)
                .add(offset)
                .cast::<T>()
                .write_unaligned(*value)
        };
    }

    /// The `T` at byte `offset` of element `index`.
    pub(crate) fn read_field<T: aya::Pod>(&self, index: u32, offset: usize) -> T {
        assert!(offset + std::mem::size_of::<T>() <= self.elem_size);
        // SAFETY: as in `write_field`; every bit pattern is a `Pod`.
        unsafe { self.at(index).add(offset).cast::<T>().read_unaligned() }
    }

    /// Writes `words` as `u32`s starting at the element `first`, packed:
    /// the array is read as one run of `u32`s. The caller keeps the run
    /// inside the elements that it alone may write (a free ring slot).
    pub(crate) fn write_u32s(&mut self, first: u32, words: &[u32]) {
        let start = first as usize * self.elem_size;
        let bytes = std::mem::size_of_val(words);
        assert!(start + bytes <= self.entries as usize * self.elem_size);
        // SAFETY: in bounds (checked above); the source is a live slice.
        unsafe {
            std::ptr::copy_nonoverlapping(
                words.as_ptr().cast::<u8>(),
                self.base.as_ptr().add(start),
                bytes,
            );
        }
    }

    /// Reads `count` packed `u32`s starting at the element `first`.
    pub(crate) fn read_u32s(&self, first: u32, count: usize) -> Vec<u32> {
        let start = first as usize * self.elem_size;
        assert!(start + count * 4 <= self.entries as usize * self.elem_size);
        let mut out = vec![0u32; count];
        // SAFETY: in bounds (checked above); the destination is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                out.as_mut_ptr().cast::<u8>(),
                count * 4,
            );
        }
        out
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}
