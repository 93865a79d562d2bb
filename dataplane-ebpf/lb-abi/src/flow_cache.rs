//! The flow cache: a per-CPU, direct-mapped copy of recent flow-table hits.
//!
//! A flow-table hit is a hash-map lookup: hashing a 40-byte key and walking
//! a bucket. The cache answers a flow's next packets with one array
//! load and a key compare instead. It holds copies of what [`FLOWS`]
//! entries said and never decides anything itself: a copy is taken only of
//! an entry that passed the table's VIP and backend generation checks, and
//! honoured only while none of those generations can have changed since.
//!
//! Maps:
//! - [`FLOW_CACHE`]: per-CPU array of [`FLOW_CACHE_SLOTS`] [`FlowCacheSlot`]s
//!   (a load-time global, default [`DEFAULT_FLOW_CACHE_SLOTS`]), indexed by
//!   [`flow_cache_index`]. Written and read by the balancer only.
//! - [`FLOW_CACHE_EPOCHS`]: array of [`FLOW_CACHE_SLOTS`] `u64`, shared by
//!   all CPUs. Every write to the flow table for a key bumps its index's
//!   epoch (atomically); a cached copy is honoured only while the epoch it
//!   was filled under is current. So a flow placed anew on one CPU (a SYN)
//!   is never answered from another CPU's older copy, and userspace
//!   invalidates every copy by bumping every epoch (after clearing flows).
//! - [`FLOW_CACHE_GATE`]: per-CPU array of one [`FlowCacheGate`]: whether
//!   this CPU asks its cache at all (below).
//! - [`FLOW_CACHE_GENERATION_EPOCH`]: array of one `u64`, written by
//!   userspace only. Userspace bumps it after every write that can make an
//!   entry fail the generation checks: a VIP's generation changing in
//!   [`VIP_GENERATIONS`] and a backend id being cleared in [`BACKENDS`]. A
//!   copy is honoured only under the generation epoch it was taken under
//!   (read before the checks were made), so a hit needs neither map: one
//!   shared, read-mostly word stands for both. A config change thus drops
//!   every CPU's copies at once; each flow's next packet refills its slot
//!   from the table.
//!
//! A miss fills the slot only when the slot holds no current copy (empty,
//! or either epoch has moved on) or holds the flow's own (a UDP copy past
//! its time, renewed from the table). A current copy of another flow stays: with
//! more active flows than slots, flows sharing a slot would otherwise evict
//! each other on every packet, each miss paying a 96-byte slot write on top
//! of the table lookup (the `flow_churn` bench measures it). A slot turns
//! over when a flow-table write at its index bumps the epoch, that is,
//! whenever a new flow hashing there is placed.
//!
//! A probe that misses is not free: it reads a slot and an epoch nobody
//! read lately, two or three cache lines from memory, before the table
//! lookup it did not save. With many more active flows than slots, few
//! lookups hit (6% at 65,536 flows over 4,096 slots), and the cache costs
//! the packet more than it saves (`benches/README.md`, "Against Katran").
//! So each CPU gates its cache ([`FLOW_CACHE_GATE`], a [`FlowCacheGate`]):
//! it counts, of every [`GATE_WINDOW`] lookups, the wasted probes: misses
//! at a slot that holds a current copy of another flow, which therefore
//! cannot even take this flow's. (A miss that fills its slot is the cache
//! warming up, not waste: counting those would shut a cold cache before
//! it filled.) Once a window wasted more than [`GATE_MAX_WASTED`] (under
//! about a third answered, where the cache stops paying on this host), and
//! while each later window wastes more than [`GATE_KEEP_WASTED`], only a
//! sample of lookups probes, the rest going straight to the table (counted
//! as `flow_cache_bypass`): one in [`GATE_RECHECK_SAMPLE`] in the first
//! bypassed window, so that a short bad stretch shuts the cache only as
//! long as it took to judge it, then one in [`GATE_SAMPLE`]. The sampled
//! probes keep filling free slots and measuring, [`GATE_JUDGED`] of them a
//! window, so a working set that shrinks back into the cache has it again
//! within two bypassed windows. The gate changes which structure answers,
//! never the answer: a bypassed lookup is what the table says, as with the
//! caches off. (What does change is what a flow whose table entry the LRU
//! evicted gets: a copy no longer asked for cannot answer for it. Busy TCP
//! flows keep their entries either way, below.) The load-time global
//! [`FLOW_CACHE_GATED`] turns the gate off.
//!
//! UDP flows expire after an idle timeout, judged by the table entry's
//! last-seen time, which every packet of the flow used to write. A copy
//! keeps the time it last wrote (or read) there, [`FlowCacheSlot::seen_ns`];
//! the table's time is that or newer, so while the copy's is within the
//! timeout the flow lives and the copy answers. A packet answered so writes
//! the table's time again (one table lookup) only once the copy's is older
//! than the timeout >> [`UDP_REFRESH_SHIFT`]; past the timeout the table
//! decides, as without the cache. So the table's time lags a flow's last
//! packet by less than that interval, and a flow idle for between
//! timeout − timeout/64 and the timeout may be placed anew a little early
//! (30 s: after 29.5 s). ICMP errors about a flow refresh nothing.
//!
//! The epoch protocol needs the CPU to keep loads in order with loads and
//! stores with stores: a reader that sees a new epoch must see the table
//! write before it. x86-64 (TSO) does; weakly ordered CPUs (arm64) would
//! need acquire/release accesses the program does not use. So this cache
//! and the VIP cache ([`crate::vip_cache`]) are switched by the load-time
//! global [`CACHES_ENABLED`], which the loader sets only on x86-64; off,
//! every hit is a table lookup and every VIP a map lookup.
//!
//! [`FLOWS`]: crate::flow::FLOWS
//! [`VIP_GENERATIONS`]: crate::vip::VIP_GENERATIONS
//! [`BACKENDS`]: crate::backend::BACKENDS

