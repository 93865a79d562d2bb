//! The writer's bookkeeping: what the maps hold, kept once. A plan reads
//! it; only a plan's commit, after every write of the plan succeeded,
//! changes it. [`crate::read_back`] rebuilds it from the maps.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use lb_abi::{
    AddrKey,
    backend::Backend,
    control::Control,
    filter::{address, filter_bit},
    ring::NO_RING,
    vip::{VipKey, VipState},
    writer::{FORMAT, WriterState},
};

use crate::{config::VipConfig, ids::IndexPool, options::LoadOptions};

/// A backend id and the generation it holds its member under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    pub id: u32,
    pub generation: u32,
}

/// A VIP as programmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programmed {
    pub config: VipConfig,
    pub vip_index: u32,
    /// `lb_abi::ring::NO_RING` when no backend takes new flows.
    pub ring_slot: u32,
    /// The flow-table generation; 0 when the VIP does not use the table.
    pub generation: u32,
    /// Each backend's id, in config order.
    pub ids: Vec<BackendId>,
}

impl Programmed {
    /// The VIP's `VIP_STATE` word.
    pub(crate) fn word(&self) -> u64 {
        VipState::pack(self.ring_slot, self.config.flags)
    }

    /// The id of the backend at `address`, if it is one.
    pub(crate) fn id_of(&self, address: IpAddr) -> Option<BackendId> {
        let position = self
            .config
            .backends
            .iter()
            .position(|b| b.address == address)?;
        Some(self.ids[position])
    }
}

/// What waits for the next reader barrier before it can be used again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Retired {
    /// The control entry not in force may still be read.
    pub(crate) control: bool,
    pub(crate) ring_slots: Vec<u32>,
    /// Ids with their entries as written (generation with `RETIRED`): a
    /// packet reading a ring from before may still reach them.
    pub(crate) backends: Vec<(u32, Backend)>,
    pub(crate) vip_indices: Vec<u32>,
}

impl Retired {
    pub(crate) fn is_empty(&self) -> bool {
        !self.control
            && self.ring_slots.is_empty()
            && self.backends.is_empty()
            && self.vip_indices.is_empty()
    }

    fn extend(&mut self, more: Retired) {
        self.control |= more.control;
        self.ring_slots.extend(more.ring_slots);
        self.backends.extend(more.backends);
        self.vip_indices.extend(more.vip_indices);
    }
}

/// Everything the writer knows about the maps.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    pub(crate) ring_size: u32,
    pub(crate) vips: HashMap<VipKey, Arc<Programmed>>,
    pub(crate) vip_indices: IndexPool,
    pub(crate) ring_slots: IndexPool,
    pub(crate) backend_ids: IndexPool,
    pub(crate) retired: Retired,
    /// The control entry in force and which of the two it is; `None`
    /// before node settings are set.
    pub(crate) control: Option<(Control, u64)>,
    pub(crate) last_vip_generation: u32,
    pub(crate) last_backend_generation: u32,
    /// Derived from `vips`: VIPs per address, those of them that open it
    /// or pass echo, VIPs per filter bit, and the filter words as written.
    pub(crate) address_refs: HashMap<AddrKey, u32>,
    pub(crate) open_refs: HashMap<AddrKey, u32>,
    pub(crate) echo_refs: HashMap<AddrKey, u32>,
    pub(crate) filter_refs: HashMap<(u32, u64), u32>,
    pub(crate) filter_words: HashMap<u32, u64>,
}

/// Changes a plan makes to the book once its writes are done.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// New record of a VIP, or `None` for a removed one.
    pub(crate) vips: Vec<(VipKey, Option<Arc<Programmed>>)>,
    pub(crate) control: Option<(Control, u64)>,
    pub(crate) taken_vip_indices: Vec<u32>,
    pub(crate) taken_ring_slots: Vec<u32>,
    pub(crate) taken_backend_ids: Vec<u32>,
    pub(crate) retired: Retired,
    pub(crate) last_vip_generation: u32,
    pub(crate) last_backend_generation: u32,
    /// Counts and words as they are after the plan (0: gone).
    pub(crate) address_refs: HashMap<AddrKey, u32>,
    pub(crate) open_refs: HashMap<AddrKey, u32>,
    pub(crate) echo_refs: HashMap<AddrKey, u32>,
    pub(crate) filter_refs: HashMap<(u32, u64), u32>,
    pub(crate) filter_words: HashMap<u32, u64>,
}

