//! Map writes, each with the write that takes it back: a plan is a list of
//! them, applied in order and, if one fails, undone in reverse — the one
//! undo path of the writer.

use std::sync::atomic::Ordering;

use aya::maps::{MapError, PerCpuValues};
use lb_abi::{
    AddrKey,
    backend::{BACKENDS, Backend},
    control::{CONTROL, Control},
    filter::{VIP_ADDRS, VIP_FILTER},
    flood::{FLOOD, FLOOD_LIMITS, FloodWindow},
    ring::pairs_per_ring,
    stats::{BACKEND_STATS, TrafficCounters, VIP_STATS},
    vip::{VIP_GENERATIONS, VIPS, VipKey, VipState},
    writer::{MEMBERS, Member, WRITER_STATE, WriterState},
};

use crate::{
    error::{DataplaneError, map_err},
    maps::Maps,
};

/// Byte offsets in a `VipState` (pinned by `lb_abi`'s layout test).
const VIP_KEY_OFFSET: usize = std::mem::offset_of!(VipState, key);
const VIP_REVISION_OFFSET: usize = std::mem::offset_of!(VipState, revision);
const VIP_GENERATION_OFFSET: usize = std::mem::offset_of!(VipState, generation);

/// One write to the maps. Fields named `old` hold what the write replaces;
/// writes without one go where no program and no VIP looks (a free slot or
/// index), or only invalidate (epoch bumps), so taking them back needs
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    WriterState {
        new: WriterState,
        old: WriterState,
    },
    /// The control entry not in force.
    Control {
        entry: u32,
        control: Control,
    },
    /// Which control entry is in force.
    ControlActive {
        active: u64,
        old: u64,
    },
    ZeroVipStats(u32),
    ZeroBackendStats(u32),
    Backend {
        id: u32,
        entry: Backend,
        old: Backend,
    },
    Member {
        id: u32,
        member: Member,
        old: Member,
    },
    /// A whole ring of backend ids into a free slot.
    Ring {
        slot: u32,
        ids: Vec<u32>,
    },
    /// A free VIP index's key and revision (its word is `GONE`).
    VipOwner {
        index: u32,
        key: VipKey,
        revision: u64,
    },
    /// A VIP's flood limit (`lb_abi::flood::FLOOD_LIMITS`); `old: None`
    /// for a new VIP's index, which no packet reaches yet.
    FloodLimit {
        index: u32,
        limit: u32,
        old: Option<u32>,
    },
    VipRevision {
        index: u32,
        revision: u64,
        old: u64,
    },
    /// A VIP's state word: one atomic store.
    VipWord {
        index: u32,
        word: u64,
        old: u64,
    },
    VipGeneration {
        index: u32,
        generation: u32,
        old: u32,
    },
    VipsInsert {
        key: VipKey,
        index: u32,
    },
    VipsRemove {
        key: VipKey,
        index: u32,
    },
    /// An address's entry set to `bits` (`lb_abi::filter::address`);
    /// `old: None` when it had none.
    VipAddr {
        address: AddrKey,
        bits: u32,
        old: Option<u32>,
    },
    VipAddrRemove {
        address: AddrKey,
        old: u32,
    },
    FilterWord {
        word: u32,
        bits: u64,
        old: u64,
    },
    /// `lb_abi::vip_cache`: after every insert into or removal from VIPS.
    BumpVipCacheEpoch,
    /// `lb_abi::flow_cache`: after every write that can make a flow entry
    /// fail its generation checks.
    BumpFlowCacheGenerationEpoch,
}

/// Applies writes to the maps; on request, fails the n-th one (tests).
pub(crate) struct Writer<'a> {
    pub(crate) maps: &'a mut Maps,
    pub(crate) ring_size: u32,
    /// Writes left before the injected failure, if one is armed.
    pub(crate) fail_in: &'a mut Option<usize>,
}

