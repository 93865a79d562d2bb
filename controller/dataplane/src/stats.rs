//! Reading the counters, summed over CPUs.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use aya::maps::{MapData, PerCpuArray};
use lb_abi::{
    flood::{FLOOD, FloodWindow},
    stats::{BACKEND_STATS, GLOBAL_STATS, GlobalCounter, TrafficCounters, VIP_STATS},
};

use crate::{
    book::Programmed,
    config::VipConfig,
    error::{DataplaneError, map_err},
    maps::Maps,
    programmer::Programmer,
};

/// Every counter of the balancer, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Node-wide verdict and flow-table counters.
    pub global: BTreeMap<GlobalCounter, u64>,
    /// Per programmed VIP, by (address, port, protocol).
    pub vips: BTreeMap<(IpAddr, u16, u8), TrafficCounters>,
    /// Per programmed VIP: new flows not recorded because the VIP was over
    /// its flood limit on their CPU (`lb_abi::flood`).
    pub vip_flows_not_recorded_flood: BTreeMap<(IpAddr, u16, u8), u64>,
    /// Per backend address in use, summed over the VIPs that have it.
    pub backends: BTreeMap<IpAddr, TrafficCounters>,
    /// Backend addresses whose counters were not read
    /// ([`StatsReader::read`]).
    pub backends_not_read: usize,
}

impl Stats {
    /// One global counter.
    pub fn global(&self, counter: GlobalCounter) -> u64 {
        self.global.get(&counter).copied().unwrap_or(0)
    }

    /// Packets dropped, all reasons together.
    pub fn drops(&self) -> u64 {
        self.global
            .iter()
            .filter(|(c, _)| c.is_drop())
            .map(|(_, n)| n)
            .sum()
    }
}

fn sum(values: &[TrafficCounters]) -> TrafficCounters {
    values
        .iter()
        .fold(TrafficCounters::default(), |a, v| TrafficCounters {
            packets: a.packets + v.packets,
            bytes: a.bytes + v.bytes,
        })
}

/// The counter maps on handles of their own, so that another thread reads
/// them while the programmer writes: reading 1,000 VIPs' counters takes
/// tens of milliseconds that a writer should not wait for.
pub struct StatsReader {
    vip_stats: PerCpuArray<MapData, TrafficCounters>,
    backend_stats: PerCpuArray<MapData, TrafficCounters>,
    global_stats: PerCpuArray<MapData, u64>,
    flood: PerCpuArray<MapData, FloodWindow>,
}

/// The programmed VIPs as of one moment of the programmer's: what the
/// controller reports as applied, and which counter index is which VIP
/// and backend for [`StatsReader::read`]. Cheap to take: the VIPs are
/// shared, not copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    vips: Vec<Arc<Programmed>>,
}

impl Applied {
    /// The configs of the programmed VIPs, in key order.
    pub fn vips(&self) -> impl Iterator<Item = &VipConfig> {
        self.vips.iter().map(|p| &p.config)
    }
}

impl Programmer {
    /// Reads every counter, through handles opened for the call.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        self.stats_reader()?.read(&self.applied(), usize::MAX)
    }

    /// A reader of the counters for another thread.
    pub fn stats_reader(&self) -> Result<StatsReader, DataplaneError> {
        reader(&self.maps)
    }

    /// The programmed VIPs, as [`StatsReader::read`] needs to know them;
    /// take it again after each change.
    pub fn applied(&self) -> Applied {
        Applied {
            vips: self.book.vips.values().cloned().collect(),
        }
    }
}

impl StatsReader {
    /// Reads every counter but those of backend addresses past the first
    /// `backend_addresses` in address order (counted in
    /// [`Stats::backends_not_read`]): each address costs a map read per
    /// VIP that has it, and a node with 100,000 backends must not pay them
    /// on every scrape. A VIP removed since `layout` was taken may read as
    /// zero or as its index's next owner until the next layout.
    pub fn read(
        &self,
        layout: &Applied,
        backend_addresses: usize,
    ) -> Result<Stats, DataplaneError> {
        let Self {
            vip_stats,
            backend_stats,
            global_stats,
            flood,
        } = self;
        let mut stats = Stats::default();
        for &c in GlobalCounter::ALL {
            let per_cpu = global_stats
                .get(&(c as u32), 0)
                .map_err(map_err(GLOBAL_STATS, "get"))?;
            stats.global.insert(c, per_cpu.iter().sum());
        }
        let mut ids: Vec<(IpAddr, u32)> = Vec::new();
        for p in &layout.vips {
            let config = &p.config;
            let per_cpu = vip_stats
                .get(&p.vip_index, 0)
                .map_err(map_err(VIP_STATS, "get"))?;
            let key = (config.address, config.port, config.protocol.number());
            stats.vips.insert(key, sum(&per_cpu));
            let windows = flood.get(&p.vip_index, 0).map_err(map_err(FLOOD, "get"))?;
            stats
                .vip_flows_not_recorded_flood
                .insert(key, windows.iter().map(|w| w.not_recorded).sum());
            ids.extend(
                config
                    .backends
                    .iter()
                    .zip(&p.ids)
                    .map(|(b, id)| (b.address, id.id)),
            );
        }
        // Sorted by address, so the bound keeps the same addresses each time;
        // a flat sort of 100,000 pairs costs far less than a map of them, and
        // on integers less than on `IpAddr`s.
        ids.sort_unstable_by_key(|&(address, id)| (address_order(address), id));
        let mut addresses = 0;
        for (i, &(address, id)) in ids.iter().enumerate() {
            if i == 0 || ids[i - 1].0 != address {
                addresses += 1;
            }
            if addresses > backend_addresses {
                continue;
            }
            // Per address: every VIP that has the backend has an id for it.
            let per_cpu = backend_stats
                .get(&id, 0)
                .map_err(map_err(BACKEND_STATS, "get"))?;
            let more = sum(&per_cpu);
            let total = stats.backends.entry(address).or_default();
            total.packets += more.packets;
            total.bytes += more.bytes;
        }
        stats.backends_not_read = addresses.saturating_sub(backend_addresses);
        Ok(stats)
    }
}

/// A reader of `maps`' counters, on handles of its own.
pub(crate) fn reader(maps: &Maps) -> Result<StatsReader, DataplaneError> {
    Ok(StatsReader {
        vip_stats: maps.reopen_typed(VIP_STATS)?,
        backend_stats: maps.reopen_typed(BACKEND_STATS)?,
        global_stats: maps.reopen_typed(GLOBAL_STATS)?,
        flood: maps.reopen_typed(FLOOD)?,
    })
}

/// `IpAddr`'s order (IPv4 before IPv6, then by value) as integers.
fn address_order(address: IpAddr) -> (bool, u128) {
    match address {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}
