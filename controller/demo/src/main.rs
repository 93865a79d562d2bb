//! `lb-demo`: the balancer on a real veth, with frames from a peer namespace.
//!
//! Topology (both namespaces are created here and removed on exit):
//!
//! ```text
//!  client netns                         lb netns
//!  [raw socket] vbN  <──── veth ────>  vaN [XDP balancer]
//!        ▲                                   │ VIP 10.0.0.100:80/tcp
//!        └──── IP-in-IP frames to the gateway (XDP_TX) ◄┘
//! ```
//!
//! The client sends a SYN and two data segments for each of `--flows`
//! flows; the balancer encapsulates each towards one of three backends and
//! sends it back out. The client plays the gateway, receives the frames,
//! and tallies them by backend; each frame is also checked against the
//! userspace model of the balancer.

use std::{collections::BTreeMap, net::IpAddr, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use aya::programs::XdpMode;
use clap::Parser;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{
    AttachMode, BackendConfig, Dataplane, LoadOptions, NodeConfig, ProgramKind, Protocol, VipConfig,
};
use lb_model::Model;
use lb_testbed::{Netns, PacketSocket, VethPair};

#[derive(Parser)]
#[command(about = "Run the XDP balancer on a veth and spread real frames over three backends")]
struct Args {
    /// Number of client flows (each: SYN + two data segments).
    #[arg(long, default_value_t = 300)]
    flows: u16,
    /// XDP attach mode.
    #[arg(long, default_value = "driver")]
    mode: AttachMode,
}

const VIP: &str = "10.0.0.100";
const BACKENDS: [&str; 3] = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mode = XdpMode::from(args.mode);
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

    let mut dp = Dataplane::load(&LoadOptions {
        flow_table_entries: 1 << 20,
        ..LoadOptions::default()
    })
    .context("loading the balancer (run as root)")?;
    dp.programmer().set_node(&NodeConfig {
        gateway_mac: link.peer_mac,
        interface_mac: link.local_mac,
        ..NodeConfig::default()
    })?;
    let vip = VipConfig {
        address: VIP.parse()?,
        port: 80,
        protocol: Protocol::Tcp,
        flags: 0,
        new_flows_per_cpu_per_sec: None,
        backends: BACKENDS
            .iter()
            .map(|b| {
                Ok(BackendConfig {
                    address: b.parse()?,
                    weight: 1,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        revision: 0,
    };
    dp.programmer().upsert_vip(&vip)?;
    println!(
        "VIP {VIP}:80/tcp -> {} (Maglev ring of 65537)",
        BACKENDS.join(", ")
    );
    lb.run(|| dp.attach(ProgramKind::Balancer, &link.local, mode))??;
    // Native XDP_TX on a veth reaches the peer only if the peer runs XDP.
    let mut peer = Dataplane::load(&LoadOptions {
        ring_size: 251,
        max_vips: 1,
        max_backends: 1,
        flow_table_entries: 1,
        ..LoadOptions::default()
    })?;
    client.run(|| peer.attach(ProgramKind::Pass, &link.peer, mode))??;
    let socket = client.run(|| PacketSocket::bind(&link.peer))??;

    let mut model = Model::new(dp.programmer().state().clone());
    let mut per_backend: BTreeMap<IpAddr, (u32, u32)> = BTreeMap::new();
    let (mut sent, mut received, mut mismatched) = (0u32, 0u32, 0u32);
    for flow in 0..args.flows {
        let src = format!("198.51.{}.{}", 100 + flow / 250, 1 + flow % 250);
        let mut first_backend = None;
        for segment in 0..3u32 {
            let frame = client_frame(&link, &src, 20_000 + flow, segment)?;
            let expected = model.process(&frame);
            socket.send(&frame)?;
            sent += 1;
            let from_balancer =
                |f: &[u8]| f.len() > 12 && f[..6] == link.peer_mac && f[6..12] == link.local_mac;
            if let Some(f) = socket.recv_matching(Duration::from_secs(1), from_balancer)? {
                received += 1;
                if f != expected.frame {
                    mismatched += 1;
                }
                let backend = outer_destination(&f)?;
                let entry = per_backend.entry(backend).or_default();
                if segment == 0 {
                    entry.0 += 1;
                }
                if first_backend.get_or_insert(backend) != &backend {
                    bail!("flow {flow} moved between backends");
                }
            }
        }
        if let Some(b) = first_backend {
            per_backend.entry(b).or_default().1 += 3;
        }
    }

    println!();
    println!(
        "client sent {sent} frames in {} flows; {received} came back encapsulated",
        args.flows
    );
    println!();
    println!(
        "{:<12} {:>6} {:>7} {:>8}",
        "backend", "flows", "share", "frames"
    );
    for (backend, (flows, frames)) in &per_backend {
        let share = 100.0 * f64::from(*flows) / f64::from(args.flows);
        println!("{backend:<12} {flows:>6} {share:>6.1}% {frames:>8}");
    }
    let stats = dp.programmer().stats()?;
    println!();
    println!("balancer counters (summed over CPUs):");
    for (backend, c) in &stats.backends {
        println!(
            "  backend {backend:<12} {:>6} packets {:>8} bytes",
            c.packets, c.bytes
        );
    }
    for (c, n) in &stats.global {
        if *n > 0 {
            println!("  {:<24} {n:>6}", c.label());
        }
    }
    println!();
    println!(
        "model agreed with the kernel on {}/{received} frames",
        received - mismatched
    );
    if received != sent || mismatched != 0 || stats.drops() != 0 {
        bail!(
            "{} frames lost, {mismatched} differed from the model, {} dropped",
            sent - received,
            stats.drops()
        );
    }
    if stats.global(GlobalCounter::TxFlowHit) != u64::from(args.flows) * 2 {
        bail!("expected every data segment to hit the flow table");
    }
    Ok(())
}

/// Segment 0 is the SYN; 1 and 2 carry data on the established flow.
fn client_frame(link: &VethPair, src: &str, sport: u16, segment: u32) -> anyhow::Result<Vec<u8>> {
    let src: std::net::Ipv4Addr = src.parse()?;
    let dst: std::net::Ipv4Addr = VIP.parse()?;
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
