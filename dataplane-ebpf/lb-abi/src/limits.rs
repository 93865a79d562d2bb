//! Default sizes, the same as Katran's where it has one.

/// Default Maglev ring size M (prime).
pub const DEFAULT_RING_SIZE: u32 = 65_537;
/// Default number of VIPs.
pub const DEFAULT_MAX_VIPS: u32 = 1024;
/// Default number of backend ids (one per backend of each VIP).
pub const DEFAULT_MAX_BACKENDS: u32 = 65_536;
/// Default flow-table entries.
pub const DEFAULT_FLOW_TABLE_ENTRIES: u32 = 8_000_000;
/// Default MTU: the largest IP packet the balancer sends.
pub const DEFAULT_MTU: u16 = 1500;
/// Default TTL / hop limit of the outer header.
pub const DEFAULT_OUTER_TTL: u8 = 64;
/// Default idle time after which a UDP flow is placed anew, ns (Katran's
/// 30 s).
pub const DEFAULT_UDP_FLOW_TIMEOUT_NS: u64 = 30_000_000_000;
/// Default longest time a TCP flow answered from a per-CPU flow cache goes
/// without touching its flow-table entry (so the LRU does not take it for
/// idle), ns: 250 ms, well below the time a full table takes to turn over.
pub const DEFAULT_TCP_REFRESH_NS: u64 = 250_000_000;
/// Default too-big replies (ICMP fragmentation-needed, ICMPv6
/// packet-too-big) per second per CPU; more are dropped and counted.
pub const DEFAULT_TOO_BIG_REPLIES_PER_CPU_PER_SEC: u32 = 1000;
/// Default flood threshold: new flows per second per CPU above which new
/// flows are no longer recorded in the flow table (Katran's MAX_CONN_RATE).
pub const DEFAULT_NEW_FLOWS_PER_CPU_PER_SEC: u32 = 125_000;

/// Compile-time sizes in the eBPF object; the loader overrides each with the
/// configured value before the maps are created.
pub mod placeholder {
    /// Entries of the VIP map and the per-VIP stats.
    pub const VIPS: usize = 512;
    /// Entries of the backend map and the per-backend stats.
    pub const BACKENDS: usize = 4_096;
    /// Entries of the flow table.
    pub const FLOWS: usize = 65_536;
    /// Elements of the flat ring map.
    pub const RING_PAIRS: usize = 65_536;
}
