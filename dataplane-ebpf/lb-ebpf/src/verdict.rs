//! What the balancer decides for a packet, and the counter that records it.

use aya_ebpf::bindings::xdp_action;
use lb_abi::stats::GlobalCounter;

/// An XDP action together with the one global counter it is recorded under.
/// Stages return `Err(Verdict)` to stop early, so `?` ends processing.
#[derive(Clone, Copy)]
pub struct Verdict {
    pub action: u32,
    pub counter: GlobalCounter,
}

impl Verdict {
    #[inline(always)]
    pub const fn pass(counter: GlobalCounter) -> Self {
        Self {
            action: xdp_action::XDP_PASS,
            counter,
        }
    }

    #[inline(always)]
    pub const fn drop(counter: GlobalCounter) -> Self {
        Self {
            action: xdp_action::XDP_DROP,
            counter,
        }
    }

    #[inline(always)]
    pub const fn tx(counter: GlobalCounter) -> Self {
        Self {
            action: xdp_action::XDP_TX,
            counter,
        }
    }
}
