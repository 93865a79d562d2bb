//! One `BPF_PROG_TEST_RUN` fixture per balancer path, each compared with
//! the model byte for byte and checked against the counters.

mod common;

use common::*;
use etherparse::{NetSlice, SlicedPacket};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Dataplane, LoadOptions, ProgramKind, Protocol};
use lb_model::{Action, Model};
use lb_testbed::pin_to_cpu;

const VIP4: &str = "10.0.0.100";
const VIP6: &str = "2001:db8::100";

fn setup() -> (Dataplane, Model) {
    let mut dp = dataplane(1021);
    let p = dp.programmer();
    p.upsert_vip(&vip(
        VIP4,
        80,
        Protocol::Tcp,
        &[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)],
    ))
    .unwrap();
    p.upsert_vip(&vip(
        VIP6,
        443,
        Protocol::Tcp,
        &[("2001:db8:1::1", 1), ("2001:db8:1::2", 1)],
    ))
    .unwrap();
    p.upsert_vip(&vip(
        VIP4,
        53,
        Protocol::Udp,
        &[("2001:db8:2::1", 1), ("2001:db8:2::2", 1)],
    ))
    .unwrap();
    let model = Model::new(dp.programmer().state().clone());
    (dp, model)
}

/// [`setup`] with the node MTU at `mtu`.
fn setup_at_mtu(mtu: u16) -> (Dataplane, Model) {
    let (mut dp, mut model) = setup();
    dp.programmer()
        .set_node(&lb_dataplane::NodeConfig { mtu, ..node() })
        .unwrap();
    resync(&mut dp, &mut model);
    (dp, model)
}

/// A dataplane loaded with `options`, node settings set, and one VIP:
/// VIP4:80/TCP over two backends.
fn web_vip(options: LoadOptions) -> Dataplane {
    let mut dp = Dataplane::load(&options).unwrap();
    dp.programmer().set_node(&node()).unwrap();
    dp.programmer()
        .upsert_vip(&vip(
            VIP4,
            80,
            Protocol::Tcp,
            &[("10.1.0.1", 1), ("10.1.0.2", 1)],
        ))
        .unwrap();
    dp
}

fn outer_dst(frame: &[u8]) -> std::net::IpAddr {
    match SlicedPacket::from_ethernet(frame).unwrap().net.unwrap() {
        NetSlice::Ipv4(ip) => ip.header().destination_addr().into(),
        NetSlice::Ipv6(ip) => ip.header().destination_addr().into(),
        _ => panic!("no IP"),
    }
}

fn counter(dp: &mut Dataplane, c: GlobalCounter) -> u64 {
    dp.programmer().stats().unwrap().global(c)
}

#[test]
fn v4_syn_then_flow_table_hit_after_ring_change() {
    let (mut dp, mut model) = setup();
    let syn = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Syn, b"");
    let (k, m) = check(&dp, &mut model, &syn);
    assert_eq!(m.action, Action::Tx);
    assert_eq!(&k.frame[..6], &GATEWAY_MAC);
    assert_eq!(&k.frame[6..12], &LB_MAC);
    let SlicedPacket {
        net: Some(NetSlice::Ipv4(outer)),
        ..
    } = SlicedPacket::from_ethernet(&k.frame).unwrap()
    else {
        panic!("outer not IPv4");
    };
    let h = outer.header().to_header();
    assert_eq!(h.protocol.0, 4, "IPIP");
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(&k.frame[34..], &syn[14..], "inner packet untouched");
    let first = outer_dst(&k.frame);

    // Drain the chosen backend: the ring no longer names it, but it stays.
    let weights = all_but(&["10.1.0.1", "10.1.0.2", "10.1.0.3"], first);
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &weights))
        .unwrap();
    resync(&mut dp, &mut model);
    let hits = counter(&mut dp, GlobalCounter::TxFlowHit);
    let ack = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Ack, b"data");
    let (k, m) = check(&dp, &mut model, &ack);
    assert_eq!(m.counter, GlobalCounter::TxFlowHit);
    assert_eq!(
        outer_dst(&k.frame),
        first,
        "established flow stays on its backend"
    );
    assert_eq!(counter(&mut dp, GlobalCounter::TxFlowHit), hits + 1);
    // A new SYN on the same tuple takes the ring, which no longer has it.
    let (k, _) = check(&dp, &mut model, &syn);
    assert_ne!(outer_dst(&k.frame), first);
}

#[test]
fn v6_syn_and_hit() {
    let (mut dp, mut model) = setup();
    let syn = tcp("2001:db8:ff::1", 5555, VIP6, 443, Tcp::Syn, b"");
    let (k, _) = check(&dp, &mut model, &syn);
    let SlicedPacket {
        net: Some(NetSlice::Ipv6(outer)),
        ..
    } = SlicedPacket::from_ethernet(&k.frame).unwrap()
    else {
        panic!("outer not IPv6");
    };
    assert_eq!(outer.header().next_header().0, 41, "IP6IP6");
    assert_eq!(&k.frame[54..], &syn[14..]);
    let first = outer_dst(&k.frame);
    let other = if first.to_string() == "2001:db8:1::1" {
        "2001:db8:1::2"
    } else {
        "2001:db8:1::1"
    };
    // Only `other` takes new flows now.
    let keep = first.to_string();
    dp.programmer()
        .upsert_vip(&vip(
            VIP6,
            443,
            Protocol::Tcp,
            &[(keep.as_str(), 0), (other, 1)],
        ))
        .unwrap();
    resync(&mut dp, &mut model);
    let ack = tcp("2001:db8:ff::1", 5555, VIP6, 443, Tcp::Ack, b"x");
    let (k, m) = check(&dp, &mut model, &ack);
    assert_eq!(
        (m.counter, outer_dst(&k.frame)),
        (GlobalCounter::TxFlowHit, first)
    );
    let other_flow = tcp("2001:db8:ff::2", 5556, VIP6, 443, Tcp::Syn, b"");
    let (k, _) = check(&dp, &mut model, &other_flow);
    assert_eq!(outer_dst(&k.frame).to_string(), other);
}

#[test]
fn v4_vip_with_v6_backends_is_4in6() {
    let (mut dp, mut model) = setup();
    let frame = udp("192.0.2.7", 1234, VIP4, 53, b"query");
    let (k, m) = check(&dp, &mut model, &frame);
    assert_eq!(m.action, Action::Tx);
    let SlicedPacket {
        net: Some(NetSlice::Ipv6(outer)),
        ..
    } = SlicedPacket::from_ethernet(&k.frame).unwrap()
    else {
        panic!("outer not IPv6");
    };
    assert_eq!(outer.header().next_header().0, 4, "IPv4 inside IPv6");
    assert_eq!(
        usize::from(outer.header().payload_length()),
        frame.len() - 14
    );
    assert_eq!(counter(&mut dp, GlobalCounter::TxRing), 1);
}

