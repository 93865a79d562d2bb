//! SYN-flood guard: a per-CPU, per-VIP rate of new flows.
//!
//! Map [`FLOOD`]: per-CPU array indexed by `vip_index` → [`FloodWindow`].
//! Each CPU counts the flows it places from a VIP's ring in one-second
//! windows; past the VIP's limit new flows of that VIP are still balanced
//! by the ring but no longer recorded in the flow table, so a flood of SYNs
//! cannot churn out the established flows or pay for an insert each — and a
//! flood on one VIP leaves every other VIP's new flows recorded. Written by
//! the balancer; userspace zeroes an index's windows before giving it to a
//! new VIP, and sums [`FloodWindow::not_recorded`] over CPUs as the VIP's
//! counter.
//!
//! Map [`FLOOD_LIMITS`]: array indexed by `vip_index` → `u32`, the VIP's
//! limit in new flows per second per CPU: [`LIMIT_NODE_DEFAULT`] (the
//! global [`FLOOD_THRESHOLD`], itself 0 = off), [`LIMIT_OFF`], or the
//! limit. Written by userspace before the VIP is reachable.

/// Name of the flood-window map in the eBPF object.
pub const FLOOD: &str = "FLOOD";
/// Name of the per-VIP limit map in the eBPF object.
pub const FLOOD_LIMITS: &str = "FLOOD_LIMITS";
/// Name of the global that holds the node's default limit.
pub const FLOOD_THRESHOLD: &str = "FLOOD_THRESHOLD";
/// Length of a window, ns.
pub const WINDOW_NS: u64 = 1_000_000_000;
/// [`FLOOD_LIMITS`]: the VIP takes the node's [`FLOOD_THRESHOLD`].
pub const LIMIT_NODE_DEFAULT: u32 = 0;
/// [`FLOOD_LIMITS`]: the VIP records every new flow.
pub const LIMIT_OFF: u32 = u32::MAX;

/// One CPU's current window for one VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FloodWindow {
    /// Start of the window, ns on the balancer's clock ([`crate::clock`]).
    pub start_ns: u64,
    /// New flows placed in the window.
    pub new_flows: u64,
    /// New flows this CPU did not record because the VIP was over its
    /// limit, since the VIP got its index.
    pub not_recorded: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn layout_is_pinned() {
        assert_eq!(core::mem::size_of::<super::FloodWindow>(), 24);
    }
}
