//! The SYN-flood guard; see `lb_abi::flood`.

use lb_abi::flood::WINDOW_NS;

use crate::{
    clock,
    maps::{FLOOD, flood_threshold},
};

/// Counts a new flow; `false` when this CPU is over the threshold and the
/// flow should not be recorded.
#[inline(always)]
pub fn admit_new_flow() -> bool {
    let threshold = flood_threshold();
    if threshold == 0 {
        return true;
    }
    let Some(window) = FLOOD.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a per-CPU slot, only this CPU touches it.
    let window = unsafe { &mut *window };
    let now = clock::now_ns();
    if now.wrapping_sub(window.start_ns) >= WINDOW_NS {
        window.start_ns = now;
        window.new_flows = 0;
    }
    window.new_flows += 1;
    window.new_flows <= u64::from(threshold)
}
