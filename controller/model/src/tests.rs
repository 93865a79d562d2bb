use std::{net::IpAddr, sync::Arc};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use lb_abi::{PROTO_TCP, backend::Backend, control::Control, vip::VipKey, wire_addr};

use super::*;

const VIP: [u8; 4] = [10, 0, 0, 100];

fn backend(ip: &str, generation: u32) -> Backend {
    let (family, addr) = wire_addr(ip.parse::<IpAddr>().unwrap());
    Backend {
        addr,
        family,
        _pad: [0; 3],
        generation,
    }
}

fn state(vip_flags: u32) -> DataplaneState {
    let mut s = DataplaneState {
        control: Control {
            gateway_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            outer_ttl: 64,
            mtu: 1500,
            outer_src_v4: u32::from_ne_bytes([172, 16, 0, 0]),
            outer_src_v4_host_mask: u32::from_ne_bytes([0, 0, 255, 255]),
            ..Control::default()
        },
        ring_size: 7,
        ..DataplaneState::default()
    };
    if vip_flags & flags::NO_FLOW_TABLE == 0 {
        s.vip_generations.insert(0, 1);
    }
    s.backends.insert(1, backend("192.168.1.1", 1));
    s.backends.insert(2, backend("192.168.1.2", 1));
    s.vips.insert(
        VipKey::new(IpAddr::from(VIP), 80, PROTO_TCP),
        VipEntry {
            vip_index: 0,
            flags: vip_flags,
            generation: 1,
            ring_slot: 0,
            ring: Some(Arc::from(vec![1, 2, 1, 2, 1, 2, 1])),
        },
    );
    s
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, b"hello").unwrap();
    out
}

#[test]
fn non_vip_passes_untouched() {
    let mut m = Model::new(state(0));
    let f = tcp([1, 2, 3, 4], [10, 0, 0, 99], 1000, 80, true);
    let o = m.process(&f);
    assert_eq!(
        (o.action, o.counter),
        (Action::Pass, GlobalCounter::PassNotVip)
    );
    assert_eq!(o.frame, f);
}

#[test]
fn vip_syn_is_encapsulated_with_valid_outer_header() {
    let mut m = Model::new(state(0));
    let f = tcp([1, 2, 3, 4], VIP, 1000, 80, true);
    let o = m.process(&f);
    assert_eq!((o.action, o.counter), (Action::Tx, GlobalCounter::TxRing));
    let outer = SlicedPacket::from_ethernet(&o.frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = outer.net else {
        panic!("not ipv4")
    };
    let h = ip.header();
    assert_eq!(h.protocol().0, 4);
    assert_eq!(h.ttl(), 64);
    assert!(h.dont_fragment());
    assert_eq!(&h.source()[..2], &[172, 16]);
    assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
    assert_eq!(usize::from(h.total_len()), f.len() - 14 + 20);
    assert_eq!(&o.frame[34..], &f[14..]);
    assert_eq!(o.flow_lookup, None);
}

#[test]
fn flow_hit_survives_a_ring_change_and_stale_generation_rehashes() {
    let mut m = Model::new(state(0));
    let syn = tcp([1, 2, 3, 4], VIP, 1000, 80, true);
    let ack = tcp([1, 2, 3, 4], VIP, 1000, 80, false);
    let (_, first) = m.process(&syn).sent_to.unwrap();
    let other = if first == 1 { 2 } else { 1 };
    let key = VipKey::new(IpAddr::from(VIP), 80, PROTO_TCP);
    m.state.vips.get_mut(&key).unwrap().ring = Some(Arc::from(vec![other; 7]));
    let o = m.process(&ack);
    assert_eq!(
        (o.counter, o.sent_to.unwrap().1),
        (GlobalCounter::TxFlowHit, first)
    );
    // Give the id to a new backend: the flow entry is stale.
    m.state.backends.insert(first, backend("192.168.1.9", 2));
    let o = m.process(&ack);
    assert_eq!(
        (o.counter, o.flow_lookup),
        (GlobalCounter::TxRing, Some(false))
    );
    assert_eq!(o.sent_to.unwrap().1, other);
}

#[test]
fn no_flow_table_flag_skips_lookup() {
    let mut m = Model::new(state(flags::NO_FLOW_TABLE));
    let ack = tcp([1, 2, 3, 4], VIP, 1000, 80, false);
    let o = m.process(&ack);
    assert_eq!((o.counter, o.flow_lookup), (GlobalCounter::TxRing, None));
    assert!(m.flows.is_empty());
}

#[test]
fn checksum_matches_reference() {
    // RFC 1071 example header (checksum field zero) from Wikipedia's IPv4 page.
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(internet_checksum(&h), 0xb861);
}
