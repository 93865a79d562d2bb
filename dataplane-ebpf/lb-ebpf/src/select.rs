//! Backend selection: this CPU's flow cache and the flow table first (before
//! the VIP is even looked up), then the VIP's Maglev ring.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::btf_maps::Array;
use lb_abi::{
    FAMILY_V6, PROTO_UDP,
    backend::{Backend, EMPTY_GENERATION, recorded_generation},
    flow::{FlowKey, FlowValue, flow_tag},
    flow_cache::{FlowCacheSlot, UDP_REFRESH_SHIFT, flow_cache_index, same_flow},
    hash::{flow_hash, ring_index},
    ring::{NO_RING, ring_element},
    stats::GlobalCounter,
    vip::{LiveVip, flags},
};

use crate::{
    clock, flood,
    maps::{
        BACKENDS, FLOW_CACHE, FLOW_CACHE_EPOCHS, FLOW_CACHE_GATE, FLOW_CACHE_GENERATION_EPOCH,
        RINGS, VIP_GENERATIONS, caches_enabled, flow_cache_gated, flow_cache_slots, flows,
        ring_size, tcp_refresh_ns, udp_flow_timeout_ns,
    },
    stats,
    verdict::Verdict,
};

/// Where a packet goes, and how that was decided.
pub struct Selection {
    pub backend: Backend,
    pub backend_id: u32,
    /// The global counter of the forwarding verdict.
    pub via: GlobalCounter,
}

/// The ring's choice for a packet of `vip` that the flow table did not
/// place; records the flow unless the VIP skips the flow table.
#[inline(always)]
pub fn from_vip(key: &FlowKey, syn: bool, vip: &LiveVip) -> Result<Selection, Verdict> {
    let use_flows = vip.flags & flags::NO_FLOW_TABLE == 0;
    // `flow_hit` already looked; a SYN never looks, so it is not a miss.
    if use_flows && !syn {
        stats::bump(GlobalCounter::FlowMiss);
    }
    let chosen = from_ring(key, vip)?;
    if use_flows {
        if !flood::admit_new_flow(vip.vip_index) {
            stats::bump(GlobalCounter::FlowNotRecordedFlood);
            return Ok(chosen);
        }
        // A ring read before a backend's removal may still name it; the
        // flow it places must not outlive the removal (`lb_abi::backend`).
        let mut backend = chosen.backend;
        backend.generation = recorded_generation(backend.generation);
        // Not read atomically with the word: one newer than the ring we
        // read only pins the flow to a backend that ring chose, and if that
        // backend has left the VIP since, its own generation ends the flow.
        let last_seen_ns = if key.proto == PROTO_UDP {
            clock::now_ns()
        } else {
            0
        };
        let value = FlowValue::tagged(
            key,
            backend,
            chosen.backend_id,
            vip.vip_index,
            vip.generation,
            last_seen_ns,
        );
        flows::insert(key, &value);
        // After the write: a copy taken before it is no longer honoured.
        // Without caches nothing reads epochs, so the shared cache line is
        // left alone.
        if caches_enabled() {
            bump_epoch(flow_cache_index(key, flow_cache_slots()));
        }
    }
    Ok(chosen)
}

/// Why the flow table is consulted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A packet of the flow: a hit keeps a UDP flow alive.
    Traffic,
    /// An ICMP error about the flow: it is steered like the flow but is no
    /// sign the client is still there, so it does not.
    IcmpError,
}

