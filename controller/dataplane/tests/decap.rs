//! The decap program for backends: what the balancer wraps, decap unwraps
//! (checked byte for byte with `BPF_PROG_TEST_RUN`), it leaves everything
//! else alone, and — in network namespaces joined by a bridge — a client's
//! real TCP connections to a VIP are answered by backends directly.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::programs::XdpMode;
use common::*;
use lb_abi::decap::DecapCounter;
use lb_dataplane::{Decap, NodeConfig, ProgramKind, Protocol};
use lb_model::Action;
use lb_testbed::{Netns, VethPair};

const VIP4: &str = "10.0.0.100";

fn decap_with(addresses: &[&str]) -> Decap {
    let mut d = Decap::load().expect("load decap (run as root)");
    for a in addresses {
        d.add_address(a.parse().unwrap()).unwrap();
    }
    d
}

#[test]
fn strips_what_the_balancer_wraps() {
    let mut dp = dataplane(251);
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &[("10.1.0.1", 1)]))
        .unwrap();
    dp.programmer()
        .upsert_vip(&vip(
            "2001:db8::100",
            80,
            Protocol::Tcp,
            &[("2001:db8:1::1", 1)],
        ))
        .unwrap();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 53, Protocol::Udp, &[("2001:db8:1::1", 1)]))
        .unwrap();
    let decap = decap_with(&["10.1.0.1", "2001:db8:1::1"]);
    let cases = [
        (
            tcp("192.0.2.1", 1000, VIP4, 80, Tcp::Syn, b"ipip"),
            DecapCounter::DecapIpip,
        ),
        (
            tcp(
                "2001:db8:c::1",
                1000,
                "2001:db8::100",
                80,
                Tcp::Ack,
                b"ip6ip6",
            ),
            DecapCounter::DecapIp6ip6,
        ),
        (
            udp("192.0.2.1", 1000, VIP4, 53, b"4in6"),
            DecapCounter::Decap4in6,
        ),
    ];
    for (frame, counter) in &cases {
        let wrapped = dp
            .runner(ProgramKind::Balancer)
            .unwrap()
            .run(frame)
            .unwrap();
        assert_eq!(wrapped.action, Action::Tx.code());
        let out = decap.runner().unwrap().run(&wrapped.frame).unwrap();
        assert_eq!(out.action, Action::Pass.code());
        // The client's packet, behind the MACs of the tunnel's last hop.
        assert_eq!(&out.frame[..12], &wrapped.frame[..12]);
        assert_eq!(&out.frame[12..], &frame[12..], "{counter:?}");
    }
    let stats = decap.stats().unwrap();
    for (_, counter) in &cases {
        assert_eq!(stats[counter], 1, "{counter:?}");
    }
}

#[test]
fn leaves_everything_else_untouched() {
    let mut dp = dataplane(251);
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &[("10.1.0.1", 1)]))
        .unwrap();
    let wrapped = dp
        .runner(ProgramKind::Balancer)
        .unwrap()
        .run(&tcp("192.0.2.1", 1000, VIP4, 80, Tcp::Syn, b"x"))
        .unwrap()
        .frame;
    let not_ours = decap_with(&["10.1.0.2"]);
    let ours = decap_with(&["10.1.0.1"]);
    let mut fragment = wrapped.clone();
    fragment[20] |= 0x20;
    let mut wrong_inner_version = wrapped.clone();
    wrong_inner_version[34] = 0x65;
    let cases = [
        (&not_ours, wrapped.clone(), DecapCounter::PassNotLocal),
        (
            &ours,
            tcp("192.0.2.1", 1, "10.1.0.1", 80, Tcp::Syn, b"plain"),
            DecapCounter::PassNotTunnel,
        ),
        (&ours, wrapped[..40].to_vec(), DecapCounter::PassMalformed),
        (&ours, wrong_inner_version, DecapCounter::PassMalformed),
        (&ours, fragment, DecapCounter::PassFragment),
    ];
    for (decap, frame, counter) in &cases {
        let before = decap.stats().unwrap()[counter];
        let out = decap.runner().unwrap().run(frame).unwrap();
        assert_eq!(
            (out.action, &out.frame),
            (Action::Pass.code(), frame),
            "{counter:?}"
        );
        assert_eq!(decap.stats().unwrap()[counter], before + 1, "{counter:?}");
    }
}

/// A host on the lab's bridge.
struct Host {
    ns: Netns,
    link: VethPair,
    address: &'static str,
}

