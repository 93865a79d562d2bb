//! Programming the maps: VIPs, their rings and backends, and node settings.
//!
//! # How a VIP changes atomically
//! 1. Backends the VIP gains get ids; their table entries are written
//!    (no ring names them yet, so no packet can reach them).
//! 2. The new ring is written completely, through the memory mapping of
//!    `RINGS`, into a free ring slot (no VIP points there yet): a memcpy of
//!    4 bytes × M, no syscall.
//! 3. The VIP's value — flags and ring slot together — is replaced in one
//!    map update. `VIPS` has no preallocation, so the kernel swaps whole
//!    elements under RCU: a packet sees the old value or the new one. The
//!    new ring is live when this returns.
//! 4. What the old value named is retired, not freed: the old ring slot
//!    and the ids of backends no VIP names any more wait for a reader
//!    barrier (`barrier`), paid only when a later change needs a slot or an
//!    id and none is free, once for everything retired by then. A retired
//!    backend's generation gets `lb_abi::backend::RETIRED` at once, so flow
//!    entries stop following it while stale rings may still reach it; after
//!    the barrier its entry is cleared (generation 0) and the id recycled.
//!    Flow-cache copies stop being honoured when an id is retired or a
//!    VIP's generation changes: both bump the cache's generation epoch.
//!
//! If anything fails before step 3, the VIP's old state stays in force.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use lb_abi::{
    AddrKey,
    backend::{BACKENDS, Backend, RETIRED},
    control::CONTROL,
    filter::{VIP_ADDRS, VIP_FILTER, filter_bit},
    flow::{FLOWS, FlowKey, FlowValue},
    ring::{NO_RING, pairs_per_ring},
    stats::{BACKEND_STATS, TrafficCounters, VIP_STATS},
    vip::{VIP_GENERATIONS, VIPS, VipKey, VipValue, flags},
    wire_addr,
};
use lb_model::{DataplaneState, VipEntry};

pub use crate::batch::backend_identity;
use crate::{
    barrier::ReaderBarrier,
    batch::{self, Batch},
    config::{NodeConfig, VipConfig},
    error::{DataplaneError, map_err},
    ids::{BackendIds, IndexPool},
    mmap::MappedArray,
    options::LoadOptions,
};

/// Handles on the maps, taken from the loaded object.
pub(crate) struct Maps {
    pub(crate) vips: BpfHashMap<MapData, VipKey, VipValue>,
    pub(crate) vip_generations: Array<MapData, u32>,
    pub(crate) backends: Array<MapData, Backend>,
    pub(crate) flows: BpfHashMap<MapData, FlowKey, FlowValue>,
    pub(crate) flow_cache_epochs: MappedArray,
    pub(crate) flow_cache_generation_epoch: MappedArray,
    pub(crate) vip_cache_epoch: MappedArray,
    pub(crate) rings: MappedArray,
    pub(crate) control: Array<MapData, lb_abi::control::Control>,
    pub(crate) control_active: MappedArray,
    pub(crate) filter: Array<MapData, u64>,
    pub(crate) vip_addrs: BpfHashMap<MapData, AddrKey, u32>,
    pub(crate) vip_stats: PerCpuArray<MapData, TrafficCounters>,
    pub(crate) backend_stats: PerCpuArray<MapData, TrafficCounters>,
    pub(crate) global_stats: PerCpuArray<MapData, u64>,
}

/// A VIP as programmed.
#[derive(Debug)]
struct Programmed {
    config: VipConfig,
    value: VipValue,
}

/// Writes desired state into the balancer's maps; the only writer.
pub struct Programmer {
    pub(crate) maps: Maps,
    ring_size: u32,
    barrier: ReaderBarrier,
    vips: HashMap<VipKey, Programmed>,
    backend_ids: BackendIds,
    ring_slots: IndexPool,
    vip_indices: IndexPool,
    /// Retired since the last reader barrier: free once it has passed.
    retired: Retired,
    /// Whether node settings have been written; no VIP is before they are.
    node_set: bool,
    /// VIPs per filter bit, and the filter words as written.
    filter_refs: HashMap<(u32, u64), u32>,
    /// VIPs per address.
    address_refs: HashMap<AddrKey, u32>,
    filter_words: HashMap<u32, u64>,
    /// Last VIP generation handed out.
    last_generation: u32,
    state: DataplaneState,
}

