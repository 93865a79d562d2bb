//! The kernel program against the model on random configs and random
//! frames (valid, malformed, truncated): action and output bytes must be
//! equal for every frame, and so must the counters.
//!
//! Each case is one config with a run of frames, changed by batches in
//! between (VIPs replaced and removed, ids recycled after a reader
//! barrier); after each batch the model takes the state read back from the
//! maps (`Programmer::read_back`), not the programmer's own bookkeeping.
//! `CASES` × `FRAMES_PER_CASE` frames per run (10,240 by default;
//! `PROPTEST_CASES` overrides the number of configs).

mod common;

use std::{collections::BTreeMap, net::IpAddr};

use common::*;
use etherparse::PacketBuilder;
use lb_abi::{
    stats::GlobalCounter,
    vip::{VipKey, flags},
};
use lb_dataplane::{
    BackendConfig, Batch, Dataplane, LoadOptions, ProgramKind, Protocol, VipConfig,
};
use lb_model::Model;
use proptest::prelude::*;

const CASES: u32 = 160;
const FRAMES_PER_CASE: usize = 64;
const RING_SIZE: u32 = 251;

const VIP_V4: [&str; 2] = ["10.0.0.1", "10.0.0.2"];
const VIP_V6: [&str; 2] = ["2001:db8::1", "2001:db8::2"];
/// VIP ports; 0 is the all-ports VIP. Frames go to the first three and to
/// 8080.
const PORTS: [u16; 4] = [80, 443, 53, 0];

#[derive(Clone, Debug)]
struct VipSpec {
    v6: bool,
    addr: usize,
    port: usize,
    udp: bool,
    flags: u32,
    backends: Vec<(bool, u8, u32)>,
}

fn vip_spec() -> impl Strategy<Value = VipSpec> {
    (
        any::<bool>(),
        0..2usize,
        0..4usize,
        any::<bool>(),
        0..=flags::ALL,
        prop::collection::vec((any::<bool>(), 1..40u8, 0..4u32), 0..6),
    )
        .prop_map(|(v6, addr, port, udp, flags, backends)| VipSpec {
            v6,
            addr,
            port,
            udp,
            flags,
            backends,
        })
}

fn to_config(spec: &VipSpec) -> VipConfig {
    let address: IpAddr = if spec.v6 {
        VIP_V6[spec.addr]
    } else {
        VIP_V4[spec.addr]
    }
    .parse()
    .unwrap();
    let mut backends: Vec<BackendConfig> = Vec::new();
    for &(want_v6, host, weight) in &spec.backends {
        // An IPv6 VIP needs IPv6 backends; an IPv4 VIP takes both.
        let address: IpAddr = if want_v6 || spec.v6 {
            format!("2001:db8:b::{host}").parse().unwrap()
        } else {
            format!("10.9.0.{host}").parse().unwrap()
        };
        if !backends.iter().any(|b| b.address == address) {
            backends.push(BackendConfig { address, weight });
        }
    }
    VipConfig {
        address,
        port: PORTS[spec.port],
        protocol: if spec.udp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        flags: spec.flags,
        new_flows_per_cpu_per_sec: None,
        backends,
        revision: 0,
    }
}

/// A batch between two frames: VIPs upserted, VIPs removed (by position
/// among those programmed), and whether readers are waited out after it
/// (which recycles what it retired).
#[derive(Clone, Debug)]
struct Change {
    before_frame: usize,
    upserts: Vec<VipSpec>,
    removals: Vec<usize>,
    barrier: bool,
}

fn change() -> impl Strategy<Value = Change> {
    (
        0..FRAMES_PER_CASE,
        prop::collection::vec(vip_spec(), 0..3),
        prop::collection::vec(0..8usize, 0..2),
        any::<bool>(),
    )
        .prop_map(|(before_frame, upserts, removals, barrier)| Change {
            before_frame,
            upserts,
            removals,
            barrier,
        })
}

