//! The VIP cache: a per-CPU, direct-mapped copy of recent VIP lookups.
//!
//! A new flow looks its VIP up in [`VIPS`], a hash map: hashing the key and
//! walking a bucket, twice for a port-0 VIP. The cache answers with one
//! array load and a key compare. It holds the index the lookup returned
//! (of the exact VIP or of the address's all-ports VIP), never the VIP's
//! state: that is read from [`VIP_STATE`] every time, so a ring change
//! needs nothing from the cache. Misses are not cached.
//!
//! Maps:
//! - [`VIP_CACHE`]: per-CPU array of [`VIP_CACHE_SLOTS`] [`VipCacheSlot`]s,
//!   indexed by [`vip_cache_index`]. Written and read by the balancer only.
//! - [`VIP_CACHE_EPOCH`]: array of one `u64`, written by userspace only.
//!   Userspace bumps it after every insert into and removal from [`VIPS`]
//!   (a VIP added on a port of an address whose all-ports VIP answered
//!   before must win from then on). A copy is honoured only under the
//!   epoch it was taken under. The key an index belongs to is checked in
//!   [`VIP_STATE`] when the copy is taken; an index changes owner only
//!   after its VIP's removal has bumped the epoch, so a current copy's
//!   index is still its key's.
//!
//! Switched with the flow cache, for the same memory-ordering reason:
//! [`crate::flow_cache::CACHES_ENABLED`].
//!
//! [`VIPS`]: crate::vip::VIPS
//! [`VIP_STATE`]: crate::vip::VIP_STATE

use crate::vip::VipKey;

/// Name of the per-CPU cache map in the eBPF object.
pub const VIP_CACHE: &str = "VIP_CACHE";
/// Name of the epoch array in the eBPF object.
pub const VIP_CACHE_EPOCH: &str = "VIP_CACHE_EPOCH";
/// Slots per CPU. A power of two: 256 × 32 bytes per CPU.
pub const VIP_CACHE_SLOTS: u32 = 256;

/// One cached VIP lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipCacheSlot {
    /// The key looked up (the packet's, even when a port-0 VIP answered).
    pub key: VipKey,
    /// The index the lookup gave.
    pub vip_index: u32,
    /// [`VIP_CACHE_EPOCH`] when the copy was taken. (An empty slot is all
    /// zero; its key's family 0 matches no packet.)
    pub epoch: u64,
}

/// The cache slot of `key`: its words folded by XOR, spread by a Fibonacci
/// multiply.
#[inline(always)]
pub const fn vip_cache_index(key: &VipKey) -> u32 {
    let fold = key.addr[0] ^ key.addr[1] ^ key.addr[2] ^ key.addr[3];
    let rest = key.port as u32 | (key.proto as u32) << 16 | (key.family as u32) << 24;
    (fold ^ rest.rotate_left(7)).wrapping_mul(0x9e37_79b1)
        >> (32 - VIP_CACHE_SLOTS.trailing_zeros())
}

/// Whether two keys are the same: word by word, with one branch.
#[inline(always)]
pub const fn same_vip(a: &VipKey, b: &VipKey) -> bool {
    let diff = (a.addr[0] ^ b.addr[0])
        | (a.addr[1] ^ b.addr[1])
        | (a.addr[2] ^ b.addr[2])
        | (a.addr[3] ^ b.addr[3])
        | (a.port ^ b.port) as u32
        | ((a.proto ^ b.proto) as u32) << 16
        | ((a.family ^ b.family) as u32) << 24;
    diff == 0
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<VipCacheSlot>(), 32);
        assert!(VIP_CACHE_SLOTS.is_power_of_two());
    }

    #[test]
    fn index_is_in_range_and_keys_compare_by_every_field() {
        let key = VipKey {
            addr: [1, 2, 3, 4],
            port: 80,
            proto: 6,
            family: 6,
        };
        assert!(vip_cache_index(&key) < VIP_CACHE_SLOTS);
        assert!(same_vip(&key, &key));
        for other in [
            VipKey { port: 0, ..key },
            VipKey { proto: 17, ..key },
            VipKey { family: 4, ..key },
            VipKey {
                addr: [1, 2, 3, 5],
                ..key
            },
        ] {
            assert!(!same_vip(&key, &other), "{other:?}");
        }
    }
}
