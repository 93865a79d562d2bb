//! Programming the maps: VIPs, their rings and backends, and node settings.
//!
//! A batch goes check → plan → write → commit. [`crate::batch`] refuses an
//! invalid batch whole; `plan` turns a valid one into map writes and the
//! book's changes without touching a map; `write` applies the writes and,
//! if one fails, takes back those before it, newest first; only then does
//! the book (`book`, the one record of what the maps hold) take the
//! changes.
//!
//! # How a VIP changes atomically
//! 1. Backends the VIP gains get ids; their table entries are written
//!    (no ring names them yet, so no packet can reach them).
//! 2. The new ring is written completely, through the memory mapping of
//!    `RINGS`, into a free ring slot (no VIP points there yet): a memcpy of
//!    4 bytes × M, no syscall.
//! 3. The VIP's `VIP_STATE` word — ring slot and flags together — is
//!    replaced with one aligned store through that map's mapping: a packet
//!    reads the old word or the new one (`lb_abi::vip`). The new ring is
//!    live when the store is done.
//! 4. What the old word named is retired, not freed: the old ring slot and
//!    the ids of the backends the VIP dropped wait for a reader barrier
//!    (`barrier`), paid only when a later batch needs a slot or an id and
//!    too few are free, once for everything retired by then. A retired
//!    backend's generation gets `lb_abi::backend::RETIRED` at once, so flow
//!    entries stop following it while stale rings may still reach it; after
//!    the barrier its entry is cleared and the id recycled. Flow-cache
//!    copies stop being honoured when an id is retired or a VIP's
//!    generation changes: both bump the cache's generation epoch.
//!
//! A new VIP gets a free index whose key is written before its word and
//! its word before its `VIPS` entry; a removed VIP's word becomes `GONE`
//! before its entry goes, and its index is retired like a ring slot.

use std::{net::IpAddr, sync::atomic::Ordering};

use aya::maps::MapError;
use lb_abi::{
    flow::{FlowKey, FlowValue},
    ring::pairs_per_ring,
    vip::{VipKey, VipState},
    writer::Member,
};
use lb_model::{DataplaneState, VipEntry};

pub use crate::batch::backend_identity;
pub use crate::book::{BackendId, Programmed, Snapshot};
use crate::{
    barrier::ReaderBarrier,
    batch::{self, Batch},
    book::Book,
    config::{NodeConfig, VipConfig},
    error::{DataplaneError, map_err},
    maps::Maps,
    options::LoadOptions,
    plan::{self, Shortfall, Upsert, backend_entry},
    read_back,
    write::{self, Writer},
};

/// Entries in use against a table's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    pub used: u32,
    pub capacity: u32,
}

/// How full the dataplane's sized tables are ([`Programmer::usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub vips: Fill,
    pub backends: Fill,
    pub ring_slots: Fill,
    /// The flow table's size; an LRU is full by design, so its use is not
    /// counted.
    pub flow_table_entries: u32,
}

/// Reads the balancer's maps beside the [`Programmer`], never writing.
pub struct Observer {
    maps: Maps,
    options: LoadOptions,
}

impl Observer {
    /// What the maps hold now, rebuilt from them alone as
    /// [`Programmer::read_back`] rebuilds it. Read while the programmer
    /// writes, it may catch a VIP between two writes: read again when the
    /// programmer has moved on meanwhile.
    pub fn read_back(&self) -> Result<Programmer, DataplaneError> {
        Programmer::adopt(self.maps.reopen()?, &self.options)
    }

    /// A reader of the counters.
    pub fn stats_reader(&self) -> Result<crate::StatsReader, DataplaneError> {
        crate::stats::reader(&self.maps)
    }
}

/// Writes desired state into the balancer's maps; the only writer.
pub struct Programmer {
    pub(crate) maps: Maps,
    options: LoadOptions,
    barrier: ReaderBarrier,
    pub(crate) book: Book,
    /// Tests only: writes left before an injected failure.
    fail_in: Option<usize>,
}

impl Programmer {
    /// The writer of freshly created maps.
    pub(crate) fn fresh(maps: Maps, options: &LoadOptions) -> Result<Self, DataplaneError> {
        // An index no VIP holds reads as no VIP, whatever its key.
        for index in 0..maps.vip_state.entries() {
            maps.vip_state
                .atomic_u64(index)
                .store(VipState::GONE, Ordering::Relaxed);
        }
        Ok(Self {
            book: Book::new(options),
            maps,
            options: options.clone(),
            barrier: ReaderBarrier::new()?,
            fail_in: None,
        })
    }

    /// The writer of maps that already hold state, adopting it: the book
    /// is rebuilt from the maps alone.
    pub(crate) fn adopt(maps: Maps, options: &LoadOptions) -> Result<Self, DataplaneError> {
        Ok(Self {
            book: read_back::book(&maps, options)?,
            maps,
            options: options.clone(),
            barrier: ReaderBarrier::new()?,
            fail_in: None,
        })
    }