/// `change` as a batch valid against the programmed VIPs: one entry per
/// key, removals only of programmed VIPs not also upserted.
fn to_batch(change: &Change, programmed: &[VipKey]) -> Batch {
    let mut batch = Batch::default();
    for spec in &change.upserts {
        let config = to_config(spec);
        batch.upserts.retain(|c| c.key() != config.key());
        batch.upserts.push(config);
    }
    for &i in &change.removals {
        let Some(key) = programmed.get(i % programmed.len().max(1)) else {
            continue;
        };
        if !batch.removals.contains(key) && batch.upserts.iter().all(|c| c.key() != *key) {
            batch.removals.push(*key);
        }
    }
    batch
}

#[derive(Clone, Debug)]
enum Mutation {
    None,
    /// Cut the frame to 14 + this share (per 256) of the rest.
    Truncate(u8),
    /// IPv4 options of this many words.
    Options(u8),
    MoreFragments,
    FragmentOffset(u16),
    Version(u8),
    /// Add to the IP length field.
    Length(i16),
    EtherType(u16),
    /// Ethernet trailer bytes after the IP packet.
    Trailer(u8),
    /// IPv6 extension headers inserted after the fixed header: (kind,
    /// length in 8-byte units past the first). Kinds: 0 hop-by-hop, 60
    /// destination options, 43 routing with no segments left, 243 routing
    /// with one left, 44 fragment.
    ExtHeaders(Vec<(u8, u8)>),
    /// The IP protocol / next header rewritten (GRE, ESP, SCTP).
    Protocol(u8),
    /// TCP options inserted after the TCP header: `nops` no-ops, then an
    /// MSS option of this value (or, with 0, a malformed 2-byte one), then
    /// padding to a whole word.
    TcpOptions {
        nops: u8,
        mss: u16,
    },
}

#[derive(Clone, Debug)]
struct FrameSpec {
    v6: bool,
    src: u8,
    sport: u16,
    /// Index into the VIP addresses, or a non-VIP address.
    dst: Option<usize>,
    port: usize,
    /// 0 TCP, 1 UDP, 2 ICMP echo, 3 an ICMP error quoting the VIP's side
    /// of this flow (as a router on the way back would send), 4 other
    /// ICMP (v4 timestamp, v6 neighbour solicitation).
    proto: u8,
    syn: bool,
    /// IPv4 don't-fragment.
    df: bool,
    payload: u16,
    mutation: Mutation,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => Just(Mutation::None),
        2 => any::<u8>().prop_map(Mutation::Truncate),
        1 => (1..=10u8).prop_map(Mutation::Options),
        1 => Just(Mutation::MoreFragments),
        1 => (1..0x1fffu16).prop_map(Mutation::FragmentOffset),
        1 => (0..16u8).prop_map(Mutation::Version),
        1 => (-60..60i16).prop_map(Mutation::Length),
        1 => any::<u16>().prop_map(Mutation::EtherType),
        1 => (1..40u8).prop_map(Mutation::Trailer),
        2 => prop::collection::vec(
            (prop_oneof![3 => Just(0u8), 3 => Just(60), 2 => Just(43), 1 => Just(243), 1 => Just(44)], 0..3u8),
            1..7,
        )
        .prop_map(Mutation::ExtHeaders),
        1 => prop_oneof![Just(47u8), Just(50), Just(132)].prop_map(Mutation::Protocol),
        3 => (0..3u8, prop_oneof![Just(0u16), 500..1500u16, Just(1460), Just(8960)])
            .prop_map(|(nops, mss)| Mutation::TcpOptions { nops, mss }),
    ]
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        any::<bool>(),
        1..6u8,
        prop_oneof![Just(1000u16), Just(2000), any::<u16>()],
        prop_oneof![3 => (0..2usize).prop_map(Some), 1 => Just(None)],
        0..4usize,
        prop_oneof![4 => Just(0u8), 3 => Just(1), 1 => Just(2), 2 => Just(3), 1 => Just(4)],
        (any::<bool>(), any::<bool>()),
        // Some near the smallest MTUs, so that frames go over once
        // encapsulated.
        prop_oneof![3 => 0..200u16, 1 => 1150..1400u16],
        mutation(),
    )
        .prop_map(
            |(v6, src, sport, dst, port, proto, (syn, df), payload, mutation)| FrameSpec {
                v6,
                src,
                sport,
                dst,
                port,
                proto,
                syn,
                df,
                payload,
                mutation,
            },
        )
}

