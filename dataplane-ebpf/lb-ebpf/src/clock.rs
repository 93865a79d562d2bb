//! The time the balancer keeps: the flood guard's one-second windows and
//! UDP flows' idle timeouts. See `lb_abi::clock`.

use aya_ebpf::helpers::generated::bpf_jiffies64;

use crate::maps::tick_ns;

/// Now, in ns since the kernel's tick counter's origin, to the tick.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments (inlined to a load by the
    // verifier).
    unsafe { bpf_jiffies64() }.wrapping_mul(tick_ns())
}
