//! From a checked batch and the book to the writes that carry it out, in
//! the order that keeps every packet on one whole state (see
//! [`crate::programmer`]), and the changes the book takes once they are
//! done. Pure: no map is touched here.

use std::{net::IpAddr, sync::Arc};

use lb_abi::{
    AddrKey,
    backend::{Backend, RETIRED},
    control::Control,
    filter::{address, filter_bit},
    ring::NO_RING,
    vip::{VipKey, VipState, flags},
    wire_addr,
    writer::Member,
};

use crate::{
    batch::Batch,
    book::{BackendId, Book, Changes, Programmed},
    config::VipConfig,
    write::Write,
};

/// The writes of a batch and what the book becomes after them.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) writes: Vec<Write>,
    pub(crate) changes: Changes,
}

/// Why a batch cannot be planned now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// It can once what is retired is free: pay the reader barrier, then
    /// plan again.
    NeedsBarrier,
    /// It cannot, whatever is freed.
    Full {
        what: &'static str,
        limit: u32,
        needed: u32,
        free: u32,
    },
}

/// A VIP to add or replace, with its ring as indices into its backends
/// (`None`: no backend takes new flows).
pub(crate) struct Upsert<'a> {
    pub(crate) config: &'a VipConfig,
    pub(crate) ring: Option<Vec<u32>>,
}

