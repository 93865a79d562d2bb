//! The flow table: which backend an established flow goes to.
//!
//! Map [`FLOWS`]: LRU hash [`FlowKey`] → [`FlowValue`], sized by userspace at
//! load time. Written by the balancer (on a miss, and on every TCP SYN), read
//! by the balancer; userspace may read it or clear it (and must then
//! invalidate the flow cache, [`crate::flow_cache`], whose copies of TCP
//! entries answer most hits).
//!
//! The value carries the backend id and generation it chose and the VIP's
//! generation, so a hit needs only two array loads (the VIP's and the
//! backend's generations) to confirm both are still there; the packet then
//! goes to the address the backend table holds for that id now, never to
//! one copied out of the entry. TCP entries live until the LRU evicts
//! them; UDP entries also expire after a configurable idle time (default
//! 30 s, Katran's).
//!
//! The kernel recycles LRU elements without waiting for readers, so a
//! lookup's pointer can end up at another flow's value, or at half of two.
//! Generations do not catch that (two flows of one VIP to one backend carry
//! the same ones), so every entry also carries [`FlowValue::key_tag`], a
//! hash of the key and of the decision fields: a copy whose tag does not
//! match the key it was looked up for, and the fields read, is a miss.

use crate::backend::Backend;

/// Name of the flow map in the eBPF object.
pub const FLOWS: &str = "FLOWS";
/// Name of the same table with one LRU list per CPU (`BPF_F_NO_COMMON_LRU`),
/// used instead of [`FLOWS`] when [`FLOW_TABLE_PER_CPU_LRU`] is set. Its
/// entries are split evenly between the CPUs, and a CPU evicts only from its
/// own share: no lock shared between CPUs on an insert, but a flow that
/// moves to another CPU keeps its entry only until that CPU's share evicts
/// it, and a busy CPU cannot borrow an idle CPU's room.
pub const FLOWS_PER_CPU_LRU: &str = "FLOWS_PER_CPU_LRU";
/// Name of the global (`u8`, non-zero = on) that picks
/// [`FLOWS_PER_CPU_LRU`]; the other map is loaded at its smallest size.
pub const FLOW_TABLE_PER_CPU_LRU: &str = "FLOW_TABLE_PER_CPU_LRU";

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
    /// [`flow_tag`] of the key and the four fields above: proves a copy of
    /// the value belongs, whole, to the key it was looked up for.
    pub key_tag: u32,
    /// UDP only: the time ([`crate::clock`]) of the flow's last packet from the
    /// client (ICMP errors about the flow do not count). A UDP entry idle
    /// for longer than the UDP flow timeout is not honoured (the flow is
    /// placed anew). Zero for TCP, whose entries last until evicted.
    pub last_seen_ns: u64,
}

impl FlowValue {
    /// The entry for `key` that sends to `backend` (its generation as the
    /// entry records it) under id `backend_id`, placed by the VIP at
    /// `vip_index` in `vip_generation`, its tag computed.
    #[inline(always)]
    pub const fn tagged(
        key: &FlowKey,
        backend: Backend,
        backend_id: u32,
        vip_index: u32,
        vip_generation: u32,
        last_seen_ns: u64,
    ) -> Self {
        Self {
            backend,
            backend_id,
            vip_index,
            vip_generation,
            key_tag: flow_tag(
                key,
                backend_id,
                backend.generation,
                vip_index,
                vip_generation,
            ),
            last_seen_ns,
        }
    }
}

/// One word folded into a tag.
#[inline(always)]
const fn step(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29)
}

/// The tag an entry for `key` with these decision fields carries: the
/// key's five 8-byte words and the fields, each folded in by a multiply
/// and a rotate. A value torn between two entries, or another key's,
/// matches with odds of about 2^-32.
#[inline(always)]
pub const fn flow_tag(
    key: &FlowKey,
    backend_id: u32,
    backend_generation: u32,
    vip_index: u32,
    vip_generation: u32,
) -> u32 {
    // SAFETY: FlowKey is 40 bytes, 8-aligned, plain integers throughout.
    let words = unsafe { &*(key as *const FlowKey as *const [u64; 5]) };
    let mut h = step(0x9e37_79b9_7f4a_7c15, words[0]);
    h = step(h, words[1]);
    h = step(h, words[2]);
    h = step(h, words[3]);
    h = step(h, words[4]);
    h = step(h, backend_id as u64 | (backend_generation as u64) << 32);
    h = step(h, vip_index as u64 | (vip_generation as u64) << 32);
    (h ^ (h >> 32)) as u32
}

/// Name of the global that holds the UDP flow timeout, ns.
pub const UDP_FLOW_TIMEOUT_NS: &str = "UDP_FLOW_TIMEOUT_NS";

/// A key with every field distinct, for unit tests.
#[cfg(test)]
pub(crate) fn sample_key() -> FlowKey {
    FlowKey {
        src: [1, 2, 3, 4],
        dst: [5, 6, 7, 8],
        src_port: 9,
        dst_port: 10,
        proto: 6,
        family: 6,
        _pad: [0; 2],
    }
}

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
        assert_eq!(offset_of!(FlowValue, key_tag), 36);
    }

    #[test]
    fn the_tag_depends_on_the_key_and_every_decision_field() {
        let key = sample_key();
        let tag = flow_tag(&key, 1, 2, 3, 4);
        assert_eq!(tag, flow_tag(&key, 1, 2, 3, 4));
        for other in [
            flow_tag(&key, 9, 2, 3, 4),
            flow_tag(&key, 1, 9, 3, 4),
            flow_tag(&key, 1, 2, 9, 4),
            flow_tag(&key, 1, 2, 3, 9),
            flow_tag(
                &FlowKey {
                    src_port: 11,
                    ..key
                },
                1,
                2,
                3,
                4,
            ),
            flow_tag(
                &FlowKey {
                    src: [1, 2, 3, 5],
                    ..key
                },
                1,
                2,
                3,
                4,
            ),
        ] {
            assert_ne!(tag, other);
        }
    }
}
