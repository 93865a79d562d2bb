//! A real controller for the tests, in-process: the embedded store on a
//! temporary directory, a loaded balancer (not attached: packets are run
//! through it with `BPF_PROG_TEST_RUN`), the control loop and the gRPC API
//! on a free loopback port; and `lbctl` run as a process against it.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::{Arc, Mutex},
    time::Duration,
};

use lb_config::Keys;
use lb_controller::{
    api::{self, Access, Node, Sizes, Vips, Writer},
    daemon::{self, LoopOptions},
    reconciler::Reconciler,
    status::NodeStatus,
};
use lb_dataplane::{Dataplane, LoadOptions, NodeConfig, Observer, ProgramKind, Runner};
use lb_proto::v1::{node_service_client::NodeServiceClient, vip_service_client::VipServiceClient};
use lb_reconcile::Limits;
use lb_store::EmbeddedStore;
use tempfile::TempDir;
use tokio::sync::watch;
use tonic::transport::Channel;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const RING_SIZE: u32 = 1021;

/// What a test gets of the running controller.
pub struct Controller<'r> {
    pub endpoint: String,
    pub dir: PathBuf,
    /// The balancer program, to run frames through.
    pub runner: &'r Runner<'r>,
    /// Handles on the maps beside the controller's, to read them or to
    /// change them behind its back.
    pub observer: Observer,
    pub status: watch::Receiver<NodeStatus>,
}

impl Controller<'_> {
    /// `lbctl ARGS` against this controller, with no config file of the
    /// user's in the way.
    pub fn lbctl(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(args)
            .env("HOME", &self.dir)
            .env("LBCTL_ENDPOINT", &self.endpoint)
            .env_remove("LBCTL_CONFIG")
            .output()
            .expect("run lbctl")
    }

    /// `lbctl ARGS`, which must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.lbctl(args);
        assert!(
            out.status.success(),
            "lbctl {args:?}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `lbctl ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("lbctl's JSON")
    }

    /// `lbctl vip create` of a port-80 TCP VIP with `backends`
    /// (`ADDRESS` or `ADDRESS*WEIGHT`), waited for until the node applied
    /// it: the created resource.
    pub fn create_applied(
        &self,
        name: &str,
        address: &str,
        backends: &[&str],
    ) -> serde_json::Value {
        let mut args = vec![
            "vip",
            "create",
            "--name",
            name,
            "--address",
            address,
            "--port",
            "80",
        ];
        for b in backends {
            args.extend(["--backend", b]);
        }
        let created = self.json(&args);
        let revision = created["storeRevision"].as_str().expect("a store revision");
        self.ok(&["status", "--wait", revision]);
        created
    }

    /// gRPC clients on a fresh channel.
    pub async fn clients(&self) -> (VipServiceClient<Channel>, NodeServiceClient<Channel>) {
        let channel = Channel::from_shared(self.endpoint.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to the API");
        (
            VipServiceClient::new(channel.clone()),
            NodeServiceClient::new(channel),
        )
    }

    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// lbctl's exit code and its stderr.
pub fn failed(out: &Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn small_options() -> LoadOptions {
    LoadOptions {
        ring_size: RING_SIZE,
        max_vips: 256,
        max_backends: 512,
        flow_table_entries: 1 << 14,
        ..LoadOptions::default()
    }
}

/// Runs `test` against a fresh controller, which is stopped (and its
/// temporary directory removed) afterwards, also when the test fails.
pub fn with_controller<T>(test: impl FnOnce(&Controller) -> T) -> T {
    with_secured_controller(None, Access::Open, test)
}

/// [`with_controller`], its API served with `tls` and `access`.
pub fn with_secured_controller<T>(
    tls: Option<tonic::transport::ServerTlsConfig>,
    access: Access,
    test: impl FnOnce(&Controller) -> T,
) -> T {
    let secured = tls.is_some();
    let dir = TempDir::new().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let options = small_options();
    let mut dp = Dataplane::load(&options).expect("load the dataplane (run as root)");
    dp.programmer()
        .set_node(&NodeConfig {
            gateway_mac: GATEWAY_MAC,
            interface_mac: LB_MAC,
            ..NodeConfig::default()
        })
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let keys = Keys::new("").unwrap();
    let limits = Limits {
        max_vips: options.max_vips as usize,
        max_backends: options.max_backends as usize,
    };
    let (runner, programmer) = dp.split(ProgramKind::Balancer).unwrap();
    let reconciler = Reconciler::new(keys.clone(), limits, programmer);
    let (status_tx, status) = watch::channel(NodeStatus::new(programmer.usage()));
    let observer = programmer.observer().unwrap();
    let test_observer = programmer.observer().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let vips = Vips {
        writer: Writer {
            store: store.clone(),
            keys: keys.clone(),
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
        name: "test-node".into(),
        status: status.clone(),
        observer: Arc::new(Mutex::new(observer)),
        backend_series: 1024,
        access,
        watches: Arc::new(tokio::sync::Semaphore::new(api::MAX_WATCHES)),
    };
    std::thread::scope(|s| {
        let controller = s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(api::serve(listener, tls, vips, node, async {
                    let _ = api_stopped.await;
                }));
                let options = LoopOptions {
                    backoff: (Duration::from_millis(50), Duration::from_millis(200)),
                    ..LoopOptions::default()
                };
                daemon::run(
                    &store,
                    programmer,
                    reconciler,
                    options,
                    status_tx,
                    None,
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
                let _ = api_stop.send(());
                server.await.unwrap().unwrap();
            });
        });
        let controller_view = Controller {
            endpoint: format!("{}://{addr}", if secured { "https" } else { "http" }),
            dir: dir.path().to_owned(),
            runner: &runner,
            observer: test_observer,
            status,
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&controller_view)));
        let _ = stop.send(());
        controller.join().expect("the controller thread");
        match result {
            Ok(t) => t,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A runtime for a test's own gRPC calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
