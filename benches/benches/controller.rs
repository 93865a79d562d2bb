//! The node controller end to end, release build: the embedded store, the
//! control loop (`lb_controller::daemon::run`, as the binary runs it) on
//! its own thread, and the dataplane, at 1,000 VIPs of 100 backends each,
//! M = 65,537.
//!
//! - **initial sync**: the whole config, already in the store, into an
//!   empty dataplane: from the loop's start to its status saying every key
//!   is applied (listing, decoding, admission, 1,000 Maglev builds, one
//!   batch). Map creation is timed apart and excluded.
//! - **commit → live**: over `LB_BENCH_CHANGES` (default 1,000) changes
//!   cycling re-weight, add, remove and drain over the VIPs, each a store
//!   transaction; timed from the commit's acknowledgement to a
//!   `BPF_PROG_TEST_RUN` SYN, hashed to a ring slot the change gives a new
//!   owner, leaving for that owner (polled from another thread). Also from
//!   the transaction's start, which adds the durable commit itself.
//! - **memory**: the process's anonymous resident memory (the controller's
//!   heap: its view of the store, its last good VIPs, the programmer's
//!   book; pages of the mapped ring map it wrote are file-backed and
//!   reported apart), and the kernel's map memory.
//!
//! Run as root: `cargo bench -p lb-bench --bench controller`.
//! `LB_BENCH_VIPS`, `LB_BENCH_BACKENDS`, `LB_BENCH_CHANGES` change the size.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    bench_node,
    changes::{Scale, frame_on_changed_slot, map_memory, owners, resident_bytes},
    env,
};
use lb_config::{Backend, BackendState, Keys, Protocol, Vip, VipOptions};
use lb_controller::{
    daemon::{self, LoopOptions},
    reconciler::Reconciler,
    status::NodeStatus,
};
use lb_dataplane::{Dataplane, ProgramKind};
use lb_reconcile::{Limits, ProgrammedVip};
use lb_store::{EmbeddedStore, Op, Revision, Store, Txn};
use tokio::sync::watch;

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
    // The loop reads the dataplane's counters on this interval, as the
    // binary does (default 5 s); reading them pauses reconciling.
    let stats_interval = f64::from(env("LB_BENCH_STATS_INTERVAL_MS", 5_000)) / 1e3;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let keys = Keys::new("").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config: Vec<Vip> = (0..vips).map(|v| vip(v, per_vip)).collect();
    runtime.block_on(async {
        for chunk in config.chunks(64) {
            let ops = chunk
                .iter()
                .map(|v| Op::Put {
                    key: keys.vip(&v.name),
                    value: v.encode(),
                })
                .collect();
            txn(&store, ops).await;
        }
    });
    let loaded_revision = runtime.block_on(store.revision()).unwrap();

    let started = Instant::now();
    let mut dp = Dataplane::load(&options).expect("load the dataplane (run as root)");
    let load_time = started.elapsed();
    dp.programmer().set_node(&bench_node()).unwrap();
    let limits = Limits {
        max_vips: options.max_vips as usize,
        max_backends: options.max_backends as usize,
    };
    let reconciler = Reconciler::new(keys.clone(), limits, dp.programmer());
    let (status_tx, mut status) = watch::channel(NodeStatus::new(dp.programmer().usage()));
    let (runner, programmer) = dp.split(ProgramKind::Balancer).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let store = &store;

    let (initial_sync, one, with_commit, anon_after_sync, anon_after) = std::thread::scope(|s| {
        let loop_stop = stop.clone();
        let sync_started = Instant::now();
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                daemon::run(
                    store,
                    programmer,
                    reconciler,
                    LoopOptions {
                        stats_interval: Duration::from_secs_f64(stats_interval),
                        ..LoopOptions::default()
                    },
                    status_tx,
                    None,
                    async {
                        while !loop_stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    },
                )
                .await
                .unwrap();
            });
        });
        runtime.block_on(applied(&mut status, loaded_revision));
        let initial_sync = sync_started.elapsed();
        let anon_after_sync = resident_bytes("RssAnon:");

        let mut from_ack = Vec::with_capacity(changes as usize);
        let mut from_start = Vec::with_capacity(changes as usize);
        for n in 0..changes {
            let v = (n * 7919 % vips) as usize;
            let next = changed(&config[v], n, per_vip);
            let (frame, owner) =
                frame_on_changed_slot(next.address, &vip_owners(&config[v]), &vip_owners(&next));
            let started = Instant::now();
            runtime.block_on(txn(
                store,
                vec![Op::Put {
                    key: keys.vip(&next.name),
                    value: next.encode(),
                }],
            ));
            let acked = Instant::now();
            let deadline = acked + Duration::from_secs(5);
            loop {
                let out = runner.run(&frame).unwrap();
                if out.frame.get(30..34) == Some(&owner.octets()[..]) {
                    break;
                }
                assert!(Instant::now() < deadline, "change {n} never went live");
                // Poll without taking a core from the controller: on 2
                // cores a spinning poller slowed it measurably.
                std::thread::sleep(Duration::from_micros(20));
            }
            let live = Instant::now();
            from_ack.push(live - acked);
            from_start.push(live - started);
            config[v] = next;
        }
        let anon_after = resident_bytes("RssAnon:");
        stop.store(true, Ordering::Relaxed);
        (
            initial_sync,
            from_ack,
            from_start,
            anon_after_sync,
            anon_after,
        )
    });

    let map_bytes = map_memory();
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!("controller: {vips} VIPs x {per_vip} backends, M = {RING_SIZE}, embedded store");
    println!(
        "  map creation (excluded)              {:>9.1} ms",
        ms(load_time)
    );
    println!(
        "  initial sync of the whole config     {:>9.1} ms",
        ms(initial_sync)
    );
    let line = |what: &str, mut d: Vec<Duration>| {
        d.sort();
        println!(
            "  {what} median / p99 / max {:.3} / {:.3} / {:.3} ms ({} changes)",
            ms(d[d.len() / 2]),
            ms(d[d.len() * 99 / 100]),
            ms(*d.last().unwrap()),
            d.len()
        );
    };
    line("commit acked -> live,  ", one);
    line("txn start -> live,     ", with_commit);
    println!(
        "  anonymous resident memory: {:.1} MiB after the initial sync, {:.1} MiB after the changes",
        mib(anon_after_sync),
        mib(anon_after)
    );
    println!(
        "  process resident {:.1} MiB (file-backed ring-map pages included); kernel map memory {:.1} MiB",
        mib(resident_bytes("VmRSS:")),
        mib(map_bytes)
    );
}

