//! Reading the counters, summed over CPUs.

use std::{collections::BTreeMap, net::IpAddr};

use lb_abi::{
    flood::FLOOD,
    stats::{BACKEND_STATS, GLOBAL_STATS, GlobalCounter, TrafficCounters, VIP_STATS},
};

use crate::{
    error::{DataplaneError, map_err},
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
    /// ([`Programmer::stats_limited`]).
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

impl Programmer {
    /// Reads every counter.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        self.stats_limited(usize::MAX)
    }

    /// Reads every counter but those of backend addresses past the first
    /// `backend_addresses` in address order (counted in
    /// [`Stats::backends_not_read`]): each address costs a map read per
    /// VIP that has it, and a node with 100,000 backends must not pay them
    /// on every scrape.
    pub fn stats_limited(&self, backend_addresses: usize) -> Result<Stats, DataplaneError> {
        let mut stats = Stats::default();
        for &c in GlobalCounter::ALL {
            let per_cpu = self
                .maps
                .global_stats
                .get(&(c as u32), 0)
                .map_err(map_err(GLOBAL_STATS, "get"))?;
            stats.global.insert(c, per_cpu.iter().sum());
        }
        for (config, index) in self.vip_indices() {
            let per_cpu = self
                .maps
                .vip_stats
                .get(&index, 0)
                .map_err(map_err(VIP_STATS, "get"))?;
            let key = (config.address, config.port, config.protocol.number());
            stats.vips.insert(key, sum(&per_cpu));
            let windows = self
                .maps
                .flood
                .get(&index, 0)
                .map_err(map_err(FLOOD, "get"))?;
            stats
                .vip_flows_not_recorded_flood
                .insert(key, windows.iter().map(|w| w.not_recorded).sum());
        }
        let mut ids: BTreeMap<IpAddr, Vec<u32>> = BTreeMap::new();
        for (address, id) in self.backend_addresses() {
            ids.entry(address).or_default().push(id);
        }
        stats.backends_not_read = ids.len().saturating_sub(backend_addresses);
        for (address, ids) in ids.into_iter().take(backend_addresses) {
            // Per address: every VIP that has the backend has an id for it.
            let total = stats.backends.entry(address).or_default();
            for id in ids {
                let per_cpu = self
                    .maps
                    .backend_stats
                    .get(&id, 0)
                    .map_err(map_err(BACKEND_STATS, "get"))?;
                let more = sum(&per_cpu);
                total.packets += more.packets;
                total.bytes += more.bytes;
            }
        }
        Ok(stats)
    }
}
