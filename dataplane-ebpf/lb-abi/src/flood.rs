//! SYN-flood guard: a per-CPU rate of new flows.
//!
//! Map [`FLOOD`]: per-CPU array with one [`FloodWindow`]. Each CPU counts the
//! flows it places from the ring in one-second windows; past the threshold
//! (global [`FLOOD_THRESHOLD`], new flows per second per CPU, 0 = off) new
//! flows are still balanced by the ring but no longer recorded in the flow
//! table, so a flood of SYNs cannot churn out the established flows or pay
//! for an insert each. Written and read by the balancer only.

/// Name of the flood-window map in the eBPF object.
pub const FLOOD: &str = "FLOOD";
/// Name of the global that holds the threshold.
pub const FLOOD_THRESHOLD: &str = "FLOOD_THRESHOLD";
/// Length of a window, ns.
pub const WINDOW_NS: u64 = 1_000_000_000;

/// One CPU's current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FloodWindow {
    /// Start of the window, ns on the balancer's clock ([`crate::clock`]).
    pub start_ns: u64,
    /// New flows placed in the window.
    pub new_flows: u64,
}