fn host(switch: &Netns, name: &str, address: &'static str) -> Host {
    let ns = Netns::new(name).unwrap();
    let link = VethPair::new(&ns, switch).unwrap();
    switch
        .ip(&["link", "set", &link.peer, "master", "br0"])
        .unwrap();
    ns.ip(&["addr", "add", &format!("{address}/24"), "dev", &link.local])
        .unwrap();
    Host { ns, link, address }
}

/// Serves `name` to every connection on VIP:8080 until `stop`.
fn serve(stop: Arc<AtomicBool>, name: &'static str) -> std::io::Result<u32> {
    let listener = TcpListener::bind((VIP4, 8080))?;
    listener.set_nonblocking(true)?;
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false)?;
                let mut request = [0u8; 4];
                conn.read_exact(&mut request)?;
                conn.write_all(name.as_bytes())?;
                served += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(served)
}

#[test]
fn real_tcp_through_balancer_and_decap_with_direct_return() {
    let switch = Netns::new("sw").unwrap();
    switch
        .ip(&["link", "add", "br0", "type", "bridge"])
        .unwrap();
    switch.ip(&["link", "set", "br0", "up"]).unwrap();
    let client = host(&switch, "client", "10.77.0.2");
    let lb = host(&switch, "lb", "10.77.0.3");
    // The LB's next hop, routing tunnel packets to backends by outer
    // destination, as a router in front of a backend fleet would.
    let gateway = host(&switch, "gw", "10.77.0.1");
    gateway.ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    gateway
        .ns
        .sysctl("net.ipv4.conf.all.send_redirects", "0")
        .unwrap();
    gateway
        .ns
        .sysctl("net.ipv4.conf.default.send_redirects", "0")
        .unwrap();
    let backends = [
        host(&switch, "be1", "10.77.0.4"),
        host(&switch, "be2", "10.77.0.5"),
    ];
    client
        .ns
        .ip(&["route", "add", &format!("{VIP4}/32"), "via", lb.address])
        .unwrap();

    let mut dp = dataplane(1021);
    dp.programmer()
        .set_node(&NodeConfig {
            gateway_mac: gateway.link.local_mac,
            interface_mac: lb.link.local_mac,
            ..node()
        })
        .unwrap();
    dp.programmer()
        .upsert_vip(&vip(
            VIP4,
            8080,
            Protocol::Tcp,
            &[(backends[0].address, 1), (backends[1].address, 1)],
        ))
        .unwrap();
    lb.ns
        .run(|| dp.attach(ProgramKind::Balancer, &lb.link.local, XdpMode::Skb))
        .unwrap()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut decaps = Vec::new();
    let mut servers = Vec::new();
    for (b, name) in backends.iter().zip(["be1", "be2"]) {
        b.ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])
            .unwrap();
        let mut decap = decap_with(&[b.address]);
        b.ns.run(|| decap.attach(&b.link.local, XdpMode::Skb))
            .unwrap()
            .unwrap();
        decaps.push(decap);
        let stop = stop.clone();
        servers.push(b.ns.spawn(move || serve(stop, name)).unwrap());
    }
    // Let the listeners bind before the first SYN.
    std::thread::sleep(Duration::from_millis(100));

    let answers = client
        .ns
        .run(|| {
            let vip: SocketAddr = format!("{VIP4}:8080").parse().unwrap();
            (0..20)
                .map(|_| {
                    let mut conn = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
                    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
                    conn.write_all(b"ping")?;
                    let mut answer = String::new();
                    conn.read_to_string(&mut answer)?;
                    Ok(answer)
                })
                .collect::<std::io::Result<Vec<String>>>()
        })
        .unwrap()
        .expect("connections through the balancer");
    stop.store(true, Ordering::Relaxed);
    let served: Vec<u32> = servers
        .into_iter()
        .map(|s| s.join().unwrap().unwrap().unwrap())
        .collect();

    assert_eq!(served.iter().sum::<u32>(), 20);
    assert!(
        served.iter().all(|&n| n > 0),
        "both backends served: {served:?}"
    );
    for name in ["be1", "be2"] {
        let n = answers.iter().filter(|a| *a == name).count() as u32;
        assert_eq!(n, served[usize::from(name == "be2")], "{name}");
    }
    for decap in &decaps {
        assert!(decap.stats().unwrap()[&DecapCounter::DecapIpip] > 0);
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.drops(), 0);
    let to_backends: u64 = stats.backends.values().map(|c| c.packets).sum();
    assert!(
        to_backends >= 20 * 3,
        "SYN, data and ACKs of 20 connections: {to_backends}"
    );
}
