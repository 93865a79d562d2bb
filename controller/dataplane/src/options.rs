//! Sizes fixed when the dataplane is loaded.

use lb_abi::{flow_cache, limits};

use crate::config::ConfigError;

/// Sizes of the dataplane's tables, fixed at load time. Defaults are
/// Katran's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Maglev ring size M; prime. Default 65537.
    pub ring_size: u32,
    /// Most VIPs at once. Default 1024. Each VIP has two ring slots (its
    /// live ring, and room for the next one while readers of the old one
    /// finish), 4 bytes × M each: at the default M, 512 KiB of locked
    /// kernel memory per VIP, 537 MB for 1024 VIPs, so that a batch that
    /// replaces every ring at once finds a free slot for each.
    pub max_vips: u32,
    /// Most backend ids at once: one per backend of each VIP (an address
    /// that two VIPs share takes two, so that leaving one VIP ends only
    /// that VIP's flows to it). Default 65,536: 64 per VIP at the default
    /// VIP count; each costs 24 bytes of backend table and 16 bytes of
    /// counters per CPU.
    pub max_backends: u32,
    /// Flow-table entries (LRU). Default 8,000,000 (Katran's): about 150
    /// bytes of locked kernel memory each, 1.2 GB, and the kernel takes
    /// about 3.7 s to create it. Size it to the flows a node must hold.
    pub flow_table_entries: u32,
    /// How the flow table evicts: one LRU list for all CPUs (the default)
    /// or one per CPU (`lb_abi::flow::FLOWS_PER_CPU_LRU`).
    pub flow_table_lru: FlowTableLru,
    /// Idle time after which a UDP flow is placed anew. Default 30 s. With
    /// the caches on, a flow idle for the last 1/64 of it may be placed
    /// anew already (`lb_abi::flow_cache`).
    pub udp_flow_timeout: std::time::Duration,
    /// Longest time a TCP flow answered from a per-CPU flow cache goes
    /// without touching its flow-table entry, so that the table's LRU does
    /// not evict busy flows as idle ones. Keep it well below the time the
    /// table takes to turn over under the heaviest new-flow rate (8M
    /// entries at 1M new flows/s: 8 s). Default 250 ms.
    pub tcp_flow_refresh: std::time::Duration,
    /// Too-big replies (ICMP fragmentation-needed, ICMPv6 packet-too-big)
    /// per second per CPU, in bursts of up to one second's worth; more are
    /// dropped and counted (`drop_too_big_rate_limited`). 0 = no limit.
    /// Default 1000.
    pub too_big_replies_per_cpu_per_sec: u32,
    /// SYN-flood guard: new flows of one VIP per second per CPU past which
    /// that VIP's new flows are balanced but not recorded in the flow
    /// table; 0 = no limit. Each VIP counts its own (a flood on one leaves
    /// the others recorded) and may set its own
    /// (`VipConfig::new_flows_per_cpu_per_sec`). Default 125,000 (Katran's
    /// figure, which Katran applies to all VIPs together).
    pub new_flows_per_cpu_per_sec: u32,
    /// Answer flow-table hits and VIP lookups from the per-CPU flow and
    /// VIP caches (`lb_abi::flow_cache`, `lb_abi::vip_cache`). Default: on
    /// for x86-64 hosts only, whose memory ordering the caches' epoch
    /// protocol relies on.
    pub per_cpu_caches: bool,
    /// Flow-cache slots per CPU (96 bytes each), 1 to 262,144. Default 4096.
    /// A slot serves one flow at a time; with many more flows active per
    /// CPU than slots, most lookups would miss it and pay for the cache as
    /// well as the table, which the gate ([`Self::flow_cache_gate`]) keeps
    /// them from. With the caches off a single slot is allocated.
    pub flow_cache_slots: u32,
    /// Let each CPU bypass its flow cache while it misses most lookups
    /// (`lb_abi::flow_cache::FlowCacheGate`; bypassed lookups are counted
    /// as `flow_cache_bypass`). Default on: a probe that misses costs a
    /// cold slot read on top of the table lookup, and with 65,536 flows
    /// over 4,096 slots that made hits slower than with the caches off
    /// (`benches/README.md`). Off only to test the cache itself.
    pub flow_cache_gate: bool,
    /// Benchmarks only: undo the encapsulation after building it, so that
    /// repeated `BPF_PROG_TEST_RUN` runs of one frame all take the full path.
    /// Never set this on a node that carries traffic.
    pub bench_restore: bool,
    /// Concurrency tests only: readers on CPU 0 pause a few hundred
    /// microseconds between reading a VIP's state and its ring, and between
    /// finding a flow entry and copying it, so writers race them. Never on
    /// a real node.
    #[doc(hidden)]
    pub reader_pause: bool,
}

