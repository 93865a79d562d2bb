//! The maps of the XDP programs. Types, names and meaning: `lb_abi`.
//! Sizes here are placeholders; the loader sets the real ones.

use aya_ebpf::{
    bindings::{BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC},
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use lb_abi::{
    AddrKey, MMAPABLE,
    backend::Backend,
    control::Control,
    filter::FILTER_WORDS,
    flood::FloodWindow,
    flow::{FlowKey, FlowValue},
    flow_cache::{DEFAULT_FLOW_CACHE_SLOTS, FlowCacheGate, FlowCacheSlot},
    limits::placeholder,
    reply_limit::ReplyBucket,
    ring::RingPair,
    stats::{GLOBAL_COUNTERS, TrafficCounters},
    vip::{VipKey, VipState},
    vip_cache::{VIP_CACHE_SLOTS, VipCacheSlot},
    writer::{Member, WriterState},
};

// No preallocation: memory for the VIPs there are, not for the most there
// may be. What that costs readers: `lb_abi::vip`.
#[btf_map]
pub static VIPS: HashMap<VipKey, u32, { placeholder::VIPS }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

#[btf_map]
pub static VIP_STATE: Array<VipState, { placeholder::VIPS }, { MMAPABLE as usize }> = Array::new();

#[btf_map]
pub static VIP_CACHE: PerCpuArray<VipCacheSlot, { VIP_CACHE_SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
pub static VIP_CACHE_EPOCH: Array<u64, 1, { MMAPABLE as usize }> = Array::new();

#[btf_map]
pub static VIP_GENERATIONS: Array<u32, { placeholder::VIPS }> = Array::new();

#[btf_map]
pub static BACKENDS: Array<Backend, { placeholder::BACKENDS }> = Array::new();

#[btf_map]
static FLOWS: LruHashMap<FlowKey, FlowValue, { placeholder::FLOWS }> = LruHashMap::new();

#[btf_map]
static FLOWS_PER_CPU_LRU: LruHashMap<
    FlowKey,
    FlowValue,
    { placeholder::FLOWS },
    { BPF_F_NO_COMMON_LRU as usize },
> = LruHashMap::new();

/// Set by the loader: which of the two flow tables is in use
/// (`lb_abi::flow::FLOW_TABLE_PER_CPU_LRU`). Read-only, so the verifier
/// drops the other table's branch: choosing costs nothing per packet.
#[unsafe(no_mangle)]
static FLOW_TABLE_PER_CPU_LRU: u8 = 0;

/// The flow table in use; every access goes through here.
pub mod flows {
    use aya_ebpf::bindings::BPF_ANY;
    use lb_abi::flow::{FlowKey, FlowValue};

    #[inline(always)]
    fn per_cpu_lru() -> bool {
        // SAFETY: a plain read of an initialised static.
        unsafe { core::ptr::read_volatile(&super::FLOW_TABLE_PER_CPU_LRU) != 0 }
    }

    /// The entry of `key`, bumping its LRU position.
    #[inline(always)]
    pub fn get_ptr_mut(key: &FlowKey) -> Option<*mut FlowValue> {
        if per_cpu_lru() {
            super::FLOWS_PER_CPU_LRU.get_ptr_mut(key)
        } else {
            super::FLOWS.get_ptr_mut(key)
        }
    }

    /// Whether `key` has an entry, bumping its LRU position.
    #[inline(always)]
    pub fn contains(key: &FlowKey) -> bool {
        if per_cpu_lru() {
            super::FLOWS_PER_CPU_LRU.get_ptr(key).is_some()
        } else {
            super::FLOWS.get_ptr(key).is_some()
        }
    }

    /// Records `value` for `key`. A full LRU evicts; a failed insert only
    /// costs affinity, never the packet.
    #[inline(always)]
    pub fn insert(key: &FlowKey, value: &FlowValue) {
        let _ = if per_cpu_lru() {
            super::FLOWS_PER_CPU_LRU.insert(key, value, u64::from(BPF_ANY))
        } else {
            super::FLOWS.insert(key, value, u64::from(BPF_ANY))
        };
    }
}

#[btf_map]
pub static FLOW_CACHE: PerCpuArray<FlowCacheSlot, { DEFAULT_FLOW_CACHE_SLOTS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static FLOW_CACHE_EPOCHS: Array<
    u64,
    { DEFAULT_FLOW_CACHE_SLOTS as usize },
    { MMAPABLE as usize },
> = Array::new();

#[btf_map]
pub static FLOW_CACHE_GATE: PerCpuArray<FlowCacheGate, 1> = PerCpuArray::new();

#[btf_map]
pub static FLOW_CACHE_GENERATION_EPOCH: Array<u64, 1, { MMAPABLE as usize }> = Array::new();

#[btf_map]
pub static RINGS: Array<RingPair, { placeholder::RING_PAIRS }, { MMAPABLE as usize }> =
    Array::new();

#[btf_map]
pub static CONTROL: Array<Control, 2> = Array::new();

#[btf_map]
pub static CONTROL_ACTIVE: Array<u64, 1, { MMAPABLE as usize }> = Array::new();

#[btf_map]
pub static VIP_FILTER: Array<u64, { FILTER_WORDS as usize }> = Array::new();

#[btf_map]
pub static VIP_ADDRS: HashMap<AddrKey, u32, { placeholder::VIPS }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

#[btf_map]
pub static FLOOD: PerCpuArray<FloodWindow, { placeholder::VIPS }> = PerCpuArray::new();

#[btf_map]
pub static FLOOD_LIMITS: Array<u32, { placeholder::VIPS }> = Array::new();

#[btf_map]
pub static REPLY_BUCKET: PerCpuArray<ReplyBucket, 1> = PerCpuArray::new();

#[btf_map]
pub static VIP_STATS: PerCpuArray<TrafficCounters, { placeholder::VIPS }> = PerCpuArray::new();

#[btf_map]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters, { placeholder::BACKENDS }> =
    PerCpuArray::new();

// Userspace's own (`lb_abi::writer`): in the object so that they are made,
// and later pinned, with the maps they describe.
#[btf_map]
pub static WRITER_STATE: Array<WriterState, 1> = Array::new();

#[btf_map]
pub static MEMBERS: Array<Member, { placeholder::BACKENDS }> = Array::new();

#[btf_map]
pub static GLOBAL_STATS: PerCpuArray<u64, { GLOBAL_COUNTERS as usize }> = PerCpuArray::new();

/// Maglev ring size M, set by the loader. Read-only data: the verifier sees
/// a constant.
#[unsafe(no_mangle)]
static RING_SIZE: u32 = lb_abi::limits::DEFAULT_RING_SIZE;

/// New flows per second per CPU past which they are not recorded; 0 = no
/// limit. Set by the loader.
#[unsafe(no_mangle)]
static FLOOD_THRESHOLD: u32 = lb_abi::limits::DEFAULT_NEW_FLOWS_PER_CPU_PER_SEC;

/// Idle time after which a UDP flow entry is not honoured, ns. Set by the
/// loader.
#[unsafe(no_mangle)]
static UDP_FLOW_TIMEOUT_NS: u64 = lb_abi::limits::DEFAULT_UDP_FLOW_TIMEOUT_NS;

/// How long a TCP flow answered from a flow cache may go without its table
/// entry being touched, ns (`select::keep_tcp_entry`). Set by the loader.
#[unsafe(no_mangle)]
static TCP_REFRESH_NS: u64 = lb_abi::limits::DEFAULT_TCP_REFRESH_NS;

#[inline(always)]
pub fn tcp_refresh_ns() -> u64 {
    // SAFETY: as for `ring_size`.
    unsafe { core::ptr::read_volatile(&TCP_REFRESH_NS) }
}

/// Cost of one too-big reply, ns (`lb_abi::reply_limit`); 0 = no limit.
/// Set by the loader.
#[unsafe(no_mangle)]
static REPLY_COST_NS: u64 =
    lb_abi::reply_limit::reply_cost_ns(lb_abi::limits::DEFAULT_TOO_BIG_REPLIES_PER_CPU_PER_SEC);

#[inline(always)]
pub fn reply_cost_ns() -> u64 {
    // SAFETY: as for `ring_size`.
    unsafe { core::ptr::read_volatile(&REPLY_COST_NS) }
}

/// Length of a kernel tick, ns (see `lb_abi::clock`). Set by the loader;
/// the default is a 250 Hz kernel's.
#[unsafe(no_mangle)]
static TICK_NS: u64 = 4_000_000;

/// Non-zero only in the benchmark harness: after building the encapsulated
/// frame, undo it, so `BPF_PROG_TEST_RUN` with `repeat` runs the full VIP
/// path every time. The verifier prunes the branch when zero.
#[unsafe(no_mangle)]
static BENCH_RESTORE: u8 = 0;

/// Non-zero only in the concurrency stress test: readers on CPU 0 pause
/// for this many clock reads between reading a VIP's word and its ring,
/// and between finding a flow entry and copying it, so that the writer and
/// other CPUs race them as a slow or interrupted CPU would. The verifier
/// prunes the pauses when zero.
#[unsafe(no_mangle)]
static READER_PAUSE_TURNS: u32 = 0;

#[inline(always)]
pub fn reader_pause_turns() -> u32 {
    // SAFETY: as for `ring_size`.
    unsafe { core::ptr::read_volatile(&READER_PAUSE_TURNS) }
}

#[inline(always)]
pub fn ring_size() -> u32 {
    // SAFETY: a plain read of an initialised static; volatile keeps the
    // compiler from folding the default value in.
    unsafe { core::ptr::read_volatile(&RING_SIZE) }
}

#[inline(always)]
pub fn flood_threshold() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FLOOD_THRESHOLD) }
}