/// The flow table's backend for an established flow, with the VIP's stats
/// index: honoured only while the VIP that placed it is in the same
/// generation, the backend still holds its id and, for UDP, the flow has
/// not idled past its timeout. A hit needs no VIP lookup: the generation
/// check stands for it. Answered from this CPU's flow cache when it holds
/// a current copy (see `lb_abi::flow_cache`), unless this CPU's cache
/// gate says the cache is missing most lookups.
#[inline(always)]
pub fn flow_hit(key: &FlowKey, lookup: Lookup) -> Option<(Selection, u32)> {
    if !caches_enabled() {
        return table_hit(key, lookup).map(|(hit, _)| hit);
    }
    let gate = if flow_cache_gated() {
        FLOW_CACHE_GATE.get_ptr_mut(0)
    } else {
        None
    };
    // SAFETY: this CPU's gate; only this CPU's programs touch it, one at a
    // time.
    let mut gate = gate.map(|g| unsafe { &mut *g });
    if let Some(g) = gate.as_mut()
        && g.skips()
    {
        stats::bump(GlobalCounter::FlowCacheBypass);
        return table_hit(key, lookup).map(|(hit, _)| hit);
    }
    let index = flow_cache_index(key, flow_cache_slots());
    // Both epochs are read before the table and the generations: a write
    // to any of them after these reads bumps an epoch, so a copy of what
    // we read is never honoured past it.
    let generation_epoch = read_epoch(&FLOW_CACHE_GENERATION_EPOCH, 0)?;
    let epoch = read_epoch(&FLOW_CACHE_EPOCHS, index)?;
    let slot = FLOW_CACHE.get_ptr_mut(index)?;
    // SAFETY: this CPU's slot; only this CPU's programs touch it, one at a
    // time.
    let slot = unsafe { &mut *slot };
    let current =
        slot.epoch == epoch && slot.generation_epoch == generation_epoch && slot.key.family != 0;
    let this_flow = current && same_flow(&slot.key, key);
    if let Some(g) = gate {
        // Wasted: a miss that cannot take the slot, held by another flow.
        g.record(current && !this_flow);
    }
    if this_flow && (key.proto != PROTO_UDP || udp_copy_lives(slot, key, lookup)) {
        if key.proto != PROTO_UDP && lookup == Lookup::Traffic {
            keep_tcp_entry(slot, key, index);
        }
        // Taken of an honoured entry, under the same generation epoch:
        // the generation checks would pass again.
        let chosen = Selection {
            backend: slot.backend,
            backend_id: slot.backend_id,
            via: GlobalCounter::TxFlowHit,
        };
        return Some((chosen, slot.vip_index));
    }
    stats::bump(GlobalCounter::FlowCacheMiss);
    let (hit, seen) = table_hit(key, lookup)?;
    // A current copy of another flow stays: with more active flows than
    // slots, flows sharing a slot would otherwise evict each other on every
    // packet, each miss paying a slot write on top of the table lookup.
    // The slot frees up when a flow-table write at its index bumps the
    // epoch. (Field by field: a whole-struct write compiles to a call to a
    // byte-loop `memcpy` for the key.)
    if !current || this_flow {
        let (chosen, vip_index) = &hit;
        slot.key = *key;
        slot.backend = chosen.backend;
        slot.backend_id = chosen.backend_id;
        slot.vip_index = *vip_index;
        slot.epoch = epoch;
        slot.generation_epoch = generation_epoch;
        // TCP: when the table last saw the flow, for `keep_tcp_entry`.
        slot.seen_ns = if key.proto == PROTO_UDP {
            seen
        } else {
            clock::now_ns()
        };
    }
    Some(hit)
}

/// Whether a current copy of a UDP flow may answer: while the table's
/// last-seen time it last saw is within the timeout, the table's own time
/// (that or newer) is too. A packet of the flow writes the table's time
/// again once the copy's is older than the refresh interval; an ICMP error
/// refreshes nothing. Past the timeout the table decides.
#[inline(always)]
fn udp_copy_lives(slot: &mut FlowCacheSlot, key: &FlowKey, lookup: Lookup) -> bool {
    let now = clock::now_ns();
    let idle = now.wrapping_sub(slot.seen_ns);
    let timeout = udp_flow_timeout_ns();
    if idle > timeout {
        return false;
    }
    if lookup == Lookup::Traffic && idle > timeout >> UDP_REFRESH_SHIFT {
        // An evicted entry has no time to refresh: the table decides.
        let Some(entry) = flows::get_ptr_mut(key) else {
            return false;
        };
        // SAFETY: as in `table_hit`.
        unsafe { (*entry).last_seen_ns = now };
        slot.seen_ns = now;
    }
    true
}

/// A TCP copy answers its flow without the table, so the table's LRU would
/// see the busiest flows as idle and evict them first. Once the copy's time
/// is older than the refresh interval, a packet of the flow looks its entry
/// up, which marks it used for the LRU. If the LRU evicted it all the same,
/// the copy (current, so still the flow's decision) is written back, under
/// the VIP's generation, unchanged while the copy is current.
#[inline(always)]
fn keep_tcp_entry(slot: &mut FlowCacheSlot, key: &FlowKey, index: u32) {
    let now = clock::now_ns();
    if now.wrapping_sub(slot.seen_ns) <= tcp_refresh_ns() {
        return;
    }
    slot.seen_ns = now;
    if flows::contains(key) {
        return;
    }
    let Some(&vip_generation) = VIP_GENERATIONS.get(slot.vip_index) else {
        return;
    };
    let value = FlowValue::tagged(
        key,
        slot.backend,
        slot.backend_id,
        slot.vip_index,
        vip_generation,
        0,
    );
    flows::insert(key, &value);
    // A table write for the key, like any: copies of the old entry go.
    bump_epoch(index);
}

