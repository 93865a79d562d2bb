//! The balancer attached to a veth in a network namespace, in driver and in
//! generic mode: a frame sent from the peer namespace comes back
//! encapsulated, exactly as the model builds it; other traffic still reaches
//! the namespace's stack.

mod common;

use std::time::Duration;

use aya::programs::XdpMode;
use common::*;
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Dataplane, NodeConfig, ProgramKind, Protocol};
use lb_model::{Action, Model};
use lb_testbed::{Netns, PacketSocket, VethPair};

const VIP: &str = "10.0.0.100";

fn round_trip(mode: XdpMode) {
    let lb = Netns::new("lb").unwrap();
    let client = Netns::new("cl").unwrap();
    let link = VethPair::new(&lb, &client).unwrap();

    let mut dp = dataplane(1021);
    // Frames go back to the client's veth, which plays the gateway.
    dp.programmer()
        .set_node(&NodeConfig {
            gateway_mac: link.peer_mac,
            interface_mac: link.local_mac,
            ..node()
        })
        .unwrap();
    dp.programmer()
        .upsert_vip(&vip(
            VIP,
            80,
            Protocol::Tcp,
            &[("10.1.0.1", 1), ("10.1.0.2", 1), ("2001:db8:b::1", 1)],
        ))
        .unwrap();
    lb.run(|| dp.attach(ProgramKind::Balancer, &link.local, mode))
        .unwrap()
        .unwrap();
    // Native XDP_TX on a veth reaches the peer only if the peer runs XDP.
    let mut peer_dp = Dataplane::load(&small_options(251)).unwrap();
    client
        .run(|| peer_dp.attach(ProgramKind::Pass, &link.peer, mode))
        .unwrap()
        .unwrap();
    let socket = client
        .run(|| PacketSocket::bind(&link.peer))
        .unwrap()
        .unwrap();

    let mut model = Model::new(dp.programmer().state().clone());
    for i in 0..20u16 {
        let mut frame = tcp(
            "192.0.2.1",
            30_000 + i,
            VIP,
            80,
            Tcp::Syn,
            b"hello over veth",
        );
        frame[..6].copy_from_slice(&link.local_mac);
        frame[6..12].copy_from_slice(&link.peer_mac);
        let expected = model.process(&frame);
        assert_eq!(expected.action, Action::Tx);
        socket.send(&frame).unwrap();
        // The lb namespace's own stack multicasts (IPv6 ND, MLD) too; the
        // balancer's frames are the ones unicast to the gateway.
        let got = socket
            .recv_matching(Duration::from_secs(1), |f| {
                f.len() > 12 && f[..6] == link.peer_mac && f[6..12] == link.local_mac
            })
            .unwrap();
        assert_eq!(got, Some(expected.frame), "flow {i}");
    }
    let stats = dp.programmer().stats().unwrap();
    let sent: u64 = stats.backends.values().map(|c| c.packets).sum();
    assert_eq!(sent, 20);
    assert_eq!(stats.drops(), 0);

    // Not a VIP: passed to the namespace's stack, which answers a ping.
    lb.ip(&["addr", "add", "10.99.0.1/24", "dev", &link.local])
        .unwrap();
    client
        .ip(&["addr", "add", "10.99.0.2/24", "dev", &link.peer])
        .unwrap();
    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            client.name(),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.99.0.1",
        ])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping through the balancer: {ping:?}");
    let stats = dp.programmer().stats().unwrap();
    assert!(stats.global(GlobalCounter::PassNotIp) > 0, "ARP passed");
    assert!(
        stats.global(GlobalCounter::PassOtherProtocol) > 0,
        "ICMP passed"
    );
}

#[test]
fn driver_mode_round_trip() {
    round_trip(XdpMode::Driver);
}

#[test]
fn generic_mode_round_trip() {
    round_trip(XdpMode::Skb);
}

/// Generic XDP runs after GRO: with GRO on it would be handed coalesced
/// packets up to 64 KB, answer them as too big and drop them. Attaching in
/// generic mode is refused while GRO is on, with the command that turns it
/// off; with GRO off it attaches.
#[test]
fn generic_mode_is_refused_while_gro_is_on() {
    let lb = Netns::new("lb").unwrap();
    let client = Netns::new("cl").unwrap();
    let link = VethPair::new(&lb, &client).unwrap();
    let mut dp = dataplane(251);
    lb.ethtool(&["-K", &link.local, "gro", "on"]).unwrap();
    let refused = lb
        .run(|| dp.attach(ProgramKind::Balancer, &link.local, XdpMode::Skb))
        .unwrap()
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(
            refused,
            lb_dataplane::DataplaneError::GenericModeWithGro { .. }
        ) && message.contains(&format!("ethtool -K {} gro off", link.local)),
        "{message}"
    );
    lb.ethtool(&["-K", &link.local, "gro", "off"]).unwrap();
    lb.run(|| dp.attach(ProgramKind::Balancer, &link.local, XdpMode::Skb))
        .unwrap()
        .unwrap();
    // Native mode runs before GRO: allowed with it on.
    let other = VethPair::new(&lb, &client).unwrap();
    lb.ethtool(&["-K", &other.local, "gro", "on"]).unwrap();
    let mut native = dataplane(251);
    lb.run(|| native.attach(ProgramKind::Balancer, &other.local, XdpMode::Driver))
        .unwrap()
        .unwrap();
}
