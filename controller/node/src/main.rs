//! `lb-controller`: checks the host, opens the store, loads and attaches
//! the balancer, then runs the control loop until SIGTERM or SIGINT.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::Parser as _;
use lb_config::node::{AttachMode, Gateway as GatewaySetting};
use lb_controller::{
    api::{self, Access, Node, Sizes, Vips, Writer},
    daemon::{self, GatewayFeed, LoopOptions},
    gateway::{self, Gateway, format_mac},
    metrics, preflight,
    reconciler::Reconciler,
    settings::{Args, Settings},
    status::NodeStatus,
};
use lb_dataplane::{Dataplane, NodeConfig, ProgramKind};
use lb_reconcile::Limits;
use lb_store::EmbeddedStore;
use tokio::sync::watch;
use tracing::info;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    preflight::check(&settings.interface)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(&settings.store)?;
    if let Some(addr) = settings.metrics {
        let endpoint = metrics::install(addr, settings.stats_interval * 3)?;
        tokio::spawn(async move {
            if let Err(e) = endpoint.await {
                tracing::error!("the metrics endpoint stopped: {e:?}");
            }
        });
    }
    let options = settings.load_options();
    let mut dp = Dataplane::load(&options).context("loading the balancer")?;
    let interface = &settings.interface;
    let handle = gateway::connect()?;
    let (ifindex, interface_mac) = gateway::link(&handle, interface).await?;
    let (gateway, feed) = match settings.node.gateway {
        GatewaySetting::Static(mac) => {
            info!(mac = %format_mac(mac), "gateway MAC set in the settings");
            (mac, None)
        }
        GatewaySetting::Resolve => {
            let found =
                gateway::resolve(&handle, interface, ifindex, Duration::from_secs(3)).await?;
            info!(gateway = %found.address, mac = %format_mac(found.mac), "gateway resolved");
            let (tx, rx) = watch::channel::<Gateway>(found);
            let name = interface.clone();
            let lookups = handle.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    gateway::follow(lookups, name, ifindex, found, Duration::from_secs(30), tx)
                        .await
                {
                    tracing::error!("following the gateway stopped: {e}; its MAC stays as it is");
                }
            });
            (found.mac, Some(rx))
        }
    };
    let n = &settings.node;
    let node = NodeConfig {
        gateway_mac: gateway,
        interface_mac,
        mtu: n.mtu,
        outer_source_v4: n.outer_source_v4.0,
        outer_source_v4_prefix: n.outer_source_v4.1,
        outer_source_v6: n.outer_source_v6.0,
        outer_source_v6_prefix: n.outer_source_v6.1,
        ..NodeConfig::default()
    };
    dp.programmer()
        .set_node(&node)
        .context("node settings (`node` in the settings file)")?;
    let mode = match n.attach_mode {
        AttachMode::Driver => XdpMode::Driver,
        AttachMode::Generic => XdpMode::Skb,
    };
    dp.attach(ProgramKind::Balancer, interface, mode)
        .with_context(|| format!("attaching to {interface}"))?;
    info!(
        node = settings.node_name,
        interface,
        mode = ?n.attach_mode,
        store = %settings.store.display(),
        max_vips = options.max_vips,
        max_backends = options.max_backends,
        ring_size = options.ring_size,
        "balancer attached"
    );
    let limits = Limits {
        max_vips: options.max_vips as usize,
        max_backends: options.max_backends as usize,
    };
    let reconciler = Reconciler::new(settings.keys.clone(), limits, dp.programmer());
    let (status_tx, status) = watch::channel(NodeStatus::new(dp.programmer().usage()));
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = match settings.api {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("the API's address {addr}"))?;
            let (tls, access) = api_tls(settings.api_tls.as_ref())?;
            let vips = Vips {
                writer: Writer {
                    store: store.clone(),
                    keys: settings.keys.clone(),
                    sizes: Sizes {
                        max_vips: limits.max_vips,
                        max_backends: limits.max_backends,
                        ring_size: options.ring_size,
                    },
                },
                status: status.clone(),
                access: access.clone(),
            };
            let node = Node {
                name: settings.node_name.clone(),
                status,
                observer: std::sync::Arc::new(std::sync::Mutex::new(
                    dp.programmer()
                        .observer()
                        .context("opening the maps for the API")?,
                )),
                backend_series: settings.backend_series,
                access,
                watches: std::sync::Arc::new(tokio::sync::Semaphore::new(api::MAX_WATCHES)),
            };
            info!(%addr, tls = tls.is_some(), "serving the API");
            Some(tokio::spawn(api::serve(listener, tls, vips, node, async {
                let _ = api_stopped.await;
            })))
        }
        None => None,
    };
    let loop_options = LoopOptions {
        stats_interval: settings.stats_interval,
        backend_series: settings.backend_series,
        ..LoopOptions::default()
    };
    let feed = feed.map(|updates| GatewayFeed { node, updates });
    daemon::run(
        &store,
        dp.programmer(),
        reconciler,
        loop_options,
        status_tx,
        feed,
        stop_signal(),
    )
    .await?;
    let _ = api_stop.send(());
    if let Some(task) = api_task {
        match task.await {
            Ok(Err(e)) => tracing::error!("the API stopped: {e}"),
            Err(e) => tracing::error!("the API task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    info!(interface, "stopping: the balancer is detached");
    Ok(())
}

/// The API's TLS config and who may call it, from the settings' files.
fn api_tls(
    tls: Option<&lb_controller::settings::ApiTls>,
) -> anyhow::Result<(Option<tonic::transport::ServerTlsConfig>, Access)> {
    let Some(tls) = tls else {
        return Ok((None, Access::Open));
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("the API's TLS: reading {}", p.display()))
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    let access = match &tls.client_ca {
        Some(ca) => {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
            Access::Certificates(tls.roles.clone())
        }
        None => Access::Open,
    };
    Ok((Some(config), access))
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