#[test]
fn non_vip_traffic_passes_byte_for_byte() {
    let (mut dp, mut model) = setup();
    let frames = [
        tcp("192.0.2.1", 1, "10.0.0.101", 80, Tcp::Syn, b"x"),
        udp("192.0.2.1", 1, "10.0.0.101", 53, b"x"),
        tcp("2001:db8:ff::1", 1, "2001:db8::101", 443, Tcp::Syn, b"x"),
        udp("2001:db8:ff::1", 1, "2001:db8::101", 443, b"x"),
    ];
    for f in &frames {
        let (k, m) = check(&dp, &mut model, f);
        assert_eq!(m.counter, GlobalCounter::PassNotVip);
        assert_eq!(&k.frame, f);
    }
    let arp = {
        let mut f = frames[0].clone();
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f
    };
    let (_, m) = check(&dp, &mut model, &arp);
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassNotIp)
    );
    assert_eq!(
        counter(&mut dp, GlobalCounter::PassNotVip),
        frames.len() as u64
    );
}

#[test]
fn truncated_at_every_header_passes_and_is_counted() {
    let (mut dp, mut model) = setup();
    let v4 = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Syn, b"");
    let v6 = tcp("2001:db8:ff::1", 5555, VIP6, 443, Tcp::Syn, b"");
    let u6 = udp("192.0.2.1", 1, VIP4, 53, b"");
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (as
    // drivers drop runts), so the shortest cut is a bare Ethernet header.
    let cuts = [
        &v4[..14],
        &v4[..20],
        &v4[..33],
        &v4[..34],
        &v4[..50],
        &v6[..14],
        &v6[..40],
        &v6[..53],
        &v6[..70],
        &u6[..40],
    ];
    for cut in cuts {
        let (k, m) = check(&dp, &mut model, cut);
        assert_eq!(
            (m.action, m.counter),
            (Action::Pass, GlobalCounter::PassTruncated),
            "{} bytes",
            cut.len()
        );
        assert_eq!(k.frame, cut);
    }
    assert_eq!(
        counter(&mut dp, GlobalCounter::PassTruncated),
        cuts.len() as u64
    );
}

#[test]
fn ipv4_options_and_fragments_to_a_vip_are_dropped_and_counted() {
    let (mut dp, mut model) = setup();
    let base = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Syn, b"payload");

    let mut options = base[..34].to_vec();
    options.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    options.extend_from_slice(&base[34..]);
    options[14] = 0x46;
    let total = u16::from_be_bytes([options[16], options[17]]) + 4;
    options[16..18].copy_from_slice(&total.to_be_bytes());
    let (_, m) = check(&dp, &mut model, &options);
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropIpv4Options)
    );

    let mut first_fragment = base.clone();
    first_fragment[20] |= 0x20; // MF
    let (_, m) = check(&dp, &mut model, &first_fragment);
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropFragment)
    );

    // A later fragment has no ports: the balancer cannot place it, and
    // the VIP's address is closed to it.
    let mut later_fragment = base.clone();
    later_fragment[21] = 0x10; // offset 16 * 8 bytes
    let (_, m) = check(&dp, &mut model, &later_fragment);
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropClosedFragment)
    );
    // To an address with no VIP it passes as before.
    let mut elsewhere = later_fragment.clone();
    elsewhere[33] = 101;
    let (_, m) = check(&dp, &mut model, &elsewhere);
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassLaterFragment)
    );

    // The same options to a non-VIP pass untouched.
    let mut other = options.clone();
    other[33] = 101;
    let (_, m) = check(&dp, &mut model, &other);
    assert_eq!(m.counter, GlobalCounter::PassNotVip);

    let mut lying_length = base.clone();
    lying_length[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let (_, m) = check(&dp, &mut model, &lying_length);
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropBadLength)
    );

    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::DropIpv4Options), 1);
    assert_eq!(stats.global(GlobalCounter::DropFragment), 1);
    assert_eq!(stats.global(GlobalCounter::DropBadLength), 1);
    assert_eq!(stats.global(GlobalCounter::DropClosedFragment), 1);
    assert_eq!(stats.drops(), 4);
}

#[test]
fn vip_without_backends_drops_and_traffic_counters_add_up() {
    let (mut dp, mut model) = setup();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 8080, Protocol::Tcp, &[("10.1.0.9", 0)]))
        .unwrap();
    resync(&mut dp, &mut model);
    let (_, m) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", 1, VIP4, 8080, Tcp::Syn, b""),
    );
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropNoBackend)
    );

    let mut sent = 0u64;
    for port in 0..50u16 {
        let f = tcp("192.0.2.1", 10_000 + port, VIP4, 80, Tcp::Syn, b"abc");
        sent += f.len() as u64;
        check(&dp, &mut model, &f);
    }
    let stats = dp.programmer().stats().unwrap();
    let vip_stats = stats.vips[&(VIP4.parse().unwrap(), 80, lb_abi::PROTO_TCP)];
    assert_eq!((vip_stats.packets, vip_stats.bytes), (50, sent));
    let per_backend: u64 = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
        .iter()
        .map(|b| stats.backends[&b.parse().unwrap()].packets)
        .sum();
    assert_eq!(per_backend, 50);
}

#[test]
fn removing_a_vip_passes_its_traffic_and_keeps_its_address_neighbours() {
    let (mut dp, mut model) = setup();
    let udp_key = vip(VIP4, 53, Protocol::Udp, &[]).key();
    dp.programmer().remove_vip(&udp_key).unwrap();
    resync(&mut dp, &mut model);
    // The address still has a VIP: closed to the port no VIP serves now.
    let (_, m) = check(&dp, &mut model, &udp("192.0.2.7", 1234, VIP4, 53, b"q"));
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropClosedPort)
    );
    // The TCP VIP on the same address is untouched.
    let (_, m) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", 1, VIP4, 80, Tcp::Syn, b""),
    );
    assert_eq!(m.action, Action::Tx);
    let tcp_key = vip(VIP4, 80, Protocol::Tcp, &[]).key();
    dp.programmer().remove_vip(&tcp_key).unwrap();
    resync(&mut dp, &mut model);
    let (_, m) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", 1, VIP4, 80, Tcp::Syn, b""),
    );
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassNotVip)
    );
    assert!(matches!(
        dp.programmer().remove_vip(&tcp_key),
        Err(lb_dataplane::DataplaneError::NoSuchVip)
    ));
}