impl Programmer {
    pub(crate) fn new(maps: Maps, options: &LoadOptions) -> Result<Self, DataplaneError> {
        Ok(Self {
            maps,
            ring_size: options.ring_size,
            barrier: ReaderBarrier::new()?,
            vips: HashMap::new(),
            backend_ids: BackendIds::new(options.max_backends),
            ring_slots: IndexPool::new(0, options.ring_slots()),
            vip_indices: IndexPool::new(0, options.max_vips),
            retired: Retired::default(),
            node_set: false,
            filter_refs: HashMap::new(),
            address_refs: HashMap::new(),
            filter_words: HashMap::new(),
            last_generation: 0,
            state: DataplaneState {
                ring_size: options.ring_size,
                ..DataplaneState::default()
            },
        })
    }

    /// The programmed state, as the userspace model reads it.
    pub fn state(&self) -> &DataplaneState {
        &self.state
    }

    /// The ring the VIP `key` points at, read back from the ring map (not
    /// from this programmer's bookkeeping); `None` for a VIP that is not
    /// programmed or has no ring.
    pub fn ring_in_map(&self, key: &VipKey) -> Option<Vec<u32>> {
        let slot = self.vips.get(key)?.value.ring_slot;
        (slot != NO_RING).then(|| {
            let first = slot * pairs_per_ring(self.ring_size);
            self.maps.rings.read_u32s(first, self.ring_size as usize)
        })
    }

    /// The configs of the programmed VIPs.
    pub fn vips(&self) -> impl Iterator<Item = &VipConfig> {
        self.vips.values().map(|p| &p.config)
    }

    /// The backend id of `address` as a backend of the VIP `vip`, if it is
    /// one. Every VIP has ids of its own for its backends.
    pub fn backend_id(&self, vip: &VipKey, address: IpAddr) -> Option<u32> {
        self.backend_ids.get((*vip, address)).map(|b| b.id)
    }

    /// Every live backend id with its address.
    pub(crate) fn backend_addresses(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        self.backend_ids.iter().map(|((_, a), id)| (a, id.id))
    }

    pub(crate) fn vip_indices(&self) -> impl Iterator<Item = (&VipConfig, u32)> {
        self.vips.values().map(|p| (&p.config, p.value.vip_index))
    }

    /// Applies `batch`: node settings first, then removals, then upserts,
    /// each VIP's change atomic for packets. The whole batch is checked
    /// before any map is written, and refused with every reason named if
    /// anything is wrong. A VIP whose config equals what is programmed
    /// costs no map write; the rings of the others are built on every core
    /// first. At most one reader barrier is paid, and only when a slot or
    /// an id must be reused.
    ///
    /// # Errors
    /// [`DataplaneError::Rejected`] for a batch refused whole; other errors
    /// come from the kernel part way through (not yet undone: the VIPs
    /// applied before the failure stay applied, each whole).
    pub fn apply(&mut self, batch: &Batch) -> Result<(), DataplaneError> {
        let rejections = batch::check(batch, |k| self.vips.contains_key(k), self.node_set);
        if !rejections.is_empty() {
            return Err(DataplaneError::Rejected(rejections));
        }
        let changed: Vec<&VipConfig> = batch
            .upserts
            .iter()
            .filter(|c| self.vips.get(&c.key()).is_none_or(|p| p.config != **c))
            .collect();
        let rings = batch::build_rings(&changed, self.ring_size)
            .map_err(|r| DataplaneError::Rejected(vec![r]))?;
        if let Some(node) = &batch.node {
            self.write_node(node)?;
        }
        for key in &batch.removals {
            self.remove_programmed(key)?;
        }
        for (config, ring) in changed.into_iter().zip(rings) {
            self.upsert_built(config, ring)?;
        }
        Ok(())
    }

    /// Sets how encapsulated frames leave the node: a batch of node
    /// settings alone.
    pub fn set_node(&mut self, node: &NodeConfig) -> Result<(), DataplaneError> {
        self.apply(&Batch {
            node: Some(node.clone()),
            ..Batch::default()
        })
    }

    /// Writes the settings into the control entry not in force, then
    /// makes it the one in force with one store (`lb_abi::control`).
    fn write_node(&mut self, node: &NodeConfig) -> Result<(), DataplaneError> {
        let control = node.to_control()?;
        if self.node_set && self.state.control == control {
            return Ok(());
        }
        if self.retired.control {
            self.wait_for_readers()?;
        }
        let active = self.maps.control_active.atomic_u64(0);
        let next = (active.load(Ordering::SeqCst) & 1) ^ 1;
        self.maps
            .control
            .set(next as u32, &control, 0)
            .map_err(map_err(CONTROL, "set"))?;
        self.maps
            .control_active
            .atomic_u64(0)
            .store(next, Ordering::SeqCst);
        // Packets that read the selector before the store may still use
        // the entry left behind.
        self.retired.control = self.node_set;
        self.state.control = control;
        self.node_set = true;
        Ok(())
    }

