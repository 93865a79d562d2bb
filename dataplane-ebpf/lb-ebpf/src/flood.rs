//! The SYN-flood guard, per VIP; see `lb_abi::flood`.

use lb_abi::flood::{LIMIT_NODE_DEFAULT, WINDOW_NS};

use crate::{
    clock,
    maps::{FLOOD, FLOOD_LIMITS, flood_threshold},
};

/// Counts a new flow of the VIP at `vip_index`; `false` when this CPU is
/// over the VIP's limit and the flow should not be recorded.
#[inline(always)]
pub fn admit_new_flow(vip_index: u32) -> bool {
    let limit = match FLOOD_LIMITS.get(vip_index) {
        Some(&l) if l != LIMIT_NODE_DEFAULT => l,
        _ => flood_threshold(),
    };
    if limit == 0 {
        return true;
    }
    let Some(window) = FLOOD.get_ptr_mut(vip_index) else {
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
    if window.new_flows <= u64::from(limit) {
        return true;
    }
    window.not_recorded += 1;
    false
}