use crate::{backend::Backend, flow::FlowKey, hash::ring_index};

/// Name of the per-CPU cache map in the eBPF object.
pub const FLOW_CACHE: &str = "FLOW_CACHE";
/// Name of the shared epoch array in the eBPF object.
pub const FLOW_CACHE_EPOCHS: &str = "FLOW_CACHE_EPOCHS";
/// Name of the per-CPU gate (an array of one) in the eBPF object.
pub const FLOW_CACHE_GATE: &str = "FLOW_CACHE_GATE";
/// Name of the global that switches the gate on (non-zero, the default) or
/// off (every lookup probes the cache).
pub const FLOW_CACHE_GATED: &str = "FLOW_CACHE_GATED";
/// Name of the generation epoch (an array of one) in the eBPF object.
pub const FLOW_CACHE_GENERATION_EPOCH: &str = "FLOW_CACHE_GENERATION_EPOCH";
/// Name of the global that switches both per-CPU caches on (non-zero) or
/// off.
pub const CACHES_ENABLED: &str = "CACHES_ENABLED";
/// Name of the global holding the TCP refresh interval, ns (see
/// [`FlowCacheSlot::seen_ns`]).
pub const TCP_REFRESH_NS: &str = "TCP_REFRESH_NS";
/// Name of the global holding the slot count per CPU (and of epochs), set
/// by the loader.
pub const FLOW_CACHE_SLOTS: &str = "FLOW_CACHE_SLOTS";
/// Default slots per CPU: 4096 × 96 bytes = 384 KiB per CPU, about what a
/// core's L2 holds. The `flow_churn` bench shows where it pays.
pub const DEFAULT_FLOW_CACHE_SLOTS: u32 = 4096;
/// Most slots per CPU: 24 MiB per CPU. Past a working set that size the
/// flow table alone is the better deal; turn the caches off instead.
pub const MAX_FLOW_CACHE_SLOTS: u32 = 1 << 18;