impl Writer<'_> {
    /// Applies `writes` in order; if one fails, takes back those applied,
    /// newest first, and returns the failure. An undo that fails too is
    /// reported with it: the maps then disagree with the bookkeeping until
    /// the state is read back.
    pub(crate) fn apply_all(&mut self, writes: &[Write]) -> Result<(), DataplaneError> {
        for (done, write) in writes.iter().enumerate() {
            if let Err(error) = self.apply(write) {
                let undo_errors: Vec<String> = writes[..done]
                    .iter()
                    .rev()
                    .filter_map(|w| self.undo(w).err().map(|e| e.to_string()))
                    .collect();
                if undo_errors.is_empty() {
                    return Err(error);
                }
                return Err(DataplaneError::UndoFailed {
                    error: Box::new(error),
                    undo: undo_errors,
                });
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: &Write) -> Result<(), DataplaneError> {
        if let Some(left) = self.fail_in.as_mut() {
            if *left == 0 {
                *self.fail_in = None;
                return Err(DataplaneError::Injected);
            }
            *left -= 1;
        }
        self.perform(write)
    }

    fn perform(&mut self, write: &Write) -> Result<(), DataplaneError> {
        let m = &mut *self.maps;
        match write {
            Write::WriterState { new, .. } => set_writer_state(m, new),
            Write::Control { entry, control } => m
                .control
                .set(*entry, control, 0)
                .map_err(map_err(CONTROL, "set")),
            Write::ControlActive { active, .. } => {
                m.control_active
                    .atomic_u64(0)
                    .store(*active, Ordering::SeqCst);
                Ok(())
            }
            Write::ZeroVipStats(index) => zero_stats(m, *index, true),
            Write::ZeroBackendStats(id) => zero_stats(m, *id, false),
            Write::Backend { id, entry, .. } => set_backend(m, *id, entry),
            Write::Member { id, member, .. } => set_member(m, *id, member),
            Write::Ring { slot, ids } => {
                let first = slot * pairs_per_ring(self.ring_size);
                m.rings.write_u32s(first, ids);
                Ok(())
            }
            Write::VipOwner {
                index,
                key,
                revision,
            } => {
                m.vip_state.write_field(*index, VIP_KEY_OFFSET, key);
                m.vip_state
                    .write_field(*index, VIP_REVISION_OFFSET, revision);
                Ok(())
            }
            Write::FloodLimit { index, limit, .. } => set_flood_limit(m, *index, *limit),
            Write::VipRevision {
                index, revision, ..
            } => {
                m.vip_state
                    .write_field(*index, VIP_REVISION_OFFSET, revision);
                Ok(())
            }
            Write::VipWord { index, word, .. } => {
                // Release: the ring and key written before are seen with it.
                m.vip_state
                    .atomic_u64(*index)
                    .store(*word, Ordering::SeqCst);
                Ok(())
            }
            Write::VipGeneration {
                index, generation, ..
            } => set_generation(m, *index, *generation),
            Write::VipsInsert { key, index } => vips_insert(m, key, *index),
            Write::VipsRemove { key, .. } => vips_remove(m, key),
            Write::VipAddr { address, bits, .. } => addr_set(m, address, *bits),
            Write::VipAddrRemove { address, .. } => addr_remove(m, address),
            Write::FilterWord { word, bits, .. } => set_filter(m, *word, *bits),
            Write::BumpVipCacheEpoch => {
                m.vip_cache_epoch.bump(0);
                Ok(())
            }
            Write::BumpFlowCacheGenerationEpoch => {
                m.flow_cache_generation_epoch.bump(0);
                Ok(())
            }
        }
    }

    /// Takes `write` back. Never injected: the failure under test is the
    /// forward one.
    fn undo(&mut self, write: &Write) -> Result<(), DataplaneError> {
        let m = &mut *self.maps;
        match write {
            Write::WriterState { old, .. } => set_writer_state(m, old),
            Write::ControlActive { old, .. } => {
                m.control_active.atomic_u64(0).store(*old, Ordering::SeqCst);
                Ok(())
            }
            Write::Backend { id, old, .. } => set_backend(m, *id, old),
            Write::Member { id, old, .. } => set_member(m, *id, old),
            Write::FloodLimit {
                index,
                old: Some(old),
                ..
            } => set_flood_limit(m, *index, *old),
            Write::VipRevision { index, old, .. } => {
                m.vip_state.write_field(*index, VIP_REVISION_OFFSET, old);
                Ok(())
            }
            Write::VipWord { index, old, .. } => {
                m.vip_state.atomic_u64(*index).store(*old, Ordering::SeqCst);
                Ok(())
            }
            Write::VipGeneration { index, old, .. } => set_generation(m, *index, *old),
            Write::VipsInsert { key, .. } => vips_remove(m, key),
            Write::VipsRemove { key, index } => vips_insert(m, key, *index),
            Write::VipAddr {
                address, old: None, ..
            } => addr_remove(m, address),
            Write::VipAddr {
                address,
                old: Some(old),
                ..
            }
            | Write::VipAddrRemove { address, old } => addr_set(m, address, *old),
            Write::FilterWord { word, old, .. } => set_filter(m, *word, *old),
            // Once more: a copy taken between the write and its undo is
            // not honoured either.
            Write::BumpVipCacheEpoch | Write::BumpFlowCacheGenerationEpoch => self.perform(write),
            Write::Control { .. }
            | Write::ZeroVipStats(_)
            | Write::ZeroBackendStats(_)
            | Write::FloodLimit { old: None, .. }
            | Write::Ring { .. }
            | Write::VipOwner { .. } => Ok(()),
        }
    }
}

fn set_writer_state(m: &mut Maps, state: &WriterState) -> Result<(), DataplaneError> {
    m.writer_state
        .set(0, state, 0)
        .map_err(map_err(WRITER_STATE, "set"))
}

pub(crate) fn set_backend(m: &mut Maps, id: u32, entry: &Backend) -> Result<(), DataplaneError> {
    m.backends
        .set(id, entry, 0)
        .map_err(map_err(BACKENDS, "set"))
}

pub(crate) fn set_member(m: &mut Maps, id: u32, member: &Member) -> Result<(), DataplaneError> {
    m.members
        .set(id, member, 0)
        .map_err(map_err(MEMBERS, "set"))
}

fn set_generation(m: &mut Maps, index: u32, generation: u32) -> Result<(), DataplaneError> {
    // The copy beside the word (read by new flows) first, then the one flow
    // hits check.
    m.vip_state
        .write_field(index, VIP_GENERATION_OFFSET, &generation);
    m.vip_generations
        .set(index, &generation, 0)
        .map_err(map_err(VIP_GENERATIONS, "set"))
}

fn vips_insert(m: &mut Maps, key: &VipKey, index: u32) -> Result<(), DataplaneError> {
    m.vips
        .insert(key, &index, 0)
        .map_err(map_err(VIPS, "insert"))
}

fn vips_remove(m: &mut Maps, key: &VipKey) -> Result<(), DataplaneError> {
    ignore_missing(m.vips.remove(key)).map_err(map_err(VIPS, "remove"))
}

fn addr_set(m: &mut Maps, address: &AddrKey, bits: u32) -> Result<(), DataplaneError> {
    m.vip_addrs
        .insert(address, &bits, 0)
        .map_err(map_err(VIP_ADDRS, "insert"))
}

fn addr_remove(m: &mut Maps, address: &AddrKey) -> Result<(), DataplaneError> {
    ignore_missing(m.vip_addrs.remove(address)).map_err(map_err(VIP_ADDRS, "remove"))
}

fn set_filter(m: &mut Maps, word: u32, bits: u64) -> Result<(), DataplaneError> {
    m.filter
        .set(word, &bits, 0)
        .map_err(map_err(VIP_FILTER, "set"))
}

/// A removal of what is already gone is done.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn set_flood_limit(m: &mut Maps, index: u32, limit: u32) -> Result<(), DataplaneError> {
    m.flood_limits
        .set(index, &limit, 0)
        .map_err(map_err(FLOOD_LIMITS, "set"))
}

/// A new VIP's index starts with empty flood windows: none of the last
/// holder's flows or not-recorded count.
fn zero_flood(m: &mut Maps, index: u32) -> Result<(), DataplaneError> {
    let zeros = PerCpuValues::try_from(vec![FloodWindow::default(); m.cpus])
        .map_err(|e| map_err(FLOOD, "zero")(MapError::IoError(e)))?;
    m.flood.set(index, zeros, 0).map_err(map_err(FLOOD, "zero"))
}

fn zero_stats(m: &mut Maps, index: u32, vip: bool) -> Result<(), DataplaneError> {
    if vip {
        zero_flood(m, index)?;
    }
    let (map, name) = if vip {
        (&mut m.vip_stats, VIP_STATS)
    } else {
        (&mut m.backend_stats, BACKEND_STATS)
    };
    let zeros = PerCpuValues::try_from(vec![TrafficCounters::default(); m.cpus])
        .map_err(|e| map_err(name, "zero")(MapError::IoError(e)))?;
    map.set(index, zeros, 0).map_err(map_err(name, "zero"))
}
