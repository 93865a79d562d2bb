//! The connection to a controller, from flags, the environment and the
//! config file, in that order.

use std::{path::PathBuf, time::Duration};

use lb_proto::v1::{node_service_client::NodeServiceClient, vip_service_client::VipServiceClient};
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{
    cli::Connection,
    fail::{Failure, Result, UNREACHABLE},
};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9620";
const DEFAULT_TIMEOUT: f64 = 30.0;
/// Largest answer taken: a page of VIPs is at most 2 MiB.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// lbctl's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    endpoint: Option<String>,
    request_timeout: Option<f64>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
}

/// The clients of both services on one channel.
pub struct Clients {
    pub vips: VipServiceClient<Channel>,
    pub node: NodeServiceClient<Channel>,
}

fn config_file(given: Option<PathBuf>) -> Result<File> {
    let (path, required) = match given {
        Some(p) => (p, true),
        None => match std::env::var_os("HOME") {
            Some(home) => (PathBuf::from(home).join(".config/lbctl/config.yaml"), false),
            None => return Ok(File::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(File::default());
        }
        Err(e) => return Err(Failure::input(format!("{}: {e}", path.display()))),
    };
    crate::files::parse_yaml::<File>(&path, &text)
}

pub async fn connect(c: &Connection) -> Result<Clients> {
    let file = config_file(c.config.clone())?;
    let endpoint = c
        .endpoint
        .clone()
        .or(file.endpoint)
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let timeout = c
        .request_timeout
        .or(file.request_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    if !(timeout > 0.0 && timeout <= 3600.0) {
        return Err(Failure::input(format!(
            "request timeout {timeout} s is not above 0 and at most 3600"
        )));
    }
    let tls = tls_config(
        c.tls_ca.clone().or(file.tls_ca),
        c.tls_cert.clone().or(file.tls_cert),
        c.tls_key.clone().or(file.tls_key),
        c.tls_server_name.clone().or(file.tls_server_name),
    )?;
    let with_scheme = if endpoint.contains("://") {
        endpoint.clone()
    } else if tls.is_some() {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    };
    let mut channel = Endpoint::from_shared(with_scheme)
        .map_err(|e| Failure::input(format!("endpoint {endpoint:?}: {e}")))?;
    if let Some(tls) = tls {
        channel = channel
            .tls_config(tls)
            .map_err(|e| Failure::input(format!("TLS settings: {e}")))?;
    }
    let channel = channel
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs_f64(timeout))
        .connect()
        .await
        .map_err(|e| {
            Failure::new(
                UNREACHABLE,
                format!(
                    "cannot reach the controller at {endpoint}: {e}{}\n  is lb-controller \
                     running, and is --endpoint (LBCTL_ENDPOINT) its API address?",
                    source_of(&e)
                ),
            )
        })?;
    Ok(Clients {
        vips: VipServiceClient::new(channel.clone()).max_decoding_message_size(MAX_ANSWER_BYTES),
        node: NodeServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES),
    })
}

/// The TLS settings, when any is given.
fn tls_config(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
) -> Result<Option<ClientTlsConfig>> {
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| Failure::input(format!("{}: {e}", p.display())));
    let mut tls = ClientTlsConfig::new();
    // The controller's CA is the operator's own, never the web's.
    let Some(ca) = &ca else {
        return Err(Failure::input(
            "TLS needs --tls-ca, the CA that signed the controller's certificate",
        ));
    };
    tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(&cert)?, read(&key)?))
        }
        (None, None) => {}
        _ => return Err(Failure::input("--tls-cert and --tls-key go together")),
    }
    if let Some(name) = server_name {
        tls = tls.domain_name(name);
    }
    Ok(Some(tls))
}

/// The innermost cause, where the transport hides it.
fn source_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e.source();
    let mut last = None;
    while let Some(s) = inner {
        last = Some(s.to_string());
        inner = s.source();
    }
    last.map(|s| format!(" ({s})")).unwrap_or_default()
}
