//! Backend selection: the flow table first, then the VIP's Maglev ring.

use aya_ebpf::bindings::BPF_ANY;
use lb_abi::{
    FAMILY_V6,
    backend::{Backend, EMPTY_GENERATION},
    flow::{FlowKey, FlowValue},
    hash::flow_hash,
    ring::NO_RING,
    stats::GlobalCounter,
    vip::{VipValue, flags},
};

use crate::{
    flood,
    maps::{BACKENDS, FLOWS, RINGS, ring_size},
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

#[inline(always)]
pub fn select(key: &FlowKey, syn: bool, vip: &VipValue) -> Result<Selection, Verdict> {
    let use_flows = vip.flags & flags::NO_FLOW_TABLE == 0;
    // A SYN starts a new connection: it must not inherit a stale decision
    // from an earlier connection on the same 5-tuple.
    if use_flows && !syn {
        if let Some(hit) = flow_lookup(key) {
            return Ok(hit);
        }
        stats::bump(GlobalCounter::FlowMiss);
    }
    let chosen = from_ring(key, vip)?;
    if use_flows {
        if !flood::admit_new_flow() {
            stats::bump(GlobalCounter::FlowNotRecordedFlood);
            return Ok(chosen);
        }
        let value = FlowValue {
            backend: chosen.backend,
            backend_id: chosen.backend_id,
            _pad: 0,
        };
        // A full LRU evicts; a failed insert only costs affinity, never the
        // packet.
        let _ = FLOWS.insert(key, &value, u64::from(BPF_ANY));
    }
    Ok(chosen)
}

#[inline(always)]
fn flow_lookup(key: &FlowKey) -> Option<Selection> {
    let entry = FLOWS.get_ptr(key)?;
    // SAFETY: the LRU may recycle this element after we return; we copy the
    // fields now, and a torn read could only pair a flow with another valid
    // backend, which the generation check below then rejects.
    let (backend_id, backend) = unsafe { ((*entry).backend_id, (*entry).backend) };
    let current = BACKENDS.get(backend_id)?;
    if current.generation != backend.generation {
        return None;
    }
    Some(Selection {
        backend,
        backend_id,
        via: GlobalCounter::TxFlowHit,
    })
}

#[inline(always)]
fn from_ring(key: &FlowKey, vip: &VipValue) -> Result<Selection, Verdict> {
    if vip.ring_slot == NO_RING {
        return Err(Verdict::drop(GlobalCounter::DropNoBackend));
    }
    let hash = flow_hash(key, vip.flags & flags::HASH_SRC_ONLY != 0);
    // The loader never sets M to zero; the check keeps a panic path out of
    // the program.
    let index = hash
        .checked_rem(ring_size())
        .ok_or(Verdict::drop(GlobalCounter::DropNoBackend))?;
    let backend_id = *RINGS
        .get_value(vip.ring_slot, &index)
        .ok_or(Verdict::drop(GlobalCounter::DropNoBackend))?;
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
