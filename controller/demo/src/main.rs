//! `lb-demo`: the product on a real veth, driven as an operator drives it.
//!
//! Topology (both namespaces are created here and removed on exit):
//!
//! ```text
//!  client netns                         lb netns
//!  [raw socket] vbN  <──── veth ────>  vaN [lb-controller: XDP balancer,
//!        ▲                                   embedded store, gRPC API]
//!        └──── IP-in-IP frames to the gateway (XDP_TX) ◄┘
//! ```
//!
//! `lb-controller` runs in the lb namespace with an embedded store in a
//! temporary directory; `lbctl apply -f` writes the VIP file through its
//! API, and `lbctl status --wait` waits for the node to program it. The
//! client sends a SYN and two data segments for each of `--flows` flows;
//! the balancer encapsulates each towards a backend and sends it back out;
//! the client plays the gateway and tallies them by backend. Then `lbctl
//! status`, `lbctl stats` and one `lbctl explain` show the node's side.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use lb_dataplane::{AttachMode, Dataplane, LoadOptions, ProgramKind};
use lb_testbed::{Netns, PacketSocket, VethPair};

#[derive(Parser)]
#[command(about = "Run lb-controller on a veth, configure it with lbctl, and send it real frames")]
struct Args {
    /// Number of client flows (each: SYN + two data segments).
    #[arg(long, default_value_t = 300)]
    flows: u16,
    /// XDP attach mode.
    #[arg(long, default_value = "driver")]
    mode: AttachMode,
    /// The VIP file to apply (one VIP on port 80/tcp).
    #[arg(long, default_value = "deploy/vips/demo.yaml")]
    vips: PathBuf,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A binary built beside this one (`cargo build --release` builds all).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("the demo's directory")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} is not built: `cargo build --release -p {name}`",
            path.display()
        );
    }
    Ok(path)
}

/// `lb-controller`, stopped with SIGTERM when dropped.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `lbctl ARGS` in the lb namespace (the API listens on its loopback).
fn lbctl(ns: &Netns, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(sibling("lbctl")?)
        .args(args)
        .env_remove("LBCTL_ENDPOINT")
        .output()
        .context("running lbctl")
}