impl Book {
    pub(crate) fn new(options: &LoadOptions) -> Self {
        Self {
            ring_size: options.ring_size,
            vips: HashMap::new(),
            vip_indices: IndexPool::new(options.max_vips),
            ring_slots: IndexPool::new(options.ring_slots()),
            backend_ids: IndexPool::new(options.max_backends),
            retired: Retired::default(),
            control: None,
            last_vip_generation: 0,
            last_backend_generation: lb_abi::backend::EMPTY_GENERATION,
            address_refs: HashMap::new(),
            open_refs: HashMap::new(),
            echo_refs: HashMap::new(),
            filter_refs: HashMap::new(),
            filter_words: HashMap::new(),
        }
    }

    /// The writer's record as the maps keep it.
    pub(crate) fn writer_state(&self) -> WriterState {
        WriterState {
            format: FORMAT,
            ring_size: self.ring_size,
            node_set: u32::from(self.control.is_some()),
            last_vip_generation: self.last_vip_generation,
            last_backend_generation: self.last_backend_generation,
            vip_index_mark: self.vip_indices.mark(),
            ring_slot_mark: self.ring_slots.mark(),
            backend_id_mark: self.backend_ids.mark(),
        }
    }

    /// Applies a plan's changes; called once all its writes succeeded.
    pub(crate) fn commit(&mut self, changes: Changes) {
        for (key, record) in changes.vips {
            match record {
                Some(r) => self.vips.insert(key, r),
                None => self.vips.remove(&key),
            };
        }
        if let Some(control) = changes.control {
            self.control = Some(control);
        }
        self.vip_indices.take(&changes.taken_vip_indices);
        self.ring_slots.take(&changes.taken_ring_slots);
        self.backend_ids.take(&changes.taken_backend_ids);
        self.retired.extend(changes.retired);
        self.last_vip_generation = changes.last_vip_generation;
        self.last_backend_generation = changes.last_backend_generation;
        set_counts(&mut self.address_refs, changes.address_refs);
        set_counts(&mut self.open_refs, changes.open_refs);
        set_counts(&mut self.echo_refs, changes.echo_refs);
        set_counts(&mut self.filter_refs, changes.filter_refs);
        for (word, bits) in changes.filter_words {
            self.filter_words.insert(word, bits);
        }
    }

    /// Recomputes the derived counts from `vips`, and the filter words they
    /// make.
    pub(crate) fn derive_filter(&mut self) {
        self.address_refs.clear();
        self.open_refs.clear();
        self.echo_refs.clear();
        self.filter_refs.clear();
        self.filter_words.clear();
        for (key, record) in &self.vips {
            let address = AddrKey::from_wire(key.family, key.addr);
            *self.address_refs.entry(address).or_default() += 1;
            let bits = address::from_vip_flags(record.config.flags);
            if bits & address::OPEN != 0 {
                *self.open_refs.entry(address).or_default() += 1;
            }
            if bits & address::PASS_ECHO != 0 {
                *self.echo_refs.entry(address).or_default() += 1;
            }
            let bit = filter_bit(&key.addr);
            *self.filter_refs.entry(bit).or_default() += 1;
            *self.filter_words.entry(bit.0).or_default() |= bit.1;
        }
    }

    /// What read-back must reproduce: see [`Snapshot`].
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            vips: self
                .vips
                .iter()
                .map(|(k, p)| (crate::describe(k), (**p).clone()))
                .collect(),
            control: self.control.map(|(c, _)| c),
            last_vip_generation: self.last_vip_generation,
            last_backend_generation: self.last_backend_generation,
            marks: [
                self.vip_indices.mark(),
                self.ring_slots.mark(),
                self.backend_ids.mark(),
            ],
            retired_backends: self.retired.backends.iter().copied().collect(),
        }
    }

    /// The ring slot the VIP `key` names, if it is programmed with a ring.
    pub(crate) fn ring_of(&self, key: &VipKey) -> Option<u32> {
        let slot = self.vips.get(key)?.ring_slot;
        (slot != NO_RING).then_some(slot)
    }
}

fn set_counts<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, changed: HashMap<K, u32>) {
    for (k, n) in changed {
        if n == 0 {
            counts.remove(&k);
        } else {
            counts.insert(k, n);
        }
    }
}

/// The programmed state as the maps can tell it: every VIP with its
/// config, index, ring slot, generation and backend ids, node settings,
/// the high-water marks, and the backends retired but not yet cleared.
/// Free and retired ring slots and VIP indices are not in it: the maps
/// cannot tell them apart, so a read-back treats all of them as retired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// By key, as `10.0.0.1:80/tcp`.
    pub vips: BTreeMap<String, Programmed>,
    pub control: Option<Control>,
    pub last_vip_generation: u32,
    pub last_backend_generation: u32,
    /// One past the highest VIP index, ring slot and backend id handed out.
    pub marks: [u32; 3],
    pub retired_backends: BTreeMap<u32, Backend>,
}