    /// A programmer rebuilt from the maps alone, as a restarted controller
    /// would adopt them: what it knows is what the maps hold, not this
    /// programmer's bookkeeping. Everything not in use is treated as
    /// retired (the maps cannot tell free from retired): one reader barrier
    /// before its first reuse.
    pub fn read_back(&self) -> Result<Programmer, DataplaneError> {
        Self::adopt(self.maps.reopen()?, &self.options)
    }

    /// Second handles on the maps, for a task that reads them while this
    /// programmer writes (the API's read-back and counters).
    pub fn observer(&self) -> Result<Observer, DataplaneError> {
        Ok(Observer {
            maps: self.maps.reopen()?,
            options: self.options.clone(),
        })
    }

    /// What [`Self::read_back`] reproduces of this programmer.
    pub fn snapshot(&self) -> Snapshot {
        self.book.snapshot()
    }

    /// The programmed state, as the userspace model reads it; rings are
    /// read from the ring map.
    pub fn state(&self) -> DataplaneState {
        let mut state = DataplaneState {
            control: self.book.control.map(|(c, _)| c).unwrap_or_default(),
            ring_size: self.book.ring_size,
            ..DataplaneState::default()
        };
        for (key, p) in &self.book.vips {
            state.vips.insert(
                *key,
                VipEntry {
                    vip_index: p.vip_index,
                    flags: p.config.flags,
                    generation: p.generation,
                    ring_slot: p.ring_slot,
                    ring: self.ring_in_map(key).map(Into::into),
                },
            );
            if p.generation != 0 {
                state.vip_generations.insert(p.vip_index, p.generation);
            }
            for (b, id) in p.config.backends.iter().zip(&p.ids) {
                state
                    .backends
                    .insert(id.id, backend_entry(b.address, id.generation));
            }
        }
        state
            .backends
            .extend(self.book.retired.backends.iter().copied());
        state
    }

    /// The ring the VIP `key` points at, read from the ring map; `None` for
    /// a VIP that is not programmed or has no ring.
    pub fn ring_in_map(&self, key: &VipKey) -> Option<Vec<u32>> {
        let slot = self.book.ring_of(key)?;
        let first = slot * pairs_per_ring(self.book.ring_size);
        Some(
            self.maps
                .rings
                .read_u32s(first, self.book.ring_size as usize),
        )
    }

    /// How full the sized tables are. Ring slots and backend ids count
    /// those retired and awaiting a reader barrier too: they are not free
    /// until it has passed.
    pub fn usage(&self) -> Usage {
        let fill = |pool: &crate::ids::IndexPool| Fill {
            used: pool.limit() - pool.available(),
            capacity: pool.limit(),
        };
        Usage {
            vips: fill(&self.book.vip_indices),
            backends: fill(&self.book.backend_ids),
            ring_slots: fill(&self.book.ring_slots),
            flow_table_entries: self.options.flow_table_entries,
        }
    }

    /// The load-time sizes this programmer's maps were made with.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The configs of the programmed VIPs.
    pub fn vips(&self) -> impl Iterator<Item = &VipConfig> {
        self.book.vips.values().map(|p| &p.config)
    }

    /// The backend id of `address` as a backend of the VIP `vip`, if it is
    /// one. Every VIP has ids of its own for its backends.
    pub fn backend_id(&self, vip: &VipKey, address: IpAddr) -> Option<u32> {
        Some(self.book.vips.get(vip)?.id_of(address)?.id)
    }

    /// Applies `batch`: node settings first, then removals, then upserts,
    /// each VIP's change atomic for packets. The whole batch is checked
    /// before any map is written, and refused with every reason named if
    /// anything is wrong or a table is too full for it. A VIP whose config
    /// equals what is programmed costs no map write; the rings of the
    /// others are built on every core first. At most one reader barrier is
    /// paid, and only when a slot, an id or an index must be reused.
    ///
    /// # Errors
    /// [`DataplaneError::Rejected`] or [`DataplaneError::Full`] for a batch
    /// refused whole. A map write that fails part-way is taken back with
    /// every write before it, so the old state stays in force and the
    /// bookkeeping equals the maps; [`DataplaneError::UndoFailed`] if
    /// taking back failed too.
    pub fn apply(&mut self, batch: &Batch) -> Result<(), DataplaneError> {
        let result = self.apply_checked(batch);
        self.fail_in = None;
        result
    }