/// The flow table's eviction lists; see [`LoadOptions::flow_table_lru`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowTableLru {
    /// One list shared by all CPUs: a flow keeps its entry whichever CPU
    /// its packets reach, and the whole table serves whichever CPUs are
    /// busy; inserts from several CPUs contend for the list's lock. The
    /// default: on the 2-CPU host measured, an insert into a full table
    /// cost less than with per-CPU lists even with both CPUs inserting, and
    /// it kept more of the flows that moved CPU (`benches/README.md`,
    /// `lru_contention`).
    #[default]
    Common,
    /// One list per CPU (`BPF_F_NO_COMMON_LRU`), each evicting from its own
    /// share of the entries: no shared lock, but a flow whose packets move
    /// to another CPU (a changed RSS indirection table, a NIC queue
    /// rebalanced) keeps its entry only as long as the old CPU's share does.
    PerCpu,
}

impl FlowTableLru {
    /// The flow map in use and the one loaded at its smallest size.
    pub(crate) fn maps(self) -> (&'static str, &'static str) {
        use lb_abi::flow::{FLOWS, FLOWS_PER_CPU_LRU};
        match self {
            FlowTableLru::Common => (FLOWS, FLOWS_PER_CPU_LRU),
            FlowTableLru::PerCpu => (FLOWS_PER_CPU_LRU, FLOWS),
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_size: limits::DEFAULT_RING_SIZE,
            max_vips: limits::DEFAULT_MAX_VIPS,
            max_backends: limits::DEFAULT_MAX_BACKENDS,
            flow_table_entries: limits::DEFAULT_FLOW_TABLE_ENTRIES,
            flow_table_lru: FlowTableLru::Common,
            udp_flow_timeout: std::time::Duration::from_nanos(limits::DEFAULT_UDP_FLOW_TIMEOUT_NS),
            tcp_flow_refresh: std::time::Duration::from_nanos(limits::DEFAULT_TCP_REFRESH_NS),
            too_big_replies_per_cpu_per_sec: limits::DEFAULT_TOO_BIG_REPLIES_PER_CPU_PER_SEC,
            new_flows_per_cpu_per_sec: limits::DEFAULT_NEW_FLOWS_PER_CPU_PER_SEC,
            per_cpu_caches: cfg!(target_arch = "x86_64"),
            flow_cache_slots: flow_cache::DEFAULT_FLOW_CACHE_SLOTS,
            flow_cache_gate: true,
            bench_restore: false,
            reader_pause: false,
        }
    }
}

impl LoadOptions {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        lb_maglev::check_table_size(self.ring_size)
            .map_err(|e| ConfigError::new("ring_size", e.to_string()))?;
        for (field, value) in [
            ("max_vips", self.max_vips),
            ("max_backends", self.max_backends),
            ("flow_table_entries", self.flow_table_entries),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.udp_flow_timeout.is_zero()
            || self.udp_flow_timeout.as_nanos() > u128::from(u64::MAX)
        {
            return Err(ConfigError::new(
                "udp_flow_timeout",
                "must be above zero and below 584 years",
            ));
        }
        if self.tcp_flow_refresh.is_zero()
            || self.tcp_flow_refresh.as_nanos() > u128::from(u64::MAX)
        {
            return Err(ConfigError::new(
                "tcp_flow_refresh",
                "must be above zero and below 584 years",
            ));
        }
        if !(1..=flow_cache::MAX_FLOW_CACHE_SLOTS).contains(&self.flow_cache_slots) {
            return Err(ConfigError::new(
                "flow_cache_slots",
                format!("must be from 1 to {}", flow_cache::MAX_FLOW_CACHE_SLOTS),
            ));
        }
        if self.max_vips > 1 << 20 {
            return Err(ConfigError::new("max_vips", "must be at most 1048576"));
        }
        let pairs =
            u64::from(self.ring_slots()) * u64::from(lb_abi::ring::pairs_per_ring(self.ring_size));
        if pairs > u64::from(u32::MAX) {
            return Err(ConfigError::new(
                "max_vips",
                format!(
                    "{} VIPs with rings of {} need {} ring bytes, more than one map holds",
                    self.max_vips,
                    self.ring_size,
                    pairs * 8
                ),
            ));
        }
        Ok(())
    }

