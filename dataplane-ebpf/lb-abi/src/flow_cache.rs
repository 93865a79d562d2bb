//! The flow cache: a per-CPU, direct-mapped copy of recent flow-table hits.
//!
//! A flow-table hit is a hash-map lookup: hashing a 40-byte key and walking
//! a bucket. The cache answers a flow's next packets with one array
//! load and a key compare instead. It holds copies of what [`FLOWS`]
//! entries said and never decides anything itself: a copy is taken only of
//! an entry that passed the table's VIP and backend generation checks, and
//! honoured only while none of those generations can have changed since.
//!
//! Maps:
//! - [`FLOW_CACHE`]: per-CPU array of [`FLOW_CACHE_SLOTS`] [`FlowCacheSlot`]s
//!   (a load-time global, default [`DEFAULT_FLOW_CACHE_SLOTS`]), indexed by
//!   [`flow_cache_index`]. Written and read by the balancer only.
//! - [`FLOW_CACHE_EPOCHS`]: array of [`FLOW_CACHE_SLOTS`] `u64`, shared by
//!   all CPUs. Every write to the flow table for a key bumps its index's
//!   epoch (atomically); a cached copy is honoured only while the epoch it
//!   was filled under is current. So a flow placed anew on one CPU (a SYN)
//!   is never answered from another CPU's older copy, and userspace
//!   invalidates every copy by bumping every epoch (after clearing flows).
//! - [`FLOW_CACHE_GENERATION_EPOCH`]: array of one `u64`, written by
//!   userspace only. Userspace bumps it after every write that can make an
//!   entry fail the generation checks: a VIP's generation changing in
//!   [`VIP_GENERATIONS`] and a backend id being cleared in [`BACKENDS`]. A
//!   copy is honoured only under the generation epoch it was taken under
//!   (read before the checks were made), so a hit needs neither map: one
//!   shared, read-mostly word stands for both. A config change thus drops
//!   every CPU's copies at once; each flow's next packet refills its slot
//!   from the table.
//!
//! A miss fills the slot only when the slot holds no current copy (empty,
//! or either epoch has moved on) or holds the flow's own (a UDP copy past
//! its time, renewed from the table). A current copy of another flow stays: with
//! more active flows than slots, flows sharing a slot would otherwise evict
//! each other on every packet, each miss paying a 96-byte slot write on top
//! of the table lookup (the `flow_churn` bench measures it). A slot turns
//! over when a flow-table write at its index bumps the epoch, that is,
//! whenever a new flow hashing there is placed.
//!
//! UDP flows expire after an idle timeout, judged by the table entry's
//! last-seen time, which every packet of the flow used to write. A copy
//! keeps the time it last wrote (or read) there, [`FlowCacheSlot::seen_ns`];
//! the table's time is that or newer, so while the copy's is within the
//! timeout the flow lives and the copy answers. A packet answered so writes
//! the table's time again (one table lookup) only once the copy's is older
//! than the timeout >> [`UDP_REFRESH_SHIFT`]; past the timeout the table
//! decides, as without the cache. So the table's time lags a flow's last
//! packet by less than that interval, and a flow idle for between
//! timeout − timeout/64 and the timeout may be placed anew a little early
//! (30 s: after 29.5 s). ICMP errors about a flow refresh nothing.
//!
//! The epoch protocol needs the CPU to keep loads in order with loads and
//! stores with stores: a reader that sees a new epoch must see the table
//! write before it. x86-64 (TSO) does; weakly ordered CPUs (arm64) would
//! need acquire/release accesses the program does not use. So this cache
//! and the VIP cache ([`crate::vip_cache`]) are switched by the load-time
//! global [`CACHES_ENABLED`], which the loader sets only on x86-64; off,
//! every hit is a table lookup and every VIP a map lookup.
//!
//! [`FLOWS`]: crate::flow::FLOWS
//! [`VIP_GENERATIONS`]: crate::vip::VIP_GENERATIONS
//! [`BACKENDS`]: crate::backend::BACKENDS

use crate::{backend::Backend, flow::FlowKey, hash::ring_index};