    fn apply_checked(&mut self, batch: &Batch) -> Result<(), DataplaneError> {
        let book = &self.book;
        let rejections = batch::check(batch, |k| book.vips.contains_key(k), book.control.is_some());
        if !rejections.is_empty() {
            return Err(DataplaneError::Rejected(rejections));
        }
        let control = batch
            .node
            .as_ref()
            .map(NodeConfig::to_control)
            .transpose()?;
        let changed: Vec<&VipConfig> = batch
            .upserts
            .iter()
            .filter(|c| book.vips.get(&c.key()).is_none_or(|p| p.config != **c))
            .collect();
        let rings = batch::build_rings(&changed, self.book.ring_size)
            .map_err(|r| DataplaneError::Rejected(vec![r]))?;
        let mut upserts: Vec<Upsert<'_>> = changed
            .into_iter()
            .zip(rings)
            .map(|(config, ring)| Upsert { config, ring })
            .collect();
        let plan = match plan::plan(&self.book, batch, control, &mut upserts) {
            Err(Shortfall::NeedsBarrier) => {
                self.wait_for_readers()?;
                plan::plan(&self.book, batch, control, &mut upserts)
            }
            planned => planned,
        }
        .map_err(|shortfall| match shortfall {
            Shortfall::Full {
                what,
                limit,
                needed,
                free,
            } => DataplaneError::Full {
                what,
                limit,
                needed,
                free,
            },
            Shortfall::NeedsBarrier => unreachable!("nothing is retired after the barrier"),
        })?;
        Writer {
            maps: &mut self.maps,
            ring_size: self.book.ring_size,
            fail_in: &mut self.fail_in,
        }
        .apply_all(&plan.writes)?;
        self.book.commit(plan.changes);
        Ok(())
    }

    /// Tests only: the map write number `n` (from 0) of the next
    /// [`Self::apply`] fails, as a kernel failure half-way through a batch
    /// would. Disarmed when that apply returns.
    #[doc(hidden)]
    pub fn fail_write(&mut self, n: usize) {
        self.fail_in = Some(n);
    }

    /// Sets how encapsulated frames leave the node: a batch of node
    /// settings alone.
    pub fn set_node(&mut self, node: &NodeConfig) -> Result<(), DataplaneError> {
        self.apply(&Batch {
            node: Some(node.clone()),
            ..Batch::default()
        })
    }

    /// Adds a VIP or replaces its flags and backends, atomically for
    /// packets: a batch of one.
    pub fn upsert_vip(&mut self, config: &VipConfig) -> Result<(), DataplaneError> {
        self.apply(&Batch::upsert(config.clone()))
    }

    /// Removes a VIP; its traffic passes to the kernel from then on. A
    /// batch of one removal.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        if !self.book.vips.contains_key(key) {
            return Err(DataplaneError::NoSuchVip);
        }
        self.apply(&Batch {
            removals: vec![*key],
            ..Batch::default()
        })
    }

    /// Waits out every program run that started before this call, then
    /// frees everything retired before it: ring slots, VIP indices, the
    /// control entry left behind, and backend ids (their entries cleared).
    /// A batch calls it itself when it needs more than is free; calling it
    /// ahead moves that wait off a later batch.
    pub fn wait_for_readers(&mut self) -> Result<(), DataplaneError> {
        if self.book.retired.is_empty() {
            return Ok(());
        }
        self.barrier.wait()?;
        let retired = std::mem::take(&mut self.book.retired);
        for slot in retired.ring_slots {
            self.book.ring_slots.release(slot);
        }
        for index in retired.vip_indices {
            self.book.vip_indices.release(index);
        }
        let mut backends = retired.backends.into_iter();
        while let Some((id, entry)) = backends.next() {
            let cleared = write::set_backend(&mut self.maps, id, &Default::default())
                .and_then(|()| write::set_member(&mut self.maps, id, &Member::default()));
            if let Err(e) = cleared {
                // Still retired: cleared by the next barrier.
                self.book.retired.backends.push((id, entry));
                self.book.retired.backends.extend(backends);
                return Err(e);
            }
            self.book.backend_ids.release(id);
        }
        Ok(())
    }

    /// The flow-table entry of `key`, if there is one.
    pub fn flow_entry(&self, key: &FlowKey) -> Result<Option<FlowValue>, DataplaneError> {
        match self.maps.flows.get(key, 0) {
            Ok(value) => Ok(Some(value)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(self.maps.flows_name, "get")(e)),
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
            .map_err(map_err(self.maps.flows_name, "insert"))
    }

    /// Removes the flow-table entry of `key`, if there is one; the flow's
    /// next packet is placed anew. Returns whether there was one. (A copy
    /// in a CPU's flow cache may answer until that slot's epoch moves: use
    /// [`Self::clear_flows`] to drop those too.)
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<bool, DataplaneError> {
        match self.maps.flows.remove(key) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_err(self.maps.flows_name, "remove")(e)),
        }
    }

    /// Removes every flow-table entry, and every CPU's cached copy of one.
    pub fn clear_flows(&mut self) -> Result<(), DataplaneError> {
        let keys: Vec<FlowKey> = self.maps.flows.keys().filter_map(Result::ok).collect();
        for k in keys {
            match self.maps.flows.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_err(self.maps.flows_name, "remove")(e)),
            }
        }
        // After the removals: a copy taken before this bump is not honoured.
        // Atomic adds, like the program's, so none is lost.
        for index in 0..self.maps.flow_cache_epochs.entries() {
            self.maps.flow_cache_epochs.bump(index);
        }
        Ok(())
    }
}