#[test]
fn past_the_flood_threshold_new_flows_are_balanced_but_not_recorded() {
    let mut dp = web_vip(lb_dataplane::LoadOptions {
        new_flows_per_cpu_per_sec: 10,
        ..small_options(251)
    });
    // The guard counts per CPU: keep every run on one.
    pin_to_cpu(0);
    let runner = dp.runner(lb_dataplane::ProgramKind::Balancer).unwrap();
    for port in 0..30u16 {
        let out = runner
            .run(&tcp("192.0.2.1", 2000 + port, VIP4, 80, Tcp::Syn, b""))
            .unwrap();
        assert_eq!(out.action, Action::Tx.code());
    }
    let stats = dp.programmer().stats().unwrap();
    // At most 10 recorded per one-second window; the 30 runs span one
    // window, or two if they straddle a boundary.
    let skipped = stats.global(GlobalCounter::FlowNotRecordedFlood);
    assert!((10..=20).contains(&skipped), "{skipped}");
    assert_eq!(stats.global(GlobalCounter::TxRing), 30);
    // A second later a new window opens, and new flows are recorded again.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let runner = dp.runner(lb_dataplane::ProgramKind::Balancer).unwrap();
    for port in 100..105u16 {
        runner
            .run(&tcp("192.0.2.1", 2000 + port, VIP4, 80, Tcp::Syn, b""))
            .unwrap();
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(
        stats.global(GlobalCounter::FlowNotRecordedFlood),
        skipped,
        "the window did not roll over"
    );
}

/// A SYN flood on one VIP used to stop flow recording for every VIP on the
/// CPU (one window per CPU). Now each VIP has its own window and limit: the
/// flooded VIP's new flows go unrecorded, counted under it, while another
/// VIP's new flows are recorded and then hit the table; a VIP with a higher
/// limit, or the guard off, records all of its own.
#[test]
fn a_syn_flood_on_one_vip_leaves_the_other_vips_flows_recorded() {
    let mut dp = Dataplane::load(&lb_dataplane::LoadOptions {
        new_flows_per_cpu_per_sec: 10,
        ..small_options(251)
    })
    .unwrap();
    dp.programmer().set_node(&node()).unwrap();
    let backends = [("10.1.0.1", 1), ("10.1.0.2", 1)];
    let flooded = vip(VIP4, 80, Protocol::Tcp, &backends);
    let quiet = vip(VIP4, 443, Protocol::Tcp, &backends);
    let generous = lb_dataplane::VipConfig {
        new_flows_per_cpu_per_sec: Some(1_000),
        ..vip(VIP4, 8080, Protocol::Tcp, &backends)
    };
    let unguarded = lb_dataplane::VipConfig {
        new_flows_per_cpu_per_sec: Some(0),
        ..vip(VIP4, 8443, Protocol::Tcp, &backends)
    };
    for v in [&flooded, &quiet, &generous, &unguarded] {
        dp.programmer().upsert_vip(v).unwrap();
    }
    // The guard counts per CPU: keep every run on one.
    pin_to_cpu(0);
    let runner = dp.runner(lb_dataplane::ProgramKind::Balancer).unwrap();
    let syns = |port: u16, clients: std::ops::Range<u16>| {
        for c in clients {
            let out = runner
                .run(&tcp("192.0.2.1", 2000 + c, VIP4, port, Tcp::Syn, b""))
                .unwrap();
            assert_eq!(out.action, Action::Tx.code());
        }
    };
    syns(80, 0..30);
    syns(443, 0..5);
    syns(8080, 0..30);
    syns(8443, 0..30);
    // The quiet VIP's flows were recorded: their next packets hit the table.
    for c in 0..5 {
        let out = runner
            .run(&tcp("192.0.2.1", 2000 + c, VIP4, 443, Tcp::Ack, b""))
            .unwrap();
        assert_eq!(out.action, Action::Tx.code());
    }
    let stats = dp.programmer().stats().unwrap();
    let not_recorded = |v: &lb_dataplane::VipConfig| {
        stats.vip_flows_not_recorded_flood[&(v.address, v.port, v.protocol.number())]
    };
    // At most 10 recorded per one-second window; 30 runs span one window,
    // or two if they straddle a boundary.
    let skipped = not_recorded(&flooded);
    assert!((10..=20).contains(&skipped), "{skipped}");
    assert_eq!(not_recorded(&quiet), 0);
    assert_eq!(not_recorded(&generous), 0);
    assert_eq!(not_recorded(&unguarded), 0);
    assert_eq!(stats.global(GlobalCounter::FlowNotRecordedFlood), skipped);
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 5);

    // Raising the flooded VIP's limit takes effect at once.
    dp.programmer()
        .upsert_vip(&lb_dataplane::VipConfig {
            new_flows_per_cpu_per_sec: Some(1_000),
            ..flooded.clone()
        })
        .unwrap();
    let runner = dp.runner(lb_dataplane::ProgramKind::Balancer).unwrap();
    for c in 100..110 {
        runner
            .run(&tcp("192.0.2.1", 2000 + c, VIP4, 80, Tcp::Syn, b""))
            .unwrap();
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(
        stats.vip_flows_not_recorded_flood[&(flooded.address, 80, flooded.protocol.number())],
        skipped
    );
}

/// The per-CPU eviction lists are a load option: the same flow table
/// behaviour, the other map. A SYN's flow is recorded there (not in the
/// common-LRU map, left at its smallest) and its next packet hits it, and a
/// writer that adopts the maps again finds its entries.
#[test]
fn a_flow_table_with_per_cpu_lru_lists_records_and_hits_flows() {
    let mut dp = web_vip(lb_dataplane::LoadOptions {
        flow_table_lru: lb_dataplane::FlowTableLru::PerCpu,
        ..small_options(251)
    });
    let mut model = Model::new(dp.programmer().state().clone());
    let syn = tcp("192.0.2.1", 4000, VIP4, 80, Tcp::Syn, b"");
    let ack = tcp("192.0.2.1", 4000, VIP4, 80, Tcp::Ack, b"");
    check(&dp, &mut model, &syn);
    let (_, m) = check(&dp, &mut model, &ack);
    assert_eq!(m.counter, GlobalCounter::TxFlowHit);
    let key = lb_model::parse(&ack).unwrap().key;
    let entry = dp.programmer().flow_entry(&key).unwrap().expect("recorded");
    let adopted = dp.programmer().read_back().unwrap();
    assert_eq!(adopted.flow_entry(&key).unwrap(), Some(entry));
}

/// A NIC pads a short frame to 60 bytes, and some senders leave junk after
/// the IP packet. Carried into the tunnel, those bytes would make a packet
/// that fits the MTU leave larger than it. They are trimmed: the backend
/// gets the IP packet exactly.
#[test]
fn ethernet_trailer_bytes_are_not_carried_into_the_tunnel() {
    let mtu = 1400u16;
    let (dp, mut model) = setup_at_mtu(mtu);
    let padded = |frame: Vec<u8>, to: usize| {
        let mut f = frame;
        f.resize(to.max(f.len()), 0);
        f
    };
    // A bare SYN is 54 bytes; on the wire it is padded to 60.
    let syn = tcp("192.0.2.1", 4000, VIP4, 80, Tcp::Syn, b"");
    let (k, _) = check(&dp, &mut model, &padded(syn.clone(), 60));
    assert_eq!(k.frame.len(), 14 + 20 + (syn.len() - 14));
    assert_eq!(&k.frame[34..], &syn[14..]);
    // At the MTU once encapsulated, with junk after it: sent, at the MTU.
    let fits = usize::from(mtu) - 20 - 20 - 20;
    let full = tcp("192.0.2.1", 4001, VIP4, 80, Tcp::Ack, &vec![7; fits]);
    let (k, m) = check(&dp, &mut model, &padded(full.clone(), full.len() + 32));
    assert_eq!(m.action, Action::Tx);
    assert_eq!(k.frame.len(), 14 + usize::from(mtu));
    // IPv6, and 4in6 (the v4 UDP VIP has v6 backends).
    let syn6 = tcp("2001:db8:ff::1", 4000, VIP6, 443, Tcp::Syn, b"");
    let (k, _) = check(&dp, &mut model, &padded(syn6.clone(), syn6.len() + 8));
    assert_eq!(&k.frame[54..], &syn6[14..]);
    let dns = udp("192.0.2.1", 4000, VIP4, 53, b"q");
    let (k, _) = check(&dp, &mut model, &padded(dns.clone(), 60));
    assert_eq!(&k.frame[54..], &dns[14..]);
}

/// The balancer serves untagged traffic on its interface. A frame with an
/// 802.1Q or 802.1ad tag, even one to a VIP, goes to the host stack
/// untouched (where a VLAN interface may take it), counted. A tag the NIC
/// stripped (receive VLAN offload) is invisible here: such frames are
/// balanced and sent back untagged, so the balancer's interface must be an
/// access port, or the offload off (README).
#[test]
fn vlan_tagged_frames_pass_untouched_and_are_counted() {
    let (mut dp, mut model) = setup();
    let untagged = tcp("192.0.2.1", 4000, VIP4, 80, Tcp::Syn, b"");
    for tpid in [[0x81, 0x00], [0x88, 0xa8]] {
        let mut tagged = untagged[..12].to_vec();
        tagged.extend_from_slice(&tpid);
        tagged.extend_from_slice(&[0x00, 0x64]); // VLAN 100
        tagged.extend_from_slice(&untagged[12..]);
        let (k, m) = check(&dp, &mut model, &tagged);
        assert_eq!(
            (m.action, m.counter),
            (Action::Pass, GlobalCounter::PassVlanTagged)
        );
        assert_eq!(k.frame, tagged);
    }
    assert_eq!(counter(&mut dp, GlobalCounter::PassVlanTagged), 2);
}

/// A SYN from `src` to `dst:port` carrying `options` (a whole number of
/// words), its TCP checksum correct.
fn syn_with_options(src: &str, dst: &str, port: u16, options: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut builder = ip_layer(src, dst).tcp(4000, port, 7, 1000).syn();
    builder = builder
        .options_raw(options)
        .expect("options of whole words");
    builder.write(&mut out, b"").unwrap();
    out
}

/// The inner TCP segment of an encapsulated frame: its MSS option value
/// (the first option after `nops` no-ops) and whether its checksum holds.
fn inner_mss(frame: &[u8], outer: usize, nops: usize) -> (u16, bool) {
    let inner = &frame[14 + outer..];
    let sliced = SlicedPacket::from_ip(inner).unwrap();
    let tcp = match sliced.transport.unwrap() {
        etherparse::TransportSlice::Tcp(t) => t,
        _ => panic!("not TCP"),
    };
    let header = tcp.to_header();
    let ok = match sliced.net.unwrap() {
        NetSlice::Ipv4(ip) => {
            header
                .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
                .unwrap()
                == header.checksum
        }
        NetSlice::Ipv6(ip) => {
            header
                .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                .unwrap()
                == header.checksum
        }
        _ => panic!("no IP"),
    };
    let o = tcp.options();
    (u16::from_be_bytes([o[nops + 2], o[nops + 3]]), ok)
}

/// A client's first bulk connection used to pay about ten too-big round
/// trips before its segments fit the tunnel. With `CLAMP_MSS` a SYN's MSS
/// option is lowered to what fits (node MTU − outer header − inner IP −
/// TCP), the checksum updated, wherever the option sits; smaller ones and
/// VIPs without the flag are left alone.
#[test]
fn a_syns_mss_is_clamped_to_fit_the_tunnel_when_the_vip_asks() {
    use lb_abi::vip::flags;
    let (mut dp, mut model) = setup_at_mtu(1500);
    for v in [
        vip(VIP4, 80, Protocol::Tcp, &[("10.1.0.1", 1)]),
        vip(VIP6, 443, Protocol::Tcp, &[("2001:db8:1::1", 1)]),
        vip(VIP4, 8080, Protocol::Tcp, &[("2001:db8:1::2", 1)]),
    ] {
        dp.programmer()
            .upsert_vip(&lb_dataplane::VipConfig {
                flags: flags::CLAMP_MSS,
                ..v
            })
            .unwrap();
    }
    resync(&mut dp, &mut model);
    let mss = |value: u16, nops: usize| {
        let mut o = vec![1u8; nops];
        o.extend_from_slice(&[2, 4]);
        o.extend_from_slice(&value.to_be_bytes());
        o.resize(o.len().div_ceil(4) * 4, 0);
        o
    };
    // (VIP, port, outer header, MSS the tunnel fits)
    let cases = [
        (VIP4, 80, 20, 1500 - 20 - 20 - 20),
        (VIP6, 443, 40, 1500 - 40 - 40 - 20),
        (VIP4, 8080, 40, 1500 - 40 - 20 - 20),
    ];
    for (vip_addr, port, outer, fits) in cases {
        let client = if vip_addr.contains(':') {
            "2001:db8:ff::1"
        } else {
            "192.0.2.1"
        };
        for nops in [0, 1, 3] {
            let frame = syn_with_options(client, vip_addr, port, &mss(1460, nops));
            let (k, m) = check(&dp, &mut model, &frame);
            assert_eq!(m.action, Action::Tx);
            assert_eq!(
                inner_mss(&k.frame, outer, nops),
                (fits, true),
                "{vip_addr} {nops}"
            );
            // Already small enough: untouched.
            let small = syn_with_options(client, vip_addr, port, &mss(1200, nops));
            let (k, _) = check(&dp, &mut model, &small);
            assert_eq!(&k.frame[14 + outer..], &small[14..]);
        }
    }
    // The setup's own VIP without the flag keeps the client's MSS.
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &[("10.1.0.1", 1)]))
        .unwrap();
    resync(&mut dp, &mut model);
    let frame = syn_with_options("192.0.2.1", VIP4, 80, &mss(1460, 0));
    let (k, _) = check(&dp, &mut model, &frame);
    assert_eq!(&k.frame[34..], &frame[14..]);
}