/// One cached flow-table hit: what the hit uses of the entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheSlot {
    /// (An empty slot is all zero; its key's family 0 matches no packet.)
    pub key: FlowKey,
    /// The entry's backend.
    pub backend: Backend,
    /// The entry's backend id.
    pub backend_id: u32,
    /// Stats index of the VIP that placed the flow.
    pub vip_index: u32,
    /// [`FLOW_CACHE_EPOCHS`] at the slot's index when the copy was taken.
    pub epoch: u64,
    /// [`FLOW_CACHE_GENERATION_EPOCH`] when the copy was taken.
    pub generation_epoch: u64,
    /// UDP: the table entry's last-seen time ([`crate::clock`]) as this
    /// CPU last wrote or read it. TCP: when this CPU last touched the
    /// table entry; past [`TCP_REFRESH_NS`] a packet answered from the copy
    /// touches it again (or writes it back if the LRU evicted it), so the
    /// LRU never takes a busy flow answered from caches for an idle one.
    pub seen_ns: u64,
}

/// Probes per gate window.
pub const GATE_WINDOW: u32 = 256;
/// Wasted probes in a window above which the next window bypasses the
/// cache: two thirds of it. `flow_churn` and `katran_ab` put the
/// break-even hit rate on this host between a quarter (the cache still
/// loses) and the 94% at which it saves most of a cold table lookup; a
/// third keeps the cache wherever it clearly pays.
pub const GATE_MAX_WASTED: u32 = GATE_WINDOW * 2 / 3;
/// Sampled probes a bypassed window is judged on. Each stands for
/// `GATE_WINDOW / GATE_JUDGED` lookups of the window's count.
pub const GATE_JUDGED: u32 = 16;
/// In the first bypassed window after an open one, one lookup in this
/// many still probes the cache: that window lasts as long as the open one
/// that shut it (`GATE_JUDGED * GATE_RECHECK_SAMPLE` = [`GATE_WINDOW`]
/// lookups), so a short stretch of colliding flows costs the cache one
/// window, not several.
pub const GATE_RECHECK_SAMPLE: u32 = 16;
/// From the second bypassed window in a row on, one lookup in this many
/// still probes. A probe that misses costs 100–300 ns on this host (cold
/// slot and epoch lines, and their page walks): at one in 16 throughout,
/// the sampled probes kept the bypassed cache 30–60 ns a packet over the
/// table alone at 65,536 flows.
pub const GATE_SAMPLE: u32 = 64;
/// Wasted lookups in a bypassed window above which the next window
/// bypasses too: half of it. Lower than [`GATE_MAX_WASTED`] because a
/// bypassed window is judged on only [`GATE_JUDGED`] probes: at a quarter
/// answered (where the cache still loses) a third of such windows would
/// reopen it on chance alone, and at the 94% answered of a working set
/// that fits, none stays shut.
pub const GATE_KEEP_WASTED: u32 = GATE_WINDOW / 2;

/// One CPU's view of whether its flow cache pays: the wasted probes of the
/// current window, and the last windows' verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheGate {
    /// Probes so far in this window, each sampled one counted for the
    /// lookups it stands for.
    pub probes: u32,
    /// Of them, misses whose slot kept another flow's current copy.
    pub wasted: u32,
    /// 0 while the cache is asked; 1 in the first bypassed window (one
    /// lookup in [`GATE_RECHECK_SAMPLE`] probes), 2 in later ones (one in
    /// [`GATE_SAMPLE`]).
    pub bypass: u32,
    /// A xorshift state stepped on every bypassed lookup, which probes when
    /// the step is a multiple of the sample rate. Not a counter: traffic
    /// that cycles through its flows in a fixed order (a load generator's
    /// connections taking turns) would have a counter sample the same
    /// flows on every cycle, and judge the cache by them alone.
    pub sampler: u32,
}

impl FlowCacheGate {
    /// Whether this lookup goes straight to the table.
    #[inline(always)]
    pub fn skips(&mut self) -> bool {
        if self.bypass == 0 {
            return false;
        }
        // Any non-zero seed; zero is xorshift's one fixed point.
        let mut x = if self.sampler == 0 {
            0x9e37_79b9
        } else {
            self.sampler
        };
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.sampler = x;
        let rate = if self.bypass == 1 {
            GATE_RECHECK_SAMPLE
        } else {
            GATE_SAMPLE
        };
        !x.is_multiple_of(rate)
    }