async fn txn(store: &EmbeddedStore, ops: Vec<Op>) -> Revision {
    let out = store
        .txn(Txn {
            compares: vec![],
            ops,
        })
        .await
        .unwrap();
    assert!(out.succeeded);
    out.revision
}

async fn applied(status: &mut watch::Receiver<NodeStatus>, revision: Revision) {
    status
        .wait_for(|s| s.applied_revision >= revision)
        .await
        .unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Backend `b` of VIP `v`: every VIP has backends of its own.
fn backend_address(v: u32, b: u32) -> IpAddr {
    let n = v * 1024 + b;
    IpAddr::V4(Ipv4Addr::new(
        10,
        128 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

fn vip(v: u32, per_vip: u32) -> Vip {
    Vip {
        name: format!("vip-{v}"),
        address: IpAddr::V4(Ipv4Addr::new(10, 0, (v >> 8) as u8, v as u8)),
        port: 80,
        protocol: Protocol::Tcp,
        options: VipOptions::default(),
        backends: (0..per_vip)
            .map(|b| Backend {
                address: backend_address(v, b),
                weight: 1,
                state: BackendState::Active,
            })
            .collect(),
        owner: String::new(),
        health_check: false,
    }
}

fn index_of(vip: &Vip) -> u32 {
    vip.name.trim_start_matches("vip-").parse().unwrap()
}

/// Change `n` of a cycle: re-weight, add, remove, drain.
fn changed(vip: &Vip, n: u32, per_vip: u32) -> Vip {
    let mut next = vip.clone();
    let v = index_of(vip);
    let pick = (n / 4) as usize % next.backends.len();
    match n % 4 {
        0 => next.backends[pick].weight = next.backends[pick].weight % 4 + 1,
        1 => {
            let fresh = (per_vip..1024)
                .map(|b| backend_address(v, b))
                .find(|a| next.backends.iter().all(|o| o.address != *a))
                .expect("a free backend address");
            next.backends.push(Backend {
                address: fresh,
                weight: 1,
                state: BackendState::Active,
            });
        }
        2 if next.backends.len() > 2 => {
            next.backends.remove(pick);
        }
        _ => next.backends[pick].state = BackendState::Draining,
    }
    // Keep at least two backends taking flows.
    let active = next
        .backends
        .iter()
        .filter(|b| b.state == BackendState::Active)
        .count();
    if active < 2 {
        for b in &mut next.backends {
            b.state = BackendState::Active;
        }
    }
    next
}

/// Owners of every slot of `vip` as the maps will hold it (draining
/// backends at weight 0).
fn vip_owners(vip: &Vip) -> Vec<IpAddr> {
    owners(&ProgrammedVip::of(vip).backends, RING_SIZE)
}
