//! The control loop: list the store, reconcile, then watch from just
//! after the listing and reconcile each burst of events, until told to
//! stop. A state machine over the store:
//!
//! - *waiting* → list: the store answers with revision R and every key;
//!   the view is replaced whole (mark and sweep), reconciled, and R is
//!   applied;
//! - watching from R+1: the events already queued are taken together and
//!   reconciled once; the last one's revision is applied;
//! - a watch whose history is compacted away is never resumed from the
//!   same revision: list again ("compacted"); any other watch failure
//!   resumes from the last revision seen after a backoff;
//! - a batch the dataplane refuses leaves the maps as they were (the
//!   programmer takes it back) and is retried after a backoff; the
//!   applied revision does not move until it succeeds.
//!
//! The status is published on every change and each problem logged once.

use std::{future::Future, time::Duration};

use lb_dataplane::{NodeConfig, Programmer};
use lb_store::{Event, Revision, Store, StoreError, Watch};
use tokio::{sync::watch, time::Instant};
use tracing::{error, info, warn};

use crate::{
    gateway::Gateway,
    metrics,
    reconciler::Reconciler,
    status::{self, NodeStatus, SyncState},
};

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// How often the dataplane's counters are read into metrics.
    pub stats_interval: Duration,
    /// Backend addresses with series, at most.
    pub backend_series: usize,
    /// First and longest wait before retrying the store or the maps.
    pub backoff: (Duration, Duration),
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            stats_interval: Duration::from_secs(5),
            backend_series: crate::settings::DEFAULT_BACKEND_SERIES,
            backoff: (Duration::from_millis(100), Duration::from_secs(30)),
        }
    }
}

