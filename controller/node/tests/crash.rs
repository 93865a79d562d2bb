//! A controller SIGKILLed during a burst of writes to its store loses
//! nothing acknowledged: the controller started next on the same store
//! programs every acknowledged write (or the one in flight, which may have
//! committed unacknowledged), as frames through a real veth show.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr},
    process::{Command, Stdio},
};

use lb_config::{Backend, BackendState, Keys, Protocol, Vip, VipOptions};
use lb_controller::{
    daemon::{self, LoopOptions},
    reconciler::Reconciler,
    status::NodeStatus,
};
use lb_dataplane::{Dataplane, LoadOptions};
use lb_reconcile::Limits;
use lb_store::{EmbeddedStore, Op, Store, Txn};
use support::Lab;

const VIPS: u32 = 8;
/// Writes acknowledged before the kill.
const ACKED_BEFORE_KILL: u32 = 60;

fn address(vip: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + vip as u8)
}

/// Write `k` replaces VIP `k % VIPS` with two backends of its own.
fn backends(k: u32) -> [IpAddr; 2] {
    let b = |last| {
        IpAddr::V4(Ipv4Addr::new(
            10,
            1 + (k / 250) as u8,
            (k % 250) as u8,
            last,
        ))
    };
    [b(1), b(2)]
}

fn write(k: u32) -> Vip {
    let i = k % VIPS;
    Vip {
        name: format!("vip{i}"),
        address: address(i).into(),
        port: 80,
        protocol: Protocol::Tcp,
        options: VipOptions::default(),
        backends: backends(k)
            .iter()
            .map(|&address| Backend {
                address,
                weight: 1,
                state: BackendState::Active,
            })
            .collect(),
        owner: String::new(),
        health_check: false,
    }
}

#[test]
#[ignore = "the controller process of sigkill_during_a_burst_loses_no_acknowledged_write"]
fn controller_with_a_writer() {
    let Some(path) = std::env::var_os("LB_CRASH_STORE") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(std::path::Path::new(&path)).unwrap();
        let options = LoadOptions {
            ring_size: 1021,
            max_vips: 64,
            max_backends: 1024,
            flow_table_entries: 4096,
            ..LoadOptions::default()
        };
        let mut dp = Dataplane::load(&options).unwrap();
        let keys = Keys::new("").unwrap();
        let limits = Limits {
            max_vips: 64,
            max_backends: 1024,
        };
        let reconciler = Reconciler::new(keys.clone(), limits, dp.programmer());
        let (status_tx, _) = tokio::sync::watch::channel(NodeStatus::new(dp.programmer().usage()));
        let controller = daemon::run(
            &store,
            dp.programmer(),
            reconciler,
            LoopOptions::default(),
            status_tx,
            None,
            std::future::pending(),
        );
        let writer = async {
            let mut out = std::io::stdout();
            for k in 0..u32::MAX {
                writeln!(out, "send {k}").unwrap();
                out.flush().unwrap();
                let done = store
                    .txn(Txn {
                        compares: vec![],
                        ops: vec![Op::Put {
                            key: keys.vip(&format!("vip{}", k % VIPS)),
                            value: write(k).encode(),
                        }],
                    })
                    .await
                    .unwrap();
                writeln!(out, "ack {k} {}", done.revision).unwrap();
                out.flush().unwrap();
            }
        };
        tokio::select! {
            r = controller => panic!("the controller stopped: {r:?}"),
            () = writer => {}
        }
    });
}

#[test]
fn sigkill_during_a_burst_loses_no_acknowledged_write() {
    let lab = Lab::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "controller_with_a_writer",
            "--nocapture",
        ])
        .env("LB_CRASH_STORE", lab.store())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: BTreeMap<u32, u32> = BTreeMap::new();
    let mut last_revision = 0;
    let mut in_flight = None;
    let mut record = |line: &str, acked: &mut BTreeMap<u32, u32>| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["send", k] => in_flight = Some(k.parse::<u32>().unwrap()),
            ["ack", k, revision] => {
                let k: u32 = k.parse().unwrap();
                acked.insert(k % VIPS, k);
                last_revision = revision.parse().unwrap();
                in_flight = None;
                return k;
            }
            _ => {}
        }
        0
    };
    for line in lines.by_ref() {
        if record(&line.unwrap(), &mut acked) >= ACKED_BEFORE_KILL {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What it printed before it died.
    for line in lines {
        record(&line.unwrap(), &mut acked);
    }
    assert_eq!(acked.len(), VIPS as usize);

    let controller = lab.start();
    lab.wait_metric(&controller, "lb_config_applied_revision", |v| {
        v >= last_revision as f64
    });
    for (&vip, &k) in &acked {
        let seen = lab.backends_of(address(vip));
        let allowed: Vec<std::collections::BTreeSet<IpAddr>> = std::iter::once(k)
            .chain(in_flight.filter(|f| f % VIPS == vip))
            .map(|k| backends(k).into_iter().collect())
            .collect();
        assert!(
            allowed.contains(&seen),
            "vip{vip}: frames went to {seen:?}, the last acknowledged write {k} says {:?}",
            allowed[0]
        );
    }
    assert!(controller.stop().success());
}
