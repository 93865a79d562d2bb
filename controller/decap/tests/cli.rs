//! The `lb-decap` binary in a network namespace: it attaches, decapsulates
//! what arrives for its tunnel address, and reports it on SIGTERM.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use etherparse::PacketBuilder;
use lb_testbed::{Netns, PacketSocket, VethPair};

#[test]
fn decapsulates_until_terminated() {
    let backend = Netns::new("be").unwrap();
    let peer = Netns::new("peer").unwrap();
    let link = VethPair::new(&backend, &peer).unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            backend.name(),
            env!("CARGO_BIN_EXE_lb-decap"),
        ])
        .args([
            "--interface",
            &link.local,
            "--address",
            "10.1.0.1",
            "--mode",
            "generic",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("attached to {}", link.local));

    // An IPIP packet for 10.1.0.1 carrying a UDP datagram to a VIP.
    let mut inner = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [10, 0, 0, 100], 64)
        .udp(1000, 53)
        .write(&mut inner, b"query")
        .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(link.peer_mac, link.local_mac)
        .ipv4([172, 16, 0, 1], [10, 1, 0, 1], 64)
        .write(&mut frame, etherparse::IpNumber::IPV4, &inner)
        .unwrap();
    let socket = peer
        .run(|| PacketSocket::bind(&link.peer))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        socket.send(&frame).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let counters: Vec<String> = out.lines().map(Result::unwrap).collect();
    assert!(
        counters.contains(&"decap_ipip 3".to_owned()),
        "{counters:?}"
    );
}
