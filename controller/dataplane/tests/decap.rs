//! The decap program for backends: what the balancer wraps, decap unwraps
//! (checked byte for byte with `BPF_PROG_TEST_RUN`), it leaves everything
//! else alone, it is no open relay (inner destination and outer source
//! checked), it carries congestion marks inward by RFC 6040, and — in
//! network namespaces joined by a bridge — a client's real TCP connections
//! to a VIP are answered by backends directly.

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
use etherparse::{IpEcn, IpNumber, Ipv4Header, Ipv6Header};
use lb_abi::{
    decap::{DecapCounter, ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT},
    stats::GlobalCounter,
};
use lb_dataplane::{Decap, NodeConfig, ProgramKind, Protocol, RefusedPolicy};
use lb_model::Action;
use lb_testbed::{Netns, VethPair};

const VIP4: &str = "10.0.0.100";

const VIP6: &str = "2001:db8::100";

/// A decap for tunnel `addresses` serving the VIPs [`VIP4`] and [`VIP6`].
fn decap_with(addresses: &[&str]) -> Decap {
    let mut d = Decap::load().expect("load decap (run as root)");
    for a in addresses {
        d.add_address(a.parse().unwrap()).unwrap();
    }
    for v in [VIP4, VIP6] {
        d.add_vip(v.parse().unwrap()).unwrap();
    }
    d
}

/// `inner` (an Ethernet frame) wrapped as a balancer would wrap it: MACs,
/// then an outer header from `src` to `dst` with ECN `outer_ecn`.
fn tunnel(src: &str, dst: &str, outer_ecn: u8, inner: &[u8]) -> Vec<u8> {
    let packet = &inner[14..];
    let carried = if packet[0] >> 4 == 6 {
        IpNumber::IPV6
    } else {
        IpNumber::IPV4
    };
    let mut frame = inner[..12].to_vec();
    match (src.parse().unwrap(), dst.parse().unwrap()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut h =
                Ipv4Header::new(packet.len() as u16, 64, carried, s.octets(), d.octets()).unwrap();
            h.ecn = IpEcn::try_new(outer_ecn).unwrap();
            h.header_checksum = h.calc_header_checksum();
            frame.extend_from_slice(&h.to_bytes());
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            frame.extend_from_slice(&[0x86, 0xdd]);
            let h = Ipv6Header {
                traffic_class: outer_ecn,
                payload_length: packet.len() as u16,
                next_header: carried,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            };
            frame.extend_from_slice(&h.to_bytes());
        }
        _ => panic!("outer addresses of one family"),
    }
    frame.extend_from_slice(packet);
    frame
}

