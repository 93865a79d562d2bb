//! Handles on the balancer's maps, opened once from a loaded object and
//! again from their file descriptors (reading the state back).

use std::os::fd::AsFd;

use aya::maps::{Array, HashMap as BpfHashMap, IterableMap, Map, MapData, PerCpuArray};
use lb_abi::{
    AddrKey,
    backend::{BACKENDS, Backend},
    control::{CONTROL, CONTROL_ACTIVE, Control},
    filter::{VIP_ADDRS, VIP_FILTER},
    flood::{FLOOD, FLOOD_LIMITS, FloodWindow},
    flow::{FlowKey, FlowValue},
    flow_cache::{FLOW_CACHE_EPOCHS, FLOW_CACHE_GENERATION_EPOCH},
    ring::{RINGS, RingPair},
    stats::{BACKEND_STATS, GLOBAL_STATS, TrafficCounters, VIP_STATS},
    vip::{VIP_GENERATIONS, VIP_STATE, VIPS, VipKey, VipState},
    vip_cache::VIP_CACHE_EPOCH,
    writer::{MEMBERS, Member, WRITER_STATE, WriterState},
};

use crate::{error::DataplaneError, mmap::MappedArray};

/// Every map the programmer writes or reads.
pub(crate) struct Maps {
    pub(crate) vips: BpfHashMap<MapData, VipKey, u32>,
    pub(crate) vip_state: MappedArray,
    pub(crate) vip_generations: Array<MapData, u32>,
    pub(crate) backends: Array<MapData, Backend>,
    pub(crate) members: Array<MapData, Member>,
    pub(crate) writer_state: Array<MapData, WriterState>,
    pub(crate) flows: BpfHashMap<MapData, FlowKey, FlowValue>,
    /// Which flow map `flows` is (`LoadOptions::flow_table_lru`).
    pub(crate) flows_name: &'static str,
    pub(crate) flow_cache_epochs: MappedArray,
    pub(crate) flow_cache_generation_epoch: MappedArray,
    pub(crate) vip_cache_epoch: MappedArray,
    pub(crate) rings: MappedArray,
    pub(crate) control: Array<MapData, Control>,
    pub(crate) control_active: MappedArray,
    pub(crate) filter: Array<MapData, u64>,
    pub(crate) vip_addrs: BpfHashMap<MapData, AddrKey, u32>,
    pub(crate) vip_stats: PerCpuArray<MapData, TrafficCounters>,
    pub(crate) backend_stats: PerCpuArray<MapData, TrafficCounters>,
    pub(crate) global_stats: PerCpuArray<MapData, u64>,
    pub(crate) flood: PerCpuArray<MapData, FloodWindow>,
    pub(crate) flood_limits: Array<MapData, u32>,
    /// Possible CPUs: the length of a per-CPU value.
    pub(crate) cpus: usize,
}