#[test]
fn idle_udp_flows_expire_and_are_placed_anew() {
    let mut dp = Dataplane::load(&lb_dataplane::LoadOptions {
        udp_flow_timeout: std::time::Duration::from_secs(1),
        ..small_options(251)
    })
    .unwrap();
    dp.programmer().set_node(&node()).unwrap();
    let backends = ["10.1.0.1", "10.1.0.2"];
    dp.programmer()
        .upsert_vip(&vip(
            VIP4,
            53,
            Protocol::Udp,
            &[(backends[0], 1), (backends[1], 1)],
        ))
        .unwrap();
    let query = udp("192.0.2.1", 5353, VIP4, 53, b"q");
    let send = |dp: &Dataplane| {
        let out = dp
            .runner(lb_dataplane::ProgramKind::Balancer)
            .unwrap()
            .run(&query)
            .unwrap();
        assert_eq!(out.action, Action::Tx.code());
        outer_dst(&out.frame)
    };
    let first = send(&dp);
    // Only the other backend takes new flows from now on.
    let weights = all_but(&backends, first);
    dp.programmer()
        .upsert_vip(&vip(VIP4, 53, Protocol::Udp, &weights))
        .unwrap();
    // Packets within the timeout keep the flow where it is, and keep it alive.
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(send(&dp), first);
    }
    // ICMP errors about the flow follow it while it lives, but do not keep
    // it alive: the client has gone quiet.
    let error = frag_needed_about(17, VIP4, 53, "192.0.2.1", 5353, 28);
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        dp.runner(lb_dataplane::ProgramKind::Balancer)
            .unwrap()
            .run(&error)
            .unwrap();
    }
    assert_ne!(send(&dp), first, "an idle UDP flow is placed anew");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 3);
    assert_eq!(stats.global(GlobalCounter::TxIcmpToBackend), 5);
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 2);
}

