//! Nanoseconds per packet of the XDP balancer, per path, in the kernel.
//!
//! Each path is timed with `BPF_PROG_TEST_RUN` and a large `repeat`. The
//! kernel does not restore the frame between repetitions, so the dataplane
//! is loaded with `bench_restore`: after building the encapsulated frame the
//! program undoes it, and every repetition runs the full path (the restore's
//! cost is included, as in the Katran figures we compare with). The empty
//! `pass` program, timed the same way, is printed beside: it is the cost of
//! the test loop itself.
//!
//! The Katran columns quote DESIGN.md §6's recorded figures; `katran_ab`
//! times Katran itself on this host, which is what the targets are
//! checked against.
//!
//! Run as root: `cargo bench -p lb-bench --bench xdp_paths`.
//! `LB_BENCH_REPEAT` and `LB_BENCH_SAMPLES` change the effort;
//! `LB_BENCH_ONLY=<text>` times only the rows whose name contains it (and
//! the empty program), which keeps a profiler's samples on one path.

mod common;

use common::{env, frag_needed, frame, loaded, median, time, udp_frame};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Decap, ProgramKind, Runner};
use lb_model::Model;

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; skip
    // the long measurement there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let repeat = env("LB_BENCH_REPEAT", 200_000);
    let samples = env("LB_BENCH_SAMPLES", 31);
    // The SYN rows measure a SYN past the flood guard (balanced, not
    // recorded), as Katran's figure does. With the default threshold each
    // one-second window's first 125,000 SYNs are recorded, and whichever
    // row the window opens in is timed partly on the recording path; a
    // threshold of 1 keeps every SYN row on one path.
    let mut dp = loaded(1, true);
    // Flow rows need their flows recorded first, so no guard here. With it
    // off, the same SYN measures recording a flow every time.
    let mut flows = loaded(0, true);
    // The flow table alone: what a hit costs when the flow cache misses.
    let mut uncached = loaded(0, false);
    // What a backend receives: the balancer's frame for a v4 SYN, as the
    // model of the balancer builds it; decap knows its backend's address.
    let tunnelled = Model::new(dp.programmer().state().clone())
        .process(&frame("192.0.2.9", "10.0.0.100", true))
        .frame;
    let backend: [u8; 4] = tunnelled[30..34].try_into().unwrap();
    let mut decap = Decap::load_for_bench().unwrap();
    decap.add_address(backend.into()).unwrap();
    decap.add_vip("10.0.0.100".parse().unwrap()).unwrap();

    let v4_ack = frame("192.0.2.1", "10.0.0.100", false);
    let v6_ack = frame("2001:db8:c::1", "2001:db8::100", false);
    let udp = udp_frame();
    // Place the flows, so the timed runs hit the flow table, and check
    // that they do.
    for dp in [&mut flows, &mut uncached] {
        {
            let runner = dp.runner(ProgramKind::Balancer).unwrap();
            for _ in 0..2 {
                for f in [&v4_ack, &v6_ack, &udp] {
                    runner.run(f).unwrap();
                }
            }
        }
        let stats = dp.programmer().stats().unwrap();
        assert_eq!(stats.global(GlobalCounter::TxFlowHit), 3, "flows recorded");
    }

    let balancer = dp.runner(ProgramKind::Balancer).unwrap();
    let unguarded = flows.runner(ProgramKind::Balancer).unwrap();
    let table_only = uncached.runner(ProgramKind::Balancer).unwrap();
    let decapper = decap.runner().unwrap();
    let pass = dp.runner(ProgramKind::Pass).unwrap();
    let (tx, xdp_pass) = (3, 2);
    let icmp = frag_needed();

    let rows: [Row<'_>; 11] = [
        Row::new(
            "v4 SYN",
            &balancer,
            frame("192.0.2.1", "10.0.0.100", true),
            tx,
            Some(166.0),
        ),
        Row::new(
            "v4 flow-table hit",
            &unguarded,
            v4_ack.clone(),
            tx,
            Some(73.0),
        ),
        Row::new(
            "v4 non-VIP",
            &balancer,
            frame("192.0.2.1", "10.0.0.101", true),
            xdp_pass,
            Some(27.0),
        ),
        Row::new(
            "v6 SYN",
            &balancer,
            frame("2001:db8:c::1", "2001:db8::100", true),
            tx,
            Some(172.0),
        ),
        Row::new("v6 flow-table hit", &unguarded, v6_ack, tx, Some(67.0)),
        Row::new(
            "v4 flow-table hit, caches off (the table alone)",
            &table_only,
            v4_ack,
            tx,
            None,
        ),
        Row::new("v4 UDP flow-table hit", &unguarded, udp, tx, None),
        Row::new(
            "v4 ICMP frag-needed steered to its flow's backend",
            &unguarded,
            icmp,
            tx,
            None,
        ),
        Row::new(
            "v4 SYN, flood guard off (flow recorded every time)",
            &unguarded,
            frame("192.0.2.1", "10.0.0.100", true),
            tx,
            None,
        ),
        // Katran: "about 6 ns over an empty program".
        Row::new(
            "decap IPIP (backend program)",
            &decapper,
            tunnelled,
            xdp_pass,
            Some(11.0),
        ),
        Row::new(
            "empty XDP program (`pass`)",
            &pass,
            frame("192.0.2.1", "10.0.0.101", true),
            xdp_pass,
            None,
        ),
    ];
    // The host is a shared VM whose speed drifts by tens of percent between
    // seconds: time every row once per round, many rounds, so drift hits
    // all rows alike, and take medians. "net" subtracts the empty program
    // timed in the same round.
    let empty_row = rows.len() - 1;
    let only = std::env::var("LB_BENCH_ONLY").ok();
    let timed = |i: usize| {
        i == empty_row
            || only
                .as_deref()
                .is_none_or(|text| rows[i].name.contains(text))
    };
    let mut raw = vec![Vec::new(); rows.len()];
    let mut net = vec![Vec::new(); rows.len()];
    for _ in 0..samples {
        let times: Vec<f64> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if timed(i) {
                    time(r.runner, &r.frame, repeat, r.want)
                } else {
                    f64::NAN
                }
            })
            .collect();
        for (i, ns) in times.iter().enumerate() {
            raw[i].push(*ns);
            net[i].push(ns - times[empty_row]);
        }
    }
    println!(
        "XDP programs, ns/packet: median of {samples} rounds × {repeat} runs (BPF_PROG_TEST_RUN)"
    );
    println!();
    println!(
        "| path | ours | ours, net of empty program | Katran, DESIGN.md §6 | §6 net (−5 ns) | ours/§6 | net/net |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, row) in rows.iter().enumerate().filter(|(i, _)| timed(*i)) {
        let (r, n) = (median(raw[i].clone()), median(net[i].clone()));
        match row.katran {
            Some(k) => println!(
                "| {} | {r:.0} | {n:.0} | {k:.0} | {:.0} | {:.2} | {:.2} |",
                row.name,
                k - 5.0,
                r / k,
                n / (k - 5.0)
            ),
            None => println!("| {} | {r:.0} | {n:.0} | | | | |", row.name),
        }
    }
}

/// One benchmarked path.
struct Row<'a> {
    name: &'static str,
    runner: &'a Runner<'a>,
    frame: Vec<u8>,
    want: u32,
    /// Katran's figure on this machine kind (DESIGN.md §6), ns.
    katran: Option<f64>,
}

impl<'a> Row<'a> {
    fn new(
        name: &'static str,
        runner: &'a Runner<'a>,
        frame: Vec<u8>,
        want: u32,
        katran: Option<f64>,
    ) -> Self {
        Self {
            name,
            runner,
            frame,
            want,
            katran,
        }
    }
}
