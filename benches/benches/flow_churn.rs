//! What a TCP flow-table hit costs when many flows are active at once.
//!
//! `xdp_paths` times one flow over and over, so its hit rows always hit the
//! per-CPU flow cache. Here N distinct established flows take turns, one
//! packet each, as a busy node sees them: once N outgrows the cache, only
//! one flow per slot hits it and the others pay the cache probe on top of
//! the flow table. Each flow's packet is timed by a single
//! `BPF_PROG_TEST_RUN` run (no `repeat`: every run sees a different flow),
//! alternating between a dataplane with the caches on, one with them off,
//! and the empty program; "net" subtracts the empty program's median, which
//! carries the same per-call timing cost. The thread is pinned to one CPU,
//! because the cache is per CPU. The hit rate is printed twice: as the
//! flows' slots predict it, and as the `flow_cache_miss` counter saw it.
//!
//! Run as root: `cargo bench -p lb-bench --bench flow_churn`.
//! `LB_BENCH_PASSES` sets the timed passes over each flow set (default 3).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{bench_options, client_frame, env, loaded, loaded_with, median};
use lb_abi::{
    flow_cache::{DEFAULT_FLOW_CACHE_SLOTS, flow_cache_index},
    stats::GlobalCounter,
};
use lb_dataplane::{Dataplane, LoadOptions, ProgramKind, Runner};
use lb_testbed::pin_to_cpu;

/// `n` established flows to the v4 TCP VIP, from distinct client
/// addresses in 198.18.0.0/15 (the benchmarking range).
fn flows(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
            client_frame(IpAddr::V4(client), 40_000, "10.0.0.100", false)
        })
        .collect()
}

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

fn single_run_ns(runner: &Runner<'_>, frame: &[u8], want: u32) -> f64 {
    let r = runner.run(frame).expect("test run");
    assert_eq!(r.action, want, "path took an unexpected action");
    r.duration.as_nanos() as f64
}

/// Records every flow in `dp`'s flow table (the flood guard is off, so a
/// non-SYN miss is recorded) and checks the next packet of each hits.
fn place(dp: &mut Dataplane, frames: &[Vec<u8>]) {
    let before = global(dp, GlobalCounter::TxFlowHit);
    {
        let runner = dp.runner(ProgramKind::Balancer).unwrap();
        for _ in 0..2 {
            for f in frames {
                runner.run(f).unwrap();
            }
        }
    }
    let hits = global(dp, GlobalCounter::TxFlowHit) - before;
    assert_eq!(hits, frames.len() as u64, "every flow recorded");
}

/// One of the balancer's global counters, summed over CPUs.
fn global(dp: &mut Dataplane, counter: GlobalCounter) -> u64 {
    dp.programmer().stats().unwrap().global(counter)
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
        "| active flows | cache slots | flow-cache hit rate, expected / counted | caches on, net | caches off, net | on − off | empty program |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
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
        let mut on = loaded_with(&LoadOptions {
            new_flows_per_cpu_per_sec: 0,
            per_cpu_caches: true,
            flow_cache_slots: slots,
            ..bench_options()
        });
        let mut off = loaded(0, false);
        let frames = flows(n);
        place(&mut on, &frames);
        place(&mut off, &frames);
        let misses_before = global(&mut on, GlobalCounter::FlowCacheMiss);
        // Flows of one packet per pass would give too few samples at N = 1.
        let rounds = (passes * 4_096).div_ceil(n).max(passes);
        let (mut t_on, mut t_off, mut t_empty) = (Vec::new(), Vec::new(), Vec::new());
        {
            let (cached, uncached) = (
                on.runner(ProgramKind::Balancer).unwrap(),
                off.runner(ProgramKind::Balancer).unwrap(),
            );
            let empty = on.runner(ProgramKind::Pass).unwrap();
            for _ in 0..rounds {
                for f in &frames {
                    t_on.push(single_run_ns(&cached, f, tx));
                    t_off.push(single_run_ns(&uncached, f, tx));
                    t_empty.push(single_run_ns(&empty, f, xdp_pass));
                }
            }
        }
        let lookups = u64::from(rounds) * u64::from(n);
        let measured = 1.0
            - (global(&mut on, GlobalCounter::FlowCacheMiss) - misses_before) as f64
                / lookups as f64;
        let empty_ns = median(t_empty);
        let (on_net, off_net) = (median(t_on) - empty_ns, median(t_off) - empty_ns);
        println!(
            "| {n} | {slots} | {:.0}% / {:.0}% | {on_net:.0} | {off_net:.0} | {:+.0} | {empty_ns:.0} |",
            expected_hit_rate(&frames, slots) * 100.0,
            measured * 100.0,
            on_net - off_net,
        );
    }
}
