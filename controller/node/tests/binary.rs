//! The `lb-controller` binary: it programs what its store holds, frames
//! through a real veth go where the ring says and to the gateway's MAC as
//! the neighbour table changes, its metrics say so, SIGTERM stops it
//! cleanly; and it refuses to start, naming what is missing.

mod support;

use std::{net::Ipv4Addr, process::Command};

use lb_config::Keys;
use lb_store::{EmbeddedStore, Op, Store, Txn};
use support::{GATEWAY, Lab, mac_text, vip};

async fn put(store: &EmbeddedStore, key: String, value: Vec<u8>) {
    let out = store
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Put { key, value }],
        })
        .await
        .unwrap();
    assert!(out.succeeded);
}

#[tokio::test(flavor = "current_thread")]
async fn serves_its_store_follows_the_gateway_and_stops_on_sigterm() {
    let lab = Lab::new();
    let keys = Keys::new("").unwrap();
    {
        let store = EmbeddedStore::open(&lab.store()).unwrap();
        let web = vip("web", "192.0.2.10", &["10.1.0.1", "10.1.0.2"]);
        put(&store, keys.vip("web"), web.encode()).await;
        put(
            &store,
            keys.vip("broken"),
            b"{\"name\":\"broken\",\"port\":99999}".to_vec(),
        )
        .await;
    }
    let controller = lab.start();
    lab.wait_metric(
        &controller,
        "lb_config_sync_state{state=\"in_sync\"}",
        |v| v == 1.0,
    );
    let metrics = lab.metrics().unwrap();
    assert_eq!(support::value(&metrics, "lb_config_vips"), Some(1.0));
    assert_eq!(
        support::value(&metrics, "lb_config_rejected_vips{reason=\"invalid\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        support::value(&metrics, "lb_config_applied_revision"),
        Some(2.0)
    );
    assert!(
        controller.log().contains("key=\"/lb/v1/vips/broken\""),
        "the bad key is logged by name:\n{}",
        controller.log()
    );

    let vip_address: Ipv4Addr = "192.0.2.10".parse().unwrap();
    let spread = lab.spread(vip_address, 64);
    let backends: std::collections::BTreeSet<_> =
        spread.keys().map(|(b, _)| b.to_string()).collect();
    assert_eq!(
        backends.into_iter().collect::<Vec<_>>(),
        ["10.1.0.1", "10.1.0.2"]
    );
    assert!(
        spread.keys().all(|(_, mac)| *mac == lab.link.peer_mac),
        "frames go to the gateway's MAC"
    );
    assert_eq!(spread.values().sum::<u32>(), 64, "every SYN balanced");
    // The dataplane's counters reach the metrics.
    lab.wait_metric(
        &controller,
        "lb_vip_packets_total{vip=\"web\",address=\"192.0.2.10\",port=\"80\",protocol=\"tcp\"}",
        |v| v == 64.0,
    );
    lab.wait_metric(
        &controller,
        "lb_backend_packets_total{backend=\"10.1.0.1\"}",
        |v| v > 0.0,
    );
    // One backend series, as the lab's `backendSeries: 1` bounds them: the
    // first address in order; the other is counted as omitted.
    let metrics = lab.metrics().unwrap();
    assert!(!metrics.contains("backend=\"10.1.0.2\""), "{metrics}");
    assert_eq!(
        support::value(&metrics, "lb_backend_series_omitted"),
        Some(1.0)
    );

    // The gateway's neighbour entry changes: frames follow it.
    let moved = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    lab.lb
        .ip(&[
            "neigh",
            "replace",
            GATEWAY,
            "lladdr",
            &mac_text(moved),
            "dev",
            &lab.link.local,
            "nud",
            "permanent",
        ])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let macs: Vec<[u8; 6]> = lab.spread(vip_address, 4).keys().map(|(_, m)| *m).collect();
        if !macs.is_empty() && macs.iter().all(|m| *m == moved) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "frames still go to {macs:?}; log:\n{}",
            controller.log()
        );
    }

    let log = controller.log();
    let status = controller.stop();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        lab.spread(vip_address, 8).is_empty(),
        "after SIGTERM the balancer is detached"
    );
}

