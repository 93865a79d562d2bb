//! What programming the maps costs at the `Programmer` API, release build:
//! 1,000 VIPs of 100 backends each, M = 65,537.
//!
//! - **create**: the 1,000 VIPs programmed into an empty dataplane in one
//!   `Programmer::apply` batch (map creation timed apart);
//! - **one change**: call to ring live, over `LB_BENCH_CHANGES` (default
//!   1,000) changes cycling weight change, add, remove and drain over the
//!   VIPs. "Live" is confirmed by a `BPF_PROG_TEST_RUN` SYN whose flow
//!   hashes to a ring slot that changed owner: the timing stops once that
//!   frame leaves for the new owner (the Maglev build is included);
//! - **100 changed**: 100 VIPs re-weighted in one batch;
//! - kernel map memory (`memlock` of every map fd) and the process's
//!   resident memory at 1,000 VIPs.
//!
//! Run as root: `cargo bench -p lb-bench --bench programming`.
//! `LB_BENCH_VIPS` and `LB_BENCH_BACKENDS` change the size.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use common::{
    bench_node,
    changes::{Scale, frame_on_changed_slot, map_memory, owners, resident_bytes},
};
use lb_dataplane::{BackendConfig, Batch, Dataplane, ProgramKind, Protocol, VipConfig};

const RING_SIZE: u32 = 65_537;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let scale = Scale::from_env();
    let options = scale.load_options(RING_SIZE);
    let Scale {
        vips,
        per_vip,
        changes,
    } = scale;
    let started = Instant::now();
    let mut dp = Dataplane::load(&options).expect("load the dataplane (run as root)");
    let load_time = started.elapsed();
    dp.programmer().set_node(&bench_node()).unwrap();
    let mut configs: Vec<VipConfig> = (0..vips).map(|v| vip_config(v, per_vip)).collect();

    let started = Instant::now();
    dp.programmer()
        .apply(&Batch {
            upserts: configs.clone(),
            ..Batch::default()
        })
        .unwrap();
    let create = started.elapsed();
    let map_bytes = map_memory();
    let (rss, anon) = (resident_bytes("VmRSS:"), resident_bytes("RssAnon:"));

    let mut latencies = Vec::with_capacity(changes as usize);
    for n in 0..changes {
        let v = (n * 7919 % vips) as usize;
        let next = changed(&configs[v], n, per_vip);
        let (frame, owner) = frame_on_changed_slot(
            next.address,
            &owners(&ring_members(&configs[v]), RING_SIZE),
            &owners(&ring_members(&next), RING_SIZE),
        );
        let started = Instant::now();
        dp.programmer().upsert_vip(&next).unwrap();
        let out = dp
            .runner(ProgramKind::Balancer)
            .unwrap()
            .run(&frame)
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(&out.frame[30..34], &owner.octets(), "change {n} not live");
        latencies.push(elapsed);
        configs[v] = next;
    }
    latencies.sort();

    let hundred_changed: Vec<VipConfig> = configs
        .iter()
        .enumerate()
        .take(100)
        .map(|(v, config)| {
            let mut next = config.clone();
            let pick = v % next.backends.len();
            next.backends[pick].weight = 3;
            next
        })
        .collect();
    let started = Instant::now();
    dp.programmer()
        .apply(&Batch {
            upserts: hundred_changed,
            ..Batch::default()
        })
        .unwrap();
    let hundred = started.elapsed();

    println!("programming: {vips} VIPs x {per_vip} backends, M = {RING_SIZE}");
    println!(
        "  map creation (excluded below)  {:>10.1} ms",
        ms(load_time)
    );
    println!("  create {vips} VIPs, one batch   {:>10.1} ms", ms(create));
    println!(
        "  one change, median / p99 / max {:>10.3} / {:.3} / {:.3} ms ({} changes)",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 99 / 100]),
        ms(*latencies.last().unwrap()),
        latencies.len()
    );
    println!("  100 VIPs changed, one batch    {:>10.1} ms", ms(hundred));
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "  kernel map memory {:.1} MiB; process resident {:.1} MiB, of it anonymous {:.1} MiB",
        mib(map_bytes),
        mib(rss),
        mib(anon)
    );
    println!("  (resident memory counts the pages of the mapped ring map the process wrote)");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn vip_address(v: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (v >> 8) as u8, v as u8))
}

/// Backend `b` of VIP `v`: every VIP has backends of its own.
fn backend(v: u32, b: u32) -> BackendConfig {
    let n = v * 1024 + b;
    BackendConfig {
        address: IpAddr::V4(Ipv4Addr::new(
            10,
            128 + (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        )),
        weight: 1,
    }
}

fn vip_config(v: u32, per_vip: u32) -> VipConfig {
    VipConfig {
        address: vip_address(v),
        port: 80,
        protocol: Protocol::Tcp,
        flags: 0,
        new_flows_per_cpu_per_sec: None,
        backends: (0..per_vip).map(|b| backend(v, b)).collect(),
        revision: 0,
    }
}

/// Change `n` of a cycle: re-weight, add, remove, drain.
fn changed(config: &VipConfig, n: u32, per_vip: u32) -> VipConfig {
    let mut next = config.clone();
    let v = u32::from(match config.address {
        IpAddr::V4(a) => u16::from_be_bytes([a.octets()[2], a.octets()[3]]),
        IpAddr::V6(_) => unreachable!(),
    });
    let pick = (n / 4) as usize % next.backends.len();
    match n % 4 {
        0 => next.backends[pick].weight = next.backends[pick].weight % 4 + 1,
        1 => {
            let fresh = (per_vip..1024)
                .map(|b| backend(v, b))
                .find(|b| next.backends.iter().all(|o| o.address != b.address))
                .expect("a free backend address");
            next.backends.push(fresh);
        }
        2 if next.backends.len() > 2 => {
            next.backends.remove(pick);
        }
        _ => next.backends[pick].weight = 0,
    }
    // Keep at least two backends taking flows.
    if next.backends.iter().filter(|b| b.weight > 0).count() < 2 {
        next.backends
            .iter_mut()
            .for_each(|b| b.weight = b.weight.max(1));
    }
    next
}

/// A VIP's backends as the ring is built from them.
fn ring_members(config: &VipConfig) -> Vec<(IpAddr, u32)> {
    config
        .backends
        .iter()
        .map(|b| (b.address, b.weight))
        .collect()
}