fn build_frame(spec: &FrameSpec) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let dport = PORTS[..3].get(spec.port).copied().unwrap_or(8080);
    let ip = if spec.v6 {
        let src: std::net::Ipv6Addr = format!("2001:db8:c::{}", spec.src).parse().unwrap();
        let dst: std::net::Ipv6Addr = match spec.dst {
            Some(i) => VIP_V6[i].parse().unwrap(),
            None => "2001:db8::99".parse().unwrap(),
        };
        eth.ipv6(src.octets(), dst.octets(), 64)
    } else {
        let dst: std::net::Ipv4Addr = match spec.dst {
            Some(i) => VIP_V4[i].parse().unwrap(),
            None => "10.0.0.99".parse().unwrap(),
        };
        eth.ipv4([192, 0, 2, spec.src], dst.octets(), 64)
    };
    let payload = vec![0xab; usize::from(spec.payload)];
    let mut out = Vec::new();
    match spec.proto {
        0 => {
            let t = ip.tcp(spec.sport, dport, 7, 1000);
            let t = if spec.syn { t.syn() } else { t.ack(9) };
            t.write(&mut out, &payload).unwrap();
        }
        1 => ip.udp(spec.sport, dport).write(&mut out, &payload).unwrap(),
        3 => {
            let (number, icmp) = icmp_error(spec, dport);
            ip.write(&mut out, number, &icmp).unwrap();
        }
        4 => {
            let (number, kind) = if spec.v6 {
                (etherparse::IpNumber::IPV6_ICMP, 135)
            } else {
                (etherparse::IpNumber::ICMP, 13)
            };
            let mut icmp = vec![kind, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&payload[..payload.len().min(24)]);
            ip.write(&mut out, number, &icmp).unwrap();
        }
        _ if spec.v6 => ip
            .icmpv6_echo_request(1, 2)
            .write(&mut out, &payload)
            .unwrap(),
        _ => ip
            .icmpv4_echo_request(1, 2)
            .write(&mut out, &payload)
            .unwrap(),
    }
    if !spec.v6 {
        let frag =
            u16::from_be_bytes([out[20], out[21]]) & !0x4000 | if spec.df { 0x4000 } else { 0 };
        out[20..22].copy_from_slice(&frag.to_be_bytes());
        // The IPv4 header checksum is left stale: the balancer neither
        // checks nor rewrites it.
    }
    mutate(out, spec)
}

/// An ICMP destination-unreachable / packet-too-big quoting a packet from
/// the frame's destination port back to the client: the VIP's reply
/// direction of the flow `spec` describes. TCP when `syn`, else UDP.
fn icmp_error(spec: &FrameSpec, vip_port: u16) -> (etherparse::IpNumber, Vec<u8>) {
    let proto = if spec.syn { 6u8 } else { 17 };
    let ports = [vip_port.to_be_bytes(), spec.sport.to_be_bytes()].concat();
    let mut quoted = Vec::new();
    if spec.v6 {
        let vip: std::net::Ipv6Addr = match spec.dst {
            Some(i) => VIP_V6[i].parse().unwrap(),
            None => "2001:db8::99".parse().unwrap(),
        };
        let client: std::net::Ipv6Addr = format!("2001:db8:c::{}", spec.src).parse().unwrap();
        quoted.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, proto, 64]);
        quoted.extend_from_slice(&vip.octets());
        quoted.extend_from_slice(&client.octets());
    } else {
        let vip: std::net::Ipv4Addr = match spec.dst {
            Some(i) => VIP_V4[i].parse().unwrap(),
            None => "10.0.0.99".parse().unwrap(),
        };
        quoted.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, proto, 0, 0]);
        quoted.extend_from_slice(&vip.octets());
        quoted.extend_from_slice(&[192, 0, 2, spec.src]);
    }
    quoted.extend_from_slice(&ports);
    quoted.extend_from_slice(&[0, 0, 0, 0]);
    // Type/code: v4 fragmentation needed, v6 packet too big; MTU 1400.
    let (number, mut icmp) = if spec.v6 {
        (
            etherparse::IpNumber::IPV6_ICMP,
            vec![2, 0, 0, 0, 0, 0, 0x05, 0x78],
        )
    } else {
        (
            etherparse::IpNumber::ICMP,
            vec![3, 4, 0, 0, 0, 0, 0x05, 0x78],
        )
    };
    icmp.extend_from_slice(&quoted);
    (number, icmp)
}