/// Where the loop is with the store.
enum Phase {
    /// A full listing is due, for this reason.
    List(&'static str),
    /// A watch is due from this revision.
    Resume(Revision),
    Watching(Watch),
}

/// Events received and not yet live.
#[derive(Default)]
struct Pending {
    /// The revision reconcile will have applied once they are live.
    revision: Option<Revision>,
    /// When each arrived.
    received: Vec<Instant>,
}

impl Pending {
    fn add(&mut self, revision: Revision) {
        self.revision = Some(revision);
        self.received.push(Instant::now());
    }
}

/// The node settings in force, and the gateway as it changes
/// (`gateway::follow`): each new MAC is programmed with the rest kept.
pub struct GatewayFeed {
    pub node: NodeConfig,
    pub updates: watch::Receiver<Gateway>,
}

impl GatewayFeed {
    async fn changed(feed: &mut Option<Self>) -> Gateway {
        if let Some(f) = feed
            && f.updates.changed().await.is_ok()
        {
            return *f.updates.borrow_and_update();
        }
        // No feed, or its sender is gone: the gateway stays as it is.
        std::future::pending().await
    }
}

/// Runs the control loop until `shutdown` resolves. Returns an error only
/// when the store is gone for good (closed).
pub async fn run<S: Store>(
    store: &S,
    programmer: &mut Programmer,
    mut reconciler: Reconciler,
    options: LoopOptions,
    status_tx: watch::Sender<NodeStatus>,
    mut gateway: Option<GatewayFeed>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let status = status_tx.borrow().clone();
    let mut node = Node {
        status,
        status_tx,
        backoff: Backoff::new(options.backoff),
    };
    let mut phase = Phase::List("start");
    let mut pending = Pending::default();
    let _counters = CounterThread::start(programmer, node.status_tx.subscribe(), &options);
    loop {
        if let Some(revision) = pending.revision {
            if node.reconcile(&mut reconciler, programmer, revision, &pending.received) {
                pending = Pending::default();
            } else if node.pause(&mut shutdown).await {
                return Ok(());
            } else {
                continue;
            }
        }
        phase = match phase {
            Phase::List(reason) => {
                metrics::relist(reason);
                match store.list(&reconciler.keys().vips(), None).await {
                    Ok(listing) => {
                        reconciler.replace_all(&listing);
                        node.saw(listing.revision);
                        node.set_state(SyncState::Syncing);
                        pending.add(listing.revision);
                        Phase::Resume(listing.revision + 1)
                    }
                    Err(StoreError::Closed) => return Err(StoreError::Closed),
                    Err(e) => {
                        node.failed(format!("listing the store: {e}"));
                        if node.pause(&mut shutdown).await {
                            return Ok(());
                        }
                        Phase::List("error")
                    }
                }
            }
            Phase::Resume(from) => match store.watch(&reconciler.keys().vips(), from).await {
                Ok(w) => Phase::Watching(w),
                Err(StoreError::Compacted { .. }) => Phase::List("compacted"),
                Err(StoreError::Closed) => return Err(StoreError::Closed),
                Err(e) => {
                    node.failed(format!("watching the store from revision {from}: {e}"));
                    if node.pause(&mut shutdown).await {
                        return Ok(());
                    }
                    Phase::Resume(from)
                }
            },
            Phase::Watching(mut w) => tokio::select! {
                () = &mut shutdown => return Ok(()),
                g = GatewayFeed::changed(&mut gateway) => {
                    if let Some(feed) = &mut gateway {
                        let next = NodeConfig { gateway_mac: g.mac, ..feed.node.clone() };
                        match programmer.set_node(&next) {
                            Ok(()) => feed.node = next,
                            Err(e) => error!("programming gateway {} ({}): {e}", g.address, crate::gateway::format_mac(g.mac)),
                        }
                    }
                    Phase::Watching(w)
                }
                first = w.next() => {
                    let next = take_burst(first, &mut w, &mut reconciler, &mut node, &mut pending)?;
                    next.unwrap_or(Phase::Watching(w))
                }
            },
        };
    }
}

/// Takes `first` and every event already queued behind it into the view.
/// `Some` phase when the watch ended and must be replaced.
fn take_burst(
    first: Option<Result<Event, StoreError>>,
    w: &mut Watch,
    reconciler: &mut Reconciler,
    node: &mut Node,
    pending: &mut Pending,
) -> Result<Option<Phase>, StoreError> {
    let mut next = first;
    loop {
        match next {
            Some(Ok(event)) => {
                reconciler.event(&event);
                node.saw(event.revision());
                pending.add(event.revision());
            }
            Some(Err(StoreError::Compacted { .. })) => return Ok(Some(Phase::List("compacted"))),
            Some(Err(StoreError::Closed)) | None => return Err(StoreError::Closed),
            Some(Err(e)) => {
                node.failed(format!("watching the store: {e}"));
                let seen = pending.revision.unwrap_or(node.status.applied_revision);
                return Ok(Some(Phase::Resume(seen + 1)));
            }
        }
        next = w.try_next();
        if next.is_none() {
            return Ok(None);
        }
    }
}

/// The loop's status and how it reports it.
struct Node {
    status: NodeStatus,
    status_tx: watch::Sender<NodeStatus>,
    backoff: Backoff,
}

impl Node {
    /// One reconcile of everything received up to `revision`; `false` when
    /// the dataplane refused the batch (the maps are unchanged).
    fn reconcile(
        &mut self,
        reconciler: &mut Reconciler,
        programmer: &mut Programmer,
        revision: Revision,
        received: &[Instant],
    ) -> bool {
        let started = Instant::now();
        let result = reconciler.reconcile(programmer);
        let took = started.elapsed();
        let mut next = self.status.clone();
        next.usage = programmer.usage();
        next.decided(reconciler.desired());
        next.applied = programmer.applied();
        let ok = match result {
            Ok(plan) => {
                metrics::reconciled(
                    if plan.is_empty() {
                        "unchanged"
                    } else {
                        "applied"
                    },
                    took,
                );
                let live = Instant::now();
                for at in received {
                    metrics::event_to_live(live - *at);
                }
                next.applied_revision = revision;
                next.state = SyncState::InSync;
                next.error = None;
                self.backoff.reset();
                true
            }
            Err(e) => {
                metrics::reconciled("failed", took);
                let message = format!("programming the dataplane: {e}");
                if self.status.error.as_deref() != Some(message.as_str()) {
                    error!("{message}; the maps keep their previous state, retrying");
                }
                next.error = Some(message);
                false
            }
        };
        self.publish(next);
        ok
    }

