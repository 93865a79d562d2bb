//! A lab for the `lb-controller` binary: a balancer namespace and a
//! client namespace joined by a veth, the balancer's default route through
//! the client end (the client plays the gateway), a store on a temporary
//! directory, and the controller run as a process in the namespace.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use lb_config::{Backend, BackendState, Protocol, Vip, VipOptions};
use lb_testbed::{Netns, PacketSocket, VethPair};

/// A TCP port-80 VIP with active backends of weight 1.
pub fn vip(name: &str, address: &str, backends: &[&str]) -> Vip {
    Vip {
        name: name.into(),
        address: address.parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        options: VipOptions::default(),
        backends: backends
            .iter()
            .map(|b| Backend {
                address: b.parse().unwrap(),
                weight: 1,
                state: BackendState::Active,
            })
            .collect(),
        owner: String::new(),
        health_check: false,
    }
}

pub const GATEWAY: &str = "10.9.0.1";
pub const METRICS: &str = "127.0.0.1:9610";

pub struct Lab {
    pub lb: Netns,
    pub client: Netns,
    pub link: VethPair,
    pub dir: tempfile::TempDir,
    socket: PacketSocket,
}

impl Lab {
    pub fn new() -> Self {
        let lb = Netns::new("ctl").unwrap();
        let client = Netns::new("gw").unwrap();
        let link = VethPair::new(&lb, &client).unwrap();
        lb.ip(&["addr", "add", "10.9.0.2/24", "dev", &link.local])
            .unwrap();
        client
            .ip(&["addr", "add", "10.9.0.1/24", "dev", &link.peer])
            .unwrap();
        lb.ip(&["route", "add", "default", "via", GATEWAY]).unwrap();
        lb.ip(&[
            "neigh",
            "replace",
            GATEWAY,
            "lladdr",
            &mac_text(link.peer_mac),
            "dev",
            &link.local,
            "nud",
            "permanent",
        ])
        .unwrap();
        // Generic mode sees what GRO built; frames here are single
        // segments anyway, and the controller refuses GRO on.
        lb.ethtool(&["-K", &link.local, "gro", "off"]).unwrap();
        let socket = client
            .run(|| PacketSocket::bind(&link.peer))
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("controller.yaml"),
            "nodeName: lab\nstatsInterval: 0.2\nbackendSeries: 1\nnode:\n  attachMode: ATTACH_MODE_GENERIC\n  \
             sizes:\n    maxVips: 64\n    maxBackends: 1024\n    ringSize: 1021\n    \
             flowTableEntries: 65536\n",
        )
        .unwrap();
        Self {
            lb,
            client,
            link,
            dir,
            socket,
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store.redb")
    }

    /// The controller on the lab's interface and store.
    pub fn start(&self) -> Controller {
        let config = self.dir.path().join("controller.yaml");
        Controller::spawn(
            &self.lb,
            &[
                "--interface",
                &self.link.local,
                "--store",
                self.store().to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        )
    }

    /// Sends one SYN per client to `vip`:80 and returns where the balancer
    /// sent them: (outer destination, Ethernet destination) → count.
    pub fn spread(&self, vip: Ipv4Addr, clients: u32) -> BTreeMap<(IpAddr, [u8; 6]), u32> {
        for i in 0..clients {
            let client = Ipv4Addr::from(0xc633_6400 + i);
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(self.link.peer_mac, self.link.local_mac)
                .ipv4(client.octets(), vip.octets(), 64)
                .tcp(20_000 + (i % 30_000) as u16, 80, 1, 65_535)
                .syn()
                .write(&mut frame, &[])
                .unwrap();
            self.socket.send(&frame).unwrap();
        }
        let mut out = BTreeMap::new();
        for frame in self
            .socket
            .drain(Duration::from_millis(300), |f| {
                inner_destination(f) == Some(vip)
            })
            .unwrap()
        {
            let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(NetSlice::Ipv4(ip)) = sliced.net else {
                continue;
            };
            let dst: [u8; 6] = frame[..6].try_into().unwrap();
            *out.entry((ip.header().destination_addr().into(), dst))
                .or_default() += 1;
        }
        out
    }

    /// The backends that took `vip`'s flows.
    pub fn backends_of(&self, vip: Ipv4Addr) -> std::collections::BTreeSet<IpAddr> {
        self.spread(vip, 64).keys().map(|(b, _)| *b).collect()
    }

    pub fn metrics(&self) -> Option<String> {
        self.lb.run(scrape).unwrap()
    }

    /// Waits until the metric `series` reads `wanted`.
    pub fn wait_metric(&self, controller: &Controller, series: &str, wanted: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.metrics().and_then(|m| value(&m, series))
                && wanted(v)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never as wanted; last metrics:\n{}\ncontroller's log:\n{}",
                self.metrics().unwrap_or_default(),
                controller.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The IPv4 destination inside an IPIP frame.
fn inner_destination(frame: &[u8]) -> Option<Ipv4Addr> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let NetSlice::Ipv4(outer) = sliced.net? else {
        return None;
    };
    if outer.header().protocol() != etherparse::IpNumber::IPV4 {
        return None;
    }
    let inner = etherparse::Ipv4HeaderSlice::from_slice(outer.payload().payload).ok()?;
    Some(inner.destination_addr())
}

fn scrape() -> Option<String> {
    let mut stream = TcpStream::connect(METRICS).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of one series (`name{labels}` exactly as rendered).
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `lb-controller` as a process in a namespace (entered with `nsenter`,
/// which keeps the host's /sys and its bpffs), killed on drop.
pub struct Controller {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Controller {
    pub fn spawn(ns: &Netns, args: &[&str]) -> Self {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg(env!("CARGO_BIN_EXE_lb-controller"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
