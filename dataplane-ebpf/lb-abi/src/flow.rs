//! The flow table: which backend an established flow goes to.
//!
//! Map [`FLOWS`]: LRU hash [`FlowKey`] → [`FlowValue`], sized by userspace at
//! load time. Written by the balancer (on a miss, and on every TCP SYN), read
//! by the balancer; userspace may read it or clear it (and must then
//! invalidate the flow cache, [`crate::flow_cache`], whose copies of TCP
//! entries answer most hits).
//!
//! The value carries a copy of the backend it chose and the VIP's
//! generation, so a hit needs only two array loads (the VIP's and the
//! backend's generations) to confirm both are still there. TCP entries live
//! until the LRU evicts them; UDP entries also expire after a configurable
//! idle time (default 30 s, Katran's).

use crate::backend::Backend;

/// Name of the flow map in the eBPF object.
pub const FLOWS: &str = "FLOWS";

/// The 5-tuple of a packet, in wire layout. Aligned to 8 so the flow
/// cache compares keys as five words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address, network order in memory.
    pub src: [u32; 4],
    /// Destination address, network order in memory.
    pub dst: [u32; 4],
    /// Source port, network order in memory.
    pub src_port: u16,
    /// Destination port, network order in memory.
    pub dst_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`].
    pub family: u8,
    /// Reserved, zero.
    pub _pad: [u8; 2],
}

/// The decision remembered for a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowValue {
    /// The backend as it was when the flow was placed, generation included.
    pub backend: Backend,
    /// Id of that backend in [`crate::backend::BACKENDS`].
    pub backend_id: u32,
    /// Stats index of the VIP that placed the flow.
    pub vip_index: u32,
    /// That VIP's generation when it placed the flow.
    pub vip_generation: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// UDP only: the time ([`crate::clock`]) of the flow's last packet from the
    /// client (ICMP errors about the flow do not count). A UDP entry idle
    /// for longer than the UDP flow timeout is not honoured (the flow is
    /// placed anew). Zero for TCP, whose entries last until evicted.
    pub last_seen_ns: u64,
}

/// Name of the global that holds the UDP flow timeout, ns.
pub const UDP_FLOW_TIMEOUT_NS: &str = "UDP_FLOW_TIMEOUT_NS";

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(align_of::<FlowKey>(), 8);
        assert_eq!(offset_of!(FlowKey, src_port), 32);
        assert_eq!(offset_of!(FlowKey, proto), 36);
        assert_eq!(size_of::<FlowValue>(), 48);
        assert_eq!(offset_of!(FlowValue, last_seen_ns), 40);
        assert_eq!(offset_of!(FlowValue, backend_id), 24);
        assert_eq!(offset_of!(FlowValue, vip_generation), 32);
    }
}
