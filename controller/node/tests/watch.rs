//! The control loop in-process against a real embedded store and a loaded
//! dataplane: every write is reconciled as it is watched, the applied
//! revision follows, an invalid update is reported stale once and its
//! last good version kept, and the loop stops when told to.

#[path = "../../dataplane/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use lb_config::{Keys, Vip};
use lb_controller::{
    daemon::{self, LoopOptions},
    reconciler::Reconciler,
    status::{NodeStatus, Problem, SyncState},
};
use lb_reconcile::Limits;
use lb_store::{EmbeddedStore, Op, Revision, Store, Txn};
use tokio::sync::watch;

fn web(backends: &[&str]) -> Vip {
    support::vip("web", "192.0.2.10", backends)
}

async fn put(store: &EmbeddedStore, key: &str, value: Vec<u8>) -> Revision {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Put {
                key: key.into(),
                value,
            }],
        })
        .await
        .unwrap()
        .revision
}

/// Waits for a status with `revision` applied.
async fn applied(status: &mut watch::Receiver<NodeStatus>, revision: Revision) -> NodeStatus {
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.applied_revision >= revision && s.state == SyncState::InSync),
    )
    .await
    .expect("applied in time")
    .unwrap()
    .clone()
}

/// The loop on its own task over `store`, a fresh dataplane and `keys`.
struct Running {
    status: watch::Receiver<NodeStatus>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Result<(), lb_store::StoreError>, lb_dataplane::Dataplane)>,
}

impl Running {
    fn start<S: Store + 'static>(store: std::sync::Arc<S>, keys: &Keys) -> Self {
        let mut dp = common::dataplane(1021);
        let limits = Limits {
            max_vips: 8,
            max_backends: 64,
        };
        let reconciler = Reconciler::new(keys.clone(), limits, dp.programmer());
        let (tx, status) = watch::channel(NodeStatus::new(dp.programmer().usage()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = LoopOptions {
            backoff: (Duration::from_millis(50), Duration::from_millis(200)),
            ..LoopOptions::default()
        };
        let task = tokio::spawn(async move {
            let r = daemon::run(
                &*store,
                dp.programmer(),
                reconciler,
                options,
                tx,
                None,
                async {
                    let _ = stopped.await;
                },
            )
            .await;
            (r, dp)
        });
        Self { status, stop, task }
    }

    /// Stops the loop when told; its result and the dataplane.
    async fn stop(self) -> lb_dataplane::Dataplane {
        self.stop.send(()).unwrap();
        let (result, dp) = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stopped when told")
            .unwrap();
        result.unwrap();
        dp
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_follows_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let keys = Keys::new("/fleet-a").unwrap();
    let key = keys.vip("web");
    let first = put(&store, &key, web(&["10.0.0.1", "10.0.0.2"]).encode()).await;

    let store = std::sync::Arc::new(store);
    let mut loop_ = Running::start(store.clone(), &keys);
    let status = &mut loop_.status;

    let s = applied(status, first).await;
    assert_eq!(s.programmed_vips, 1);
    assert_eq!(s.usage.vips.used, 1);

    // Each write is watched and applied in turn.
    let mut last = first;
    for n in 1..=5 {
        let addresses: Vec<String> = (1..=n).map(|i| format!("10.0.1.{i}")).collect();
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        last = put(&store, &key, web(&refs).encode()).await;
        applied(status, last).await;
    }
    // A write elsewhere under the prefix root is not a VIP event.
    let unrelated = put(&store, "/fleet-b/lb/v1/vips/web", b"junk".to_vec()).await;
    assert!(unrelated > last);

    // An invalid update: stale, the last good version kept.
    let bad = put(
        &store,
        &key,
        b"{\"name\":\"web\",\"port\":80,\"bogus\":1}".to_vec(),
    )
    .await;
    let s = applied(status, bad).await;
    match s.problems.get(&key) {
        Some(Problem::Stale(e)) => assert_eq!(e.field, "bogus"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.programmed_vips, 1);
    let fixed = put(&store, &key, web(&["10.0.2.1"]).encode()).await;
    let s = applied(status, fixed).await;
    assert!(s.problems.is_empty(), "{:?}", s.problems);

    let mut dp = loop_.stop().await;
    let vips: Vec<_> = dp.programmer().vips().cloned().collect();
    assert_eq!(vips.len(), 1);
    assert_eq!(
        vips[0]
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect::<Vec<_>>(),
        ["10.0.2.1"]
    );
}

/// The embedded store with its first watches failing: a transient error,
/// then a compaction, as etcd can answer.
struct Faulty {
    inner: EmbeddedStore,
    faults: std::sync::Mutex<Vec<lb_store::StoreError>>,
    /// Every list and watch call, in order.
    calls: std::sync::Mutex<Vec<String>>,
}

impl Store for Faulty {
    async fn revision(&self) -> Result<Revision, lb_store::StoreError> {
        self.inner.revision().await
    }

    async fn list(
        &self,
        prefix: &str,
        at: Option<Revision>,
    ) -> Result<lb_store::Listing, lb_store::StoreError> {
        self.calls.lock().unwrap().push("list".into());
        self.inner.list(prefix, at).await
    }

    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<lb_store::Watch, lb_store::StoreError> {
        self.calls.lock().unwrap().push(format!("watch {from}"));
        let fault = self.faults.lock().unwrap().pop();
        match fault {
            Some(e) => Err(e),
            None => self.inner.watch(prefix, from).await,
        }
    }

    async fn txn(&self, txn: Txn) -> Result<lb_store::TxnOutcome, lb_store::StoreError> {
        self.inner.txn(txn).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_watch_resumes_where_it_was_and_a_compacted_one_lists_again() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new("").unwrap();
    let store = std::sync::Arc::new(Faulty {
        inner: EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        // Popped from the end: first the transient error, then compaction.
        faults: std::sync::Mutex::new(vec![
            lb_store::StoreError::Compacted {
                requested: 2,
                compacted: 5,
            },
            lb_store::StoreError::Io {
                path: "(test)".into(),
                op: "watch",
                reason: "connection reset".into(),
            },
        ]),
        calls: Default::default(),
    });
    let first = put(&store.inner, &keys.vip("web"), web(&["10.0.0.1"]).encode()).await;

    let mut loop_ = Running::start(store.clone(), &keys);
    let status = &mut loop_.status;
    applied(status, first).await;
    // Written after the faults, whenever the relist happened.
    let second = put(&store.inner, &keys.vip("api"), {
        let mut api = web(&["10.0.0.2"]);
        api.name = "api".into();
        api.address = "192.0.2.20".parse().unwrap();
        api.encode()
    })
    .await;
    let s = applied(status, second).await;
    assert_eq!(s.programmed_vips, 2);
    // And the watch after the relist delivers what comes next.
    let third = put(&store.inner, &keys.vip("web"), web(&["10.0.0.3"]).encode()).await;
    applied(status, third).await;

    let calls = store.calls.lock().unwrap().clone();
    let resume = format!("watch {}", first + 1);
    assert_eq!(
        calls[..4],
        ["list", resume.as_str(), resume.as_str(), "list"],
        "a transient failure resumes from the same revision; a compacted one lists again"
    );
    assert_eq!(calls.len(), 5, "{calls:?}");
    let mut dp = loop_.stop().await;
    assert_eq!(dp.programmer().vips().count(), 2);
}