    /// Adds a VIP or replaces its flags and backends, atomically for
    /// packets: a batch of one.
    pub fn upsert_vip(&mut self, config: &VipConfig) -> Result<(), DataplaneError> {
        self.apply(&Batch::upsert(config.clone()))
    }

    /// [`Self::upsert_vip`] of a checked config whose ring is built.
    fn upsert_built(
        &mut self,
        config: &VipConfig,
        ring: Option<Vec<u32>>,
    ) -> Result<(), DataplaneError> {
        let key = config.key();

        let vip_index = match self.vips.get(&key) {
            Some(p) => p.value.vip_index,
            None => self.new_vip_index()?,
        };
        let ids = match self.acquire_backends(config) {
            Ok(ids) => ids,
            Err(e) => {
                self.forget_new_vip_index(&key, vip_index);
                return Err(e);
            }
        };
        let ring_slot = match ring.map(|r| self.store_ring(&r, &ids)).transpose() {
            Ok(slot) => slot,
            Err(e) => {
                self.release_backends(key, config.backends.iter().map(|b| b.address), false);
                self.forget_new_vip_index(&key, vip_index);
                return Err(e);
            }
        };
        let old_value = self.vips.get(&key).map(|p| p.value);
        let uses_flows = config.flags & flags::NO_FLOW_TABLE == 0;
        // A new VIP, or one whose flow table comes back on, starts a fresh
        // generation: flows from before are not honoured.
        let generation = match old_value {
            Some(old) if (old.flags & flags::NO_FLOW_TABLE == 0) == uses_flows => old.generation,
            _ => self.next_generation(),
        };
        let value = VipValue {
            vip_index,
            ring_slot: ring_slot.as_ref().map_or(NO_RING, |(slot, _)| *slot),
            flags: config.flags,
            generation,
        };
        // Published before the flip, so the flows the first packets place
        // are honoured at once.
        let published = if old_value.map(|o| o.generation) != Some(generation) {
            self.set_vip_generation(vip_index, if uses_flows { generation } else { 0 })
        } else {
            Ok(())
        };
        if let Err(e) = published {
            if let Some((slot, _)) = ring_slot {
                self.ring_slots.release(slot);
            }
            self.release_backends(key, config.backends.iter().map(|b| b.address), false);
            self.forget_new_vip_index(&key, vip_index);
            return Err(e);
        }
        let is_new = !self.vips.contains_key(&key);
        // The filter bit goes up before the VIP exists, so no packet of the
        // VIP is ever filtered out.
        let filtered = if is_new {
            self.filter_add(&key)
        } else {
            Ok(())
        };
        let inserted = filtered.and_then(|()| {
            self.maps
                .vips
                .insert(&key, &value, 0)
                .map_err(map_err(VIPS, "insert"))
        });
        if let Err(e) = inserted {
            if is_new {
                let _ = self.filter_remove(&key);
            }
            if let Some((slot, _)) = ring_slot {
                self.ring_slots.release(slot);
            }
            self.release_backends(key, config.backends.iter().map(|b| b.address), false);
            self.forget_new_vip_index(&key, vip_index);
            return Err(e);
        }
        // The flip is done; cached copies of the old value stop being
        // honoured before `retire` (below) lets go of what it named.
        self.bump_vip_cache_epoch()?;

        // Flows stop being honoured only after the flip, so no packet sees
        // the old config without its flows.
        if !uses_flows && old_value.is_some_and(|o| o.flags & flags::NO_FLOW_TABLE == 0) {
            self.set_vip_generation(vip_index, 0)?;
        }
        self.state.vips.insert(
            key,
            VipEntry {
                vip_index,
                flags: config.flags,
                generation,
                ring_slot: value.ring_slot,
                ring: ring_slot.map(|(_, ids)| ids),
            },
        );
        let old = self.vips.insert(
            key,
            Programmed {
                config: config.clone(),
                value,
            },
        );
        if let Some(old) = old {
            self.retire(&old)?;
        }
        Ok(())
    }

