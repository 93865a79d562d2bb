//! The flow table's eviction lists: one for all CPUs (`FlowTableLru::Common`,
//! the default) against one per CPU (`FlowTableLru::PerCpu`,
//! `BPF_F_NO_COMMON_LRU`).
//!
//! Two questions. What an insert costs when the table is full and every
//! insert evicts, from one CPU alone and from both CPUs at once (the shared
//! list's lock is the difference): each CPU's thread sends SYNs of its own
//! flows, four times as many as the table holds, the flood guard off so
//! each is recorded, each timed by a single `BPF_PROG_TEST_RUN` run, less
//! the empty program's median. And whether a flow that moves to the other
//! CPU keeps its entry while the CPU that placed it goes on placing new
//! flows: the per-CPU lists evict from the placing CPU's share.
//!
//! Run as root: `cargo bench -p lb-bench --bench lru_contention`.
//! `LB_BENCH_PASSES` sets the timed passes over each thread's flows
//! (default 3).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{bench_options, client_frame, env, loaded_with, median};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Dataplane, FlowTableLru, LoadOptions, ProgramKind, Runner};
use lb_testbed::pin_to_cpu;

/// Flow-table entries: small, so that the flows below overflow it.
const TABLE: u32 = 16_384;

/// SYNs (`syn`) or ACKs of `n` flows to the v4 TCP VIP, from distinct
/// clients in 198.18.0.0/15, the block numbered `block`.
fn flows(block: u32, n: u32, syn: bool) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * (1 << 17);
            let client = Ipv4Addr::from(base + i);
            client_frame(IpAddr::V4(client), 40_000, "10.0.0.100", syn)
        })
        .collect()
}

fn loaded(lru: FlowTableLru) -> Dataplane {
    loaded_with(&LoadOptions {
        new_flows_per_cpu_per_sec: 0,
        per_cpu_caches: false,
        flow_table_entries: TABLE,
        flow_table_lru: lru,
        ..bench_options()
    })
}

/// Single-run times of `frames`, `passes` times over, on `cpu`.
fn timed(runner: &Runner<'_>, frames: &[Vec<u8>], passes: u32, cpu: usize) -> Vec<f64> {
    pin_to_cpu(cpu);
    let mut t = Vec::with_capacity(frames.len() * passes as usize);
    for _ in 0..passes {
        for f in frames {
            let r = runner.run(f).expect("test run");
            assert_eq!(r.action, 3, "a SYN to the VIP is sent");
            t.push(r.duration.as_nanos() as f64);
        }
    }
    t
}

fn empty_ns(dp: &Dataplane, frame: &[u8]) -> f64 {
    pin_to_cpu(0);
    let runner = dp.runner(ProgramKind::Pass).unwrap();
    median(
        (0..20_000)
            .map(|_| runner.run(frame).unwrap().duration.as_nanos() as f64)
            .collect(),
    )
}

/// Median net ns per SYN on CPU 0 alone, then on CPUs 0 and 1 together.
fn inserts(dp: &Dataplane, passes: u32) -> (f64, [f64; 2]) {
    let mine = [flows(0, 4 * TABLE, true), flows(1, 4 * TABLE, true)];
    let empty = empty_ns(dp, &mine[0][0]);
    let runner = dp.runner(ProgramKind::Balancer).unwrap();
    // Fill the table first: every timed insert evicts.
    timed(&runner, &mine[0], 1, 0);
    let alone = median(timed(&runner, &mine[0], passes, 0)) - empty;
    let together = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|cpu| {
                let frames = &mine[cpu];
                // The runner, not the dataplane, crosses: it only names
                // the program.
                let runner = dp.runner(ProgramKind::Balancer).unwrap();
                s.spawn(move || median(timed(&runner, frames, passes, cpu)))
            })
            .collect();
        let t: Vec<f64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        [t[0] - empty, t[1] - empty]
    });
    (alone, together)
}

/// Of flows placed on CPU 0 whose packets then arrive on CPU 1, the share
/// that still hits the table after CPU 0 placed `churn` new flows.
fn moved_flows_kept(dp: &mut Dataplane, churn: u32) -> f64 {
    let moved = TABLE / 8;
    let acks = flows(2, moved, false);
    {
        let runner = dp.runner(ProgramKind::Balancer).unwrap();
        pin_to_cpu(0);
        for f in flows(2, moved, true) {
            runner.run(&f).unwrap();
        }
        pin_to_cpu(1);
        for f in &acks {
            runner.run(f).unwrap();
        }
        pin_to_cpu(0);
        for f in flows(3, churn, true) {
            runner.run(&f).unwrap();
        }
    }
    let before = dp
        .programmer()
        .stats()
        .unwrap()
        .global(GlobalCounter::TxFlowHit);
    {
        let runner = dp.runner(ProgramKind::Balancer).unwrap();
        pin_to_cpu(1);
        for f in &acks {
            runner.run(f).unwrap();
        }
    }
    let hits = dp
        .programmer()
        .stats()
        .unwrap()
        .global(GlobalCounter::TxFlowHit)
        - before;
    hits as f64 / f64::from(moved)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let passes = env("LB_BENCH_PASSES", 3).max(1);
    println!(
        "Flow-table inserts into a full table of {TABLE} entries: net ns/SYN, median of single runs over {passes} passes of {} flows per CPU (BPF_PROG_TEST_RUN)",
        4 * TABLE
    );
    println!();
    println!(
        "| eviction lists | CPU 0 alone | CPU 0, both inserting | CPU 1, both inserting | moved flows kept after {TABLE} new on the old CPU | after {} |",
        TABLE / 4
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, lru) in [
        ("one for all CPUs (default)", FlowTableLru::Common),
        ("one per CPU", FlowTableLru::PerCpu),
    ] {
        let (alone, together) = inserts(&loaded(lru), passes);
        let kept_full = moved_flows_kept(&mut loaded(lru), TABLE);
        let kept_quarter = moved_flows_kept(&mut loaded(lru), TABLE / 4);
        println!(
            "| {name} | {alone:.0} | {:.0} | {:.0} | {:.0}% | {:.0}% |",
            together[0],
            together[1],
            kept_full * 100.0,
            kept_quarter * 100.0
        );
    }
}
