//! Maglev rings: per-VIP lookup tables of backend ids.
//!
//! Map [`RINGS`]: one flat `BPF_F_MMAPABLE` array of [`RingPair`]s, cut into
//! ring slots of [`pairs_per_ring`]`(M)` elements each: slot `s` holds its
//! ring's M backend ids packed two to an element, so ring memory is 4 bytes
//! × M per slot (an element of one `u32` would stride 8 bytes). A VIP names
//! its ring by slot in its [`crate::vip::VipState`] word; [`ring_element`]
//! finds entry `i`.
//!
//! Userspace writes a ring through a memory mapping of the map (no syscall,
//! no grace period) into a slot no VIP names, and only then points the VIP
//! at it with one store of that word, so a packet reads the VIP's whole old
//! ring or its whole new one. The old slot is written again only after a reader
//! barrier (an RCU grace period) has passed since the VIP stopped naming it.
//! Written by userspace, read by the balancer.

/// Name of the ring map in the eBPF object.
pub const RINGS: &str = "RINGS";

/// Name of the global (read-only data) that holds the ring size M.
pub const RING_SIZE: &str = "RING_SIZE";

/// `ring_slot` of a VIP that has no ring (no backend takes new flows).
pub const NO_RING: u32 = u32::MAX;

/// One element of [`RINGS`]: two consecutive ring entries.
pub type RingPair = [u32; 2];

/// Elements of [`RINGS`] one ring of `ring_size` entries takes.
#[inline(always)]
pub const fn pairs_per_ring(ring_size: u32) -> u32 {
    ring_size.div_ceil(2)
}

/// Where entry `index` of the ring in `slot` lives: the [`RINGS`] element
/// and which of its two halves (0 or 1).
#[inline(always)]
pub const fn ring_element(slot: u32, index: u32, ring_size: u32) -> (u32, u32) {
    (slot * pairs_per_ring(ring_size) + (index >> 1), index & 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_pack_two_entries_per_element_without_overlap() {
        assert_eq!(pairs_per_ring(65_537), 32_769);
        assert_eq!(pairs_per_ring(13), 7);
        assert_eq!(ring_element(0, 0, 13), (0, 0));
        assert_eq!(ring_element(0, 12, 13), (6, 0));
        assert_eq!(ring_element(1, 0, 13), (7, 0));
        assert_eq!(ring_element(2, 5, 13), (16, 1));
    }
}