/// A flow's entry, straight from the table, and for UDP its last-seen time
/// after this lookup (0 for TCP). A UDP hit refreshes that time.
#[inline(always)]
fn table_hit(key: &FlowKey, lookup: Lookup) -> Option<((Selection, u32), u64)> {
    let entry = flows::get_ptr_mut(key)?;
    clock::stress_pause();
    let value = copy_entry(entry);
    let hit = honoured(key, &value)?;
    if key.proto != PROTO_UDP {
        return Some((hit, 0));
    }
    let now = clock::now_ns();
    // SAFETY: as in `copy_entry`; an aligned u64 store, so readers on other
    // CPUs see the old time or the new one.
    let last_seen = unsafe { &mut (*entry).last_seen_ns };
    if now.wrapping_sub(*last_seen) > udp_flow_timeout_ns() {
        return None;
    }
    // Refreshed only once the entry is known to be honoured: a stale entry
    // is about to be replaced, and an ICMP error is not the client's
    // traffic.
    if lookup == Lookup::Traffic {
        *last_seen = now;
    }
    Some((hit, *last_seen))
}

/// What a hit uses of a table entry: the decision fields and their tag.
struct EntryCopy {
    backend_id: u32,
    backend_generation: u32,
    vip_index: u32,
    vip_generation: u32,
    key_tag: u32,
}

/// The fields a hit uses, copied out of a table entry.
#[inline(always)]
fn copy_entry(entry: *mut FlowValue) -> EntryCopy {
    // SAFETY: the LRU may recycle this element while we read it, so the
    // copy may be another flow's value or torn between two; `honoured`
    // rejects such a copy by its key tag before using any of it.
    unsafe {
        EntryCopy {
            backend_id: (*entry).backend_id,
            backend_generation: (*entry).backend.generation,
            vip_index: (*entry).vip_index,
            vip_generation: (*entry).vip_generation,
            key_tag: (*entry).key_tag,
        }
    }
}

/// The backend of `value`, an entry copied for `key`: if the copy is whole
/// and `key`'s (its tag), the VIP that placed it is in the same generation
/// and the backend still holds its id. The address is the one the backend
/// table holds now, never the entry's.
#[inline(always)]
fn honoured(key: &FlowKey, value: &EntryCopy) -> Option<(Selection, u32)> {
    let tag = flow_tag(
        key,
        value.backend_id,
        value.backend_generation,
        value.vip_index,
        value.vip_generation,
    );
    if tag != value.key_tag {
        return None;
    }
    let generation = VIP_GENERATIONS.get(value.vip_index).copied();
    if generation != Some(value.vip_generation) || value.vip_generation == 0 {
        return None;
    }
    let current = BACKENDS.get(value.backend_id)?;
    if current.generation != value.backend_generation {
        return None;
    }
    let chosen = Selection {
        backend: *current,
        backend_id: value.backend_id,
        via: GlobalCounter::TxFlowHit,
    };
    Some((chosen, value.vip_index))
}

/// Entry `index` of an epoch array.
#[inline(always)]
fn read_epoch<const N: usize, const F: usize>(
    epochs: &Array<u64, N, F>,
    index: u32,
) -> Option<u64> {
    let epoch = epochs.get_ptr(index)?;
    // SAFETY: an aligned u64 in a shared array; writers replace it whole
    // (userspace) or bump it atomically (other CPUs), so this load sees a
    // whole value.
    Some(unsafe { core::ptr::read_volatile(epoch) })
}

#[inline(always)]
fn bump_epoch(index: u32) {
    if let Some(epoch) = FLOW_CACHE_EPOCHS.get_ptr_mut(index) {
        // SAFETY: an aligned u64 in a map value; concurrent bumps from other
        // CPUs are atomic adds too, so none is lost. (The BPF target has no
        // `AtomicU64::fetch_add`; this is the instruction it would be.)
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(epoch, 1) };
    }
}

/// The VIP's ring's choice for `key`; records nothing.
#[inline(always)]
pub fn from_ring(key: &FlowKey, vip: &LiveVip) -> Result<Selection, Verdict> {
    clock::stress_pause();
    if vip.ring_slot == NO_RING {
        return Err(Verdict::drop(GlobalCounter::DropNoBackend));
    }
    let hash = flow_hash(key, vip.flags & flags::HASH_SRC_ONLY != 0);
    let size = ring_size();
    let (element, half) = ring_element(vip.ring_slot, ring_index(hash, size), size);
    let pair = RINGS
        .get(element)
        .ok_or(Verdict::drop(GlobalCounter::DropNoBackend))?;
    let backend_id = if half == 0 { pair[0] } else { pair[1] };
    let bad = Verdict::drop(GlobalCounter::DropBadBackend);
    let backend = *BACKENDS.get(backend_id).ok_or(bad)?;
    // An IPv6 packet cannot ride in an IPv4 tunnel; userspace never programs
    // that, so meeting it means a broken config, not a packet to guess about.
    if backend.generation == EMPTY_GENERATION
        || (key.family == FAMILY_V6 && backend.family != FAMILY_V6)
    {
        return Err(bad);
    }
    Ok(Selection {
        backend,
        backend_id,
        via: GlobalCounter::TxRing,
    })
}
