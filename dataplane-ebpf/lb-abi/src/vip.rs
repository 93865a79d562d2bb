//! The VIP table: which (address, port, protocol) the balancer owns, and
//! what each VIP does now.
//!
//! Maps, both written by userspace and read by the balancer:
//! - [`VIPS`]: hash map [`VipKey`] → `u32`, the VIP's index. Written once
//!   when the VIP is added and removed with it; never updated in place.
//! - [`VIP_STATE`]: `BPF_F_MMAPABLE` array indexed by VIP index →
//!   [`VipState`]: the VIP's key, and its ring slot and flags packed in one
//!   aligned `u64` that userspace replaces with one store through the
//!   mapping. That store is how a VIP's flags and ring change atomically.
//!
//! Why two maps: `VIPS` has no preallocation, and the kernel hands a
//! deleted element to the next insert at once, without waiting for
//! readers, so a program still holding it may read another VIP's value.
//! A `u32` index read from it is whole either way; the program then checks
//! the key in `VIP_STATE` (which lives as long as the map) and reads the
//! packed word with one load, so a packet uses one VIP's whole old state or
//! its whole new one by construction. An index is handed to a new VIP only
//! after a reader barrier has passed since its last VIP was removed.
//!
//! Order of writes: a new VIP's key, then its word, then its `VIPS` entry;
//! a removed VIP's word becomes [`VipState::GONE`] before its `VIPS` entry
//! goes. The program reads the word before the key, so a key rewritten
//! for a new VIP is never paired with the old VIP's word.

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

/// Name of the VIP state array in the eBPF object.
pub const VIP_STATE: &str = "VIP_STATE";

/// One entry of [`VIP_STATE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipState {
    /// Ring slot (low half) and [`flags`] (high half), or [`Self::GONE`]:
    /// see [`Self::pack`]. Replaced with one aligned store.
    pub word: u64,
    /// The VIP this index belongs to; set before the VIP is reachable and
    /// left alone until the index is given to another VIP.
    pub key: VipKey,
    /// A copy of the VIP's [`VIP_GENERATIONS`] entry, beside the word so a
    /// new flow reads it from the line it already has; written with it.
    pub generation: u32,
    /// Userspace's only: the config revision the VIP was programmed from,
    /// so a restarted controller knows what the maps hold.
    pub revision: u64,
}

impl VipState {
    /// The word of an index that names no VIP.
    pub const GONE: u64 = u64::MAX;

    /// The word of a VIP with its ring in `ring_slot` (or
    /// [`crate::ring::NO_RING`]) and `flags`.
    #[inline(always)]
    pub const fn pack(ring_slot: u32, flags: u32) -> u64 {
        ring_slot as u64 | (flags as u64) << 32
    }

    /// The VIP of `word`, as a lookup gives it; `None` for [`Self::GONE`].
    #[inline(always)]
    pub const fn unpack(vip_index: u32, word: u64, generation: u32) -> Option<LiveVip> {
        if word == Self::GONE {
            return None;
        }
        Some(LiveVip {
            vip_index,
            ring_slot: word as u32,
            flags: (word >> 32) as u32,
            generation,
        })
    }
}

/// A VIP as a lookup finds it: one [`VipState`] word, unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveVip {
    /// The VIP's index in [`VIP_STATE`], the per-VIP stats map and
    /// [`VIP_GENERATIONS`]; fixed for the life of the VIP.
    pub vip_index: u32,
    /// Index into [`crate::ring::RINGS`] of the VIP's current Maglev ring, or
    /// [`crate::ring::NO_RING`] when the VIP has no backend that takes flows.
    pub ring_slot: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// The VIP's flow-table generation as read with the word (a separate
    /// load: see `VipState::generation`).
    pub generation: u32,
}

/// Name of the VIP generation map: array indexed by `vip_index` → `u32`,
/// the generation whose flow entries are live, or 0 when the VIP is gone or
/// does not use the flow table. A flow-table hit is honoured only if its
/// entry's generation matches, which lets the balancer trust a hit without
/// looking the VIP up first. Userspace gives every new VIP, and every VIP
/// whose flow table is switched back on, a fresh generation.
pub const VIP_GENERATIONS: &str = "VIP_GENERATIONS";

/// Per-VIP behaviour bits of [`LiveVip::flags`].
pub mod flags {
    /// Hash on the client's source address only (session affinity): every
    /// connection of a client lands on the same backend.
    pub const HASH_SRC_ONLY: u32 = 1 << 0;
    /// Do not read or write the flow table for this VIP: every packet takes
    /// a fresh ring decision.
    pub const NO_FLOW_TABLE: u32 = 1 << 1;
    /// Open the VIP's address: traffic to it that no VIP balances (other
    /// ports and protocols, fragments the balancer cannot place, IPv6
    /// extension headers it does not parse) goes to this host's stack, for
    /// operators who run local services there. Without it on any VIP of
    /// the address, such traffic is dropped.
    pub const OPEN_ADDRESS: u32 = 1 << 2;
    /// Pass ICMP echo requests to the VIP's address to this host's stack
    /// (it answers them if it holds the address); dropped otherwise.
    pub const PASS_ECHO: u32 = 1 << 3;
    /// Clamp the MSS option of the VIP's TCP SYNs to what fits the tunnel
    /// ([`crate::vip::max_mss`]); SYNs without the option, or with a
    /// smaller one, are left alone. A client's MSS bounds what the backend
    /// sends it: use it where that return path is encapsulated or narrower
    /// too. With direct return, what bounds the client's own segments is
    /// the MSS in the backend's SYN-ACK, which never crosses the balancer:
    /// set that on the backends (README, "Path MTU").
    pub const CLAMP_MSS: u32 = 1 << 4;
    /// Every bit defined above; userspace rejects others.
    pub const ALL: u32 = HASH_SRC_ONLY | NO_FLOW_TABLE | OPEN_ADDRESS | PASS_ECHO | CLAMP_MSS;
}

/// The largest TCP MSS whose segments fit `fits` bytes of inner IP packet
/// (the node MTU less the outer header) behind `l3_len` bytes of IP
/// header(s): what `flags::CLAMP_MSS` lowers a SYN's MSS option to.
#[inline(always)]
pub const fn max_mss(fits: u32, l3_len: u32) -> u16 {
    let mss = fits.saturating_sub(l3_len + 20);
    if mss > u16::MAX as u32 {
        u16::MAX
    } else {
        mss as u16
    }
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
        assert_eq!(size_of::<VipState>(), 40);
        assert_eq!(offset_of!(VipState, key), 8);
        assert_eq!(offset_of!(VipState, revision), 32);
    }

    #[test]
    fn a_word_carries_slot_and_flags_and_gone_is_no_vip() {
        let live = VipState::unpack(7, VipState::pack(3, flags::ALL), 9).unwrap();
        assert_eq!(
            live,
            LiveVip {
                vip_index: 7,
                ring_slot: 3,
                flags: flags::ALL,
                generation: 9,
            }
        );
        let no_ring = VipState::pack(crate::ring::NO_RING, 0);
        assert_eq!(
            VipState::unpack(0, no_ring, 0).unwrap().ring_slot,
            crate::ring::NO_RING
        );
        assert_eq!(VipState::unpack(0, VipState::GONE, 0), None);
    }
}