#[test]
fn all_ports_vip_catches_what_no_port_vip_claims() {
    let (mut dp, mut model) = setup();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 0, Protocol::Tcp, &[("10.1.0.9", 1)]))
        .unwrap();
    resync(&mut dp, &mut model);
    // Port 80 has a VIP of its own; every other TCP port goes to 10.1.0.9.
    let (k, _) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", 1, VIP4, 80, Tcp::Syn, b""),
    );
    assert_ne!(outer_dst(&k.frame).to_string(), "10.1.0.9");
    for port in [1, 22, 8080, 65535] {
        let (k, m) = check(
            &dp,
            &mut model,
            &tcp("192.0.2.1", 1, VIP4, port, Tcp::Syn, b""),
        );
        assert_eq!(m.action, Action::Tx);
        assert_eq!(outer_dst(&k.frame).to_string(), "10.1.0.9");
    }
    // UDP has its own VIPs: port 53 only; the address is closed to others.
    let (_, m) = check(&dp, &mut model, &udp("192.0.2.1", 1, VIP4, 54, b""));
    assert_eq!(m.counter, GlobalCounter::DropClosedPort);
}

#[test]
fn a_removed_backend_gets_nothing_and_its_flows_are_placed_anew() {
    let (mut dp, mut model) = setup();
    let syn = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Syn, b"");
    let ack = tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Ack, b"more");
    let (k, _) = check(&dp, &mut model, &syn);
    let first = outer_dst(&k.frame).to_string();
    let rest: Vec<(&str, u32)> = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
        .into_iter()
        .filter(|b| *b != first)
        .map(|b| (b, 1))
        .collect();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &rest))
        .unwrap();
    resync(&mut dp, &mut model);
    let (k, m) = check(&dp, &mut model, &ack);
    assert_eq!(
        (m.counter, m.flow_lookup),
        (GlobalCounter::TxRing, Some(false))
    );
    assert_ne!(outer_dst(&k.frame).to_string(), first);
    assert!(
        !dp.programmer()
            .stats()
            .unwrap()
            .backends
            .contains_key(&first.parse().unwrap())
    );
}

/// A backend two VIPs share leaves one of them: that VIP's flows to it are
/// placed anew at once (no reader barrier needed first), the other VIP's
/// flows to it stay.
#[test]
fn a_backend_removed_from_one_vip_keeps_the_other_vips_flows() {
    let mut dp = dataplane(1021);
    let shared = [("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)];
    for port in [80, 8080] {
        dp.programmer()
            .upsert_vip(&vip(VIP4, port, Protocol::Tcp, &shared))
            .unwrap();
    }
    let mut model = Model::new(dp.programmer().state().clone());
    // A client port whose flows go to the same backend on both VIPs.
    let (sport, first) = (40_000..41_000u16)
        .find_map(|sport| {
            let mut to = |port| {
                let (k, _) = check(
                    &dp,
                    &mut model,
                    &tcp("192.0.2.1", sport, VIP4, port, Tcp::Syn, b""),
                );
                outer_dst(&k.frame)
            };
            let (a, b) = (to(80), to(8080));
            (a == b).then_some((sport, a))
        })
        .expect("a client port placed on one backend by both VIPs");
    let rest: Vec<(&str, u32)> = shared
        .into_iter()
        .filter(|(b, _)| b.parse::<std::net::IpAddr>().unwrap() != first)
        .collect();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &rest))
        .unwrap();
    resync(&mut dp, &mut model);
    let (k, m) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", sport, VIP4, 80, Tcp::Ack, b"a"),
    );
    assert_eq!(m.counter, GlobalCounter::TxRing, "placed anew");
    assert_ne!(outer_dst(&k.frame), first);
    let (k, m) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", sport, VIP4, 8080, Tcp::Ack, b"b"),
    );
    assert_eq!(m.counter, GlobalCounter::TxFlowHit, "kept");
    assert_eq!(outer_dst(&k.frame), first);
}

/// The LRU recycles elements under readers, so a lookup can copy another
/// flow's value. A copy must prove it is its key's by its tag: a flow whose
/// entry holds another flow's value is placed by the ring, not sent to the
/// other flow's backend.
#[test]
fn a_flow_entry_holding_another_flows_value_is_not_followed() {
    let options = LoadOptions {
        per_cpu_caches: false,
        ..small_options(1021)
    };
    let mut dp = Dataplane::load(&options).unwrap();
    dp.programmer().set_node(&node()).unwrap();
    let backends = [("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)];
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &backends))
        .unwrap();
    let mut model = Model::new(dp.programmer().state().clone());
    let mut placed = |sport| {
        let (k, _) = check(
            &dp,
            &mut model,
            &tcp("192.0.2.1", sport, VIP4, 80, Tcp::Syn, b""),
        );
        outer_dst(&k.frame)
    };
    let own = placed(40_000);
    let other_port = (40_001..41_000u16)
        .find(|p| placed(*p) != own)
        .expect("a flow on another backend");
    let key = |sport: u16| {
        lb_model::parse(&tcp("192.0.2.1", sport, VIP4, 80, Tcp::Ack, b""))
            .unwrap()
            .key
    };
    let foreign = dp
        .programmer()
        .flow_entry(&key(other_port))
        .unwrap()
        .unwrap();
    dp.programmer()
        .overwrite_flow_entry(&key(40_000), &foreign)
        .unwrap();
    let out = dp
        .runner(ProgramKind::Balancer)
        .unwrap()
        .run(&tcp("192.0.2.1", 40_000, VIP4, 80, Tcp::Ack, b"x"))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), own, "sent where the ring places it");
    assert_eq!(
        dp.programmer()
            .stats()
            .unwrap()
            .global(GlobalCounter::FlowMiss),
        1,
        "the foreign copy is a miss"
    );
}

#[test]
fn at_the_mtu_is_sent_one_byte_over_is_answered_or_dropped() {
    let mtu = 1280u16;
    let (dp, mut model) = setup_at_mtu(mtu);
    // IPv4 to an IPv4 backend: 20 bytes of outer header.
    let fits = |payload: usize| {
        let mut f = tcp("192.0.2.1", 4000, VIP4, 80, Tcp::Ack, &vec![7; payload]);
        f[20] |= 0x40; // DF
        f
    };
    let at = fits(usize::from(mtu) - 20 - 40);
    let (_, m) = check(&dp, &mut model, &at);
    assert_eq!(m.action, Action::Tx);
    let over = fits(usize::from(mtu) - 20 - 40 + 1);
    let (k, m) = check(&dp, &mut model, &over);
    assert_eq!(
        (m.action, m.counter),
        (Action::Tx, GlobalCounter::TxIcmpTooBig)
    );
    assert_eq!(k.frame.len(), 14 + 20 + 8 + 28);
    assert_eq!(
        (&k.frame[..6], &k.frame[6..12]),
        (&over[6..12], &over[..6]),
        "back where it came from"
    );
    assert_eq!(&k.frame[26..30], &over[30..34], "from the VIP");
    assert_eq!(&k.frame[30..34], &over[26..30], "to the client");
    assert_eq!(&k.frame[34..36], &[3, 4], "fragmentation needed");
    assert_eq!(u16::from_be_bytes([k.frame[40], k.frame[41]]), mtu - 20);
    assert_eq!(lb_model::internet_checksum(&k.frame[34..]), 0);
    assert_eq!(lb_model::internet_checksum(&k.frame[14..34]), 0);
    assert_eq!(
        &k.frame[42..70],
        &over[14..42],
        "quotes the header and 8 bytes"
    );

    let mut no_df = over.clone();
    no_df[20] &= !0x40;
    let (_, m) = check(&dp, &mut model, &no_df);
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropTooBig)
    );

    // IPv6 to an IPv6 backend: 40 bytes of outer header.
    let v6 = |payload: usize| {
        tcp(
            "2001:db8:ff::1",
            4000,
            "2001:db8::100",
            443,
            Tcp::Ack,
            &vec![7; payload],
        )
    };
    let (_, m) = check(&dp, &mut model, &v6(usize::from(mtu) - 40 - 60));
    assert_eq!(m.action, Action::Tx);
    let over = v6(usize::from(mtu) - 40 - 60 + 1);
    let (k, m) = check(&dp, &mut model, &over);
    assert_eq!(
        (m.action, m.counter),
        (Action::Tx, GlobalCounter::TxIcmpTooBig)
    );
    assert_eq!(&k.frame[54..56], &[2, 0], "packet too big");
    assert_eq!(
        u32::from_be_bytes([k.frame[58], k.frame[59], k.frame[60], k.frame[61]]),
        u32::from(mtu) - 40
    );
    let mut pseudo = k.frame[22..54].to_vec();
    pseudo.extend_from_slice(&56u32.to_be_bytes());
    pseudo.extend_from_slice(&58u32.to_be_bytes());
    pseudo.extend_from_slice(&k.frame[54..]);
    assert_eq!(lb_model::internet_checksum(&pseudo), 0);
}