    fn saw(&mut self, revision: Revision) {
        self.status.store_revision = self.status.store_revision.max(revision);
    }

    fn set_state(&mut self, state: SyncState) {
        let mut next = self.status.clone();
        next.state = state;
        self.publish(next);
    }

    /// A store failure, logged when it is new.
    fn failed(&mut self, message: String) {
        if self.status.error.as_deref() != Some(message.as_str()) {
            warn!("{message}; the dataplane keeps its state, retrying");
        }
        let mut next = self.status.clone();
        next.error = Some(message);
        if next.state == SyncState::InSync {
            next.state = SyncState::Syncing;
        }
        self.publish(next);
    }

    /// Waits out the backoff; `true` when told to stop meanwhile.
    async fn pause(&mut self, shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        let wait = self.backoff.next();
        tokio::select! {
            () = shutdown.as_mut() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }

    fn publish(&mut self, next: NodeStatus) {
        let changes = status::changes(&self.status, &next);
        for (key, problem) in &changes.raised {
            warn!(key, reason = problem.reason(), "{problem}");
            metrics::rejection(problem.reason());
        }
        for key in &changes.resolved {
            info!(key, "resolved: programmed as stored");
        }
        if next.state != self.status.state
            || (next.state == SyncState::InSync
                && next.programmed_vips != self.status.programmed_vips)
        {
            info!(
                state = next.state.as_str(),
                applied_revision = next.applied_revision,
                vips = next.programmed_vips,
                problems = next.problems.len(),
                "sync state"
            );
        }
        // Unchanged series are set again by the counters' thread each
        // interval; the loop sets them only when they change.
        if next != self.status {
            metrics::status(&next);
            self.status_tx.send_replace(next.clone());
        }
        self.status = next;
    }
}

/// Reads the dataplane's counters into metrics every interval, on a thread
/// of its own with handles of its own, so that the control loop never
/// waits for the tens of milliseconds that takes. Also sets the status
/// series again each time, so that the exporter's idle timeout keeps them.
/// Stopped and joined on drop.
struct CounterThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CounterThread {
    fn start(
        programmer: &Programmer,
        status: watch::Receiver<NodeStatus>,
        options: &LoopOptions,
    ) -> Self {
        let reader = match programmer.stats_reader() {
            Ok(r) => r,
            Err(e) => {
                error!("no counters in metrics: opening the counter maps: {e}");
                return Self {
                    stop: None,
                    thread: None,
                };
            }
        };
        let (stop, stopped) = std::sync::mpsc::channel();
        let (interval, backend_series) = (options.stats_interval, options.backend_series);
        let thread = std::thread::Builder::new()
            .name("lb-counters".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    // Out of the borrow before reading: the loop's next send
                    // waits for every borrow to end.
                    let now = status.borrow().clone();
                    metrics::status(&now);
                    let stats = reader.read(&now.applied, backend_series);
                    let names = metrics::vip_names(&now.desired);
                    match stats {
                        Ok(stats) => {
                            metrics::traffic(&stats, &names);
                            failing = false;
                        }
                        Err(e) if !failing => {
                            warn!("reading the dataplane's counters: {e}");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    match stopped.recv_timeout(interval) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .expect("a thread for the counters");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for CounterThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Exponential backoff with jitter, client-go's shape.
struct Backoff {
    first: Duration,
    most: Duration,
    current: Duration,
}

impl Backoff {
    fn new((first, most): (Duration, Duration)) -> Self {
        Self {
            first,
            most,
            current: first,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.most);
        // Up to +50%, from the clock's low bits: enough to spread a fleet.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    fn reset(&mut self) {
        self.current = self.first;
    }
}
