//! The decap program run on backends: strips the balancer's outer header.
//!
//! - [`DECAP_ADDRS`]: array of [`MAX_TUNNEL_ADDRS`] [`crate::AddrKey`]: the
//!   host's tunnel addresses (family 0 = empty slot). Only packets whose
//!   outer destination is one of them are decapsulated. A host has one or
//!   two; comparing a few inlined array entries is several times cheaper
//!   than a hash lookup. Written by userspace, read by the program.
//! - [`DECAP_VIPS`]: array of [`DECAP_VIP_SLOTS`] [`crate::AddrKey`]
//!   (family 0 = empty): the addresses of the VIPs this host serves, each
//!   within [`DECAP_VIP_PROBES`] slots of [`vip_home_slot`]. A tunnel packet
//!   is stripped only when its inner destination is one of them, so a
//!   backend is no open relay for packets with any inner source to any
//!   inner destination. An array probed from a hashed slot rather than a
//!   hash map: every stripped packet looks its VIP up, and here a hash-map
//!   lookup costs more than the rest of the program (`benches/README.md`).
//!   The reader probes every slot of the window (no early stop at an empty
//!   one), so userspace adds and removes an address by writing one slot
//!   and never moves another.
//! - [`DECAP_SOURCES`]: array of [`MAX_SOURCE_PREFIXES`] [`SourcePrefix`]:
//!   the balancers' outer source prefixes, checked when
//!   [`DecapPolicy::check_sources`] is set.
//! - [`DECAP_POLICY`]: array of one [`DecapPolicy`].
//! - [`DECAP_STATS`]: per-CPU array indexed by [`DecapCounter`] → `u64`.
//!
//! Packets that are not tunnel packets to this host are passed to the
//! kernel stack untouched. Tunnel packets to this host are stripped, or
//! refused (inner destination not a VIP here, outer source outside the
//! balancers' prefixes) and then dropped or passed untouched as
//! [`DecapPolicy::refused`] says, or dropped by RFC 6040 (outer CE, inner
//! not ECN-capable).

use crate::stats::counters;

/// Name of the tunnel-address map in the decap object.
pub const DECAP_ADDRS: &str = "DECAP_ADDRS";
/// Most tunnel addresses one host can have.
pub const MAX_TUNNEL_ADDRS: u32 = 8;
/// Name of the counter map in the decap object.
pub const DECAP_STATS: &str = "DECAP_STATS";
/// Name of the host-VIP map in the decap object.
pub const DECAP_VIPS: &str = "DECAP_VIPS";
/// Slots of [`DECAP_VIPS`]: a power of two.
pub const DECAP_VIP_SLOTS: u32 = 1 << 14;
/// Slots probed from an address's home slot. With 16, filling the table
/// to [`MAX_DECAP_VIPS`] random addresses found a free slot every time in
/// 200 simulated fills (8 failed about once in three).
pub const DECAP_VIP_PROBES: u32 = 16;
/// Most VIP addresses one backend can serve: a quarter of the slots, so a
/// free slot within the probe window is all but certain.
pub const MAX_DECAP_VIPS: u32 = DECAP_VIP_SLOTS / 4;

/// The first slot of [`DECAP_VIPS`] probed for an address in wire layout;
/// the window runs on from it, wrapping.
#[inline(always)]
pub const fn vip_home_slot(addr: &[u32; 4]) -> u32 {
    let fold = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
    (fold ^ (fold >> 16)).wrapping_mul(0x9e37_79b1) >> (32 - DECAP_VIP_SLOTS.trailing_zeros())
}
/// Name of the outer-source-prefix map in the decap object.
pub const DECAP_SOURCES: &str = "DECAP_SOURCES";
/// Most outer source prefixes (the balancers' subnets).
pub const MAX_SOURCE_PREFIXES: u32 = 8;
/// Name of the policy map in the decap object.
pub const DECAP_POLICY: &str = "DECAP_POLICY";

/// [`DecapPolicy::refused`]: refused tunnel packets are dropped.
pub const REFUSED_DROP: u8 = 0;
/// [`DecapPolicy::refused`]: refused tunnel packets go to the kernel stack
/// untouched (for hosts whose own tunnel devices should see them).
pub const REFUSED_PASS: u8 = 1;