/// `frame` with its IP header's ECN field set to `ecn` (IPv4 checksum
/// recomputed).
fn with_ecn(frame: &[u8], ecn: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f[14] >> 4 == 6 {
        f[15] = (f[15] & !0x30) | (ecn << 4);
    } else {
        let (mut h, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
        h.ecn = IpEcn::try_new(ecn).unwrap();
        h.header_checksum = h.calc_header_checksum();
        f[14..34].copy_from_slice(&h.to_bytes());
    }
    f
}

/// Runs `frame` through `decap`, returning the action, the frame out and
/// which counters moved.
fn run(decap: &Decap, frame: &[u8]) -> (u32, Vec<u8>, Vec<DecapCounter>) {
    let before = decap.stats().unwrap();
    let out = decap.runner().unwrap().run(frame).unwrap();
    let after = decap.stats().unwrap();
    let moved = after
        .iter()
        .filter(|(c, n)| before[c] != **n)
        .map(|(c, _)| *c)
        .collect();
    (out.action, out.frame, moved)
}

#[test]
fn a_backend_is_no_open_relay_for_inner_destinations_that_are_not_its_vips() {
    let mut decap = decap_with(&["10.1.0.1", "2001:db8:1::1"]);
    let lb4 = "10.77.0.3";
    let lb6 = "2001:db8:77::3";
    // An outsider who can reach the backend's tunnel address wraps packets
    // to anywhere: another host, a service on the backend's own network.
    let relayed = [
        tunnel(
            lb4,
            "10.1.0.1",
            0,
            &tcp("192.0.2.1", 1000, "10.1.0.9", 22, Tcp::Syn, b""),
        ),
        tunnel(
            lb4,
            "10.1.0.1",
            0,
            &udp("192.0.2.1", 1000, "198.51.100.7", 53, b"q"),
        ),
        tunnel(
            lb6,
            "2001:db8:1::1",
            0,
            &tcp("2001:db8:c::1", 1000, "2001:db8:1::9", 22, Tcp::Syn, b""),
        ),
        tunnel(
            lb6,
            "2001:db8:1::1",
            0,
            &udp("192.0.2.1", 1000, "10.1.0.9", 161, b"q"),
        ),
    ];
    for frame in &relayed {
        let (action, _, moved) = run(&decap, frame);
        assert_eq!(action, Action::Drop.code());
        assert_eq!(moved, [DecapCounter::RefusedInnerNotVip]);
    }
    // Still stripped when the inner destination is a VIP here.
    let to_vip = tunnel(
        lb4,
        "10.1.0.1",
        0,
        &tcp("192.0.2.1", 1000, VIP4, 80, Tcp::Syn, b""),
    );
    assert_eq!(run(&decap, &to_vip).2, [DecapCounter::DecapIpip]);
    // A VIP withdrawn from the host is refused from then on.
    decap.remove_vip(VIP4.parse().unwrap()).unwrap();
    assert_eq!(run(&decap, &to_vip).2, [DecapCounter::RefusedInnerNotVip]);

    // The pass policy hands refused packets to the stack untouched.
    decap.set_refused(RefusedPolicy::Pass).unwrap();
    for frame in &relayed {
        let (action, out, moved) = run(&decap, frame);
        assert_eq!((action, &out), (Action::Pass.code(), frame));
        assert_eq!(moved, [DecapCounter::RefusedInnerNotVip]);
    }
}

#[test]
fn tunnel_packets_from_outside_the_balancers_prefixes_are_refused() {
    let mut decap = decap_with(&["10.1.0.1", "2001:db8:1::1"]);
    decap
        .set_lb_sources(&[
            "10.77.0.0/24".parse().unwrap(),
            "2001:db8:77::/48".parse().unwrap(),
        ])
        .unwrap();
    let inner4 = tcp("192.0.2.1", 1000, VIP4, 80, Tcp::Syn, b"");
    let inner6 = tcp("2001:db8:c::1", 1000, VIP6, 80, Tcp::Syn, b"");
    let cases = [
        (
            tunnel("10.77.0.3", "10.1.0.1", 0, &inner4),
            DecapCounter::DecapIpip,
        ),
        (
            tunnel("10.77.0.254", "10.1.0.1", 0, &inner4),
            DecapCounter::DecapIpip,
        ),
        (
            tunnel("10.77.1.3", "10.1.0.1", 0, &inner4),
            DecapCounter::RefusedOuterSource,
        ),
        (
            tunnel("172.16.0.1", "10.1.0.1", 0, &inner4),
            DecapCounter::RefusedOuterSource,
        ),
        (
            tunnel("2001:db8:77:ff::3", "2001:db8:1::1", 0, &inner6),
            DecapCounter::DecapIp6ip6,
        ),
        (
            tunnel("2001:db8:78::3", "2001:db8:1::1", 0, &inner6),
            DecapCounter::RefusedOuterSource,
        ),
        (
            tunnel("2001:db8:77::3", "2001:db8:1::1", 0, &inner4),
            DecapCounter::Decap4in6,
        ),
    ];
    for (frame, counter) in &cases {
        let (action, _, moved) = run(&decap, frame);
        let expected = if *counter == DecapCounter::RefusedOuterSource {
            Action::Drop
        } else {
            Action::Pass
        };
        assert_eq!(
            (action, moved.as_slice()),
            (expected.code(), [*counter].as_slice())
        );
    }
    // No prefixes: any source is accepted again.
    decap.set_lb_sources(&[]).unwrap();
    assert_eq!(run(&decap, &cases[3].0).2, [DecapCounter::DecapIpip]);
}

#[test]
fn congestion_marks_reach_the_endpoint_by_rfc_6040() {
    let decap = decap_with(&["10.1.0.1", "2001:db8:1::1"]);
    let lb4 = "10.77.0.3";
    let lb6 = "2001:db8:77::3";
    let inner4 = tcp("192.0.2.1", 1000, VIP4, 80, Tcp::Ack, b"data");
    let inner6 = tcp("2001:db8:c::1", 1000, VIP6, 80, Tcp::Ack, b"data");
    // (outer ECN, inner ECN, inner ECN after the strip; None = dropped).
    let cases = [
        (ECN_CE, ECN_ECT0, Some(ECN_CE)),
        (ECN_CE, ECN_ECT1, Some(ECN_CE)),
        (ECN_CE, ECN_NOT_ECT, None),
        (ECN_ECT1, ECN_ECT0, Some(ECN_ECT1)),
        (ECN_ECT0, ECN_ECT0, Some(ECN_ECT0)),
        (ECN_NOT_ECT, ECN_CE, Some(ECN_CE)),
        (ECN_NOT_ECT, ECN_NOT_ECT, Some(ECN_NOT_ECT)),
    ];
    for (outer_dst, outer_src, inner) in [
        ("10.1.0.1", lb4, &inner4),
        ("2001:db8:1::1", lb6, &inner6),
        ("2001:db8:1::1", lb6, &inner4),
    ] {
        for (outer, before, after) in cases {
            let frame = tunnel(outer_src, outer_dst, outer, &with_ecn(inner, before));
            let (action, out, moved) = run(&decap, &frame);
            let what = format!("{outer_dst} outer {outer} inner {before}");
            match after {
                None => {
                    assert_eq!(action, Action::Drop.code(), "{what}");
                    assert_eq!(moved, [DecapCounter::DropCeNotEct], "{what}");
                }
                Some(after) => {
                    assert_eq!(action, Action::Pass.code(), "{what}");
                    // Exactly the client's packet with the new ECN field;
                    // for IPv4 that includes a correct header checksum.
                    assert_eq!(&out[12..], &with_ecn(inner, after)[12..], "{what}");
                }
            }
        }
    }
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
            tcp("2001:db8:c::1", 1000, VIP6, 80, Tcp::Ack, b"ip6ip6"),
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

/// Bytes of the bulk upload: enough segments that path-MTU discovery and
/// checksums on every one of them are exercised.
const UPLOAD: usize = 200 * 1024;

/// Serves every connection on VIP:`port` until `stop`: to `ping`, `name`;
/// to `upld`, `name` and the count of the bytes that followed until the
/// client closed its side.
fn serve(stop: Arc<AtomicBool>, name: &'static str, port: u16) -> std::io::Result<u32> {
    let listener = TcpListener::bind((VIP4, port))?;
    listener.set_nonblocking(true)?;
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false)?;
                conn.set_read_timeout(Some(Duration::from_secs(20)))?;
                let mut request = [0u8; 4];
                conn.read_exact(&mut request)?;
                if &request == b"upld" {
                    let n = std::io::copy(&mut conn, &mut std::io::sink())?;
                    conn.write_all(format!("{name} {n}").as_bytes())?;
                } else {
                    conn.write_all(name.as_bytes())?;
                }
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

/// In driver (native) mode, the production mode, on both the balancer and
/// the backends. Locally generated TCP carries a partial checksum that a
/// NIC would finish; the client sends with transmit checksum offload and
/// segmentation off, so its frames are what a real wire carries whatever
/// the kernel's veth XDP path does with partial checksums (this host's
/// 6.18 happens to finish them). A 200 KB upload crosses too: path-MTU
/// discovery through the balancer's too-big replies, then every segment
/// decapsulated.
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
    client
        .ns
        .ethtool(&[
            "-K",
            &client.link.local,
            "tx",
            "off",
            "tso",
            "off",
            "gso",
            "off",
        ])
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
        .run(|| dp.attach(ProgramKind::Balancer, &lb.link.local, XdpMode::Driver))
        .unwrap()
        .unwrap();
    // Native XDP_TX on a veth reaches the peer only if the peer runs XDP.
    let mut bridge_port = lb_dataplane::Dataplane::load(&small_options(251)).unwrap();
    switch
        .run(|| bridge_port.attach(ProgramKind::Pass, &lb.link.peer, XdpMode::Driver))
        .unwrap()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut decaps = Vec::new();
    let mut servers = Vec::new();
    for (b, name) in backends.iter().zip(["be1", "be2"]) {
        b.ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])
            .unwrap();
        let mut decap = decap_with(&[b.address]);
        b.ns.run(|| decap.attach(&b.link.local, XdpMode::Driver))
            .unwrap()
            .unwrap();
        decaps.push(decap);
        let stop = stop.clone();
        servers.push(b.ns.spawn(move || serve(stop, name, 8080)).unwrap());
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
    let upload = |port: u16| {
        client
            .ns
            .run(|| {
                let vip: SocketAddr = format!("{VIP4}:{port}").parse().unwrap();
                let mut conn = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
                conn.set_read_timeout(Some(Duration::from_secs(20)))?;
                conn.write_all(b"upld")?;
                conn.write_all(&vec![0x5a; UPLOAD])?;
                conn.shutdown(std::net::Shutdown::Write)?;
                let mut answer = String::new();
                conn.read_to_string(&mut answer)?;
                Ok::<_, std::io::Error>(answer)
            })
            .unwrap()
            .expect("a bulk upload through the balancer")
    };
    let too_big = |dp: &mut lb_dataplane::Dataplane| {
        dp.programmer()
            .stats()
            .unwrap()
            .global(GlobalCounter::TxIcmpTooBig)
    };
    // With direct return, the client's segment size is the MSS the
    // backend's SYN-ACK advertises, and that packet never crosses the
    // balancer. A backend that advertises what fits the tunnel (its route
    // to clients with `advmss`, README) spares the client's first bulk
    // connection every too-big round trip.
    let fits_tunnel = (1500 - 20 - 20 - 20).to_string();
    let client_route = format!("{}/32", client.address);
    for b in &backends {
        b.ns.ip(&[
            "route",
            "add",
            &client_route,
            "dev",
            &b.link.local,
            "advmss",
            &fits_tunnel,
        ])
        .unwrap();
    }
    let advertised = upload(8080);
    assert!(advertised.ends_with(&format!(" {UPLOAD}")), "{advertised}");
    assert_eq!(
        too_big(&mut dp),
        0,
        "segments fit the tunnel from the start"
    );
    // Without it, full-size segments do not fit: the client is told and
    // lowers its path MTU, then the upload arrives whole.
    for b in &backends {
        b.ns.ip(&["route", "del", &client_route]).unwrap();
    }
    let uploaded = upload(8080);
    let replies = too_big(&mut dp);
    assert!(replies > 0);
    stop.store(true, Ordering::Relaxed);
    let served: Vec<u32> = servers
        .into_iter()
        .map(|s| s.join().unwrap().unwrap().unwrap())
        .collect();

    let (who, bytes) = uploaded.split_once(' ').expect("name and count");
    assert!(["be1", "be2"].contains(&who), "{uploaded}");
    assert_eq!(bytes, UPLOAD.to_string());
    assert_eq!(served.iter().sum::<u32>(), 22);
    assert!(
        served.iter().all(|&n| n > 0),
        "both backends served: {served:?}"
    );
    for name in ["be1", "be2"] {
        let uploads = [&advertised, &uploaded]
            .iter()
            .filter(|u| u.starts_with(name))
            .count() as u32;
        let n = answers.iter().filter(|a| *a == name).count() as u32 + uploads;
        assert_eq!(n, served[usize::from(name == "be2")], "{name}");
    }
    for decap in &decaps {
        assert!(decap.stats().unwrap()[&DecapCounter::DecapIpip] > 0);
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.drops(), 0);
    assert_eq!(stats.global(GlobalCounter::TxIcmpTooBig), replies);
    let to_backends: u64 = stats.backends.values().map(|c| c.packets).sum();
    assert!(
        to_backends >= 20 * 3,
        "SYN, data and ACKs of 20 connections: {to_backends}"
    );
}