/// Name of the per-CPU cache map in the eBPF object.
pub const FLOW_CACHE: &str = "FLOW_CACHE";
/// Name of the shared epoch array in the eBPF object.
pub const FLOW_CACHE_EPOCHS: &str = "FLOW_CACHE_EPOCHS";
/// Name of the generation epoch (an array of one) in the eBPF object.
pub const FLOW_CACHE_GENERATION_EPOCH: &str = "FLOW_CACHE_GENERATION_EPOCH";
/// Name of the global that switches both per-CPU caches on (non-zero) or
/// off.
pub const CACHES_ENABLED: &str = "CACHES_ENABLED";
/// Name of the global holding the TCP refresh interval, ns (see
/// [`FlowCacheSlot::seen_ns`]).
pub const TCP_REFRESH_NS: &str = "TCP_REFRESH_NS";
/// Name of the global holding the slot count per CPU (and of epochs), set
/// by the loader.
pub const FLOW_CACHE_SLOTS: &str = "FLOW_CACHE_SLOTS";
/// Default slots per CPU: 4096 × 96 bytes = 384 KiB per CPU, about what a
/// core's L2 holds. The `flow_churn` bench shows where it pays.
pub const DEFAULT_FLOW_CACHE_SLOTS: u32 = 4096;
/// Most slots per CPU: 24 MiB per CPU. Past a working set that size the
/// flow table alone is the better deal; turn the caches off instead.
pub const MAX_FLOW_CACHE_SLOTS: u32 = 1 << 18;

/// One cached flow-table hit: what the hit uses of the entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheSlot {
    /// (An empty slot is all zero; its key's family 0 matches no packet.)
    pub key: FlowKey,
    /// The entry's backend.
    pub backend: Backend,
    /// The entry's backend id.
    pub backend_id: u32,
    /// Stats index of the VIP that placed the flow.
    pub vip_index: u32,
    /// [`FLOW_CACHE_EPOCHS`] at the slot's index when the copy was taken.
    pub epoch: u64,
    /// [`FLOW_CACHE_GENERATION_EPOCH`] when the copy was taken.
    pub generation_epoch: u64,
    /// UDP: the table entry's last-seen time ([`crate::clock`]) as this
    /// CPU last wrote or read it. TCP: when this CPU last touched the
    /// table entry; past [`TCP_REFRESH_NS`] a packet answered from the copy
    /// touches it again (or writes it back if the LRU evicted it), so the
    /// LRU never takes a busy flow answered from caches for an idle one.
    pub seen_ns: u64,
}

/// A cached UDP hit writes the table entry's last-seen time again once the
/// copy's is older than the UDP flow timeout >> this (1/64 of it).
pub const UDP_REFRESH_SHIFT: u32 = 6;

/// The cache slot (and epoch) of `key` among `slots`: its words folded by
/// XOR, the destination rotated so that swapping source and destination
/// moves it, spread by a Fibonacci multiply and scaled to the slot count
/// like a ring index (any count, no division).
#[inline(always)]
pub const fn flow_cache_index(key: &FlowKey, slots: u32) -> u32 {
    let src = key.src[0] ^ key.src[1] ^ key.src[2] ^ key.src[3];
    let dst = key.dst[0] ^ key.dst[1] ^ key.dst[2] ^ key.dst[3];
    let ports = key.src_port as u32 | (key.dst_port as u32) << 16;
    let fold = src ^ dst.rotate_left(13) ^ ports ^ key.proto as u32;
    ring_index(fold.wrapping_mul(0x9e37_79b1), slots)
}

/// Whether two keys are the same flow: five 8-byte words, one branch.
/// (The reserved bytes are zero in every key the program builds.)
#[inline(always)]
pub const fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    // SAFETY: FlowKey is 40 bytes, 8-aligned, plain integers throughout.
    let (a, b) = unsafe {
        (
            &*(a as *const FlowKey as *const [u64; 5]),
            &*(b as *const FlowKey as *const [u64; 5]),
        )
    };
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<FlowCacheSlot>(), 96);
    }

    #[test]
    fn index_is_in_range_and_depends_on_every_field() {
        let key = crate::flow::sample_key();
        let index = |k: &FlowKey| flow_cache_index(k, DEFAULT_FLOW_CACHE_SLOTS);
        assert!(index(&key) < DEFAULT_FLOW_CACHE_SLOTS);
        for slots in [1, 3, 4096, MAX_FLOW_CACHE_SLOTS] {
            assert!(flow_cache_index(&key, slots) < slots);
        }
        let mut swapped = key;
        (swapped.src, swapped.dst) = (key.dst, key.src);
        assert_ne!(index(&key), index(&swapped));
        let mut other_port = key;
        other_port.src_port = 11;
        assert_ne!(index(&key), index(&other_port));
        assert!(same_flow(&key, &key));
        assert!(!same_flow(&key, &other_port));
        let mut other_family = key;
        other_family.family = 4;
        assert!(!same_flow(&key, &other_family));
    }
}