/// What the decap program does with tunnel packets it refuses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapPolicy {
    /// [`REFUSED_DROP`] or [`REFUSED_PASS`].
    pub refused: u8,
    /// Non-zero: the outer source must be in one of [`DECAP_SOURCES`].
    pub check_sources: u8,
    /// Reserved, zero.
    pub _pad: [u8; 2],
}

/// One outer source prefix, its address already masked. Family 0 is an
/// empty slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourcePrefix {
    /// The prefix's address, wire layout, host bits zero.
    pub addr: [u32; 4],
    /// The prefix mask, wire layout.
    pub mask: [u32; 4],
    /// [`crate::FAMILY_V4`], [`crate::FAMILY_V6`] or 0 (empty).
    pub family: u8,
    /// Reserved, zero.
    pub _pad: [u8; 3],
}

impl SourcePrefix {
    /// The prefix of `len` bits of `ip` (`len` clamped to the family's
    /// width).
    pub fn new(ip: core::net::IpAddr, len: u8) -> Self {
        let (family, addr) = crate::wire_addr(ip);
        let bits = if family == crate::FAMILY_V4 { 32 } else { 128 };
        let len = u32::from(len).min(bits);
        let mut mask = [0u32; 4];
        for (i, m) in mask.iter_mut().enumerate() {
            let taken = len.saturating_sub(32 * i as u32).min(32);
            // Wire layout: the word's memory holds the bytes in network
            // order, so build the mask big-endian and store it as such.
            let be = if taken == 0 {
                0
            } else {
                u32::MAX << (32 - taken)
            };
            *m = u32::from_ne_bytes(be.to_be_bytes());
        }
        let mut masked = addr;
        for (a, m) in masked.iter_mut().zip(mask) {
            *a &= m;
        }
        Self {
            addr: masked,
            mask,
            family,
            _pad: [0; 3],
        }
    }

    /// Whether a source in wire layout falls in this prefix.
    #[inline(always)]
    pub fn contains(&self, family: u8, src: &[u32; 4]) -> bool {
        self.family == family
            && src[0] & self.mask[0] == self.addr[0]
            && src[1] & self.mask[1] == self.addr[1]
            && src[2] & self.mask[2] == self.addr[2]
            && src[3] & self.mask[3] == self.addr[3]
    }
}

/// ECN codepoints (the two low bits of the TOS or traffic class).
pub const ECN_NOT_ECT: u8 = 0;
/// ECT(1).
pub const ECN_ECT1: u8 = 1;
/// ECT(0).
pub const ECN_ECT0: u8 = 2;
/// Congestion experienced.
pub const ECN_CE: u8 = 3;
/// What [`ecn_on_strip`] returns when RFC 6040 says to drop the packet.
pub const ECN_DROP: u8 = 0xff;

/// The inner header's ECN field after decapsulation, by RFC 6040 §4.2
/// (normal mode), or [`ECN_DROP`]. A congestion mark a router set on the
/// outer header reaches the endpoint; a non-ECN transport that met
/// congestion loses the packet, as it would have without the tunnel.
#[inline(always)]
pub const fn ecn_on_strip(outer: u8, inner: u8) -> u8 {
    if inner == ECN_NOT_ECT {
        if outer == ECN_CE {
            ECN_DROP
        } else {
            ECN_NOT_ECT
        }
    } else if outer == ECN_CE {
        ECN_CE
    } else if outer == ECN_ECT1 && inner == ECN_ECT0 {
        ECN_ECT1
    } else {
        inner
    }
}