    /// Records a probe, `wasted` if it missed and could not fill its slot;
    /// a full window sets the next one's verdict. While bypassing, a
    /// window ends after [`GATE_JUDGED`] sampled probes.
    #[inline(always)]
    pub fn record(&mut self, wasted: bool) {
        let weight = if self.bypass != 0 {
            GATE_WINDOW / GATE_JUDGED
        } else {
            1
        };
        self.probes += weight;
        self.wasted += u32::from(wasted) * weight;
        if self.probes >= GATE_WINDOW {
            let limit = if self.bypass != 0 {
                GATE_KEEP_WASTED
            } else {
                GATE_MAX_WASTED
            };
            self.bypass = if self.wasted > limit {
                (self.bypass + 1).min(2)
            } else {
                0
            };
            self.probes = 0;
            self.wasted = 0;
        }
    }
}

/// A cached UDP hit writes the table entry's last-seen time again once the
/// copy's is older than the UDP flow timeout >> this (1/64 of it).
pub const UDP_REFRESH_SHIFT: u32 = 6;

/// The cache slot (and epoch) of `key` among `slots`: its words folded by
/// XOR, the destination rotated so that swapping source and destination
/// moves it, spread by a Fibonacci multiply and scaled to the slot count
/// like a ring index (any count, no division).
#[inline(always)]
pub const fn flow_cache_index(key: &FlowKey, slots: u32) -> u32 {
    let src = key.src[0] ^ key.src[1] ^ key.src[2] ^ key.src[3];
    let dst = key.dst[0] ^ key.dst[1] ^ key.dst[2] ^ key.dst[3];
    let ports = key.src_port as u32 | (key.dst_port as u32) << 16;
    let fold = src ^ dst.rotate_left(13) ^ ports ^ key.proto as u32;
    ring_index(fold.wrapping_mul(0x9e37_79b1), slots)
}

