//! Node-wide settings of the balancer.
//!
//! Map [`CONTROL`]: array of two [`Control`]s; map [`CONTROL_ACTIVE`]: a
//! `MMAPABLE` array of one `u64` whose low bit says which is in force.
//! Written by userspace, read by the balancer on every VIP packet.
//!
//! Node settings change atomically for packets: userspace writes the
//! whole new value into the entry not in force, then flips the selector
//! with one aligned store, so a packet reads the old settings or the new
//! ones, never a mix. The entry left behind is written again only after a
//! reader barrier, when no packet can still be reading it.

/// Name of the control map in the eBPF object.
pub const CONTROL: &str = "CONTROL";

/// Name of the selector of the control entry in force.
pub const CONTROL_ACTIVE: &str = "CONTROL_ACTIVE";

/// Settings for building the outer frame.
///
/// Outer source addresses: the balancer takes `outer_src_v4` (or the last
/// word of `outer_src_v6`) and replaces the bits set in the matching host mask
/// with bits of [`crate::hash::outer_source_mix`] of the flow, so each flow
/// gets its own tunnel source and backend NICs can spread flows by RSS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Control {
    /// Destination MAC of every encapsulated frame (the next hop).
    pub gateway_mac: [u8; 6],
    /// Source MAC of every encapsulated frame (the interface's own).
    pub src_mac: [u8; 6],
    /// TTL / hop limit of the outer header.
    pub outer_ttl: u8,
    /// Reserved, zero.
    pub _pad: u8,
    /// Largest IP packet the balancer sends (host order): a VIP packet that
    /// would exceed it once encapsulated is answered with ICMP
    /// fragmentation-needed / packet-too-big, or dropped (IPv4 without DF).
    pub mtu: u16,
    /// Outer IPv4 source prefix, network order in memory.
    pub outer_src_v4: u32,
    /// Bits of `outer_src_v4` taken from the flow, network order in memory.
    pub outer_src_v4_host_mask: u32,
    /// Outer IPv6 source prefix, network order in memory.
    pub outer_src_v6: [u32; 4],
    /// Bits of the last word of `outer_src_v6` taken from the flow.
    pub outer_src_v6_host_mask: u32,
    /// Reserved, zero.
    pub _pad2: u32,
}

/// Replaces the `mask` bits of `prefix` with those of `mix`.
#[inline(always)]
pub const fn blend(prefix: u32, mask: u32, mix: u32) -> u32 {
    prefix ^ ((prefix ^ mix) & mask)
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<Control>(), 48);
        assert_eq!(offset_of!(Control, outer_ttl), 12);
        assert_eq!(offset_of!(Control, mtu), 14);
        assert_eq!(offset_of!(Control, outer_src_v4), 16);
        assert_eq!(offset_of!(Control, outer_src_v6), 24);
        assert_eq!(offset_of!(Control, outer_src_v6_host_mask), 40);
    }

    #[test]
    fn blend_takes_masked_bits_from_mix() {
        assert_eq!(blend(0xAAAA_0000, 0x0000_FFFF, 0x1234_5678), 0xAAAA_5678);
        assert_eq!(blend(0xAAAA_0000, 0, 0x1234_5678), 0xAAAA_0000);
    }
}
