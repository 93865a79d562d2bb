//! Counter updates. Per-CPU maps: no atomics needed.

use lb_abi::stats::{GlobalCounter, TrafficCounters};

use crate::maps::{BACKEND_STATS, GLOBAL_STATS, VIP_STATS};

#[inline(always)]
pub fn bump(counter: GlobalCounter) {
    if let Some(slot) = GLOBAL_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn traffic(vip_index: u32, backend_id: u32, bytes: u32) {
    add(VIP_STATS.get_ptr_mut(vip_index), bytes);
    add(BACKEND_STATS.get_ptr_mut(backend_id), bytes);
}

#[inline(always)]
fn add(slot: Option<*mut TrafficCounters>, bytes: u32) {
    if let Some(slot) = slot {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += u64::from(bytes);
        }
    }
}