    /// Removes a VIP; its traffic passes to the kernel from then on. A
    /// batch of one removal.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        if !self.vips.contains_key(key) {
            return Err(DataplaneError::NoSuchVip);
        }
        self.apply(&Batch {
            removals: vec![*key],
            ..Batch::default()
        })
    }

    fn remove_programmed(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let old = self.vips.get(key).ok_or(DataplaneError::NoSuchVip)?;
        let index = old.value.vip_index;
        self.maps
            .vips
            .remove(key)
            .map_err(map_err(VIPS, "remove"))?;
        self.bump_vip_cache_epoch()?;
        let old = self.vips.remove(key).ok_or(DataplaneError::NoSuchVip)?;
        self.state.vips.remove(key);
        self.set_vip_generation(index, 0)?;
        self.filter_remove(key)?;
        self.retire(&old)?;
        // A packet that read the VIP before the removal may still count
        // under its index.
        self.retired.vip_indices.push(index);
        Ok(())
    }

    /// Waits out every program run that started before this call, then
    /// frees everything retired before it: ring slots, backend ids (their
    /// entries cleared) and VIP indices. Changes call it themselves when
    /// they need a slot or an id and none is free; calling it ahead moves
    /// that wait off a later change.
    pub fn wait_for_readers(&mut self) -> Result<(), DataplaneError> {
        self.barrier.wait()?;
        let retired = std::mem::take(&mut self.retired);
        // The control entry left behind may be written again now.
        for slot in retired.ring_slots {
            self.ring_slots.release(slot);
        }
        for index in retired.vip_indices {
            self.vip_indices.release(index);
        }
        self.clear_backends(&retired.backend_ids)
    }

    /// Whether anything retired waits for a reader barrier.
    fn has_retired(&self) -> bool {
        let r = &self.retired;
        r.control
            || !(r.ring_slots.is_empty() && r.backend_ids.is_empty() && r.vip_indices.is_empty())
    }

    /// After every write to VIPS, before anything it named is freed: from
    /// here on no program takes a VIP from a copy made before the write
    /// (see `lb_abi::vip_cache`). The reader barrier paid before reuse
    /// covers the programs that already had.
    fn bump_vip_cache_epoch(&mut self) -> Result<(), DataplaneError> {
        self.maps.vip_cache_epoch.bump(0);
        Ok(())
    }

    /// The flow-table entry of `key`, if there is one.
    pub fn flow_entry(&self, key: &FlowKey) -> Result<Option<FlowValue>, DataplaneError> {
        match self.maps.flows.get(key, 0) {
            Ok(value) => Ok(Some(value)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(FLOWS, "get")(e)),
        }
    }

    /// Tests only: writes `value` as the flow-table entry of `key`, as the
    /// kernel's recycling of an LRU element under a reader can make it
    /// look. Cached copies of `key` are not dropped: load the dataplane
    /// with the caches off.
    #[doc(hidden)]
    pub fn overwrite_flow_entry(
        &mut self,
        key: &FlowKey,
        value: &FlowValue,
    ) -> Result<(), DataplaneError> {
        self.maps
            .flows
            .insert(key, value, 0)
            .map_err(map_err(FLOWS, "insert"))
    }

    /// Removes every flow-table entry, and every CPU's cached copy of one.
    pub fn clear_flows(&mut self) -> Result<(), DataplaneError> {
        let keys: Vec<FlowKey> = self.maps.flows.keys().filter_map(Result::ok).collect();
        for k in keys {
            match self.maps.flows.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(FLOWS, "remove")(e)),
            }
        }
        // After the removals: a copy taken before this bump is not honoured.
        // Atomic adds, like the program's, so none is lost.
        for index in 0..self.maps.flow_cache_epochs.entries() {
            self.maps.flow_cache_epochs.bump(index);
        }
        Ok(())
    }

    fn next_generation(&mut self) -> u32 {
        self.last_generation = self.last_generation.wrapping_add(1).max(1);
        self.last_generation
    }

    fn set_vip_generation(&mut self, index: u32, generation: u32) -> Result<(), DataplaneError> {
        self.maps
            .vip_generations
            .set(index, &generation, 0)
            .map_err(map_err(VIP_GENERATIONS, "set"))?;
        if generation == 0 {
            self.state.vip_generations.remove(&index);
        } else {
            self.state.vip_generations.insert(index, generation);
        }
        self.bump_flow_cache_generation_epoch()
    }

    /// After every write that can make a flow entry fail its generation
    /// checks (a VIP's generation, a cleared backend id): from here on no
    /// program takes a backend from a flow-cache copy made before the write
    /// (see `lb_abi::flow_cache`).
    fn bump_flow_cache_generation_epoch(&mut self) -> Result<(), DataplaneError> {
        self.maps.flow_cache_generation_epoch.bump(0);
        Ok(())
    }

    /// Counts a VIP on its address: filter bit and exact address entry go
    /// up with the address's first VIP.
    fn filter_add(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let address = AddrKey::from_wire(key.family, key.addr);
        let refs = self.address_refs.entry(address).or_default();
        *refs += 1;
        if *refs == 1 {
            self.maps
                .vip_addrs
                .insert(&address, &1, 0)
                .map_err(map_err(VIP_ADDRS, "insert"))?;
        }
        let bit = filter_bit(&key.addr);
        let refs = self.filter_refs.entry(bit).or_default();
        *refs += 1;
        if *refs == 1 {
            self.write_filter_word(bit.0, |w| w | bit.1)?;
        }
        Ok(())
    }

    /// The reverse of [`Self::filter_add`], after the VIP is gone.
    fn filter_remove(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let address = AddrKey::from_wire(key.family, key.addr);
        if let Some(refs) = self.address_refs.get_mut(&address) {
            *refs -= 1;
            if *refs == 0 {
                self.address_refs.remove(&address);
                self.maps
                    .vip_addrs
                    .remove(&address)
                    .map_err(map_err(VIP_ADDRS, "remove"))?;
            }
        }
        let bit = filter_bit(&key.addr);
        let Some(refs) = self.filter_refs.get_mut(&bit) else {
            return Ok(());
        };
        *refs -= 1;
        if *refs == 0 {
            self.filter_refs.remove(&bit);
            self.write_filter_word(bit.0, |w| w & !bit.1)?;
        }
        Ok(())
    }

    fn write_filter_word(
        &mut self,
        word: u32,
        f: impl FnOnce(u64) -> u64,
    ) -> Result<(), DataplaneError> {
        let current = self.filter_words.get(&word).copied().unwrap_or(0);
        let next = f(current);
        self.maps
            .filter
            .set(word, &next, 0)
            .map_err(map_err(VIP_FILTER, "set"))?;
        self.filter_words.insert(word, next);
        Ok(())
    }

    /// After a VIP stopped pointing at `old`'s ring: its slot and the
    /// backends nothing names any more are retired until the next reader
    /// barrier; the backends stop taking flow-table hits at once.
    fn retire(&mut self, old: &Programmed) -> Result<(), DataplaneError> {
        let key = old.config.key();
        let freed = self.release_backends(key, old.config.backends.iter().map(|b| b.address), true);
        if old.value.ring_slot != NO_RING {
            self.retired.ring_slots.push(old.value.ring_slot);
        }
        if freed.is_empty() {
            return Ok(());
        }
        let marked = self.mark_retired(&freed);
        // Also after a failed mark: no copy may follow an id marked before.
        self.bump_flow_cache_generation_epoch()?;
        marked
    }

    /// Sets [`RETIRED`] in the generation of each of `ids` (which no ring
    /// a packet can newly read names) and queues them for the barrier.
    fn mark_retired(&mut self, ids: &[u32]) -> Result<(), DataplaneError> {
        for &id in ids {
            self.retired.backend_ids.push(id);
            let Some(mut entry) = self.state.backends.get(&id).copied() else {
                continue;
            };
            entry.generation |= RETIRED;
            self.maps
                .backends
                .set(id, &entry, 0)
                .map_err(map_err(BACKENDS, "retire"))?;
            self.state.backends.insert(id, entry);
        }
        Ok(())
    }

    /// Clears the entries of `ids` and recycles them.
    fn clear_backends(&mut self, ids: &[u32]) -> Result<(), DataplaneError> {
        for &id in ids {
            self.maps
                .backends
                .set(id, &Backend::default(), 0)
                .map_err(map_err(BACKENDS, "clear"))?;
            self.state.backends.remove(&id);
            self.backend_ids.recycle(id);
        }
        Ok(())
    }

    fn new_vip_index(&mut self) -> Result<u32, DataplaneError> {
        let limit = self.state.vips.len() as u32;
        if self.vip_indices.is_exhausted() && self.has_retired() {
            self.wait_for_readers()?;
        }
        let index = self
            .vip_indices
            .acquire()
            .ok_or(DataplaneError::Full { what: "VIP", limit })?;
        // The index may have counted for an earlier VIP.
        self.zero_stats(index, true)?;
        Ok(index)
    }

    fn forget_new_vip_index(&mut self, key: &VipKey, index: u32) {
        if !self.vips.contains_key(key) {
            self.vip_indices.release(index);
        }
    }

    /// Takes a reference on every backend of `config`, writing entries for
    /// ids that are new; returns the ids in config order. On error, every
    /// reference taken here is dropped again.
    fn acquire_backends(&mut self, config: &VipConfig) -> Result<Vec<u32>, DataplaneError> {
        let key = config.key();
        let mut ids = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            match self.acquire_backend(key, b.address) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    let taken = config.backends[..ids.len()].iter().map(|b| b.address);
                    self.release_backends(key, taken, false);
                    return Err(e);
                }
            }
        }
        Ok(ids)
    }

    /// One reference on the id of `address` as a backend of `vip`; a new
    /// id gets its entry written (and its reference dropped again if that
    /// fails).
    fn acquire_backend(&mut self, vip: VipKey, address: IpAddr) -> Result<u32, DataplaneError> {
        if self.backend_ids.get((vip, address)).is_none()
            && self.backend_ids.is_exhausted()
            && self.has_retired()
        {
            self.wait_for_readers()?;
        }
        let (id, new) = self
            .backend_ids
            .acquire((vip, address))
            .ok_or(DataplaneError::Full {
                what: "backend",
                limit: self.state.backends.len() as u32,
            })?;
        if new {
            let (family, addr) = wire_addr(address);
            let entry = Backend {
                addr,
                family,
                _pad: [0; 3],
                generation: id.generation,
            };
            let written = self.zero_stats(id.id, false).and_then(|()| {
                self.maps
                    .backends
                    .set(id.id, &entry, 0)
                    .map_err(map_err(BACKENDS, "set"))
            });
            if let Err(e) = written {
                self.release_backends(vip, [address], false);
                return Err(e);
            }
            self.state.backends.insert(id.id, entry);
        }
        Ok(id.id)
    }

    /// Drops one reference per address of `vip`'s backends; returns ids
    /// nothing names any more. With `visible` false the ids were never in
    /// a ring a packet could read, so they are recycled at once.
    fn release_backends(
        &mut self,
        vip: VipKey,
        addresses: impl IntoIterator<Item = IpAddr>,
        visible: bool,
    ) -> Vec<u32> {
        let mut freed = Vec::new();
        for address in addresses {
            if let Some(id) = self.backend_ids.release((vip, address)) {
                if visible {
                    freed.push(id);
                } else {
                    self.state.backends.remove(&id);
                    self.backend_ids.recycle(id);
                }
            }
        }
        freed
    }

    /// Writes a complete ring into a free slot through the mapping; returns
    /// the slot and the ring's backend ids.
    fn store_ring(
        &mut self,
        members: &[u32],
        ids: &[u32],
    ) -> Result<(u32, Arc<[u32]>), DataplaneError> {
        if self.ring_slots.is_exhausted() && !self.retired.ring_slots.is_empty() {
            self.wait_for_readers()?;
        }
        let slot = self.ring_slots.acquire().ok_or(DataplaneError::Full {
            what: "ring slot",
            limit: self.ring_slots.limit(),
        })?;
        let ring: Arc<[u32]> = members.iter().map(|&m| ids[m as usize]).collect();
        let first = slot * pairs_per_ring(self.ring_size);
        self.maps.rings.write_u32s(first, &ring);
        Ok((slot, ring))
    }

    fn zero_stats(&mut self, index: u32, vip: bool) -> Result<(), DataplaneError> {
        let (map, name) = if vip {
            (&mut self.maps.vip_stats, VIP_STATS)
        } else {
            (&mut self.maps.backend_stats, BACKEND_STATS)
        };
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| map_err(name, "count cpus")(aya::maps::MapError::IoError(e)))?;
        let zeros = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus.get() as usize])
            .map_err(|e| map_err(name, "zero")(aya::maps::MapError::IoError(e)))?;
        map.set(index, zeros, 0).map_err(map_err(name, "zero"))
    }
}

/// What waits for the next reader barrier before it can be reused.
#[derive(Debug, Default)]
struct Retired {
    /// The control entry not in force may still be read.
    control: bool,
    ring_slots: Vec<u32>,
    backend_ids: Vec<u32>,
    vip_indices: Vec<u32>,
}