fn refusal(args: &[&str], wrapper: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_lb-controller");
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let out = command.args(args).output().unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn refuses_to_start_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store_arg = path.to_str().unwrap();
    let on_lo = [
        "--interface",
        "lo",
        "--store",
        store_arg,
        "--metrics",
        "none",
    ];

    for (dropped, named) in [
        ("-bpf,-sys_admin", "missing capability CAP_BPF"),
        ("-perfmon,-sys_admin", "missing capability CAP_PERFMON"),
        ("-net_admin", "missing capability CAP_NET_ADMIN"),
    ] {
        let stderr = refusal(&on_lo, &["setpriv", "--bounding-set", dropped]);
        assert!(stderr.contains(named), "{dropped}: {stderr}");
    }

    let stderr = refusal(&["--interface", "lbnope0", "--store", store_arg], &[]);
    assert!(stderr.contains("no interface \"lbnope0\""), "{stderr}");

    let stderr = refusal(&["--store", store_arg], &[]);
    assert!(
        stderr.contains("no interface: give --interface"),
        "{stderr}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "node:\n  mtu: 100\n").unwrap();
    let stderr = refusal(
        &["--interface", "lo", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("node: mtu: 100 is not 1280"), "{stderr}");
    std::fs::write(&bad, "node:\n  attachModes: ATTACH_MODE_DRIVER\n").unwrap();
    let stderr = refusal(
        &["--interface", "lo", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert!(
        stderr.contains("attachModes") && stderr.contains("not in the lb.v1 schema"),
        "{stderr}"
    );

    // A store another process holds is refused, and left as it is.
    let held = EmbeddedStore::open(&path).unwrap();
    let stderr = refusal(&on_lo, &[]);
    assert!(stderr.contains("open in another process"), "{stderr}");
    drop(held);

    let corrupt = dir.path().join("corrupt.redb");
    std::fs::write(&corrupt, b"not a redb file at all, just bytes").unwrap();
    let stderr = refusal(
        &[
            "--interface",
            "lo",
            "--store",
            corrupt.to_str().unwrap(),
            "--metrics",
            "none",
        ],
        &[],
    );
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"not a redb file at all, just bytes",
        "never overwritten"
    );
}

/// `call` against the controller's API, from inside its namespace (it
/// listens on that namespace's loopback).
fn in_lab<T: Send>(
    lab: &Lab,
    call: impl AsyncFnOnce(
        lb_proto::v1::vip_service_client::VipServiceClient<tonic::transport::Channel>,
        lb_proto::v1::node_service_client::NodeServiceClient<tonic::transport::Channel>,
    ) -> T
    + Send,
) -> T {
    lab.lb
        .run(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let channel = loop {
                    match tonic::transport::Channel::from_static("http://127.0.0.1:9620")
                        .connect()
                        .await
                    {
                        Ok(c) => break c,
                        Err(e) => {
                            assert!(std::time::Instant::now() < deadline, "no API: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                };
                call(
                    lb_proto::v1::vip_service_client::VipServiceClient::new(channel.clone()),
                    lb_proto::v1::node_service_client::NodeServiceClient::new(channel),
                )
                .await
            })
        })
        .unwrap()
}

#[test]
fn its_api_writes_the_store_and_logs_and_counts_each_call() {
    use lb_proto::v1 as pb;
    let lab = Lab::new();
    let controller = lab.start();
    let web = vip("web", "192.0.2.10", &["10.1.0.5", "10.1.0.6"]).to_proto();
    let (refused, status) = in_lab(&lab, async |mut vips, mut node| {
        let created = vips
            .create_vip(pb::CreateVipRequest {
                vip: Some(web.clone()),
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        let refused = vips
            .create_vip(pb::CreateVipRequest {
                vip: Some(web),
                validate_only: false,
            })
            .await
            .unwrap_err()
            .code();
        let mut watch = node
            .watch_status(pb::WatchStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        loop {
            let s = watch.message().await.unwrap().unwrap();
            if s.applied_revision >= created.store_revision && s.converged {
                break (refused, s);
            }
        }
    });
    assert_eq!(refused, tonic::Code::AlreadyExists);
    assert_eq!(status.vips.len(), 1, "{status:?}");
    // The process's maps hold what the API wrote.
    let backends = lab.backends_of("192.0.2.10".parse().unwrap());
    assert_eq!(
        backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        ["10.1.0.5", "10.1.0.6"]
    );
    let metrics = lab.metrics().unwrap();
    for (code, n) in [("Ok", 1.0), ("AlreadyExists", 1.0)] {
        let series =
            format!("lb_api_calls_total{{method=\"/lb.v1.VipService/CreateVip\",code=\"{code}\"}}");
        assert_eq!(
            support::value(&metrics, &series),
            Some(n),
            "{series}:\n{metrics}"
        );
    }
    let log = controller.log();
    assert!(
        log.contains("api call") && log.contains("/lb.v1.VipService/CreateVip"),
        "{log}"
    );
    assert!(controller.stop().success());
}