fn mutate(mut f: Vec<u8>, spec: &FrameSpec) -> Vec<u8> {
    let len_at = if spec.v6 { 18 } else { 16 };
    match spec.mutation {
        Mutation::None => {}
        Mutation::Truncate(share) => {
            let rest = f.len() - 14;
            f.truncate(14 + rest * usize::from(share) / 256);
        }
        Mutation::Options(words) if !spec.v6 => {
            let extra = usize::from(words) * 4;
            let tail = f.split_off(34);
            f.extend(std::iter::repeat_n(1u8, extra));
            f.extend(tail);
            f[14] = 0x40 | (5 + words);
            let total = u16::from_be_bytes([f[16], f[17]]) + extra as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
        }
        Mutation::MoreFragments if !spec.v6 => f[20] |= 0x20,
        Mutation::FragmentOffset(off) if !spec.v6 => {
            let v = (u16::from_be_bytes([f[20], f[21]]) & 0xe000) | off;
            f[20..22].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::Version(v) => f[14] = (v << 4) | (f[14] & 0x0f),
        Mutation::Length(delta) => {
            let v = u16::from_be_bytes([f[len_at], f[len_at + 1]]).wrapping_add_signed(delta);
            f[len_at..len_at + 2].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::EtherType(t) => f[12..14].copy_from_slice(&t.to_be_bytes()),
        Mutation::Trailer(n) => f.extend(std::iter::repeat_n(0u8, usize::from(n))),
        Mutation::ExtHeaders(ref chain) if spec.v6 => {
            let tail = f.split_off(54);
            let mut next_at = 20;
            for &(kind, units) in chain {
                let (number, units) = match kind {
                    243 => (43, units),
                    44 => (44, 0),
                    k => (k, units),
                };
                let upper = f[next_at];
                f[next_at] = number;
                next_at = f.len();
                let mut h = vec![0u8; 8 * (usize::from(units) + 1)];
                h[0] = upper;
                h[1] = units;
                if kind == 243 {
                    h[3] = 1;
                }
                f.extend(h);
            }
            f.extend(tail);
            let payload = (f.len() - 54) as u16;
            f[18..20].copy_from_slice(&payload.to_be_bytes());
        }
        Mutation::Protocol(p) => f[if spec.v6 { 20 } else { 23 }] = p,
        Mutation::TcpOptions { nops, mss } if spec.proto == 0 => {
            let l4 = if spec.v6 { 54 } else { 34 };
            let mut options = vec![1u8; usize::from(nops)];
            if mss == 0 {
                options.extend_from_slice(&[2, 2]);
            } else {
                options.extend_from_slice(&[2, 4]);
                options.extend_from_slice(&mss.to_be_bytes());
            }
            options.resize(options.len().div_ceil(4) * 4, 0);
            let tail = f.split_off(l4 + 20);
            f.extend_from_slice(&options);
            f.extend(tail);
            f[l4 + 12] = ((5 + options.len() / 4) as u8) << 4 | (f[l4 + 12] & 0x0f);
            let grow = options.len() as u16;
            let (len_at, _) = if spec.v6 { (18, ()) } else { (16, ()) };
            let v = u16::from_be_bytes([f[len_at], f[len_at + 1]]) + grow;
            f[len_at..len_at + 2].copy_from_slice(&v.to_be_bytes());
        }
        _ => {}
    }
    f
}

fn run_case(
    vips: &[VipSpec],
    changes: &[Change],
    frames: &[FrameSpec],
    mtu: u16,
    flow_cache: bool,
) -> Result<(), TestCaseError> {
    let mut dp = Dataplane::load(&LoadOptions {
        ring_size: RING_SIZE,
        per_cpu_caches: flow_cache,
        // Few enough ids that batches recycle them.
        max_backends: 48,
        ..small_options(RING_SIZE)
    })
    .expect("load dataplane (run as root)");
    dp.programmer()
        .set_node(&lb_dataplane::NodeConfig { mtu, ..node() })
        .unwrap();
    for spec in vips {
        // Later specs for the same VIP replace earlier ones, as in real use.
        dp.programmer().upsert_vip(&to_config(spec)).unwrap();
    }
    let mut model = Model::new(dp.programmer().read_back().unwrap().state());
    let mut counts: BTreeMap<GlobalCounter, u64> = BTreeMap::new();
    let mut cache_lookups = 0u64;
    let (runner, programmer) = dp.split(ProgramKind::Balancer).unwrap();
    for (i, spec) in frames.iter().enumerate() {
        for change in changes.iter().filter(|c| c.before_frame == i) {
            let mut programmed: Vec<VipKey> = programmer.vips().map(VipConfig::key).collect();
            programmed.sort_by_key(|k| (k.family, k.addr, k.port, k.proto));
            match programmer.apply(&to_batch(change, &programmed)) {
                // Too many ids for the small table: refused whole, nothing
                // changed, which the read-back below confirms.
                Ok(()) | Err(lb_dataplane::DataplaneError::Full { .. }) => {}
                Err(e) => panic!("batch: {e}"),
            }
            if change.barrier {
                programmer.wait_for_readers().unwrap();
            }
            model.state = programmer.read_back().unwrap().state();
        }
        let frame = build_frame(spec);
        if frame.len() < 14 {
            continue;
        }
        let kernel = runner.run(&frame).unwrap();
        let expected = model.process(&frame);
        prop_assert_eq!(
            kernel.action,
            expected.action.code(),
            "{:?} {:02x?}",
            expected,
            frame
        );
        prop_assert_eq!(&kernel.frame, &expected.frame, "{:?}", spec);
        *counts.entry(expected.counter).or_default() += 1;
        // The program asks the cache about every UDP and non-SYN TCP
        // packet past the address filter (before it knows whether a VIP
        // matches) and about ICMP errors.
        if lb_model::parse(&frame).is_ok_and(|p| !p.syn) {
            cache_lookups += 1;
        }
        if expected.flow_lookup == Some(false) {
            *counts.entry(GlobalCounter::FlowMiss).or_default() += 1;
        }
    }
    let stats = programmer.stats().unwrap();
    // The model has no cache: it cannot say which lookups the cache
    // answered, only that none can miss it when it is off and that misses
    // are at most the packets that may ask it.
    // Lookups the gate sent past the cache neither hit nor missed it.
    let cache_misses =
        stats.global(GlobalCounter::FlowCacheMiss) + stats.global(GlobalCounter::FlowCacheBypass);
    if flow_cache {
        prop_assert!(
            cache_misses <= cache_lookups,
            "{cache_misses} > {cache_lookups}"
        );
    } else {
        prop_assert_eq!(cache_misses, 0);
    }
    for &c in GlobalCounter::ALL {
        if matches!(
            c,
            GlobalCounter::FlowCacheMiss | GlobalCounter::FlowCacheBypass
        ) {
            continue;
        }
        prop_assert_eq!(
            stats.global(c),
            counts.get(&c).copied().unwrap_or(0),
            "counter {:?}",
            c
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES),
        ..ProptestConfig::default()
    })]

    #[test]
    fn kernel_matches_model(
        vips in prop::collection::vec(vip_spec(), 1..5),
        changes in prop::collection::vec(change(), 0..4),
        frames in prop::collection::vec(frame_spec(), FRAMES_PER_CASE),
        // Small MTUs put the large frames over the limit once
        // encapsulated; 1280 is the least IPv6 allows.
        mtu in prop_oneof![Just(1500u16), 1280..1400u16],
        // With and without the flow cache: the answers must not differ.
        flow_cache in any::<bool>(),
    ) {
        run_case(&vips, &changes, &frames, mtu, flow_cache)?;
    }
}