/// Whether two keys are the same flow: five 8-byte words, one branch.
/// (The reserved bytes are zero in every key the program builds.)
#[inline(always)]
pub const fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    // SAFETY: FlowKey is 40 bytes, 8-aligned, plain integers throughout.
    let (a, b) = unsafe {
        (
            &*(a as *const FlowKey as *const [u64; 5]),
            &*(b as *const FlowKey as *const [u64; 5]),
        )
    };
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<FlowCacheSlot>(), 96);
        assert_eq!(size_of::<FlowCacheGate>(), 16);
    }

    /// Runs a window of probes through `gate`, `wasted` of them wasted,
    /// and returns how many of `then` lookups afterwards skip the cache.
    fn after_window(gate: &mut FlowCacheGate, wasted: u32, then: u32) -> u32 {
        for i in 0..GATE_WINDOW {
            gate.record(i < wasted);
        }
        (0..then).filter(|_| gate.skips()).count() as u32
    }

    #[test]
    fn gate_bypasses_only_after_a_window_that_mostly_wasted_its_probes() {
        let mut gate = FlowCacheGate::default();
        // A fresh gate probes everything until a window says otherwise.
        assert!(!gate.skips());
        // Exactly at the limit the cache stays on.
        assert_eq!(after_window(&mut gate, GATE_MAX_WASTED, 64), 0);
        assert_eq!(gate.bypass, 0);
        // One wasted probe more: the next window bypasses all but about
        // one in GATE_RECHECK_SAMPLE lookups.
        let mut gate = FlowCacheGate::default();
        let lookups = GATE_RECHECK_SAMPLE * 64;
        let probed = lookups - after_window(&mut gate, GATE_MAX_WASTED + 1, lookups);
        assert!((32..=96).contains(&probed), "{probed} of {lookups} probed");
        assert_eq!(gate.bypass, 1);
        // The window restarts counting at each verdict.
        assert_eq!((gate.probes, gate.wasted), (0, 0));
    }

    /// Runs one bypassed window of lookups, `wasted` of its sampled
    /// probes wasted, and says whether the next window bypasses.
    fn bypassed_window(gate: &mut FlowCacheGate, wasted: u32) -> bool {
        let mut sampled = 0;
        while sampled < GATE_JUDGED {
            if !gate.skips() {
                gate.record(sampled < wasted);
                sampled += 1;
            }
        }
        gate.bypass != 0
    }

    #[test]
    fn a_bypassed_window_stays_shut_while_more_than_half_is_wasted() {
        let shut = || {
            let mut gate = FlowCacheGate::default();
            after_window(&mut gate, GATE_WINDOW, 0);
            gate
        };
        let half = GATE_KEEP_WASTED / (GATE_WINDOW / GATE_JUDGED);
        assert!(bypassed_window(&mut shut(), half + 1));
        assert!(!bypassed_window(&mut shut(), half));
    }

    #[test]
    fn a_cache_shut_twice_in_a_row_is_sampled_less() {
        let mut gate = FlowCacheGate::default();
        after_window(&mut gate, GATE_WINDOW, 0);
        assert!(bypassed_window(&mut gate, GATE_JUDGED));
        assert_eq!(gate.bypass, 2);
        let lookups = GATE_SAMPLE * 64;
        let probed = (0..lookups).filter(|_| !gate.skips()).count();
        assert!((32..=96).contains(&probed), "{probed} of {lookups} probed");
        // It stays at that rate while shut, and opens on one good window.
        assert!(bypassed_window(&mut gate, GATE_JUDGED));
        assert_eq!(gate.bypass, 2);
        assert!(!bypassed_window(&mut gate, 0));
        assert_eq!(gate.bypass, 0);
    }

    #[test]
    fn sampled_probes_that_hit_turn_the_cache_back_on() {
        let mut gate = FlowCacheGate::default();
        after_window(&mut gate, GATE_WINDOW, 0);
        assert_eq!(gate.bypass, 1);
        // While bypassing, only the sampled lookups probe, each standing
        // for the lookups it samples; once a window of lookups' worth of
        // them hits (or fills), every lookup probes again.
        let (mut lookups, mut probes) = (0, 0);
        while gate.bypass != 0 {
            lookups += 1;
            if !gate.skips() {
                gate.record(false);
                probes += 1;
            }
        }
        assert_eq!(probes, GATE_JUDGED);
        let expected = GATE_JUDGED * GATE_RECHECK_SAMPLE;
        assert!(
            (expected / 2..=expected * 2).contains(&lookups),
            "reopened after {lookups} lookups"
        );
        assert!((0..GATE_SAMPLE * 2).all(|_| !gate.skips()));
    }

    #[test]
    fn the_sampler_does_not_follow_a_cycle_of_flows() {
        // Flows taking turns in a fixed cycle whose length is a multiple of
        // GATE_SAMPLE: every flow of the cycle must get sampled, in about
        // its share (16 here), not the same few of them on every turn.
        let mut gate = FlowCacheGate {
            bypass: 2,
            ..FlowCacheGate::default()
        };
        let cycle = GATE_SAMPLE as usize * 4;
        let mut sampled = vec![0u32; cycle];
        for lookup in 0..cycle * GATE_SAMPLE as usize * 16 {
            if !gate.skips() {
                sampled[lookup % cycle] += 1;
            }
        }
        assert!(
            sampled.iter().all(|&n| (4..=40).contains(&n)),
            "{sampled:?}"
        );
    }

    #[test]
    fn index_is_in_range_and_depends_on_every_field() {
        let key = crate::flow::sample_key();
        let index = |k: &FlowKey| flow_cache_index(k, DEFAULT_FLOW_CACHE_SLOTS);
        assert!(index(&key) < DEFAULT_FLOW_CACHE_SLOTS);
        for slots in [1, 3, 4096, MAX_FLOW_CACHE_SLOTS] {
            assert!(flow_cache_index(&key, slots) < slots);
        }
        let mut swapped = key;
        (swapped.src, swapped.dst) = (key.dst, key.src);
        assert_ne!(index(&key), index(&swapped));
        let mut other_port = key;
        other_port.src_port = 11;
        assert_ne!(index(&key), index(&other_port));
        assert!(same_flow(&key, &key));
        assert!(!same_flow(&key, &other_port));
        let mut other_family = key;
        other_family.family = 4;
        assert!(!same_flow(&key, &other_family));
    }
}
