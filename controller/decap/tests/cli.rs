//! The `lb-decap` binary in a network namespace: it attaches, decapsulates
//! what arrives for its tunnel address and its VIPs, refuses the rest,
//! re-reads its VIP file on SIGHUP (keeping the VIPs in force when the file
//! is bad), and reports its counters on SIGTERM.

use std::{
    io::{BufRead as _, BufReader, Lines},
    net::Ipv4Addr,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use etherparse::PacketBuilder;
use lb_testbed::{Netns, PacketSocket, VethPair};

/// An IPIP frame for the tunnel address 10.1.0.1 carrying a UDP datagram
/// to `vip`.
fn tunnelled(link: &VethPair, vip: Ipv4Addr) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], vip.octets(), 64)
        .udp(1000, 53)
        .write(&mut inner, b"query")
        .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(link.peer_mac, link.local_mac)
        .ipv4([172, 16, 0, 1], [10, 1, 0, 1], 64)
        .write(&mut frame, etherparse::IpNumber::IPV4, &inner)
        .unwrap();
    frame
}

/// `lb-decap` in `backend` on `link` with `args`, and its stdout lines.
fn spawn(
    backend: &Netns,
    link: &VethPair,
    args: &[&str],
) -> (Child, Lines<BufReader<ChildStdout>>) {
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
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, out)
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Stops `child` and returns its counter lines.
fn stop(mut child: Child, out: Lines<BufReader<ChildStdout>>) -> Vec<String> {
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    out.map(Result::unwrap).collect()
}

#[test]
fn decapsulates_until_terminated() {
    let backend = Netns::new("be").unwrap();
    let peer = Netns::new("peer").unwrap();
    let link = VethPair::new(&backend, &peer).unwrap();
    let (child, mut out) = spawn(&backend, &link, &["--vip", "10.0.0.100"]);
    let line = out.next().unwrap().unwrap();
    assert_eq!(line, format!("attached to {} serving 1 VIPs", link.local));

    let socket = peer
        .run(|| PacketSocket::bind(&link.peer))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        socket
            .send(&tunnelled(&link, Ipv4Addr::new(10, 0, 0, 100)))
            .unwrap();
    }
    // Not a VIP of this host: someone using it as a relay.
    socket
        .send(&tunnelled(&link, Ipv4Addr::new(10, 1, 0, 9)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let counters = stop(child, out);
    for expected in ["decap_ipip 3", "refused_inner_not_vip 1"] {
        assert!(counters.contains(&expected.to_owned()), "{counters:?}");
    }
}

#[test]
fn sighup_rereads_the_vip_file_and_a_bad_file_keeps_the_vips_in_force() {
    let backend = Netns::new("be").unwrap();
    let peer = Netns::new("peer").unwrap();
    let link = VethPair::new(&backend, &peer).unwrap();
    let dir = std::env::temp_dir().join(format!("lb-decap-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vips");
    let _cleanup = RemoveDir(dir.clone());
    std::fs::write(&file, "# the web VIP\n10.0.0.100\n\n").unwrap();
    let (mut child, mut out) = spawn(&backend, &link, &["--vips-file", file.to_str().unwrap()]);
    assert!(out.next().unwrap().unwrap().ends_with("serving 1 VIPs"));
    let socket = peer
        .run(|| PacketSocket::bind(&link.peer))
        .unwrap()
        .unwrap();
    let send_both = || {
        for vip in [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)] {
            socket.send(&tunnelled(&link, vip)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    send_both();

    std::fs::write(&file, "10.0.0.100\n10.0.0.101 # the new one\n").unwrap();
    signal(&child, libc::SIGHUP);
    assert_eq!(out.next().unwrap().unwrap(), "reloaded: serving 2 VIPs");
    send_both();

    std::fs::write(&file, "10.0.0.100\nten.zero.zero.one\n").unwrap();
    signal(&child, libc::SIGHUP);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let message = err.next().unwrap().unwrap();
    assert!(
        message.contains("reload failed, VIPs in force kept")
            && message.contains(":2: `ten.zero.zero.one` is not an IP address"),
        "{message}"
    );
    send_both();

    let counters = stop(child, out);
    // First round: one stripped, one refused; after the reload both
    // stripped, twice (the bad file changed nothing).
    for expected in ["decap_ipip 5", "refused_inner_not_vip 1"] {
        assert!(counters.contains(&expected.to_owned()), "{counters:?}");
    }
}

#[test]
fn refuses_to_start_without_vips() {
    let out = Command::new(env!("CARGO_BIN_EXE_lb-decap"))
        .args(["--interface", "lo", "--address", "10.1.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--vip") && stderr.contains("--vips-file"),
        "{stderr}"
    );
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
