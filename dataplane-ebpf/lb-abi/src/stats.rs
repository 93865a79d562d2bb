//! Counters the balancer keeps, all per CPU; userspace sums them.
//!
//! - [`VIP_STATS`]: per-CPU array indexed by `LiveVip::vip_index` →
//!   [`TrafficCounters`] of packets sent to that VIP's backends.
//! - [`BACKEND_STATS`]: per-CPU array indexed by backend id →
//!   [`TrafficCounters`] of packets sent to that backend.
//! - [`GLOBAL_STATS`]: per-CPU array indexed by [`GlobalCounter`] → `u64`.
//!
//! Bytes count the packet as received (Ethernet header included), before
//! encapsulation.

/// Name of the per-VIP stats map.
pub const VIP_STATS: &str = "VIP_STATS";
/// Name of the per-backend stats map.
pub const BACKEND_STATS: &str = "BACKEND_STATS";
/// Name of the node-wide counter map.
pub const GLOBAL_STATS: &str = "GLOBAL_STATS";

/// Packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrafficCounters {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// Declares a counter enum: dense `u32` indices, `ALL`, labels.
macro_rules! counters {
    ($(#[doc = $enum_doc:literal])* $enum:ident { $($(#[doc = $doc:literal])* $name:ident = $label:literal,)* }) => {
        $(#[doc = $enum_doc])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $enum {
            $($(#[doc = $doc])* $name,)*
        }

        impl $enum {
            /// All counters, in index order.
            pub const ALL: &'static [$enum] = &[$($enum::$name,)*];

            /// The counter's metric label.
            pub const fn label(self) -> &'static str {
                match self {
                    $($enum::$name => $label,)*
                }
            }
        }
    };
}
pub(crate) use counters;

counters! {
    /// Node-wide counters: every verdict the balancer reaches is counted
    /// under exactly one of these.
    GlobalCounter {
    /// Sent to a backend through the flow table.
    TxFlowHit = "tx_flow_hit",
    /// Sent to a backend through the VIP's ring (miss, SYN, or no flow table).
    TxRing = "tx_ring",
    /// Sent to a backend: an ICMP error (destination unreachable, packet
    /// too big) about a VIP flow, to the backend that owns the flow.
    TxIcmpToBackend = "tx_icmp_to_backend",
    /// Answered: a VIP packet too big for the MTU once encapsulated got an
    /// ICMP fragmentation-needed (IPv4 with DF) or ICMPv6 packet-too-big.
    TxIcmpTooBig = "tx_icmp_too_big",
    /// Passed: not IPv4 or IPv6 (ARP, LLDP, ...).
    PassNotIp = "pass_not_ip",
    /// Passed: an 802.1Q or 802.1ad tag in the frame. The balancer serves
    /// untagged traffic on the interface it is attached to; tagged frames
    /// go to the host stack (a VLAN interface there may take them).
    PassVlanTagged = "pass_vlan_tagged",
    /// Passed: IP, but not to a VIP.
    PassNotVip = "pass_not_vip",
    /// Passed: IP, but not TCP or UDP (other protocols, ICMP that is not
    /// an error about a VIP flow, IPv6 extension headers the balancer does
    /// not parse) to an address with no VIP; and ICMPv6 neighbour
    /// discovery to any address, a VIP's included.
    PassOtherProtocol = "pass_other_protocol",
    /// Passed: a header was cut short before the VIP could be known.
    PassTruncated = "pass_truncated",
    /// Passed: an IPv4 header with a wrong version or a length below 20.
    PassBadIpHeader = "pass_bad_ip_header",
    /// Passed: a fragment the balancer cannot place (an IPv4 fragment past
    /// the first, any IPv6 fragment) to an address with no VIP.
    PassLaterFragment = "pass_later_fragment",
    /// Passed: traffic no VIP balances to a VIP address that a VIP opened
    /// (`vip::flags::OPEN_ADDRESS`, or `PASS_ECHO` for echo requests).
    PassOpenAddress = "pass_open_address",
    /// Dropped, the address closed: a fragment the balancer cannot place
    /// (IPv4 past the first, any IPv6 fragment) to a VIP address.
    DropClosedFragment = "drop_closed_fragment",
    /// Dropped, the address closed: TCP or UDP to a VIP address on a port
    /// no VIP of it serves.
    DropClosedPort = "drop_closed_port",
    /// Dropped, the address closed: another protocol to a VIP address, or
    /// ICMP that is neither an error about a VIP flow, an echo request nor
    /// neighbour discovery.
    DropClosedProtocol = "drop_closed_protocol",
    /// Dropped, the address closed: an ICMP echo request to a VIP address
    /// none of whose VIPs has `PASS_ECHO`.
    DropClosedEcho = "drop_closed_echo",
    /// Dropped, the address closed: IPv6 to a VIP address behind extension
    /// headers the balancer does not parse (more than four, a routing
    /// header with segments left, or other kinds).
    DropClosedExtHeader = "drop_closed_ext_header",
    /// Dropped: VIP traffic carrying IPv4 options.
    DropIpv4Options = "drop_ipv4_options",
    /// Dropped: the first fragment of a fragmented VIP packet.
    DropFragment = "drop_fragment",
    /// Dropped: VIP traffic whose IP length disagrees with the frame.
    DropBadLength = "drop_bad_length",
    /// Dropped: the VIP has no backend that takes new flows.
    DropNoBackend = "drop_no_backend",
    /// Dropped: the ring names a backend id the backend table lacks, or a
    /// backend whose family cannot carry the VIP's (config bug).
    DropBadBackend = "drop_bad_backend",
    /// Dropped: an ICMP error sent to a VIP address whose quoted packet is
    /// cut short or is not TCP/UDP over IP.
    DropBadIcmp = "drop_bad_icmp",
    /// Dropped: an IPv4 VIP packet without DF too big for the MTU once
    /// encapsulated (the balancer does not fragment).
    DropTooBig = "drop_too_big",
    /// Dropped: a VIP packet too big for the MTU whose sender must not be
    /// answered: a multicast, broadcast, reserved, unspecified or loopback
    /// source (IPv4 0/8, 127/8, 224/3; IPv6 ::, ::1, ff00::/8), or a frame
    /// sent to a group MAC (the reply would carry it as its source).
    DropTooBigUnanswerable = "drop_too_big_unanswerable",
    /// Dropped: a VIP packet too big for the MTU, not answered because this
    /// CPU sent as many too-big replies as it may for now
    /// (`lb_abi::reply_limit`).
    DropTooBigRateLimited = "drop_too_big_rate_limited",
    /// Dropped: no room to push the outer header.
    DropNoHeadroom = "drop_no_headroom",
    /// Flow-table lookups that found nothing (or a stale backend). Hits are
    /// `TxFlowHit`: every hit is sent.
    FlowMiss = "flow_miss",
    /// New flows not recorded in the flow table because this CPU saw more
    /// new flows per second for their VIP than the VIP's flood limit (they
    /// are still balanced by the ring). Per VIP in `lb_abi::flood`.
    FlowNotRecordedFlood = "flow_not_recorded_flood",
    /// Flow lookups (a UDP or non-SYN TCP packet's, or an ICMP error's)
    /// that this CPU's flow cache could not answer, so the flow table did.
    /// Zero with the caches off. The share of lookups the cache missed is
    /// about `flow_cache_miss / (tx_flow_hit + flow_miss)`; when it stays
    /// high, the cache costs more than it saves (`benches/README.md`).
    FlowCacheMiss = "flow_cache_miss",
    /// Flow lookups the table answered without asking this CPU's flow
    /// cache, because the cache missed most lookups lately (its gate,
    /// `lb_abi::flow_cache::FlowCacheGate`): with more active flows than
    /// slots a probe costs more than the few hits save.
    FlowCacheBypass = "flow_cache_bypass",
    }
}

impl GlobalCounter {
    /// Whether this counter records a dropped packet.
    pub const fn is_drop(self) -> bool {
        let label = self.label().as_bytes();
        label.len() > 5
            && label[0] == b'd'
            && label[1] == b'r'
            && label[2] == b'o'
            && label[3] == b'p'
            && label[4] == b'_'
    }
}

/// Number of [`GlobalCounter`]s; the size of [`GLOBAL_STATS`].
pub const GLOBAL_COUNTERS: u32 = GlobalCounter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_labels_unique() {
        for (i, c) in GlobalCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            for other in &GlobalCounter::ALL[i + 1..] {
                assert_ne!(c.label(), other.label());
            }
        }
        assert!(GlobalCounter::DropFragment.is_drop());
        assert!(!GlobalCounter::PassNotVip.is_drop());
        assert_eq!(core::mem::size_of::<TrafficCounters>(), 16);
    }
}
