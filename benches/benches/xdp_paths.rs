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
//! Run as root: `cargo bench -p lb-bench --bench xdp_paths`.
//! `LB_BENCH_REPEAT` and `LB_BENCH_SAMPLES` change the effort.

use std::net::IpAddr;

use etherparse::PacketBuilder;
use lb_dataplane::{
    BackendConfig, Dataplane, LoadOptions, NodeConfig, ProgramKind, Protocol, Runner, VipConfig,
};

/// Katran's figures on this machine (DESIGN.md §6), ns.
const KATRAN: [(&str, f64); 5] = [
    ("v4 SYN", 166.0),
    ("v4 flow-table hit", 73.0),
    ("v4 non-VIP", 27.0),
    ("v6 SYN", 172.0),
    ("v6 flow-table hit", 67.0),
];

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn frame(src: &str, dst: &str, syn: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (
        src.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("same family"),
    };
    let tcp = ip.tcp(31_337, 80, 1, 64_000);
    let tcp = if syn { tcp.syn() } else { tcp.ack(1) };
    let mut out = Vec::new();
    // 64 bytes of payload: a small but not minimal packet.
    tcp.write(&mut out, &[0x5a; 64]).unwrap();
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timing of `repeat` runs of `frame`, ns per run.
fn time(runner: &Runner<'_>, frame: &[u8], repeat: u32, want: u32) -> f64 {
    let r = runner.run_repeated(frame, repeat).expect("test run");
    assert_eq!(r.action, want, "path took an unexpected action");
    r.duration.as_nanos() as f64
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; skip
    // the long measurement there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let repeat = env("LB_BENCH_REPEAT", 200_000);
    let samples = env("LB_BENCH_SAMPLES", 31);
    let mut dp = Dataplane::load(&LoadOptions {
        flow_table_entries: 1 << 20,
        bench_restore: true,
        ..LoadOptions::default()
    })
    .expect("load the dataplane (run as root)");
    dp.programmer()
        .set_node(&NodeConfig {
            gateway_mac: [2, 0, 0, 0, 0, 3],
            interface_mac: [2, 0, 0, 0, 0, 2],
            ..NodeConfig::default()
        })
        .unwrap();
    let backends = |prefix: &str| {
        (1..=10)
            .map(|i| BackendConfig {
                address: format!("{prefix}{i}").parse().unwrap(),
                weight: 1,
            })
            .collect()
    };
    for (address, prefix) in [("10.0.0.100", "10.1.0."), ("2001:db8::100", "2001:db8:1::")] {
        dp.programmer()
            .upsert_vip(&VipConfig {
                address: address.parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
                flags: 0,
                backends: backends(prefix),
            })
            .unwrap();
    }
    // The same SYN with the flood guard off: what recording a flow costs.
    let mut unguarded = Dataplane::load(&LoadOptions {
        flow_table_entries: 1 << 20,
        new_flows_per_cpu_per_sec: 0,
        bench_restore: true,
        ..LoadOptions::default()
    })
    .unwrap();
    unguarded
        .programmer()
        .set_node(&NodeConfig::default())
        .unwrap();
    unguarded
        .programmer()
        .upsert_vip(&VipConfig {
            address: "10.0.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            flags: 0,
            backends: backends("10.1.0."),
        })
        .unwrap();
    let balancer = dp.runner(ProgramKind::Balancer).unwrap();
    let pass = dp.runner(ProgramKind::Pass).unwrap();
    let (tx, xdp_pass) = (3, 2);

    let v4_ack = frame("192.0.2.1", "10.0.0.100", false);
    let v6_ack = frame("2001:db8:c::1", "2001:db8::100", false);
    // Place the flows, so the timed runs hit the flow table.
    balancer.run(&v4_ack).unwrap();
    balancer.run(&v6_ack).unwrap();
    let paths = [
        ("v4 SYN", frame("192.0.2.1", "10.0.0.100", true), tx),
        ("v4 flow-table hit", v4_ack, tx),
        (
            "v4 non-VIP",
            frame("192.0.2.1", "10.0.0.101", true),
            xdp_pass,
        ),
        ("v6 SYN", frame("2001:db8:c::1", "2001:db8::100", true), tx),
        ("v6 flow-table hit", v6_ack, tx),
    ];
    let unguarded = unguarded.runner(ProgramKind::Balancer).unwrap();
    // The host is a shared VM whose speed drifts by tens of percent between
    // seconds: time every path once per round, many rounds, so drift hits
    // all paths alike, and take medians. "net" subtracts the empty program
    // timed in the same round.
    let mut raw = vec![Vec::new(); paths.len() + 1];
    let mut net = vec![Vec::new(); paths.len() + 1];
    let mut empty = Vec::new();
    for _ in 0..samples {
        let base = time(&pass, &paths[0].1, repeat, xdp_pass);
        empty.push(base);
        for (i, (_, frame, want)) in paths.iter().enumerate() {
            let ns = time(&balancer, frame, repeat, *want);
            raw[i].push(ns);
            net[i].push(ns - base);
        }
        let ns = time(&unguarded, &paths[0].1, repeat, tx);
        raw[paths.len()].push(ns);
        net[paths.len()].push(ns - base);
    }
    println!(
        "XDP balancer, ns/packet: median of {samples} rounds × {repeat} runs (BPF_PROG_TEST_RUN)"
    );
    println!();
    println!(
        "| path | ours | ours, net of empty program | Katran | Katran net (−5 ns) | ours/Katran | net/net |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, ((name, _, _), (_, katran))) in paths.iter().zip(KATRAN).enumerate() {
        let (r, n) = (median(raw[i].clone()), median(net[i].clone()));
        println!(
            "| {name} | {r:.0} | {n:.0} | {katran:.0} | {:.0} | {:.2} | {:.2} |",
            katran - 5.0,
            r / katran,
            n / (katran - 5.0)
        );
    }
    let i = paths.len();
    println!(
        "| v4 SYN, flood guard off (flow recorded every time) | {:.0} | {:.0} | | | | |",
        median(raw[i].clone()),
        median(net[i].clone())
    );
    println!(
        "| empty XDP program (`pass`) | {:.0} | 0 | | | | |",
        median(empty)
    );
}
