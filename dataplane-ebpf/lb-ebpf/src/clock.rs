//! The time the balancer keeps: the flood guard's one-second windows and
//! UDP flows' idle timeouts. See `lb_abi::clock`.

use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns, bpf_loop},
};

use crate::maps::{reader_pause_turns, tick_ns};

/// Now, in ns since the kernel's tick counter's origin, to the tick.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments (inlined to a load by the
    // verifier).
    unsafe { bpf_jiffies64() }.wrapping_mul(tick_ns())
}

/// One turn of the stress-test pause: a clock read. A BPF-to-BPF callback
/// of `bpf_loop`, which runs it in the kernel without the verifier walking
/// every turn.
#[inline(never)]
extern "C" fn pause_turn(_index: u64, _ctx: *mut c_void) -> i64 {
    // SAFETY: a helper without arguments.
    core::hint::black_box(unsafe { bpf_ktime_get_ns() });
    0
}

/// In the stress test only (`maps::reader_pause_turns`), on CPU 0 only,
/// spins a few hundred microseconds: CPU 0 is the slow reader, the other
/// CPUs and the writer race it at full speed. Otherwise nothing, and the
/// verifier drops it.
#[inline(always)]
pub fn stress_pause() {
    let turns = reader_pause_turns();
    // SAFETY: a helper without arguments.
    if turns == 0 || unsafe { bpf_get_smp_processor_id() } != 0 {
        return;
    }
    // SAFETY: `pause_turn` has the callback signature `bpf_loop` wants and
    // takes no context.
    unsafe { bpf_loop(turns, pause_turn as *mut c_void, core::ptr::null_mut(), 0) };
}
