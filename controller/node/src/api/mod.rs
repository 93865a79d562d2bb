//! The gRPC API (`proto/lb/v1/api.proto`): VIPs as resources written
//! through the store, and this node's status, counters and flow
//! explanations. Served with gRPC health checking and server reflection,
//! within limits on time, message size and concurrency.
//!
//! - [`vips`], [`transact`], [`page`], [`write`]: `VipService`, the
//!   validating writer.
//! - [`node`], [`views`], [`explain`]: `NodeService`, read from the status
//!   channel and the maps.
//! - [`access`]: roles by client-certificate identity.
//! - [`calls`]: a log line and metrics per call.
//! - [`error`]: failures in the richer error model.

pub mod access;
pub mod calls;
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

pub use access::{Access, Role, Roles};
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
/// Most `WatchStatus` and `WatchStats` streams open at once, over all
/// clients: each holds a task and reads the maps.
pub const MAX_WATCHES: usize = 32;

/// Whether `listen` may be served as configured: other hosts only over
/// TLS with client certificates, so that every caller has an identity.
pub fn check_listen(listen: SocketAddr, mutual_tls: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || mutual_tls {
        Ok(())
    } else {
        Err(format!(
            "{listen} is not a loopback address: the API serves other hosts only over TLS \
             with client certificates (api.tls.cert, key and clientCa)"
        ))
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
/// With `tls`, over TLS only (and mutual TLS when it has a client CA).
pub async fn serve<S: Store + Clone + 'static>(
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
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
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(calls::CallsLayer)
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
