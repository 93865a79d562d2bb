//! What a TCP flow-table hit costs when many flows are active at once.
//!
//! `xdp_paths` times one flow over and over, so its hit rows always hit the
//! per-CPU flow cache. Here N distinct established flows take turns, one
//! packet each, as a busy node sees them: once N outgrows the cache, only
//! one flow per slot hits it and the others pay the cache probe on top of
//! the flow table. Each flow's packet is timed by a single
//! `BPF_PROG_TEST_RUN` run (no `repeat`: every run sees a different flow),
//! alternating between a dataplane with the caches on (gated, as deployed),
//! one with the cache gate off (every lookup probes the cache) and one
//! with the caches off, each going first in turn, then the empty program;
//! "net" subtracts the empty program's median, which carries the same
//! per-call timing cost. The
//! thread is pinned to one CPU, because the cache is per CPU. The probes'
//! hit rate is printed twice, for the ungated cache: as the flows' slots
//! predict it, and as the `flow_cache_miss` counter saw it; and the share
//! of lookups the gated cache sent straight to the table.
//!
//! Run as root: `cargo bench -p lb-bench --bench flow_churn`.
//! `LB_BENCH_PASSES` sets the timed passes over each flow set (default 3).

mod common;

use common::{
    bench_options, env, established_flows, global_counter, loaded, loaded_with, median,
    place_flows, single_run_ns, spare_dataplane,
};
use lb_abi::{
    flow_cache::{DEFAULT_FLOW_CACHE_SLOTS, flow_cache_index},
    stats::GlobalCounter,
};
use lb_dataplane::{LoadOptions, ProgramKind};
use lb_testbed::pin_to_cpu;

/// The share of `frames` that hit the flow cache once the flows have
/// taken a few turns: a slot keeps the first flow that filled it while its
/// copy is current, so each occupied slot serves exactly one flow of the
/// set and the others sharing it miss on every pass.
fn expected_hit_rate(frames: &[Vec<u8>], slots: u32) -> f64 {
    let occupied: std::collections::HashSet<u32> = frames
        .iter()
        .map(|f| {
            let key = lb_model::parse(f).expect("a TCP frame").key;
            flow_cache_index(&key, slots)
        })
        .collect();
    occupied.len() as f64 / frames.len() as f64
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let passes = env("LB_BENCH_PASSES", 3).max(1);
    pin_to_cpu(0);
    let (tx, xdp_pass) = (3, 2);
    println!(
        "TCP flow-table hits with N flows taking turns: ns/packet, median of single runs over {passes} passes (BPF_PROG_TEST_RUN, CPU 0)"
    );
    println!();
    println!(
        "| active flows | cache slots | probe hit rate, expected / counted (ungated) | gated: bypassed | caches on, gated | on, ungated | caches off | gated − off | ungated − off | empty program |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let default = DEFAULT_FLOW_CACHE_SLOTS;
    for (n, slots) in [
        (1, default),
        (1_024, default),
        (4_096, default),
        (16_384, default),
        (65_536, default),
        (16_384, 32_768),
        (65_536, 131_072),
    ] {
        // Fresh dataplanes per set, so no set inherits another's entries.
        let cached = |flow_cache_gate| {
            loaded_with(&LoadOptions {
                new_flows_per_cpu_per_sec: 0,
                per_cpu_caches: true,
                flow_cache_slots: slots,
                flow_cache_gate,
                ..bench_options()
            })
        };
        let _spare = spare_dataplane(&LoadOptions {
            flow_cache_slots: slots,
            ..bench_options()
        });
        let mut sides = [cached(true), cached(false), loaded(0, false)];
        let frames = established_flows(n);
        for dp in &mut sides {
            place_flows(dp, &frames);
        }
        let counters = |dp: &mut lb_dataplane::Dataplane| {
            [GlobalCounter::FlowCacheMiss, GlobalCounter::FlowCacheBypass]
                .map(|c| global_counter(dp, c))
        };
        let before = [counters(&mut sides[0]), counters(&mut sides[1])];
        // Flows of one packet per pass would give too few samples at N = 1.
        let rounds = (passes * 4_096).div_ceil(n).max(passes);
        let mut timed = [const { Vec::new() }; 3];
        let mut t_empty = Vec::new();
        {
            let runners = sides
                .each_ref()
                .map(|dp| dp.runner(ProgramKind::Balancer).unwrap());
            let empty = sides[0].runner(ProgramKind::Pass).unwrap();
            for _ in 0..rounds {
                for (i, f) in frames.iter().enumerate() {
                    // The first run of a frame pays for its cold lines
                    // more than the next: each side goes first in turn.
                    for k in 0..runners.len() {
                        let side = (i + k) % runners.len();
                        timed[side].push(single_run_ns(&runners[side], f, tx));
                    }
                    t_empty.push(single_run_ns(&empty, f, xdp_pass));
                }
            }
        }
        let lookups = (u64::from(rounds) * u64::from(n)) as f64;
        let bypassed = (counters(&mut sides[0])[1] - before[0][1]) as f64 / lookups;
        let [ungated_misses, _] = counters(&mut sides[1]);
        let hit_rate = 1.0 - (ungated_misses - before[1][0]) as f64 / lookups;
        let empty_ns = median(t_empty);
        let [gated, ungated, off] = timed.map(|t| median(t) - empty_ns);
        println!(
            "| {n} | {slots} | {:.0}% / {:.0}% | {:.0}% | {gated:.0} | {ungated:.0} | {off:.0} | {:+.0} | {:+.0} | {empty_ns:.0} |",
            expected_hit_rate(&frames, slots) * 100.0,
            hit_rate * 100.0,
            bypassed * 100.0,
            gated - off,
            ungated - off,
        );
    }
}