/// `lbctl ARGS`, echoed and printed as a person would see it.
fn show(ns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    println!("\n$ lbctl {}", args.join(" "));
    let out = lbctl(ns, args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!(
            "lbctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

fn run(args: &Args) -> anyhow::Result<()> {
    let lb = Netns::new("lb")?;
    let client = Netns::new("client")?;
    let link = VethPair::new(&lb, &client)?;
    println!(
        "namespaces {} and {}, veth {} <-> {}",
        lb.name(),
        client.name(),
        link.local,
        link.peer
    );
    // Native XDP_TX on a veth reaches the peer only if the peer runs XDP.
    let mut peer = Dataplane::load(&LoadOptions {
        ring_size: 251,
        max_vips: 1,
        max_backends: 1,
        flow_table_entries: 1,
        ..LoadOptions::default()
    })
    .context("loading the peer's pass program (run as root)")?;
    let mode = aya::programs::XdpMode::from(args.mode);
    client.run(|| peer.attach(ProgramKind::Pass, &link.peer, mode))??;

    let dir = tempfile::TempDir::new()?;
    let settings = dir.path().join("controller.yaml");
    let mac = link.peer_mac.map(|b| format!("{b:02x}")).join(":");
    std::fs::write(
        &settings,
        format!(
            "store: {}\nnodeName: demo\nnode:\n  interface: {}\n  attachMode: {}\n  \
             gateway:\n    mac: \"{mac}\"\n  sizes:\n    flowTableEntries: 1048576\n",
            dir.path().join("store.redb").display(),
            link.local,
            match args.mode {
                AttachMode::Driver => "ATTACH_MODE_DRIVER",
                AttachMode::Generic => "ATTACH_MODE_GENERIC",
            },
        ),
    )?;
    let controller = Controller(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lb.name()))
            .arg(sibling("lb-controller")?)
            .arg("--config")
            .arg(&settings)
            .env("LB_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("starting lb-controller")?,
    );
    wait_for_api(&lb)?;
    println!("lb-controller is serving its API in {}", lb.name());

    let vips = args.vips.to_str().context("the VIP file's path")?;
    let applied = show(&lb, &["apply", "-f", vips])?;
    let revision = applied
        .split_whitespace()
        .skip_while(|w| *w != "revision")
        .nth(1)
        .context("apply printed no store revision")?
        .to_owned();
    show(&lb, &["status", "--wait", &revision, "--timeout", "30"])?;
    let vip = vip_address(&args.vips)?;

    let socket = client.run(|| PacketSocket::bind(&link.peer))??;
    let mut per_backend: BTreeMap<IpAddr, (u32, u32)> = BTreeMap::new();
    let (mut sent, mut received) = (0u32, 0u32);
    for flow in 0..args.flows {
        let src = format!("198.51.{}.{}", 100 + flow / 250, 1 + flow % 250);
        let mut first_backend = None;
        for segment in 0..3u32 {
            let frame = client_frame(&link, &src, vip, 20_000 + flow, segment)?;
            socket.send(&frame)?;
            sent += 1;
            let from_balancer =
                |f: &[u8]| f.len() > 12 && f[..6] == link.peer_mac && f[6..12] == link.local_mac;
            if let Some(f) = socket.recv_matching(Duration::from_secs(1), from_balancer)? {
                received += 1;
                let backend = outer_destination(&f)?;
                if segment == 0 {
                    per_backend.entry(backend).or_default().0 += 1;
                }
                per_backend.entry(backend).or_default().1 += 1;
                if first_backend.get_or_insert(backend) != &backend {
                    bail!("flow {flow} moved between backends");
                }
            }
        }
    }
    println!(
        "\nclient sent {sent} frames in {} flows; {received} came back encapsulated\n",
        args.flows
    );
    println!(
        "{:<12} {:>6} {:>7} {:>8}",
        "backend", "flows", "share", "frames"
    );
    for (backend, (flows, frames)) in &per_backend {
        let share = 100.0 * f64::from(*flows) / f64::from(args.flows);
        println!("{backend:<12} {flows:>6} {share:>6.1}% {frames:>8}");
    }

    show(&lb, &["status"])?;
    show(&lb, &["stats"])?;
    show(
        &lb,
        &[
            "explain",
            "198.51.100.1",
            &vip.to_string(),
            "tcp",
            "20000",
            "80",
        ],
    )?;
    drop(controller);
    if received != sent {
        bail!("{} frames were not balanced", sent - received);
    }
    if per_backend.len() != 3 {
        bail!("the flows reached {} backends, not 3", per_backend.len());
    }
    Ok(())
}

/// Waits for `lbctl status` to answer.
fn wait_for_api(ns: &Netns) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = lbctl(ns, &["status", "--request-timeout", "2"])?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "lb-controller did not serve its API within 30 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The VIP address of the file, read as lbctl reads it.
fn vip_address(path: &Path) -> anyhow::Result<std::net::Ipv4Addr> {
    let text = std::fs::read_to_string(path)?;
    let vip: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    vip.get("address")
        .and_then(|a| a.as_str())
        .context("the VIP file has no address")?
        .parse()
        .context("the demo sends IPv4 frames: give an IPv4 VIP")
}

/// Segment 0 is the SYN; 1 and 2 carry data on the established flow.
fn client_frame(
    link: &VethPair,
    src: &str,
    dst: std::net::Ipv4Addr,
    sport: u16,
    segment: u32,
) -> anyhow::Result<Vec<u8>> {
    let src: std::net::Ipv4Addr = src.parse()?;
    let tcp = PacketBuilder::ethernet2(link.peer_mac, link.local_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, 80, 1000 + segment * 100, 64_000);
    let (tcp, payload): (_, &[u8]) = if segment == 0 {
        (tcp.syn(), b"")
    } else {
        (tcp.ack(1), b"GET / HTTP/1.1\r\n\r\n")
    };
    let mut frame = Vec::new();
    tcp.write(&mut frame, payload)?;
    Ok(frame)
}

fn outer_destination(frame: &[u8]) -> anyhow::Result<IpAddr> {
    match SlicedPacket::from_ethernet(frame)?.net {
        Some(NetSlice::Ipv4(ip)) => Ok(ip.header().destination_addr().into()),
        Some(NetSlice::Ipv6(ip)) => Ok(ip.header().destination_addr().into()),
        _ => bail!("returned frame is not IP"),
    }
}