#[inline(always)]
pub fn tick_ns() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&TICK_NS) }
}

#[inline(always)]
pub fn udp_flow_timeout_ns() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&UDP_FLOW_TIMEOUT_NS) }
}

/// Non-zero: flow-table hits may be answered from the flow cache, and VIP
/// lookups from the VIP cache (see `lb_abi::flow_cache` for why it is a
/// switch). Set by the loader; the verifier prunes the cache paths when
/// zero.
#[unsafe(no_mangle)]
static CACHES_ENABLED: u8 = 0;

#[inline(always)]
pub fn caches_enabled() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CACHES_ENABLED) != 0 }
}

/// Non-zero: the flow cache's per-CPU gate may bypass a cache that misses
/// most lookups (`lb_abi::flow_cache::FlowCacheGate`). Set by the loader.
#[unsafe(no_mangle)]
static FLOW_CACHE_GATED: u8 = 1;

#[inline(always)]
pub fn flow_cache_gated() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FLOW_CACHE_GATED) != 0 }
}

/// Slots of the flow cache per CPU, and of its epoch array; both maps are
/// sized to it by the loader.
#[unsafe(no_mangle)]
static FLOW_CACHE_SLOTS: u32 = DEFAULT_FLOW_CACHE_SLOTS;

#[inline(always)]
pub fn flow_cache_slots() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FLOW_CACHE_SLOTS) }
}

#[inline(always)]
pub fn bench_restore() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&BENCH_RESTORE) != 0 }
}
