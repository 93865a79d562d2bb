//! The time the balancer keeps: the flood guard's one-second windows and
//! UDP flows' idle timeouts.
//!
//! Both need milliseconds at best, so the coarse clock (CLOCK_MONOTONIC_COARSE,
//! advanced once a tick) serves: it is a load of the kernel's last tick
//! time, where `bpf_ktime_get_ns` reads the clock source, which in a VM
//! costs a paravirtual clock read on every SYN and every UDP packet.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

/// Nanoseconds of CLOCK_MONOTONIC_COARSE; every reader and writer of a
/// stored time uses this clock.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}
