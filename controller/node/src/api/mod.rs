//! The gRPC API (`proto/lb/v1/api.proto`): VIPs as resources written
//! through the store, and this node's status, counters and flow
//! explanations. Served with gRPC health checking and server reflection,
//! within limits on time, message size and concurrency.
//!
//! - [`vips`], [`transact`], [`page`], [`write`]: `VipService`, the
//!   validating writer.
//! - [`node`], [`views`], [`explain`]: `NodeService`, read from the status
//!   channel and the maps.
//! - [`error`]: failures in the richer error model.

pub mod error;
pub mod explain;
pub mod node;
pub mod page;
pub mod transact;
pub mod views;
pub mod vips;
pub mod write;

use std::{future::Future, net::SocketAddr, time::Duration};

use lb_proto::v1::{node_service_server::NodeServiceServer, vip_service_server::VipServiceServer};
use lb_store::Store;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use node::Node;
pub use vips::Vips;
pub use write::{Sizes, Writer};

/// The port the API listens on by default, on loopback.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9620";

/// Longest a unary call may take; streams are bounded by their client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request taken: a transaction's 1.5 MiB of VIPs with room for
/// its framing, below tonic's 4 MiB default.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Most calls in flight on one connection (HTTP/2 streams).
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

/// Whether `listen` may be served without TLS: only loopback, where no
/// other host reaches it.
pub fn check_listen(listen: SocketAddr) -> Result<(), String> {
    if listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{listen} is not a loopback address: the API serves other hosts only over TLS \
             with client certificates"
        ))
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve<S: Store + Clone + 'static>(
    listener: TcpListener,
    vips: Vips<S>,
    node: Node,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VipServiceServer<Vips<S>>>().await;
    health.set_serving::<NodeServiceServer<Node>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets are built with the crate");
    tonic::transport::Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(VipServiceServer::new(vips).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(NodeServiceServer::new(node).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// The listening address of `listener`, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
