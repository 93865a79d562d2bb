//! Packet access with bounds checks the verifier accepts.

use aya_ebpf::programs::XdpContext;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;

/// EtherTypes as a native load of their wire bytes reads them.
pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6: u16 = 0x86DDu16.to_be();

/// IP protocol numbers of the tunnels.
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;

/// A pointer to `len` bytes at `offset`, if the packet holds them.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return None;
    }
    Some((start + offset) as *mut u8)
}

/// Loads a `T` from packet memory in one instruction.
///
/// Headers behind the 14-byte Ethernet header are only 2-byte aligned.
/// `read_unaligned` would make LLVM split every word into byte loads (the
/// BPF backend assumes no misaligned access), and enabling misaligned access
/// for the whole program makes it misalign stack slots too, which the
/// verifier rejects. So, as C XDP programs do, we load packet words as if
/// aligned: the kernel's BPF targets (x86-64, arm64) handle misaligned
/// packet loads, and the verifier allows them without strict alignment.
#[inline(always)]
#[allow(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "`ptr` comes from `bytes_at`, which checked the range; marking every packet read unsafe would bury the few that matter"
)]
pub fn load<T: Copy>(ptr: *const u8, offset: usize) -> T {
    // SAFETY: callers bounds-checked `ptr + offset + size_of::<T>()`; see
    // above for alignment.
    unsafe { ptr.add(offset).cast::<T>().read() }
}

/// Stores a `T` into packet memory in one instruction; alignment as for
/// [`load`].
#[inline(always)]
#[allow(clippy::not_unsafe_ptr_arg_deref, reason = "as for `load`")]
pub fn store<T>(ptr: *mut u8, offset: usize, value: T) {
    // SAFETY: callers bounds-checked the whole header before storing.
    unsafe { ptr.add(offset).cast::<T>().write(value) }
}
