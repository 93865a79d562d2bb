//! The store into the maps, end to end in the kernel: VIPs written to a
//! real embedded store on a temporary directory, reconciled into a loaded
//! dataplane, and frames (`BPF_PROG_TEST_RUN`) sent where the new ring
//! says.

#[path = "../../dataplane/tests/common/mod.rs"]
mod common;
mod support;

use std::net::IpAddr;

use common::{Tcp, tcp};
use etherparse::{NetSlice, SlicedPacket};
use lb_config::{Keys, Vip};
use lb_controller::reconciler::Reconciler;
use lb_dataplane::{Dataplane, ProgramKind};
use lb_reconcile::{Limits, Plan, Refusal};
use lb_store::{EmbeddedStore, Op, Store, Txn};

const VIP: &str = "192.0.2.10";

fn web(name: &str, backends: &[&str]) -> Vip {
    support::vip(name, VIP, backends)
}

struct Node {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    keys: Keys,
    dp: Dataplane,
    reconciler: Reconciler,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let mut dp = common::dataplane(1021);
        let keys = Keys::new("").unwrap();
        let limits = Limits {
            max_vips: 32,
            max_backends: 256,
        };
        let reconciler = Reconciler::new(keys.clone(), limits, dp.programmer());
        Self {
            _dir: dir,
            store,
            keys,
            dp,
            reconciler,
        }
    }

    async fn write(&self, ops: Vec<Op>) {
        let outcome = self
            .store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
        assert!(outcome.succeeded);
    }

    fn put(&self, name: &str, value: Vec<u8>) -> Op {
        Op::Put {
            key: self.keys.vip(name),
            value,
        }
    }

    /// One pass from a fresh listing, as the loop makes at start: the
    /// plan it carried out.
    async fn sync(&mut self) -> Plan {
        let listing = self.store.list(&self.keys.vips(), None).await.unwrap();
        self.reconciler.replace_all(&listing);
        self.reconciler.reconcile(self.dp.programmer()).unwrap()
    }

    /// Where 200 clients' SYNs to the VIP go.
    fn destinations(&self) -> std::collections::BTreeSet<IpAddr> {
        let runner = self.dp.runner(ProgramKind::Balancer).unwrap();
        (0..200u32)
            .map(|i| {
                let client = std::net::Ipv4Addr::from(0xc633_6400 + i).to_string();
                let out = runner
                    .run(&tcp(&client, 1000, VIP, 80, Tcp::Syn, b""))
                    .unwrap();
                assert_eq!(out.action, 3, "XDP_TX");
                match SlicedPacket::from_ethernet(&out.frame)
                    .unwrap()
                    .net
                    .unwrap()
                {
                    NetSlice::Ipv4(ip) => ip.header().destination_addr().into(),
                    _ => panic!("an IPv4 tunnel"),
                }
            })
            .collect()
    }
}

fn set(addresses: &[&str]) -> std::collections::BTreeSet<IpAddr> {
    addresses.iter().map(|a| a.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reconciles_into_the_maps() {
    let mut node = Node::new();
    let three = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    node.write(vec![node.put("web", web("web", &three).encode())])
        .await;
    let plan = node.sync().await;
    assert_eq!(plan.upserts.len(), 1);
    assert_eq!(node.destinations(), set(&three));

    // Nothing changed: nothing written.
    let before = node.dp.programmer().snapshot();
    assert!(node.sync().await.is_empty());

    // A rename is the same VIP: no map is written.
    node.write(vec![
        Op::Delete {
            key: node.keys.vip("web"),
        },
        node.put("www", web("www", &three).encode()),
    ])
    .await;
    let plan = node.sync().await;
    assert!(plan.is_empty(), "{:?}", plan);
    assert_eq!(
        node.dp.programmer().snapshot(),
        before,
        "a rename wrote the maps"
    );

    // An update goes live: the new ring's backends take the flows.
    node.write(vec![node.put("www", web("www", &three[..1]).encode())])
        .await;
    assert_eq!(node.sync().await.upserts.len(), 1);
    assert_eq!(node.destinations(), set(&three[..1]));

    // An invalid update keeps the last good version forwarding, stale.
    let mut bad: serde_json::Value = serde_json::from_slice(&web("www", &three).encode()).unwrap();
    bad["backends"][0]["weight"] = 0.into();
    node.write(vec![node.put("www", bad.to_string().into_bytes())])
        .await;
    let plan = node.sync().await;
    assert!(plan.is_empty());
    let www = node.reconciler.desired().vips.values().next().unwrap();
    let stale = www.stale.as_ref().expect("reported stale");
    assert_eq!(stale.field, "backends[0].weight");
    assert_eq!(node.destinations(), set(&three[..1]));

    // Bad keys beside it are refused alone, each named; a good one applies.
    node.write(vec![
        node.put("garbage", b"\xff\x00not json".to_vec()),
        node.put("dup", web("dup", &three).encode()),
        node.put("api", {
            let mut api = web("api", &["10.0.1.1"]);
            api.address = "192.0.2.20".parse().unwrap();
            api.encode()
        }),
    ])
    .await;
    let plan = node.sync().await;
    let refused: Vec<(&str, &Refusal)> = node
        .reconciler
        .desired()
        .refused
        .iter()
        .map(|r| (r.key.as_str(), &r.refusal))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        matches!(refused[0], ("/lb/v1/vips/dup", Refusal::Duplicate { winner }) if winner == "/lb/v1/vips/www")
    );
    assert!(
        matches!(refused[1], ("/lb/v1/vips/garbage", Refusal::Invalid(e)) if e.field == "(document)")
    );
    assert_eq!(plan.upserts.len(), 1, "api alone is new");
    assert_eq!(node.destinations(), set(&three[..1]), "www undisturbed");

    // With the older key gone, the duplicate is the VIP's key now.
    node.write(vec![Op::Delete {
        key: node.keys.vip("www"),
    }])
    .await;
    let plan = node.sync().await;
    assert_eq!(plan.upserts.len(), 1);
    assert!(plan.removals.is_empty());
    assert_eq!(node.destinations(), set(&three));

    // Deleting it removes the VIP: its traffic is no longer balanced.
    node.write(vec![Op::Delete {
        key: node.keys.vip("dup"),
    }])
    .await;
    let plan = node.sync().await;
    assert_eq!(plan.removals.len(), 1);
    let runner = node.dp.runner(ProgramKind::Balancer).unwrap();
    let out = runner
        .run(&tcp("198.51.100.1", 1000, VIP, 80, Tcp::Syn, b""))
        .unwrap();
    assert_ne!(out.action, 3, "a removed VIP is not balanced");
}