/// Plans `batch`, already checked, whose changed upserts are `upserts`
/// (those equal to what is programmed left out) and whose node settings
/// encode to `control`. The rings move into the plan once it is sure;
/// after a [`Shortfall`], `upserts` are as they were.
pub(crate) fn plan(
    book: &Book,
    batch: &Batch,
    control: Option<Control>,
    upserts: &mut [Upsert<'_>],
) -> Result<Plan, Shortfall> {
    let control = control.filter(|c| book.control.map(|(now, _)| now) != Some(*c));
    let taken = reserve(book, control.is_some(), upserts)?;
    let mut p = Planner {
        book,
        writes: vec![Write::WriterState {
            new: book.writer_state(),
            old: book.writer_state(),
        }],
        changes: Changes {
            last_vip_generation: book.last_vip_generation,
            last_backend_generation: book.last_backend_generation,
            ..Changes::default()
        },
        taken,
        used: [0; 3],
    };
    if let Some(control) = control {
        p.node(control);
    }
    for key in &batch.removals {
        p.remove(key);
    }
    for upsert in upserts {
        p.upsert(upsert);
    }
    let Planner {
        writes: mut w,
        mut changes,
        taken,
        ..
    } = p;
    changes.taken_vip_indices = taken.vip_indices;
    changes.taken_ring_slots = taken.ring_slots;
    changes.taken_backend_ids = taken.backend_ids;
    let mut after = book.writer_state();
    after.node_set |= u32::from(changes.control.is_some());
    after.last_vip_generation = changes.last_vip_generation;
    after.last_backend_generation = changes.last_backend_generation;
    after.vip_index_mark = book.vip_indices.mark_after(&changes.taken_vip_indices);
    after.ring_slot_mark = book.ring_slots.mark_after(&changes.taken_ring_slots);
    after.backend_id_mark = book.backend_ids.mark_after(&changes.taken_backend_ids);
    // First: the marks cover everything the later writes hand out, even if
    // the process dies half-way.
    if after == book.writer_state() {
        w.remove(0);
    } else {
        w[0] = Write::WriterState {
            new: after,
            old: book.writer_state(),
        };
    }
    Ok(Plan { writes: w, changes })
}

/// Indices a plan hands out, in the order it hands them out.
#[derive(Debug, Default)]
struct Taken {
    vip_indices: Vec<u32>,
    ring_slots: Vec<u32>,
    backend_ids: Vec<u32>,
}

/// Every index the batch needs, or why it cannot have them now.
fn reserve(book: &Book, control: bool, upserts: &[Upsert<'_>]) -> Result<Taken, Shortfall> {
    let mut vips = 0;
    let mut slots = 0;
    let mut ids = 0;
    for u in upserts {
        let old = book.vips.get(&u.config.key());
        vips += usize::from(old.is_none());
        slots += usize::from(needs_slot(old.map(|p| &**p), u));
        ids += u
            .config
            .backends
            .iter()
            .filter(|b| old.is_none_or(|p| p.id_of(b.address).is_none()))
            .count();
    }
    let r = &book.retired;
    if control && r.control {
        return Err(Shortfall::NeedsBarrier);
    }
    let pick = |pool: &crate::ids::IndexPool, n: usize, retired: usize, what| {
        pool.peek(n)
            .ok_or(if n <= (pool.available() as usize) + retired {
                Shortfall::NeedsBarrier
            } else {
                Shortfall::Full {
                    what,
                    limit: pool.limit(),
                    needed: n as u32,
                    free: pool.available() + retired as u32,
                }
            })
    };
    let picked = [
        pick(&book.vip_indices, vips, r.vip_indices.len(), "VIP"),
        pick(&book.ring_slots, slots, r.ring_slots.len(), "ring slot"),
        pick(&book.backend_ids, ids, r.backends.len(), "backend"),
    ];
    // A batch that cannot fit is refused without paying the barrier.
    if let Some(full) = picked.iter().find_map(|p| match p {
        Err(full @ Shortfall::Full { .. }) => Some(full),
        _ => None,
    }) {
        return Err(full.clone());
    }
    let [vip_indices, ring_slots, backend_ids] = picked;
    Ok(Taken {
        vip_indices: vip_indices?,
        ring_slots: ring_slots?,
        backend_ids: backend_ids?,
    })
}

/// Whether `u` needs a new ring slot: it has a ring, and the VIP is new or
/// its backends (the ring's only inputs) changed.
fn needs_slot(old: Option<&Programmed>, u: &Upsert<'_>) -> bool {
    u.ring.is_some() && old.is_none_or(|p| p.config.backends != u.config.backends)
}

struct Planner<'a> {
    book: &'a Book,
    writes: Vec<Write>,
    changes: Changes,
    /// Handed out front first; `used` counts what has been, per kind.
    taken: Taken,
    used: [usize; 3],
}

impl Planner<'_> {
    /// Node settings into the entry not in force, then the flip.
    fn node(&mut self, control: Control) {
        let active = self.book.control.map_or(0, |(_, a)| a);
        let next = (active & 1) ^ 1;
        self.writes.push(Write::Control {
            entry: next as u32,
            control,
        });
        self.writes.push(Write::ControlActive {
            active: next,
            old: active,
        });
        self.changes.control = Some((control, next));
        // Packets that read the selector before the flip may still use
        // the entry left behind.
        self.changes.retired.control = self.book.control.is_some();
    }

    fn remove(&mut self, key: &VipKey) {
        let old = Arc::clone(&self.book.vips[key]);
        let index = old.vip_index;
        // Gone at one store; the map entry follows.
        self.writes.push(Write::VipWord {
            index,
            word: VipState::GONE,
            old: old.word(),
        });
        self.writes.push(Write::VipsRemove { key: *key, index });
        self.writes.push(Write::BumpVipCacheEpoch);
        if old.generation != 0 {
            self.set_generation(index, 0, old.generation);
        }
        self.filter_remove(key, old.config.flags);
        let leaving: Vec<(IpAddr, BackendId)> = old
            .config
            .backends
            .iter()
            .zip(&old.ids)
            .map(|(b, id)| (b.address, *id))
            .collect();
        self.retire_backends(&leaving);
        if old.ring_slot != NO_RING {
            self.changes.retired.ring_slots.push(old.ring_slot);
        }
        // A packet that read the VIP before may still count under it.
        self.changes.retired.vip_indices.push(index);
        self.changes.vips.push((*key, None));
    }

    fn upsert(&mut self, u: &mut Upsert<'_>) {
        let key = u.config.key();
        let old = self.book.vips.get(&key).cloned();
        let new_slot = needs_slot(old.as_deref(), u);
        let index = match &old {
            Some(p) => p.vip_index,
            None => {
                let index = next(&self.taken.vip_indices, &mut self.used[0]);
                self.writes.push(Write::ZeroVipStats(index));
                self.writes.push(Write::FloodLimit {
                    index,
                    limit: u.config.flood_limit(),
                    old: None,
                });
                index
            }
        };
        let ids = self.members(index, u.config, old.as_deref());
        let ring_slot = match (u.ring.take(), &old) {
            (None, _) => NO_RING,
            (Some(_), Some(p)) if !new_slot => p.ring_slot,
            (Some(mut ring), _) => {
                let slot = self.next_slot();
                // In place: a ring is 4 bytes × M, and a batch holds many.
                for m in &mut ring {
                    *m = ids[*m as usize].id;
                }
                self.writes.push(Write::Ring { slot, ids: ring });
                slot
            }
        };
        let uses_flows = u.config.flags & flags::NO_FLOW_TABLE == 0;
        let old_generation = old.as_ref().map_or(0, |p| p.generation);
        // A new VIP, or one whose flow table comes back on, starts a fresh
        // generation: flows from before are not honoured.
        let generation = match (uses_flows, old_generation) {
            (false, _) => 0,
            (true, 0) => self.next_vip_generation(),
            (true, g) => g,
        };
        let record = Arc::new(Programmed {
            config: u.config.clone(),
            vip_index: index,
            ring_slot,
            generation,
            ids,
        });
        // Published before the flip, so the flows the first packets place
        // are honoured at once.
        if generation != 0 && generation != old_generation {
            self.set_generation(index, generation, old_generation);
        }
        match &old {
            None => {
                self.writes.push(Write::VipOwner {
                    index,
                    key,
                    revision: u.config.revision,
                });
                // The filter bit goes up before the VIP exists, so no
                // packet of the VIP is ever filtered out.
                self.filter_add(&key, u.config.flags);
                self.writes.push(Write::VipWord {
                    index,
                    word: record.word(),
                    old: VipState::GONE,
                });
                self.writes.push(Write::VipsInsert { key, index });
                self.writes.push(Write::BumpVipCacheEpoch);
            }
            Some(p) => {
                if p.config.flags != u.config.flags {
                    self.address_change(&key, 0, p.config.flags, u.config.flags);
                }
                if p.config.flood_limit() != u.config.flood_limit() {
                    self.writes.push(Write::FloodLimit {
                        index,
                        limit: u.config.flood_limit(),
                        old: Some(p.config.flood_limit()),
                    });
                }
                if p.config.revision != u.config.revision {
                    self.writes.push(Write::VipRevision {
                        index,
                        revision: u.config.revision,
                        old: p.config.revision,
                    });
                }
                if p.word() != record.word() {
                    self.writes.push(Write::VipWord {
                        index,
                        word: record.word(),
                        old: p.word(),
                    });
                }
                // Flows stop being honoured only after the flip, so no
                // packet sees the old config without its flows.
                if generation == 0 && old_generation != 0 {
                    self.set_generation(index, 0, old_generation);
                }
                let leaving: Vec<(IpAddr, BackendId)> = p
                    .config
                    .backends
                    .iter()
                    .zip(&p.ids)
                    .filter(|(b, _)| record.id_of(b.address).is_none())
                    .map(|(b, id)| (b.address, *id))
                    .collect();
                self.retire_backends(&leaving);
                if p.ring_slot != NO_RING && p.ring_slot != ring_slot {
                    self.changes.retired.ring_slots.push(p.ring_slot);
                }
            }
        }
        self.changes.vips.push((key, Some(record)));
    }

    /// The ids of `config`'s backends: kept ones keep theirs, new ones get
    /// fresh ids whose entries are written now (no ring names them yet).
    /// Members whose place or weight changed get their record rewritten.
    fn members(
        &mut self,
        vip_index: u32,
        config: &VipConfig,
        old: Option<&Programmed>,
    ) -> Vec<BackendId> {
        let mut ids = Vec::with_capacity(config.backends.len());
        for (position, b) in config.backends.iter().enumerate() {
            let member = Member {
                vip_index,
                position: position as u32,
                weight: b.weight,
                _pad: 0,
            };
            let kept = old.and_then(|p| {
                let at = p
                    .config
                    .backends
                    .iter()
                    .position(|o| o.address == b.address)?;
                Some((p.ids[at], at, p.config.backends[at].weight))
            });
            let id = match kept {
                Some((id, at, weight)) => {
                    if at != position || weight != b.weight {
                        self.writes.push(Write::Member {
                            id: id.id,
                            member,
                            old: Member {
                                position: at as u32,
                                weight,
                                ..member
                            },
                        });
                    }
                    id
                }
                None => {
                    let id = BackendId {
                        id: next(&self.taken.backend_ids, &mut self.used[2]),
                        generation: self.next_backend_generation(),
                    };
                    self.writes.push(Write::ZeroBackendStats(id.id));
                    self.writes.push(Write::Backend {
                        id: id.id,
                        entry: backend_entry(b.address, id.generation),
                        old: Backend::default(),
                    });
                    self.writes.push(Write::Member {
                        id: id.id,
                        member,
                        old: Member::default(),
                    });
                    id
                }
            };
            ids.push(id);
        }
        ids
    }

    /// Backends no ring a packet can newly read names: their generation
    /// gets `RETIRED` at once, so flow entries stop following them while
    /// stale rings may still reach them; cleared after the barrier.
    fn retire_backends(&mut self, leaving: &[(IpAddr, BackendId)]) {
        if leaving.is_empty() {
            return;
        }
        for &(address, id) in leaving {
            let old = backend_entry(address, id.generation);
            let entry = Backend {
                generation: id.generation | RETIRED,
                ..old
            };
            self.writes.push(Write::Backend {
                id: id.id,
                entry,
                old,
            });
            self.changes.retired.backends.push((id.id, entry));
        }
        self.writes.push(Write::BumpFlowCacheGenerationEpoch);
    }

    fn set_generation(&mut self, index: u32, generation: u32, old: u32) {
        self.writes.push(Write::VipGeneration {
            index,
            generation,
            old,
        });
        self.writes.push(Write::BumpFlowCacheGenerationEpoch);
    }

    fn next_slot(&mut self) -> u32 {
        next(&self.taken.ring_slots, &mut self.used[1])
    }

    fn next_vip_generation(&mut self) -> u32 {
        let g = &mut self.changes.last_vip_generation;
        *g = g.wrapping_add(1).max(1);
        *g
    }

    /// Generations only grow, so an (id, generation) pair names one holder
    /// for the life of the maps; below the retired bit, and after 2^31 - 1
    /// holders it wraps to 1.
    fn next_backend_generation(&mut self) -> u32 {
        let g = &mut self.changes.last_backend_generation;
        *g = ((*g + 1) & !RETIRED).max(1);
        *g
    }

    /// Counts a VIP with `flags` on its address: filter bit and exact
    /// address entry go up with the address's first VIP.
    fn filter_add(&mut self, key: &VipKey, flags: u32) {
        self.address_change(key, 1, 0, flags);
        let bit = filter_bit(&key.addr);
        if self.bump_bit(bit, 1) == 1 {
            let old = self.filter_word(bit.0);
            self.set_filter_word(bit.0, old | bit.1, old);
        }
    }

    /// The reverse of [`Self::filter_add`], after the VIP is gone.
    fn filter_remove(&mut self, key: &VipKey, flags: u32) {
        self.address_change(key, -1, flags, 0);
        let bit = filter_bit(&key.addr);
        if self.bump_bit(bit, -1) == 0 {
            let old = self.filter_word(bit.0);
            self.set_filter_word(bit.0, old & !bit.1, old);
        }
    }

    /// One VIP more (`vips` 1), fewer (-1) or changed (0) on `key`'s
    /// address, its flags going from `old_flags` to `new_flags`: the
    /// address entry written when its bits change, inserted with the
    /// first VIP, removed with the last.
    fn address_change(&mut self, key: &VipKey, vips: i32, old_flags: u32, new_flags: u32) {
        let address = AddrKey::from_wire(key.family, key.addr);
        let before = self.address_bits(address);
        let (was, now) = (
            address::from_vip_flags(old_flags),
            address::from_vip_flags(new_flags),
        );
        let delta = |bit: u32| i32::from(now & bit != 0) - i32::from(was & bit != 0);
        let c = &mut self.changes;
        let b = self.book;
        bump_count(&mut c.address_refs, &b.address_refs, address, vips);
        bump_count(
            &mut c.open_refs,
            &b.open_refs,
            address,
            delta(address::OPEN),
        );
        bump_count(
            &mut c.echo_refs,
            &b.echo_refs,
            address,
            delta(address::PASS_ECHO),
        );
        match (before, self.address_bits(address)) {
            (old, Some(bits)) if old != Some(bits) => {
                self.writes.push(Write::VipAddr { address, bits, old })
            }
            (Some(old), None) => self.writes.push(Write::VipAddrRemove { address, old }),
            _ => {}
        }
    }

    /// The address entry as planned so far: `None` with no VIP on it.
    fn address_bits(&self, address: AddrKey) -> Option<u32> {
        let count = |planned: &std::collections::HashMap<AddrKey, u32>,
                     book: &std::collections::HashMap<AddrKey, u32>| {
            planned
                .get(&address)
                .or_else(|| book.get(&address))
                .copied()
                .unwrap_or(0)
        };
        let (c, b) = (&self.changes, self.book);
        if count(&c.address_refs, &b.address_refs) == 0 {
            return None;
        }
        let open = count(&c.open_refs, &b.open_refs) > 0;
        let echo = count(&c.echo_refs, &b.echo_refs) > 0;
        let bit = |on: bool, bit: u32| if on { bit } else { 0 };
        Some(bit(open, address::OPEN) | bit(echo, address::PASS_ECHO))
    }

    fn bump_bit(&mut self, bit: (u32, u64), by: i32) -> u32 {
        bump_count(
            &mut self.changes.filter_refs,
            &self.book.filter_refs,
            bit,
            by,
        )
    }

    fn filter_word(&self, word: u32) -> u64 {
        self.changes
            .filter_words
            .get(&word)
            .or_else(|| self.book.filter_words.get(&word))
            .copied()
            .unwrap_or(0)
    }

    fn set_filter_word(&mut self, word: u32, bits: u64, old: u64) {
        self.writes.push(Write::FilterWord { word, bits, old });
        self.changes.filter_words.insert(word, bits);
    }
}