/// An ICMPv4 fragmentation-needed from a router, to `vip`, quoting the
/// backend's TCP packet `vip:vport → client:cport`, cut to `quote` bytes.
fn frag_needed(vip: &str, vport: u16, client: &str, cport: u16, quote: usize) -> Vec<u8> {
    frag_needed_about(6, vip, vport, client, cport, quote)
}

/// [`frag_needed`] quoting a packet of IP protocol `proto`.
fn frag_needed_about(
    proto: u8,
    vip: &str,
    vport: u16,
    client: &str,
    cport: u16,
    quote: usize,
) -> Vec<u8> {
    let (v, c): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (vip.parse().unwrap(), client.parse().unwrap());
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, proto, 0, 0]);
    icmp.extend_from_slice(&v.octets());
    icmp.extend_from_slice(&c.octets());
    icmp.extend_from_slice(&vport.to_be_bytes());
    icmp.extend_from_slice(&cport.to_be_bytes());
    icmp.extend_from_slice(&[0, 0, 0, 1]);
    icmp.truncate(8 + quote);
    let mut out = Vec::new();
    ip_layer("198.51.100.1", vip)
        .write(&mut out, etherparse::IpNumber::ICMP, &icmp)
        .unwrap();
    out
}

#[test]
fn icmp_errors_about_a_vip_flow_reach_the_flows_backend() {
    let (mut dp, mut model) = setup();
    let (k, _) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.1", 40000, VIP4, 80, Tcp::Syn, b""),
    );
    let owner = outer_dst(&k.frame);
    // The ring moves on; the flow (and so its ICMP errors) stays.
    let weights = all_but(&["10.1.0.1", "10.1.0.2", "10.1.0.3"], owner);
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &weights))
        .unwrap();
    resync(&mut dp, &mut model);
    let error = frag_needed(VIP4, 80, "192.0.2.1", 40000, 28);
    let (k, m) = check(&dp, &mut model, &error);
    assert_eq!(
        (m.action, m.counter),
        (Action::Tx, GlobalCounter::TxIcmpToBackend)
    );
    assert_eq!(outer_dst(&k.frame), owner);
    assert_eq!(
        &k.frame[34..],
        &error[14..],
        "the whole error, encapsulated"
    );

    // About a flow the table does not know: the ring, as for its packets.
    let (k, m) = check(&dp, &mut model, &frag_needed(VIP4, 80, "192.0.2.2", 1, 28));
    assert_eq!(m.counter, GlobalCounter::TxIcmpToBackend);
    let (k2, _) = check(
        &dp,
        &mut model,
        &tcp("192.0.2.2", 1, VIP4, 80, Tcp::Syn, b""),
    );
    assert_eq!(outer_dst(&k.frame), outer_dst(&k2.frame));

    // About a flow on a port no VIP serves, to the VIP's closed address:
    // dropped (`vip_addresses_are_closed_*` covers the rest).
    let (_, m) = check(
        &dp,
        &mut model,
        &frag_needed(VIP4, 81, "192.0.2.1", 40000, 28),
    );
    assert_eq!(
        (m.action, m.counter),
        (Action::Drop, GlobalCounter::DropClosedPort)
    );

    // Quoting too little to place: dropped at a VIP address, passed elsewhere.
    for quote in [0, 19, 23] {
        let (_, m) = check(
            &dp,
            &mut model,
            &frag_needed(VIP4, 80, "192.0.2.1", 40000, quote),
        );
        assert_eq!(
            (m.action, m.counter),
            (Action::Drop, GlobalCounter::DropBadIcmp),
            "{quote}"
        );
    }
    let (_, m) = check(
        &dp,
        &mut model,
        &frag_needed("10.0.0.101", 80, "192.0.2.1", 40000, 10),
    );
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassOtherProtocol)
    );
    // Truncated ICMP header itself: as any truncated packet.
    let mut short = frag_needed(VIP4, 80, "192.0.2.1", 40000, 28);
    short.truncate(14 + 20 + 4);
    short[16..18].copy_from_slice(&24u16.to_be_bytes());
    let (_, m) = check(&dp, &mut model, &short);
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassTruncated)
    );
}

#[test]
fn ipv6_packet_too_big_about_a_vip_flow_is_steered() {
    let (dp, mut model) = setup();
    let (k, _) = check(
        &dp,
        &mut model,
        &tcp("2001:db8:ff::1", 5555, VIP6, 443, Tcp::Syn, b""),
    );
    let vip: std::net::Ipv6Addr = VIP6.parse().unwrap();
    let client: std::net::Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&[0x60, 0, 0, 0, 0x05, 0xb0, 6, 64]);
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&client.octets());
    icmp.extend_from_slice(&[0x01, 0xbb, 0x15, 0xb3, 0, 0, 0, 1]);
    let mut error = Vec::new();
    ip_layer("2001:db8:ee::1", VIP6)
        .write(&mut error, etherparse::IpNumber::IPV6_ICMP, &icmp)
        .unwrap();
    let (k2, m) = check(&dp, &mut model, &error);
    assert_eq!(m.counter, GlobalCounter::TxIcmpToBackend);
    assert_eq!(outer_dst(&k2.frame), outer_dst(&k.frame));
}

#[test]
fn an_empty_udp_datagram_is_forwarded() {
    let (dp, mut model) = setup();
    let empty = udp("192.0.2.7", 1234, VIP4, 53, b"");
    let (_, m) = check(&dp, &mut model, &empty);
    assert_eq!(m.action, Action::Tx);
}

/// `frame` (IPv6) with extension headers inserted after the fixed header:
/// (next-header number, header bytes after the first two).
fn with_extension_headers(frame: &[u8], headers: Chain) -> Vec<u8> {
    let mut f = frame[..54].to_vec();
    let mut next_at = 20;
    for (number, body) in headers {
        let upper = f[next_at];
        f[next_at] = *number;
        next_at = f.len();
        assert_eq!((body.len() + 2) % 8, 0);
        f.push(upper);
        f.push(((body.len() + 2) / 8 - 1) as u8);
        f.extend_from_slice(body);
    }
    f.extend_from_slice(&frame[54..]);
    let payload = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}

