//! The controller's settings: flags, then the environment (clap reads
//! both), then the config file, then defaults.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use lb_config::{Keys, NodeSettings, node::AttachMode};
use lb_dataplane::LoadOptions;
use serde::Deserialize;

pub const DEFAULT_STORE: &str = "/var/lib/lb/store.redb";
pub const DEFAULT_METRICS: &str = "127.0.0.1:9610";
/// Backend addresses with their own series, at most (`--backend-series`).
pub const DEFAULT_BACKEND_SERIES: usize = 1024;

const LONG_ABOUT: &str = "\
The node controller: programs this node's XDP load balancer with the VIPs of
its store, keeps it in step as they change, and exports its status and
counters to Prometheus.

Settings come from flags, then LB_* environment variables, then the file of
--config (YAML or JSON; see deploy/), then defaults.

It needs CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN for both) and CAP_NET_ADMIN,
a mounted bpffs at /sys/fs/bpf and the interface; it says which is missing.

On SIGTERM or SIGINT it stops cleanly and detaches the balancer from the
interface: until a controller runs again, VIP traffic reaches the host's
own stack. (Keeping the dataplane forwarding across restarts is planned.)";

/// Attach modes, as flags spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native XDP in the driver: production.
    Driver,
    /// Generic XDP (refused while GRO is on).
    Generic,
}

#[derive(Debug, Parser)]
#[command(name = "lb-controller", version, about = "The node controller of the XDP load balancer", long_about = LONG_ABOUT)]
pub struct Args {
    /// The interface to attach to (the file's `node.interface`).
    #[arg(long, env = "LB_INTERFACE")]
    pub interface: Option<String>,
    /// Attach mode (the file's `node.attachMode`) [default: driver]
    #[arg(long, env = "LB_XDP_MODE", value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// The embedded store's file [default: /var/lib/lb/store.redb]
    #[arg(long, env = "LB_STORE")]
    pub store: Option<PathBuf>,
    /// This node's name in status and logs [default: the host name]
    #[arg(long, env = "LB_NODE_NAME")]
    pub node_name: Option<String>,
    /// Settings file, YAML or JSON.
    #[arg(long, env = "LB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Prometheus endpoint, or `none` [default: 127.0.0.1:9610]
    #[arg(long, env = "LB_METRICS")]
    pub metrics: Option<String>,
    /// gRPC API (lb.v1) listen address, or `none`; loopback only
    /// [default: 127.0.0.1:9620]
    #[arg(long, env = "LB_API")]
    pub api: Option<String>,
    /// The API's TLS certificate chain (PEM); with --api-tls-key, the API
    /// is served over TLS only.
    #[arg(long, env = "LB_API_TLS_CERT", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The API's TLS private key (PEM).
    #[arg(long, env = "LB_API_TLS_KEY", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// CA of client certificates (PEM): mutual TLS, each client's role by
    /// its identity (apiTls.readOnly, apiTls.readWrite in --config).
    #[arg(long, env = "LB_API_CLIENT_CA")]
    pub api_client_ca: Option<PathBuf>,
    /// Key prefix the VIPs live under (`<prefix>/lb/v1/vips/`) [default: empty]
    #[arg(long, env = "LB_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// Most backend addresses with their own metric series [default: 1024]
    #[arg(long, env = "LB_BACKEND_SERIES")]
    pub backend_series: Option<usize>,
    /// How often the dataplane's counters are read, in seconds [default: 5]
    #[arg(long, env = "LB_STATS_INTERVAL")]
    pub stats_interval: Option<f64>,
}

/// The settings file: the controller's own settings, and the node's
/// (`lb.v1.NodeSettings`, the schema's JSON names) under `node`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    store: Option<PathBuf>,
    node_name: Option<String>,
    metrics: Option<String>,
    api: Option<String>,
    api_tls: Option<ApiTlsFile>,
    key_prefix: Option<String>,
    backend_series: Option<usize>,
    stats_interval: Option<f64>,
    node: Option<serde_json::Value>,
}

/// `apiTls` of the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiTlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    #[serde(default)]
    read_only: Vec<String>,
    #[serde(default)]
    read_write: Vec<String>,
}

/// The API's TLS: its identity, and with a client CA the roles of the
/// client identities it verifies.
#[derive(Debug, Clone)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub roles: crate::api::Roles,
}

/// Everything the controller runs with.
#[derive(Debug)]
pub struct Settings {
    pub interface: String,
    pub node: NodeSettings,
    pub store: PathBuf,
    pub node_name: String,
    pub metrics: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub api_tls: Option<ApiTls>,
    pub keys: Keys,
    pub backend_series: usize,
    pub stats_interval: Duration,
}