/// Adds `by` to the count of `key` as the plan has it so far (the book's
/// until the plan first touches it); returns the new count.
fn bump_count<K: std::hash::Hash + Eq + Copy>(
    planned: &mut std::collections::HashMap<K, u32>,
    book: &std::collections::HashMap<K, u32>,
    key: K,
    by: i32,
) -> u32 {
    let count = planned
        .entry(key)
        .or_insert_with(|| book.get(&key).copied().unwrap_or(0));
    *count = count.saturating_add_signed(by);
    *count
}

/// The next of the indices `reserve` took.
fn next(taken: &[u32], used: &mut usize) -> u32 {
    let index = taken[*used];
    *used += 1;
    index
}

/// The backend-table entry of `address` held under `generation`.
pub(crate) fn backend_entry(address: IpAddr, generation: u32) -> Backend {
    let (family, addr) = wire_addr(address);
    Backend {
        addr,
        family,
        _pad: [0; 3],
        generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch::build_ring, config::test_vip, options::LoadOptions};

    const M: u32 = 13;

    fn book(max_vips: u32, max_backends: u32) -> Book {
        Book::new(&LoadOptions {
            ring_size: M,
            max_vips,
            max_backends,
            ..LoadOptions::default()
        })
    }

    /// Plans upserts of `configs` and removals of `removals`, then commits.
    fn step(
        book: &mut Book,
        configs: &[VipConfig],
        removals: &[VipKey],
    ) -> Result<Vec<Write>, Shortfall> {
        let batch = Batch {
            upserts: configs.to_vec(),
            removals: removals.to_vec(),
            ..Batch::default()
        };
        let mut upserts: Vec<Upsert<'_>> = batch
            .upserts
            .iter()
            .map(|config| Upsert {
                config,
                ring: build_ring(config, M).unwrap(),
            })
            .collect();
        let plan = plan(book, &batch, None, &mut upserts)?;
        book.commit(plan.changes);
        Ok(plan.writes)
    }

    fn position(writes: &[Write], f: impl Fn(&Write) -> bool) -> usize {
        writes.iter().position(f).expect("write planned")
    }

    #[test]
    fn a_new_vip_is_whole_before_it_is_reachable() {
        let mut b = book(4, 16);
        let w = step(
            &mut b,
            &[test_vip("10.0.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 0)])],
            &[],
        )
        .unwrap();
        assert!(matches!(w[0], Write::WriterState { .. }), "marks first");
        let ring = position(&w, |w| matches!(w, Write::Ring { .. }));
        let owner = position(&w, |w| matches!(w, Write::VipOwner { .. }));
        let word = position(&w, |w| matches!(w, Write::VipWord { .. }));
        let insert = position(&w, |w| matches!(w, Write::VipsInsert { .. }));
        let last_backend = w
            .iter()
            .rposition(|w| matches!(w, Write::Backend { .. }))
            .unwrap();
        assert!(last_backend < ring && ring < word && owner < word && word < insert);
        assert!(matches!(w.last(), Some(Write::BumpVipCacheEpoch)));
        // The weight-0 member has an id and a member record too.
        let members = w
            .iter()
            .filter(|w| matches!(w, Write::Member { .. }))
            .count();
        assert_eq!(members, 2);
        let Write::Ring { ids, .. } = &w[ring] else {
            unreachable!()
        };
        assert!(
            ids.iter()
                .all(|&id| id == b.vips.values().next().unwrap().ids[0].id)
        );
    }

    #[test]
    fn a_change_flips_one_word_and_retires_what_it_dropped_after() {
        let mut b = book(4, 16);
        step(
            &mut b,
            &[test_vip("10.0.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 1)])],
            &[],
        )
        .unwrap();
        let old = Arc::clone(b.vips.values().next().unwrap());
        let w = step(
            &mut b,
            &[test_vip("10.0.0.1", &[("10.1.0.2", 1), ("10.1.0.3", 1)])],
            &[],
        )
        .unwrap();
        let new_backend = position(
            &w,
            |w| matches!(w, Write::Backend { old, .. } if old.generation == 0),
        );
        let ring = position(&w, |w| matches!(w, Write::Ring { .. }));
        let word = position(&w, |w| matches!(w, Write::VipWord { .. }));
        let retire = position(
            &w,
            |w| matches!(w, Write::Backend { entry, .. } if entry.generation & RETIRED != 0),
        );
        assert!(new_backend < ring && ring < word && word < retire);
        assert!(
            !w.iter()
                .any(|w| matches!(w, Write::VipsInsert { .. } | Write::BumpVipCacheEpoch))
        );
        assert_eq!(b.retired.ring_slots, [old.ring_slot]);
        assert_eq!(b.retired.backends.len(), 1);
        assert_eq!(b.retired.backends[0].0, old.ids[0].id);
        // The kept backend kept its id; the new one got a newer generation.
        let now = b.vips.values().next().unwrap();
        assert_eq!(now.ids[0], old.ids[1]);
        assert!(now.ids[1].generation > old.ids[1].generation);
    }

    #[test]
    fn unchanged_backends_keep_their_ring_and_a_removal_is_gone_at_one_store() {
        let mut b = book(4, 16);
        let config = test_vip("10.0.0.1", &[("10.1.0.1", 1)]);
        step(&mut b, std::slice::from_ref(&config), &[]).unwrap();
        let flagged = VipConfig {
            flags: flags::HASH_SRC_ONLY,
            ..config.clone()
        };
        let w = step(&mut b, &[flagged], &[]).unwrap();
        assert!(
            !w.iter()
                .any(|w| matches!(w, Write::Ring { .. } | Write::Backend { .. }))
        );
        assert_eq!(
            w.iter()
                .filter(|w| matches!(w, Write::VipWord { .. }))
                .count(),
            1
        );

        let w = step(&mut b, &[], &[config.key()]).unwrap();
        let gone = position(&w, |w| {
            matches!(
                w,
                Write::VipWord {
                    word: VipState::GONE,
                    ..
                }
            )
        });
        let removed = position(&w, |w| matches!(w, Write::VipsRemove { .. }));
        let filter = position(&w, |w| matches!(w, Write::FilterWord { bits: 0, .. }));
        assert!(gone < removed && removed < filter);
        assert!(b.vips.is_empty() && b.address_refs.is_empty() && b.filter_refs.is_empty());
        assert_eq!(
            (b.retired.vip_indices.len(), b.retired.backends.len()),
            (1, 1)
        );
    }

    #[test]
    fn room_comes_from_the_barrier_or_the_batch_is_refused_before_any_write() {
        let mut b = book(1, 2);
        step(&mut b, &[test_vip("10.0.0.1", &[("10.1.0.1", 1)])], &[]).unwrap();
        let one = test_vip("10.0.0.1", &[("10.1.0.2", 1)]);
        step(&mut b, std::slice::from_ref(&one), &[]).unwrap();
        // Both ids are taken, one of them retired by the change: it frees
        // after the barrier.
        let moved = test_vip("10.0.0.1", &[("10.1.0.3", 1)]);
        assert_eq!(step(&mut b, &[moved], &[]), Err(Shortfall::NeedsBarrier));
        let three = test_vip(
            "10.0.0.1",
            &[("10.1.0.3", 1), ("10.1.0.4", 1), ("10.1.0.5", 1)],
        );
        assert_eq!(
            step(&mut b, &[three], &[]),
            Err(Shortfall::Full {
                what: "backend",
                limit: 2,
                needed: 3,
                free: 1
            })
        );
        let other = test_vip("10.0.0.2", &[]);
        assert!(matches!(
            step(&mut b, &[other], &[]),
            Err(Shortfall::Full { what: "VIP", .. })
        ));
        assert_eq!(b.vips[&one.key()].config, one, "nothing changed");
    }
}
