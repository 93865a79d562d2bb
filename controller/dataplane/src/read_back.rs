//! The book rebuilt from the maps alone: what a restarted controller adopts.
//!
//! Live VIPs are the `VIPS` entries; each one's key, word and revision come
//! from `VIP_STATE`, its generation from `VIP_GENERATIONS`, its backends
//! from the `BACKENDS` entries whose `MEMBERS` record names its index.
//! Backend entries marked `RETIRED`, and live-looking entries no VIP owns
//! (left by a writer that died half-way), are retired; so is every ring
//! slot and VIP index below its mark that no VIP uses, since the maps
//! cannot tell free from retired. Pools and generations continue from the
//! marks in `WRITER_STATE`.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use aya::maps::MapError;
use lb_abi::{
    backend::{EMPTY_GENERATION, RETIRED},
    control::CONTROL,
    flood::FLOOD_LIMITS,
    ip_from_wire,
    ring::NO_RING,
    vip::{VIP_GENERATIONS, VIPS, VipState},
    wire_port,
    writer::{FORMAT, MEMBERS, WRITER_STATE},
};

use crate::{
    book::{BackendId, Book, Programmed},
    config::{BackendConfig, Protocol, VipConfig},
    error::{DataplaneError, map_err},
    ids::IndexPool,
    maps::Maps,
    options::LoadOptions,
};

fn inconsistent(reason: String) -> DataplaneError {
    DataplaneError::ReadBack(reason)
}

/// The book the maps describe.
pub(crate) fn book(maps: &Maps, options: &LoadOptions) -> Result<Book, DataplaneError> {
    let ws = maps
        .writer_state
        .get(&0, 0)
        .map_err(map_err(WRITER_STATE, "get"))?;
    let mut book = Book::new(options);
    if ws.format == 0 {
        return Ok(book);
    }
    if ws.format != FORMAT {
        return Err(inconsistent(format!(
            "the maps were written in format {}, this writer knows {FORMAT}",
            ws.format
        )));
    }
    if ws.ring_size != options.ring_size {
        return Err(inconsistent(format!(
            "the rings were built for ring_size {}, not {}",
            ws.ring_size, options.ring_size
        )));
    }
    book.last_vip_generation = ws.last_vip_generation;
    book.last_backend_generation = ws.last_backend_generation;
    if ws.node_set != 0 {
        let active = maps
            .control_active
            .atomic_u64(0)
            .load(std::sync::atomic::Ordering::SeqCst);
        let control = maps
            .control
            .get(&((active & 1) as u32), 0)
            .map_err(map_err(CONTROL, "get"))?;
        book.control = Some((control, active));
        // The other entry may have been in force a moment ago.
        book.retired.control = true;
    }

    // Backend ids: live ones by VIP index, retired ones as they are.
    let mut members: HashMap<u32, Vec<(u32, BackendConfig, BackendId)>> = HashMap::new();
    for id in 0..ws.backend_id_mark.min(options.max_backends) {
        let entry = get(maps.backends.get(&id, 0), "BACKENDS")?;
        if entry.generation == EMPTY_GENERATION {
            continue;
        }
        if entry.generation & RETIRED != 0 {
            book.retired.backends.push((id, entry));
            continue;
        }
        let member = get(maps.members.get(&id, 0), MEMBERS)?;
        let address = ip_from_wire(entry.family, entry.addr)
            .ok_or_else(|| inconsistent(format!("backend id {id} has family {}", entry.family)))?;
        members.entry(member.vip_index).or_default().push((
            member.position,
            BackendConfig {
                address,
                weight: member.weight,
            },
            BackendId {
                id,
                generation: entry.generation,
            },
        ));
    }

    let mut used_indices = HashSet::new();
    let mut used_slots = HashSet::new();
    for item in maps.vips.iter() {
        let (key, index) = item.map_err(map_err(VIPS, "iterate"))?;
        let state: VipState = read_state(maps, index)?;
        if state.key != key {
            return Err(inconsistent(format!(
                "VIP {} names index {index}, which belongs to {}",
                crate::describe(&key),
                crate::describe(&state.key)
            )));
        }
        let live = VipState::unpack(index, state.word, state.generation).ok_or_else(|| {
            inconsistent(format!(
                "VIP {} is in VIPS but its word is GONE",
                crate::describe(&key)
            ))
        })?;
        let generation = get(maps.vip_generations.get(&index, 0), VIP_GENERATIONS)?;
        let mut backends = members.remove(&index).unwrap_or_default();
        backends.sort_by_key(|(position, ..)| *position);
        let address = ip_from_wire(key.family, key.addr)
            .ok_or_else(|| inconsistent(format!("VIP key has family {}", key.family)))?;
        let protocol = match key.proto {
            lb_abi::PROTO_TCP => Protocol::Tcp,
            lb_abi::PROTO_UDP => Protocol::Udp,
            other => return Err(inconsistent(format!("VIP key has protocol {other}"))),
        };
        let config = VipConfig {
            address,
            port: wire_port(key.port),
            protocol,
            flags: live.flags,
            new_flows_per_cpu_per_sec: VipConfig::from_flood_limit(get(
                maps.flood_limits.get(&index, 0),
                FLOOD_LIMITS,
            )?),
            backends: backends.iter().map(|(_, b, _)| b.clone()).collect(),
            revision: state.revision,
        };
        used_indices.insert(index);
        if live.ring_slot != NO_RING {
            used_slots.insert(live.ring_slot);
        }
        book.vips.insert(
            key,
            Arc::new(Programmed {
                config,
                vip_index: index,
                ring_slot: live.ring_slot,
                generation,
                ids: backends.into_iter().map(|(.., id)| id).collect(),
            }),
        );
    }
    // Entries no live VIP owns: retired, to be cleared after the barrier.
    for (_, orphans) in members {
        for (_, b, id) in orphans {
            let entry = crate::plan::backend_entry(b.address, id.generation);
            book.retired.backends.push((id.id, entry));
        }
    }
    book.retired.backends.sort_by_key(|(id, _)| *id);

    book.vip_indices = IndexPool::resumed(options.max_vips, ws.vip_index_mark);
    book.ring_slots = IndexPool::resumed(options.ring_slots(), ws.ring_slot_mark);
    book.backend_ids = IndexPool::resumed(options.max_backends, ws.backend_id_mark);
    let retired = &mut book.retired;
    retired.vip_indices = unused_below(ws.vip_index_mark, &used_indices);
    retired.ring_slots = unused_below(ws.ring_slot_mark, &used_slots);
    let held: HashSet<u32> = book
        .vips
        .values()
        .flat_map(|p| p.ids.iter().map(|id| id.id))
        .chain(retired.backends.iter().map(|(id, _)| *id))
        .collect();
    // Ids below the mark with no entry were cleared after a barrier: free.
    for id in unused_below(ws.backend_id_mark, &held) {
        book.backend_ids.release(id);
    }
    book.derive_filter();
    Ok(book)
}

fn read_state(maps: &Maps, index: u32) -> Result<VipState, DataplaneError> {
    if index >= maps.vip_state.entries() {
        return Err(inconsistent(format!("VIP index {index} is out of range")));
    }
    Ok(maps.vip_state.read_field(index, 0))
}

fn get<V>(result: Result<V, MapError>, map: &'static str) -> Result<V, DataplaneError> {
    result.map_err(map_err(map, "get"))
}

fn unused_below(mark: u32, used: &HashSet<u32>) -> Vec<u32> {
    (0..mark).filter(|i| !used.contains(i)).collect()
}
