//! `lb.v1.NodeService`: this node's status, counters and flow
//! explanations. Each read of the maps runs on a blocking thread with the
//! observer's own handles, never in the control loop.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use lb_dataplane::{Observer, Programmer};
use lb_proto::v1::{
    self as pb, ErrorReason, ExplainFlowRequest, FlowExplanation, GetStatsRequest,
    GetStatusRequest, WatchStatsRequest, WatchStatusRequest, node_service_server::NodeService,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::{
    access::Access,
    error::{ApiError, ApiResult},
    explain::{self, Flow},
    views::{self, Actual},
};
use crate::{metrics, status::NodeStatus};

/// Reads of the maps during which the controller programmed something
/// before a read-back is reported as it stands.
const READ_BACK_ATTEMPTS: usize = 3;

/// The service over this node's status and maps.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub status: watch::Receiver<NodeStatus>,
    pub observer: Arc<Mutex<Observer>>,
    /// Backend addresses whose counters a snapshot reads.
    pub backend_series: usize,
    pub access: Access,
    /// Permits of the open watch streams ([`super::MAX_WATCHES`]).
    pub watches: Arc<Semaphore>,
}

pub fn unreadable(reason: &str) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        ErrorReason::DataplaneUnreadable,
        format!("reading the dataplane's maps: {reason}"),
    )
}

impl Node {
    /// A permit for one more watch stream, or RESOURCE_EXHAUSTED.
    fn watch_permit(&self) -> ApiResult<OwnedSemaphorePermit> {
        Arc::clone(&self.watches).try_acquire_owned().map_err(|_| {
            ApiError::new(
                Code::ResourceExhausted,
                ErrorReason::RequestLimit,
                format!(
                    "{} watch streams are open on this node, the most it serves: close one, \
                     or poll instead",
                    super::MAX_WATCHES
                ),
            )
        })
    }

    /// `read` over the maps read back, on a blocking thread; read again
    /// when the controller programmed meanwhile, so that the answer is of
    /// one applied state.
    async fn read_back<T: Send + 'static>(
        &self,
        read: impl Fn(&Programmer, &NodeStatus) -> T + Send + Sync + 'static,
    ) -> Result<(T, NodeStatus), String> {
        let read = Arc::new(read);
        let mut last = None;
        for _ in 0..READ_BACK_ATTEMPTS {
            let before = self.status.borrow().clone();
            let observer = Arc::clone(&self.observer);
            let read = Arc::clone(&read);
            let status = before.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let observer = observer.lock().unwrap_or_else(|p| p.into_inner());
                observer
                    .read_back()
                    .map(|maps| read(&maps, &status))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("the read-back task failed: {e}"))??;
            let moved = self.status.borrow().applied != before.applied;
            last = Some((answer, before));
            if !moved {
                break;
            }
        }
        Ok(last.expect("at least one attempt"))
    }

    async fn status_now(&self) -> pb::NodeStatus {
        let read = self
            .read_back(|maps, _| maps.vips().cloned().collect::<Vec<_>>())
            .await;
        let (actual, status): (Actual, NodeStatus) = match read {
            Ok((vips, status)) => (Ok(vips), status),
            Err(e) => (Err(e), self.status.borrow().clone()),
        };
        views::node_status(&self.name, &status, &actual)
    }

    async fn stats_now(&self) -> ApiResult<pb::Stats> {
        let status = self.status.borrow().clone();
        let observer = Arc::clone(&self.observer);
        let bound = self.backend_series;
        let applied = status.applied.clone();
        let stats = tokio::task::spawn_blocking(move || {
            let observer = observer.lock().unwrap_or_else(|p| p.into_inner());
            observer.stats_reader()?.read(&applied, bound)
        })
        .await
        .map_err(|e| unreadable(&e.to_string()))?
        .map_err(|e| unreadable(&e.to_string()))?;
        let names = metrics::vip_names(&status.desired);
        let traffic = |t: &lb_abi::stats::TrafficCounters| pb::TrafficCounters {
            packets: t.packets,
            bytes: t.bytes,
        };
        Ok(pb::Stats {
            verdicts: stats
                .global
                .iter()
                .map(|(c, n)| (c.label().to_owned(), *n))
                .collect(),
            vips: stats
                .vips
                .iter()
                .map(|(key, t)| pb::VipStats {
                    name: names.get(key).cloned().unwrap_or_default(),
                    service: views::service_name(key),
                    sent: Some(traffic(t)),
                    flows_not_recorded_flood: stats
                        .vip_flows_not_recorded_flood
                        .get(key)
                        .copied()
                        .unwrap_or(0),
                })
                .collect(),
            backends: stats
                .backends
                .iter()
                .map(|(address, t)| pb::BackendStats {
                    address: address.to_string(),
                    sent: Some(traffic(t)),
                })
                .collect(),
            backends_not_read: stats.backends_not_read as u32,
        })
    }
}

/// A stream of messages a task sends.
type Stream<T> = ReceiverStream<Result<T, Status>>;

fn interval(ms: u32, default: u64, least: u64) -> Duration {
    Duration::from_millis(match u64::from(ms) {
        0 => default,
        ms => ms.max(least),
    })
}

#[tonic::async_trait]
impl NodeService for Node {
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        self.access.role(&request)?;
        Ok(Response::new(self.status_now().await))
    }

    type WatchStatusStream = Stream<pb::NodeStatus>;

    async fn watch_status(
        &self,
        request: Request<WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        self.access.role(&request)?;
        let permit = self.watch_permit()?;
        let every = interval(request.into_inner().read_back_interval_ms, 5000, 200);
        let (tx, rx) = mpsc::channel(4);
        let node = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut changes = node.status.clone();
            let mut last: Option<pb::NodeStatus> = None;
            loop {
                let now = node.status_now().await;
                if last.as_ref() != Some(&now) {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(every) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        self.access.role(&request)?;
        Ok(Response::new(self.stats_now().await?))
    }

    type WatchStatsStream = Stream<pb::Stats>;

    async fn watch_stats(
        &self,
        request: Request<WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        self.access.role(&request)?;
        let permit = self.watch_permit()?;
        let every = interval(request.into_inner().interval_ms, 1000, 100);
        let (tx, rx) = mpsc::channel(4);
        let node = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = tx.closed() => return,
                }
                let stats = node.stats_now().await.map_err(Status::from);
                let failed = stats.is_err();
                if tx.send(stats).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn explain_flow(
        &self,
        request: Request<ExplainFlowRequest>,
    ) -> Result<Response<FlowExplanation>, Status> {
        self.access.role(&request)?;
        let flow = Flow::from_request(&request.into_inner())?;
        let (answer, _) = self
            .read_back(move |maps, status| {
                explain::explain(maps, &metrics::vip_names(&status.desired), &flow)
            })
            .await
            .map_err(|e| unreadable(&e))?;
        Ok(Response::new(answer?))
    }
}