/// Extension headers as `with_extension_headers` takes them.
type Chain<'a> = &'a [(u8, &'a [u8])];

const PAD6: &[u8] = &[1, 4, 0, 0, 0, 0]; // PadN of 4: a 6-byte body
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTIONS: u8 = 60;

/// Hop-by-hop, routing (no segments left) and destination options before
/// TCP used to send VIP traffic to the host's stack; now it is balanced,
/// to the backend the same flow without them gets, headers carried as
/// sent. What the parser does not follow is dropped at the VIP's address.
#[test]
fn ipv6_vip_traffic_behind_extension_headers_is_balanced() {
    let (mut dp, mut model) = setup();
    let plain = tcp("2001:db8:ff::1", 5555, VIP6, 443, Tcp::Syn, b"hello");
    let (k, _) = check(&dp, &mut model, &plain);
    let backend = outer_dst(&k.frame);
    let routing_done: &[u8] = &[4, 0, 0, 0, 0, 0]; // type 4, 0 segments left
    let chains: [Chain; 4] = [
        &[(HOP_BY_HOP, PAD6)],
        &[(DEST_OPTIONS, PAD6)],
        &[
            (HOP_BY_HOP, PAD6),
            (ROUTING, routing_done),
            (DEST_OPTIONS, PAD6),
        ],
        &[
            (HOP_BY_HOP, PAD6),
            (DEST_OPTIONS, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (ROUTING, routing_done),
            (DEST_OPTIONS, PAD6),
        ],
    ];
    for chain in chains {
        let frame = with_extension_headers(&plain, chain);
        let (k, m) = check(&dp, &mut model, &frame);
        assert_eq!(
            (m.action, m.counter),
            (Action::Tx, GlobalCounter::TxRing),
            "{chain:?}"
        );
        assert_eq!(outer_dst(&k.frame), backend, "{chain:?}");
        assert_eq!(&k.frame[54..], &frame[14..], "carried whole: {chain:?}");
    }

    let routing_on: &[u8] = &[4, 1, 0, 0, 0, 0]; // one segment left
    let closed: [(Chain, GlobalCounter); 4] = [
        // The VIP is a waypoint, not the destination.
        (&[(ROUTING, routing_on)], GlobalCounter::DropClosedExtHeader),
        // Longer than the parser follows.
        (
            &[(DEST_OPTIONS, PAD6); 5],
            GlobalCounter::DropClosedExtHeader,
        ),
        // Fragments, first or later, have no place.
        (
            &[(FRAGMENT, &[0, 0, 0, 0, 0, 1])],
            GlobalCounter::DropClosedFragment,
        ),
        (
            &[(HOP_BY_HOP, PAD6), (FRAGMENT, &[0, 0x10, 0, 0, 0, 1])],
            GlobalCounter::DropClosedFragment,
        ),
    ];
    for (chain, counter) in closed {
        let frame = with_extension_headers(&plain, chain);
        let (_, m) = check(&dp, &mut model, &frame);
        assert_eq!((m.action, m.counter), (Action::Drop, counter), "{chain:?}");
        // To an address with no VIP, the same packet passes.
        let mut elsewhere = frame.clone();
        elsewhere[53] = 0x99;
        let (k, m) = check(&dp, &mut model, &elsewhere);
        assert_eq!(m.action, Action::Pass, "{chain:?}");
        assert_eq!(k.frame, elsewhere);
    }
    // A chain cut short is any truncated packet.
    let cut = with_extension_headers(
        &plain,
        &[(HOP_BY_HOP, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    );
    let (_, m) = check(&dp, &mut model, &cut[..60]);
    assert_eq!(
        (m.action, m.counter),
        (Action::Pass, GlobalCounter::PassTruncated)
    );
    assert_eq!(counter(&mut dp, GlobalCounter::DropClosedExtHeader), 2);
    assert_eq!(counter(&mut dp, GlobalCounter::DropClosedFragment), 2);
}

/// An IPv4 or IPv6 packet of `proto` carrying `body` from a client to `dst`.
fn ip_packet(src: &str, dst: &str, proto: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    ip_layer(src, dst)
        .write(&mut f, etherparse::IpNumber(proto), body)
        .unwrap();
    f
}

/// Without the opt-out, nothing reaches the LB host's stack through a VIP's
/// address but what no VIP could take anyway: ports and protocols no VIP
/// serves, later fragments and echo are dropped, each under its counter.
/// The same packets to an address with no VIP pass as before.
#[test]
fn vip_addresses_are_closed_to_what_no_vip_balances() {
    let (mut dp, mut model) = setup();
    let mut later_fragment = udp("192.0.2.1", 9, VIP4, 53, b"rest");
    later_fragment[21] = 0x10;
    let echo4 = ip_packet("198.51.100.1", VIP4, 1, &[8, 0, 0, 0, 0, 1, 0, 1, b'p']);
    let echo6 = ip_packet(
        "2001:db8:ff::1",
        VIP6,
        58,
        &[128, 0, 0, 0, 0, 1, 0, 1, b'p'],
    );
    let cases = [
        // A port scan of the VIP's address.
        (
            tcp("192.0.2.1", 1, VIP4, 22, Tcp::Syn, b""),
            GlobalCounter::DropClosedPort,
        ),
        (
            udp("192.0.2.1", 1, VIP4, 80, b"x"),
            GlobalCounter::DropClosedPort,
        ),
        (
            udp("2001:db8:ff::1", 1, VIP6, 443, b"x"),
            GlobalCounter::DropClosedPort,
        ),
        // Other protocols: GRE, SCTP, an ICMP timestamp request.
        (
            ip_packet("192.0.2.1", VIP4, 47, &[0; 8]),
            GlobalCounter::DropClosedProtocol,
        ),
        (
            ip_packet("2001:db8:ff::1", VIP6, 132, &[0; 12]),
            GlobalCounter::DropClosedProtocol,
        ),
        (
            ip_packet("192.0.2.1", VIP4, 1, &[13, 0, 0, 0, 0, 1, 0, 1]),
            GlobalCounter::DropClosedProtocol,
        ),
        (later_fragment, GlobalCounter::DropClosedFragment),
        (echo4, GlobalCounter::DropClosedEcho),
        (echo6, GlobalCounter::DropClosedEcho),
    ];
    for (frame, closed) in &cases {
        let (_, m) = check(&dp, &mut model, frame);
        assert_eq!((m.action, m.counter), (Action::Drop, *closed), "{closed:?}");
        let mut elsewhere = frame.clone();
        let last = if frame[12] == 0x86 { 53 } else { 33 };
        elsewhere[last] = 0x65;
        let (k, m) = check(&dp, &mut model, &elsewhere);
        assert_eq!(m.action, Action::Pass, "{closed:?} elsewhere");
        assert_eq!(k.frame, elsewhere);
    }
    for c in [
        GlobalCounter::DropClosedPort,
        GlobalCounter::DropClosedProtocol,
        GlobalCounter::DropClosedFragment,
        GlobalCounter::DropClosedEcho,
    ] {
        let n = cases.iter().filter(|(_, k)| *k == c).count() as u64;
        assert_eq!(counter(&mut dp, c), n, "{c:?}");
    }
}

/// A closed address must still resolve: neighbour solicitations and
/// advertisements (and router discovery, redirects) for a VIP's address
/// reach the host's stack whatever the VIPs ask.
#[test]
fn neighbour_discovery_for_a_vip_address_is_never_dropped() {
    let (mut dp, mut model) = setup();
    for kind in 133..=137u8 {
        let mut body = vec![kind, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let frame = ip_packet("2001:db8:ff::1", VIP6, 58, &body);
        let (k, m) = check(&dp, &mut model, &frame);
        assert_eq!(
            (m.action, m.counter),
            (Action::Pass, GlobalCounter::PassOtherProtocol),
            "{kind}"
        );
        assert_eq!(k.frame, frame);
    }
    assert_eq!(dp.programmer().stats().unwrap().drops(), 0);
}

/// The opt-out: a VIP with `OPEN_ADDRESS` hands what no VIP balances on its
/// address to the host's stack (an operator's local services there);
/// `PASS_ECHO` opens the address to echo requests only. Either on one VIP
/// opens the address for all; withdrawn, the address closes again.
#[test]
fn a_vip_opens_its_address_to_the_hosts_stack_only_when_asked() {
    use lb_abi::vip::flags;
    let (mut dp, mut model) = setup();
    let ssh = tcp("192.0.2.1", 1, VIP4, 22, Tcp::Syn, b"");
    let echo = ip_packet("198.51.100.1", VIP4, 1, &[8, 0, 0, 0, 0, 1, 0, 1, b'p']);
    let with_flags = |flags: u32| lb_dataplane::VipConfig {
        flags,
        ..vip(
            VIP4,
            53,
            Protocol::Udp,
            &[("2001:db8:2::1", 1), ("2001:db8:2::2", 1)],
        )
    };
    let open = (Action::Pass, GlobalCounter::PassOpenAddress);
    let steps = [
        (
            flags::PASS_ECHO,
            [
                (&echo, open),
                (&ssh, (Action::Drop, GlobalCounter::DropClosedPort)),
            ],
        ),
        (flags::OPEN_ADDRESS, [(&ssh, open), (&echo, open)]),
    ];
    for (flags, expected) in steps {
        dp.programmer().upsert_vip(&with_flags(flags)).unwrap();
        resync(&mut dp, &mut model);
        for (frame, want) in expected {
            let (_, m) = check(&dp, &mut model, frame);
            assert_eq!((m.action, m.counter), want, "flags {flags:#x}");
        }
    }
    // Balanced traffic is balanced as before.
    let (_, m) = check(&dp, &mut model, &udp("192.0.2.1", 1, VIP4, 53, b"q"));
    assert_eq!(m.action, Action::Tx);
    // Only that address: the IPv6 VIP's stays closed; and with the opening
    // VIP removed, the address, still VIP4:80's, closes.
    let v6_ssh = tcp("2001:db8:ff::1", 1, VIP6, 22, Tcp::Syn, b"");
    let (_, m) = check(&dp, &mut model, &v6_ssh);
    assert_eq!(m.counter, GlobalCounter::DropClosedPort);
    dp.programmer().remove_vip(&with_flags(0).key()).unwrap();
    resync(&mut dp, &mut model);
    for (frame, closed) in [
        (&ssh, GlobalCounter::DropClosedPort),
        (&echo, GlobalCounter::DropClosedEcho),
    ] {
        let (_, m) = check(&dp, &mut model, frame);
        assert_eq!((m.action, m.counter), (Action::Drop, closed));
    }
}

/// A too-big reply goes back to the packet's source from the MAC it was
/// sent to. Spoofed group or loopback sources would make the balancer
/// answer a whole segment, or itself; a frame sent to a broadcast MAC
/// would make it send from one. Each is dropped and counted; a unicast
/// source next to them is still answered.
#[test]
fn too_big_replies_never_go_to_group_loopback_or_unspecified_senders() {
    let mtu = 1280u16;
    let (mut dp, mut model) = setup_at_mtu(mtu);
    let too_big = |src: &str, dst: &str, port: u16| {
        let mut f = tcp(src, 4000, dst, port, Tcp::Ack, &vec![7; usize::from(mtu)]);
        if src.contains('.') {
            f[20] |= 0x40; // DF
        }
        f
    };
    let unanswerable = [
        too_big("0.0.0.0", VIP4, 80),
        too_big("127.0.0.1", VIP4, 80),
        too_big("224.0.0.1", VIP4, 80),
        too_big("255.255.255.255", VIP4, 80),
        too_big("::", "2001:db8::100", 443),
        too_big("::1", "2001:db8::100", 443),
        too_big("ff02::1", "2001:db8::100", 443),
    ];
    for frame in &unanswerable {
        let (_, m) = check(&dp, &mut model, frame);
        assert_eq!(
            (m.action, m.counter),
            (Action::Drop, GlobalCounter::DropTooBigUnanswerable),
            "{frame:02x?}"
        );
    }
    for unicast in [
        too_big("192.0.2.1", VIP4, 80),
        too_big("2001:db8:ff::1", "2001:db8::100", 443),
    ] {
        let mut to_group = unicast.clone();
        to_group[..6].copy_from_slice(&[0xff; 6]);
        let (_, m) = check(&dp, &mut model, &to_group);
        assert_eq!(
            m.counter,
            GlobalCounter::DropTooBigUnanswerable,
            "broadcast MAC"
        );
        let (_, m) = check(&dp, &mut model, &unicast);
        assert_eq!(m.counter, GlobalCounter::TxIcmpTooBig, "unicast sender");
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::DropTooBigUnanswerable), 9);
}

/// Spoofed oversized packets must not turn the balancer into a reflector:
/// each CPU answers at most its rate of too-big replies (a burst of one
/// second's worth, then the rate), and drops and counts the rest.
#[test]
fn too_big_replies_are_rate_limited_per_cpu() {
    let mut dp = Dataplane::load(&LoadOptions {
        too_big_replies_per_cpu_per_sec: 10,
        ..small_options(1021)
    })
    .expect("load dataplane (run as root)");
    dp.programmer()
        .set_node(&lb_dataplane::NodeConfig {
            mtu: 1280,
            ..node()
        })
        .unwrap();
    dp.programmer()
        .upsert_vip(&vip(VIP4, 80, Protocol::Tcp, &[("10.1.0.1", 1)]))
        .unwrap();
    pin_to_cpu(1);
    let runner = dp.runner(ProgramKind::Balancer).unwrap();
    let mut answered = 0;
    let started = std::time::Instant::now();
    for n in 0..40u16 {
        let mut frame = tcp("192.0.2.1", 4000 + n, VIP4, 80, Tcp::Ack, &[7; 1280]);
        frame[20] |= 0x40; // DF
        let out = runner.run(&frame).unwrap();
        answered += usize::from(out.action == 3);
    }
    // Ten for the burst, and one more for each 100 ms the loop took.
    let refilled = (started.elapsed().as_millis() / 100) as usize;
    assert!(
        (10..=10 + refilled).contains(&answered),
        "{answered} of 40 answered"
    );
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxIcmpTooBig), answered as u64);
    assert_eq!(
        stats.global(GlobalCounter::DropTooBigRateLimited),
        40 - answered as u64
    );
}