    /// Flow-cache slots (and epochs) to allocate: with the caches off
    /// nothing reads them, so one.
    pub(crate) fn allocated_flow_cache_slots(&self) -> u32 {
        if self.per_cpu_caches {
            self.flow_cache_slots
        } else {
            1
        }
    }

    /// Ring slots: one live per VIP, and one spare per VIP, so that a batch
    /// replacing every ring needs no reader barrier before it can write.
    pub(crate) fn ring_slots(&self) -> u32 {
        self.max_vips * 2
    }

    /// Clock reads per reader pause (`reader_pause`); 0 = none.
    pub(crate) fn reader_pause_turns(&self) -> u32 {
        if self.reader_pause { 2048 } else { 0 }
    }

    /// Elements of the flat ring map.
    pub(crate) fn ring_pairs(&self) -> u32 {
        self.ring_slots() * lb_abi::ring::pairs_per_ring(self.ring_size)
    }

    /// The kernel memory the sized maps take, largest first, with `cpus`
    /// possible CPUs: an estimate of what the kernel allocates (values and
    /// the per-element overhead of hash tables), good to tell a size that
    /// cannot be had from one that can.
    pub fn memory(&self, cpus: u32) -> Vec<MapMemory> {
        let cpus = u64::from(cpus);
        let per_cpu = |bytes: u64| bytes * cpus;
        let slots = u64::from(self.allocated_flow_cache_slots());
        let vips = u64::from(self.max_vips);
        let backends = u64::from(self.max_backends);
        let mut maps = vec![
            MapMemory {
                map: lb_abi::ring::RINGS,
                field: "max_vips",
                entries: self.ring_pairs(),
                bytes: u64::from(self.ring_pairs()) * 8,
            },
            MapMemory {
                map: self.flow_table_lru.maps().0,
                field: "flow_table_entries",
                entries: self.flow_table_entries,
                bytes: u64::from(self.flow_table_entries) * FLOW_ENTRY_BYTES,
            },
            MapMemory {
                map: lb_abi::flow_cache::FLOW_CACHE,
                field: "flow_cache_slots",
                entries: self.allocated_flow_cache_slots(),
                bytes: per_cpu(slots * 96) + slots * 8,
            },
            MapMemory {
                map: lb_abi::backend::BACKENDS,
                field: "max_backends",
                entries: self.max_backends,
                // Entry, member record, per-CPU counters.
                bytes: backends * (24 + 16) + per_cpu(backends * 16),
            },
            MapMemory {
                map: lb_abi::vip::VIP_STATE,
                field: "max_vips",
                entries: self.max_vips,
                // State, generation, address entry, per-CPU counters.
                bytes: vips * (40 + 8 + 64) + per_cpu(vips * 16),
            },
        ];
        maps.sort_by_key(|m| std::cmp::Reverse(m.bytes));
        maps
    }
}

/// Kernel memory per flow-table entry: key and value, and the LRU hash
/// table's element header, rounded as the kernel's allocator does.
const FLOW_ENTRY_BYTES: u64 = 152;

/// What one of the sized maps (with its companions) costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub map: &'static str,
    /// The [`LoadOptions`] field that sizes it.
    pub field: &'static str,
    pub entries: u32,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_prime() {
        let o = LoadOptions {
            ring_size: 65_536,
            ..LoadOptions::default()
        };
        assert_eq!(o.validate().unwrap_err().field, "ring_size");
        assert!(LoadOptions::default().validate().is_ok());
    }

    #[test]
    fn flow_cache_slots_must_be_in_range() {
        for slots in [0, flow_cache::MAX_FLOW_CACHE_SLOTS + 1] {
            let o = LoadOptions {
                flow_cache_slots: slots,
                ..LoadOptions::default()
            };
            assert_eq!(o.validate().unwrap_err().field, "flow_cache_slots");
        }
        for slots in [1, 3, flow_cache::MAX_FLOW_CACHE_SLOTS] {
            let o = LoadOptions {
                flow_cache_slots: slots,
                ..LoadOptions::default()
            };
            assert!(o.validate().is_ok());
        }
    }

    #[test]
    fn memory_is_stated_per_size_largest_first() {
        let m = LoadOptions::default().memory(2);
        assert_eq!(m[0].map, lb_abi::flow::FLOWS);
        assert_eq!(m[0].bytes, 8_000_000 * FLOW_ENTRY_BYTES);
        let rings = m.iter().find(|m| m.map == lb_abi::ring::RINGS).unwrap();
        // Two slots per VIP of 4 × M bytes (M odd: half an element spare).
        assert_eq!(rings.bytes, 2048 * 32_769 * 8);
        assert_eq!(rings.field, "max_vips");
    }
}