#[test]
fn a_backend_with_the_most_vips_strips_each_and_refuses_one_more() {
    use lb_abi::decap::MAX_DECAP_VIPS;
    let mut decap = Decap::load().unwrap();
    for a in ["10.1.0.1", "2001:db8:1::1"] {
        decap.add_address(a.parse().unwrap()).unwrap();
    }
    let mut rng = Rng(0x5eed_dec4);
    let mut vips = std::collections::BTreeSet::new();
    while vips.len() < MAX_DECAP_VIPS as usize {
        let a = rng.below(1 << 32) as u32;
        let ip: std::net::IpAddr = if a.is_multiple_of(2) {
            std::net::Ipv4Addr::from(a).into()
        } else {
            std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(a)).into()
        };
        vips.insert(ip);
    }
    decap.set_vips(&vips).unwrap();
    let inner = |vip: std::net::IpAddr| match vip {
        std::net::IpAddr::V4(_) => udp("192.0.2.1", 1000, &vip.to_string(), 53, b"q"),
        std::net::IpAddr::V6(_) => udp("2001:db8:c::1", 1000, &vip.to_string(), 53, b"q"),
    };
    let frame = |vip: std::net::IpAddr| match vip {
        std::net::IpAddr::V4(_) => tunnel("10.77.0.3", "10.1.0.1", 0, &inner(vip)),
        std::net::IpAddr::V6(_) => tunnel("2001:db8:77::3", "2001:db8:1::1", 0, &inner(vip)),
    };
    let runner = decap.runner().unwrap();
    for vip in &vips {
        let out = runner.run(&frame(*vip)).unwrap();
        assert_eq!(out.action, Action::Pass.code(), "{vip}");
        assert_eq!(&out.frame[12..], &inner(*vip)[12..], "{vip}");
    }
    let stripped = decap.stats().unwrap();
    assert_eq!(
        stripped[&DecapCounter::DecapIpip] + stripped[&DecapCounter::DecapIp6ip6],
        u64::from(MAX_DECAP_VIPS)
    );
    let one_more: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    assert!(decap.add_vip(one_more).is_err());
    // A failed set leaves the VIPs in force as they were.
    let mut with_one_more = vips.clone();
    with_one_more.insert(one_more);
    assert!(decap.set_vips(&with_one_more).is_err());
    assert_eq!(decap.vips(), vips);
    assert_eq!(
        run(&decap, &frame(one_more)).2,
        [DecapCounter::RefusedInnerNotVip]
    );

    // Half withdrawn: those are refused, the rest still stripped.
    let kept: std::collections::BTreeSet<_> = vips.iter().copied().step_by(2).collect();
    decap.set_vips(&kept).unwrap();
    for vip in vips.iter().take(64) {
        let want = if kept.contains(vip) {
            Action::Pass
        } else {
            Action::Drop
        };
        assert_eq!(run(&decap, &frame(*vip)).0, want.code(), "{vip}");
    }
}
