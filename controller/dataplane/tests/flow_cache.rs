//! The per-CPU flow cache in front of the flow table: a copy is honoured
//! only while no CPU has written the table for its slot since, and userspace
//! clearing the flows drops every copy.

mod common;

use common::*;
use etherparse::{NetSlice, SlicedPacket};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Dataplane, ProgramKind, Protocol};

const VIP: &str = "10.0.0.100";
const BACKENDS: [&str; 3] = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];

fn outer_dst(frame: &[u8]) -> String {
    match SlicedPacket::from_ethernet(frame).unwrap().net.unwrap() {
        NetSlice::Ipv4(ip) => ip.header().destination_addr().to_string(),
        _ => panic!("outer not IPv4"),
    }
}

fn send(dp: &Dataplane, frame: &[u8]) -> String {
    let out = dp
        .runner(ProgramKind::Balancer)
        .unwrap()
        .run(frame)
        .unwrap();
    assert_eq!(out.action, 3, "XDP_TX");
    outer_dst(&out.frame)
}

/// A dataplane whose VIP's ring has every backend but `drained`.
fn drain(dp: &mut Dataplane, drained: &str) {
    let weights: Vec<(&str, u32)> = BACKENDS
        .iter()
        .map(|b| (*b, u32::from(*b != drained)))
        .collect();
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, &weights))
        .unwrap();
}

fn loaded() -> Dataplane {
    let mut dp = dataplane(1021);
    let all: Vec<(&str, u32)> = BACKENDS.iter().map(|b| (*b, 1)).collect();
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, &all))
        .unwrap();
    dp
}

#[test]
fn a_flow_placed_anew_on_another_cpu_is_not_answered_from_this_cpus_copy() {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "this test needs two CPUs"
    );
    let mut dp = loaded();
    let syn = tcp("192.0.2.1", 40000, VIP, 80, Tcp::Syn, b"");
    let ack = tcp("192.0.2.1", 40000, VIP, 80, Tcp::Ack, b"data");
    pin_to_cpu(0);
    let first = send(&dp, &syn);
    // CPU 0 now holds a copy of the flow's entry.
    assert_eq!(send(&dp, &ack), first);
    // The same 5-tuple starts a new connection on CPU 1, after the ring
    // dropped the first backend: the table now names another.
    drain(&mut dp, &first);
    pin_to_cpu(1);
    let second = send(&dp, &syn);
    assert_ne!(second, first);
    pin_to_cpu(0);
    assert_eq!(
        send(&dp, &ack),
        second,
        "CPU 0 answered from its copy of the old entry"
    );
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 2);
}

#[test]
fn clearing_the_flows_drops_every_cached_copy() {
    let mut dp = loaded();
    pin_to_cpu(0);
    let syn = tcp("192.0.2.2", 40001, VIP, 80, Tcp::Syn, b"");
    let ack = tcp("192.0.2.2", 40001, VIP, 80, Tcp::Ack, b"data");
    let first = send(&dp, &syn);
    assert_eq!(send(&dp, &ack), first);
    // Still a valid backend, only out of the ring: the flow would stay.
    drain(&mut dp, &first);
    assert_eq!(send(&dp, &ack), first);
    dp.programmer().clear_flows().unwrap();
    assert_ne!(send(&dp, &ack), first, "a cached copy outlived clear_flows");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 2);
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 1);
}
