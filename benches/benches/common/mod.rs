//! What the dataplane benches share: the bench's frames and its loaded
//! dataplane (VIPs, backends, node), many established flows placed in it,
//! and the median.
// Each bench target compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub mod changes;

use std::net::{IpAddr, Ipv4Addr};

use etherparse::PacketBuilder;
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{
    BackendConfig, Dataplane, LoadOptions, NodeConfig, ProgramKind, Protocol, Runner, VipConfig,
};

pub fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A TCP frame from `src` port 31337 to `dst` port 80.
pub fn frame(src: &str, dst: &str, syn: bool) -> Vec<u8> {
    client_frame(src.parse().unwrap(), 31_337, dst, syn)
}

/// A TCP frame from `src`:`src_port` to `dst` port 80, with 64 bytes of
/// payload: a small but not minimal packet.
pub fn client_frame(src: IpAddr, src_port: u16, dst: &str, syn: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (src, dst.parse::<IpAddr>().unwrap()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("same family"),
    };
    let tcp = ip.tcp(src_port, 80, 1, 64_000);
    let tcp = if syn { tcp.syn() } else { tcp.ack(1) };
    let mut out = Vec::new();
    tcp.write(&mut out, &[0x5a; 64]).unwrap();
    out
}

/// The options every bench dataplane shares: a flow table of 2^20 entries
/// and the bench-only restore (see xdp_paths).
pub fn bench_options() -> LoadOptions {
    LoadOptions {
        flow_table_entries: 1 << 20,
        bench_restore: true,
        ..LoadOptions::default()
    }
}

/// A dataplane with the bench's node and VIPs (v4 and v6 TCP port 80, v4
/// UDP port 53; 10 backends each), the flood guard at `flood_threshold`
/// new flows per second per CPU (0 = off), and the per-CPU caches on or off.
pub fn loaded(flood_threshold: u32, per_cpu_caches: bool) -> Dataplane {
    loaded_with(&guard_options(flood_threshold, per_cpu_caches))
}

/// [`bench_options`] with the flood guard and the caches as given.
fn guard_options(flood_threshold: u32, per_cpu_caches: bool) -> LoadOptions {
    LoadOptions {
        new_flows_per_cpu_per_sec: flood_threshold,
        per_cpu_caches,
        ..bench_options()
    }
}

/// [`loaded`] with any options.
pub fn loaded_with(options: &LoadOptions) -> Dataplane {
    configured(Dataplane::load(options).expect("load the dataplane (run as root)"))
}

/// [`loaded`] from a balancer object other than this build's.
pub fn loaded_object(object: &[u8], flood_threshold: u32, per_cpu_caches: bool) -> Dataplane {
    let options = guard_options(flood_threshold, per_cpu_caches);
    configured(Dataplane::load_object(object, &options).expect("load the object (run as root)"))
}

/// The node settings every bench dataplane runs with.
pub fn bench_node() -> NodeConfig {
    NodeConfig {
        gateway_mac: [2, 0, 0, 0, 0, 3],
        interface_mac: [2, 0, 0, 0, 0, 2],
        ..NodeConfig::default()
    }
}

/// `dp` with the bench's node and VIPs.
fn configured(mut dp: Dataplane) -> Dataplane {
    dp.programmer().set_node(&bench_node()).unwrap();
    let backends = |prefix: &str| {
        (1..=10)
            .map(|i| BackendConfig {
                address: format!("{prefix}{i}").parse().unwrap(),
                weight: 1,
            })
            .collect()
    };
    for (address, port, protocol, prefix) in [
        ("10.0.0.100", 80, Protocol::Tcp, "10.1.0."),
        ("2001:db8::100", 80, Protocol::Tcp, "2001:db8:1::"),
        ("10.0.0.100", 53, Protocol::Udp, "10.1.0."),
    ] {
        dp.programmer()
            .upsert_vip(&VipConfig {
                address: address.parse().unwrap(),
                port,
                protocol,
                flags: 0,
                new_flows_per_cpu_per_sec: None,
                backends: backends(prefix),
                revision: 0,
            })
            .unwrap();
    }
    dp
}

/// One timing of `repeat` runs of `frame`, ns per run; every run must end
/// in `want`.
pub fn time(runner: &Runner<'_>, frame: &[u8], repeat: u32, want: u32) -> f64 {
    let r = runner.run_repeated(frame, repeat).expect("test run");
    assert_eq!(r.action, want, "path took an unexpected action");
    r.duration.as_nanos() as f64
}

/// `n` established flows to the v4 TCP VIP, from distinct client
/// addresses in 198.18.0.0/15 (the benchmarking range).
pub fn established_flows(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
            client_frame(IpAddr::V4(client), 40_000, "10.0.0.100", false)
        })
        .collect()
}

/// One run of `frame` (no `repeat`, so a set of flows taking turns is not
/// one flow repeated), in ns; it must end in `want`.
pub fn single_run_ns(runner: &Runner<'_>, frame: &[u8], want: u32) -> f64 {
    let r = runner.run(frame).expect("test run");
    assert_eq!(r.action, want, "path took an unexpected action");
    r.duration.as_nanos() as f64
}

/// A dataplane nobody times, loaded with `options` before the ones a
/// bench compares in single runs and kept while it times them. Without it
/// the first of those to be loaded reads 150–300 ns a packet slower than
/// the others, whatever its own options: 16,384 flows over 32,768 cache
/// slots, three dataplanes, two runs each way, 821–1,041 ns first against
/// 631–701 for the next two, and within 30 ns of each other after a spare
/// with the same cache size. (A spare with a smaller cache did not help:
/// it is where the per-CPU cache lands that differs.) Else it would be
/// charged to whichever side happened to be loaded first.
pub fn spare_dataplane(options: &LoadOptions) -> Dataplane {
    loaded_with(options)
}

/// Records every flow in `dp`'s flow table (the flood guard must be off,
/// so that a non-SYN miss is recorded) and checks the next packet of each
/// hits.
pub fn place_flows(dp: &mut Dataplane, frames: &[Vec<u8>]) {
    let before = global_counter(dp, GlobalCounter::TxFlowHit);
    {
        let runner = dp.runner(ProgramKind::Balancer).unwrap();
        for _ in 0..2 {
            for f in frames {
                runner.run(f).unwrap();
            }
        }
    }
    let hits = global_counter(dp, GlobalCounter::TxFlowHit) - before;
    assert_eq!(hits, frames.len() as u64, "every flow recorded");
}

/// One of the balancer's global counters, summed over CPUs.
pub fn global_counter(dp: &mut Dataplane, counter: GlobalCounter) -> u64 {
    dp.programmer().stats().unwrap().global(counter)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// UDP with 64 bytes of payload to the v4 VIP's port 53.
pub fn udp_frame() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [10, 0, 0, 100], 64)
        .udp(31_337, 53)
        .write(&mut out, &[0x5a; 64])
        .unwrap();
    out
}

/// A router's fragmentation-needed to the VIP about the placed v4 flow
/// (quoting the backend's reply 10.0.0.100:80 → 192.0.2.1:31337).
pub fn frag_needed() -> Vec<u8> {
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    icmp.extend_from_slice(&[10, 0, 0, 100, 192, 0, 2, 1]);
    icmp.extend_from_slice(&80u16.to_be_bytes());
    icmp.extend_from_slice(&31_337u16.to_be_bytes());
    icmp.extend_from_slice(&[0, 0, 0, 1]);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 51, 100, 1], [10, 0, 0, 100], 64)
        .write(&mut out, etherparse::IpNumber::ICMP, &icmp)
        .unwrap();
    out
}