impl Settings {
    pub fn resolve(args: Args) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let source = args.config.as_deref().map_or("(defaults)".to_owned(), |p| {
            format!("{}: node", p.display())
        });
        let mut node = match file.node {
            Some(doc) => NodeSettings::decode(&source, doc)?,
            None => NodeSettings::default(),
        };
        if let Some(mode) = args.xdp_mode {
            node.attach_mode = match mode {
                XdpMode::Driver => AttachMode::Driver,
                XdpMode::Generic => AttachMode::Generic,
            };
        }
        let Some(interface) = args.interface.or(node.interface.clone()) else {
            bail!(
                "no interface: give --interface IF (or LB_INTERFACE, or node.interface in --config)"
            );
        };
        let metrics = match args
            .metrics
            .or(file.metrics)
            .unwrap_or_else(|| DEFAULT_METRICS.to_owned())
            .as_str()
        {
            "none" => None,
            addr => Some(addr.parse().with_context(|| {
                format!("metrics: {addr:?} is not an address:port (or `none`)")
            })?),
        };
        let tls_file = file.api_tls.unwrap_or_default();
        let api_tls = match (
            args.api_tls_cert.or(tls_file.cert),
            args.api_tls_key.or(tls_file.key),
        ) {
            (Some(cert), Some(key)) => Some(ApiTls {
                cert,
                key,
                client_ca: args.api_client_ca.or(tls_file.client_ca),
                roles: crate::api::Roles {
                    read_only: tls_file.read_only.into_iter().collect(),
                    read_write: tls_file.read_write.into_iter().collect(),
                },
            }),
            (None, None) => None,
            _ => bail!("api TLS needs both a certificate and a key (apiTls.cert and apiTls.key)"),
        };
        let mutual = api_tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let api = match args
            .api
            .or(file.api)
            .unwrap_or_else(|| crate::api::DEFAULT_LISTEN.to_owned())
            .as_str()
        {
            "none" => None,
            addr => {
                let addr: SocketAddr = addr
                    .parse()
                    .with_context(|| format!("api: {addr:?} is not an address:port (or `none`)"))?;
                crate::api::check_listen(addr, mutual).map_err(|e| anyhow::anyhow!("api: {e}"))?;
                Some(addr)
            }
        };
        let prefix = args.key_prefix.or(file.key_prefix).unwrap_or_default();
        let Some(keys) = Keys::new(&prefix) else {
            bail!("key prefix {prefix:?} must be empty or start with `/`");
        };
        let stats_interval = args.stats_interval.or(file.stats_interval).unwrap_or(5.0);
        if !(0.1..=3600.0).contains(&stats_interval) {
            bail!("stats interval {stats_interval} s is not 0.1 to 3600");
        }
        Ok(Self {
            interface,
            node,
            store: args
                .store
                .or(file.store)
                .unwrap_or_else(|| DEFAULT_STORE.into()),
            node_name: match args.node_name.or(file.node_name) {
                Some(n) => n,
                None => host_name()?,
            },
            metrics,
            api,
            api_tls,
            keys,
            backend_series: args
                .backend_series
                .or(file.backend_series)
                .unwrap_or(DEFAULT_BACKEND_SERIES),
            stats_interval: Duration::from_secs_f64(stats_interval),
        })
    }

    /// The dataplane's sizes: the defaults, with what the settings name.
    pub fn load_options(&self) -> LoadOptions {
        let s = &self.node.sizes;
        let mut o = LoadOptions::default();
        let set = |field: &mut u32, value: Option<u32>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut o.flow_table_entries, s.flow_table_entries);
        set(&mut o.max_vips, s.max_vips);
        set(&mut o.max_backends, s.max_backends);
        set(&mut o.ring_size, s.ring_size);
        set(
            &mut o.new_flows_per_cpu_per_sec,
            s.new_flows_per_cpu_per_sec,
        );
        set(
            &mut o.too_big_replies_per_cpu_per_sec,
            s.too_big_replies_per_cpu_per_sec,
        );
        match s.flow_cache_slots {
            Some(0) => o.per_cpu_caches = false,
            Some(n) => o.flow_cache_slots = n,
            None => {}
        }
        if let Some(ms) = s.udp_flow_timeout_ms {
            o.udp_flow_timeout = Duration::from_millis(u64::from(ms));
        }
        o
    }
}

fn read_file(path: &Path) -> anyhow::Result<File> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the settings file {}", path.display()))?;
    // YAML is a superset of JSON: one parser reads both.
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: not YAML or JSON", path.display()))?;
    let value = if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value
    };
    serde_json::from_value(value).with_context(|| format!("{}", path.display()))
}

fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name (give --node-name)")?;
    Ok(name.trim().to_owned())
}
