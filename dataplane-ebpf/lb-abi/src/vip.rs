//! The VIP table: which (address, port, protocol) the balancer owns.
//!
//! Map [`VIPS`]: hash map [`VipKey`] → [`VipValue`], created with
//! `BPF_F_NO_PREALLOC` so that replacing a value is an RCU swap of the whole
//! element: a packet reads the old value or the new one, never a mix. That
//! single replace is how a VIP's flags and ring change atomically.
//! Written by userspace, read by the balancer.

use core::net::IpAddr;

use crate::{flow::FlowKey, wire_addr, wire_port};

/// Name of the VIP map in the eBPF object.
pub const VIPS: &str = "VIPS";

/// Key of the VIP map. Wire layout; see the crate docs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Destination address, network order in memory.
    pub addr: [u32; 4],
    /// Destination port, network order in memory.
    pub port: u16,
    /// IP protocol ([`crate::PROTO_TCP`] or [`crate::PROTO_UDP`]).
    pub proto: u8,
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`].
    pub family: u8,
}

impl VipKey {
    /// The key a flow's packets are addressed to: its destination address
    /// and port, protocol and family.
    #[inline(always)]
    pub const fn of_flow(flow: &FlowKey) -> Self {
        Self {
            addr: flow.dst,
            port: flow.dst_port,
            proto: flow.proto,
            family: flow.family,
        }
    }

    /// The key for `ip:port` over `proto`, port in host order.
    pub fn new(ip: IpAddr, port: u16, proto: u8) -> Self {
        let (family, addr) = wire_addr(ip);
        Self {
            addr,
            port: wire_port(port),
            proto,
            family,
        }
    }
}

/// Value of the VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipValue {
    /// Stable index of this VIP in the per-VIP stats map; never changes for
    /// the life of the VIP.
    pub vip_index: u32,
    /// Index into [`crate::ring::RINGS`] of the VIP's current Maglev ring, or
    /// [`crate::ring::NO_RING`] when the VIP has no backend that takes flows.
    pub ring_slot: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Identifies this VIP's current flow-table epoch; recorded in every
    /// flow entry the VIP creates (see [`VIP_GENERATIONS`]).
    pub generation: u32,
}

/// Name of the VIP generation map: array indexed by `vip_index` → `u32`,
/// the generation whose flow entries are live, or 0 when the VIP is gone or
/// does not use the flow table. A flow-table hit is honoured only if its
/// entry's generation matches, which lets the balancer trust a hit without
/// looking the VIP up first. Userspace gives every new VIP, and every VIP
/// whose flow table is switched back on, a fresh generation.
pub const VIP_GENERATIONS: &str = "VIP_GENERATIONS";

/// Per-VIP behaviour bits of [`VipValue::flags`].
pub mod flags {
    /// Hash on the client's source address only (session affinity): every
    /// connection of a client lands on the same backend.
    pub const HASH_SRC_ONLY: u32 = 1 << 0;
    /// Do not read or write the flow table for this VIP: every packet takes
    /// a fresh ring decision.
    pub const NO_FLOW_TABLE: u32 = 1 << 1;
    /// Every bit defined above; userspace rejects others.
    pub const ALL: u32 = HASH_SRC_ONLY | NO_FLOW_TABLE;
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(offset_of!(VipKey, port), 16);
        assert_eq!(offset_of!(VipKey, proto), 18);
        assert_eq!(offset_of!(VipKey, family), 19);
        assert_eq!(size_of::<VipValue>(), 16);
        assert_eq!(offset_of!(VipValue, flags), 8);
        assert_eq!(offset_of!(VipValue, generation), 12);
    }
}