impl Maps {
    /// Opens every map through `open`, which hands out each by name.
    pub(crate) fn open(
        flows_name: &'static str,
        mut open: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| DataplaneError::Cpus(e))?
            .get() as usize;
        Ok(Self {
            vips: typed(open(VIPS)?, VIPS)?,
            vip_state: mapped::<VipState>(open(VIP_STATE)?, VIP_STATE)?,
            vip_generations: typed(open(VIP_GENERATIONS)?, VIP_GENERATIONS)?,
            backends: typed(open(BACKENDS)?, BACKENDS)?,
            members: typed(open(MEMBERS)?, MEMBERS)?,
            writer_state: typed(open(WRITER_STATE)?, WRITER_STATE)?,
            flows: typed(open(flows_name)?, flows_name)?,
            flows_name,
            flow_cache_epochs: mapped::<u64>(open(FLOW_CACHE_EPOCHS)?, FLOW_CACHE_EPOCHS)?,
            flow_cache_generation_epoch: mapped::<u64>(
                open(FLOW_CACHE_GENERATION_EPOCH)?,
                FLOW_CACHE_GENERATION_EPOCH,
            )?,
            vip_cache_epoch: mapped::<u64>(open(VIP_CACHE_EPOCH)?, VIP_CACHE_EPOCH)?,
            rings: mapped::<RingPair>(open(RINGS)?, RINGS)?,
            control: typed(open(CONTROL)?, CONTROL)?,
            control_active: mapped::<u64>(open(CONTROL_ACTIVE)?, CONTROL_ACTIVE)?,
            filter: typed(open(VIP_FILTER)?, VIP_FILTER)?,
            vip_addrs: typed(open(VIP_ADDRS)?, VIP_ADDRS)?,
            vip_stats: typed(open(VIP_STATS)?, VIP_STATS)?,
            backend_stats: typed(open(BACKEND_STATS)?, BACKEND_STATS)?,
            global_stats: typed(open(GLOBAL_STATS)?, GLOBAL_STATS)?,
            flood: typed(open(FLOOD)?, FLOOD)?,
            flood_limits: typed(open(FLOOD_LIMITS)?, FLOOD_LIMITS)?,
            cpus,
        })
    }

    /// A second set of handles on the same maps (new file descriptors).
    pub(crate) fn reopen(&self) -> Result<Self, DataplaneError> {
        Self::open(self.flows_name, |name| self.reopen_one(name))
    }

    /// A second handle on one map, typed.
    pub(crate) fn reopen_typed<T>(&self, name: &'static str) -> Result<T, DataplaneError>
    where
        T: TryFrom<Map, Error = aya::maps::MapError>,
    {
        typed(self.reopen_one(name)?, name)
    }

    fn reopen_one(&self, name: &'static str) -> Result<Map, DataplaneError> {
        let fd = self
            .data(name)
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| missing(name, aya::maps::MapError::IoError(e)))?;
        let data = MapData::from_fd(fd).map_err(|e| missing(name, e))?;
        Map::from_map_data(data).map_err(|e| missing(name, e))
    }

    fn data(&self, name: &'static str) -> &MapData {
        match name {
            VIPS => self.vips.map(),
            VIP_STATE => self.vip_state.map(),
            VIP_GENERATIONS => self.vip_generations.map(),
            BACKENDS => self.backends.map(),
            MEMBERS => self.members.map(),
            WRITER_STATE => self.writer_state.map(),
            name if name == self.flows_name => self.flows.map(),
            FLOW_CACHE_EPOCHS => self.flow_cache_epochs.map(),
            FLOW_CACHE_GENERATION_EPOCH => self.flow_cache_generation_epoch.map(),
            VIP_CACHE_EPOCH => self.vip_cache_epoch.map(),
            RINGS => self.rings.map(),
            CONTROL => self.control.map(),
            CONTROL_ACTIVE => self.control_active.map(),
            VIP_FILTER => self.filter.map(),
            VIP_ADDRS => self.vip_addrs.map(),
            VIP_STATS => self.vip_stats.map(),
            BACKEND_STATS => self.backend_stats.map(),
            GLOBAL_STATS => self.global_stats.map(),
            FLOOD => self.flood.map(),
            FLOOD_LIMITS => self.flood_limits.map(),
            other => unreachable!("map {other} is not one of the programmer's"),
        }
    }
}

fn missing(map: &'static str, source: aya::maps::MapError) -> DataplaneError {
    DataplaneError::MissingMap {
        map,
        source: Some(source),
    }
}

fn typed<T>(map: Map, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|e| missing(name, e))
}

/// A `MMAPABLE` array of values of `V`, mapped whole.
fn mapped<V>(map: Map, name: &'static str) -> Result<MappedArray, DataplaneError> {
    let Map::Array(data) = map else {
        return Err(DataplaneError::MissingMap {
            map: name,
            source: None,
        });
    };
    let entries = data.info().map_err(|e| missing(name, e))?.max_entries();
    MappedArray::new(&data, name, entries, std::mem::size_of::<V>()).map(|m| m.owning(data))
}