counters! {
    /// What the decap program did with a packet; each packet is counted
    /// under exactly one.
    DecapCounter {
        /// IPv4 in IPv4 stripped.
        DecapIpip = "decap_ipip",
        /// IPv6 in IPv6 stripped.
        DecapIp6ip6 = "decap_ip6ip6",
        /// IPv4 in IPv6 stripped.
        Decap4in6 = "decap_4in6",
        /// Passed untouched: not an IP-in-IP packet.
        PassNotTunnel = "pass_not_tunnel",
        /// Passed untouched: IP-in-IP, but not to a tunnel address of this
        /// host.
        PassNotLocal = "pass_not_local",
        /// Passed untouched: an outer IPv4 fragment (the stack reassembles).
        PassFragment = "pass_fragment",
        /// Passed untouched: outer header with options, or an inner packet
        /// cut short or of the wrong version.
        PassMalformed = "pass_malformed",
        /// Refused (dropped or passed by [`DecapPolicy::refused`]): a
        /// tunnel packet whose inner destination is none of this host's
        /// VIPs — someone using the backend as a relay.
        RefusedInnerNotVip = "refused_inner_not_vip",
        /// Refused as above: the outer source is outside the balancers'
        /// prefixes.
        RefusedOuterSource = "refused_outer_source",
        /// Dropped by RFC 6040: the outer header is marked CE and the inner
        /// packet is not ECN-capable.
        DropCeNotEct = "drop_ce_not_ect",
    }
}

/// Number of [`DecapCounter`]s; the size of [`DECAP_STATS`].
pub const DECAP_COUNTERS: u32 = DecapCounter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_indices() {
        for (i, c) in DecapCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(core::mem::size_of::<SourcePrefix>(), 36);
        assert_eq!(core::mem::size_of::<DecapPolicy>(), 4);
        assert!(DECAP_VIP_SLOTS.is_power_of_two());
    }

    #[test]
    fn home_slots_are_in_range_and_spread() {
        let mut homes = std::collections::HashSet::new();
        for i in 0..1024u32 {
            let v4 = crate::wire_addr(core::net::Ipv4Addr::from(0x0a00_0000 + i).into()).1;
            let v6 = crate::wire_addr(
                core::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)).into(),
            )
            .1;
            for a in [v4, v6] {
                let h = vip_home_slot(&a);
                assert!(h < DECAP_VIP_SLOTS);
                homes.insert(h);
            }
        }
        assert!(homes.len() > 1900, "{}", homes.len());
    }

    #[test]
    fn rfc_6040_decapsulation_table() {
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE.
        let table = [
            (
                ECN_NOT_ECT,
                [ECN_NOT_ECT, ECN_NOT_ECT, ECN_NOT_ECT, ECN_DROP],
            ),
            (ECN_ECT0, [ECN_ECT0, ECN_ECT0, ECN_ECT1, ECN_CE]),
            (ECN_ECT1, [ECN_ECT1, ECN_ECT1, ECN_ECT1, ECN_CE]),
            (ECN_CE, [ECN_CE, ECN_CE, ECN_CE, ECN_CE]),
        ];
        for (inner, row) in table {
            for (outer, want) in [ECN_NOT_ECT, ECN_ECT0, ECN_ECT1, ECN_CE]
                .into_iter()
                .zip(row)
            {
                assert_eq!(
                    ecn_on_strip(outer, inner),
                    want,
                    "outer {outer} inner {inner}"
                );
            }
        }
    }

    #[test]
    fn source_prefixes_mask_in_wire_order() {
        use crate::wire_addr;
        let p = SourcePrefix::new("10.77.0.9".parse().unwrap(), 24);
        let inside = wire_addr("10.77.0.200".parse().unwrap()).1;
        let outside = wire_addr("10.77.1.1".parse().unwrap()).1;
        assert!(p.contains(crate::FAMILY_V4, &inside));
        assert!(!p.contains(crate::FAMILY_V4, &outside));
        assert!(!p.contains(crate::FAMILY_V6, &inside));
        let p6 = SourcePrefix::new("2001:db8:a123::1".parse().unwrap(), 36);
        let in6 = wire_addr("2001:db8:afff::7".parse().unwrap()).1;
        let out6 = wire_addr("2001:db8:b000::7".parse().unwrap()).1;
        assert!(p6.contains(crate::FAMILY_V6, &in6));
        assert!(!p6.contains(crate::FAMILY_V6, &out6));
        let all = SourcePrefix::new("192.0.2.1".parse().unwrap(), 0);
        assert!(all.contains(crate::FAMILY_V4, &outside));
        let host = SourcePrefix::new("192.0.2.1".parse().unwrap(), 200);
        assert!(host.contains(crate::FAMILY_V4, &wire_addr("192.0.2.1".parse().unwrap()).1));
        assert!(!host.contains(crate::FAMILY_V4, &wire_addr("192.0.2.2".parse().unwrap()).1));
    }
}
