//! Shared helpers of the kernel tests: a loaded dataplane with a standard
//! node config, frame builders, and a checker that runs the kernel and the
//! model side by side.
#![allow(dead_code)]

use std::net::IpAddr;

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};
use lb_dataplane::{
    BackendConfig, Dataplane, LoadOptions, NodeConfig, ProgramKind, Protocol, RunResult, VipConfig,
};
use lb_model::{Model, Outcome};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// Sizes small enough for many tests to load in parallel, and too-big
/// replies without a rate limit (the model has none: it cannot know the
/// time).
pub fn small_options(ring_size: u32) -> LoadOptions {
    LoadOptions {
        ring_size,
        max_vips: 32,
        max_backends: 256,
        flow_table_entries: 1 << 17,
        too_big_replies_per_cpu_per_sec: 0,
        ..LoadOptions::default()
    }
}

pub fn node() -> NodeConfig {
    NodeConfig {
        gateway_mac: GATEWAY_MAC,
        interface_mac: LB_MAC,
        ..NodeConfig::default()
    }
}

/// A dataplane loaded with `ring_size` and the standard node config.
pub fn dataplane(ring_size: u32) -> Dataplane {
    let mut dp = Dataplane::load(&small_options(ring_size)).expect("load dataplane (run as root)");
    dp.programmer().set_node(&node()).unwrap();
    dp
}

/// Weights for `backends` with `drained` at 0 (no new flows) and every
/// other at 1.
pub fn all_but<'a>(backends: &[&'a str], drained: std::net::IpAddr) -> Vec<(&'a str, u32)> {
    backends
        .iter()
        .map(|b| {
            (
                *b,
                u32::from(b.parse::<std::net::IpAddr>().unwrap() != drained),
            )
        })
        .collect()
}

pub fn vip(address: &str, port: u16, protocol: Protocol, backends: &[(&str, u32)]) -> VipConfig {
    VipConfig {
        address: address.parse().unwrap(),
        port,
        protocol,
        flags: 0,
        new_flows_per_cpu_per_sec: None,
        backends: backends
            .iter()
            .map(|(a, w)| BackendConfig {
                address: a.parse().unwrap(),
                weight: *w,
            })
            .collect(),
        revision: 0,
    }
}

/// TCP flags for [`tcp`].
#[derive(Clone, Copy)]
pub enum Tcp {
    Syn,
    Ack,
}

/// Ethernet from the client to the LB, then IPv4 or IPv6 by the addresses.
pub fn ip_layer(src: &str, dst: &str) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    match (
        src.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    }
}

/// An Ethernet frame carrying TCP from `src:sport` to `dst:dport`.
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: Tcp, payload: &[u8]) -> Vec<u8> {
    let t = ip_layer(src, dst).tcp(sport, dport, 1000, 64_000);
    let t = match flags {
        Tcp::Syn => t.syn(),
        Tcp::Ack => t.ack(1),
    };
    let mut out = Vec::new();
    t.write(&mut out, payload).unwrap();
    out
}

/// An Ethernet frame carrying UDP.
pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ip_layer(src, dst)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// Runs `frame` through the kernel program and the model; asserts they
/// agree on action and bytes, and returns both.
pub fn check(dp: &Dataplane, model: &mut Model, frame: &[u8]) -> (RunResult, Outcome) {
    let kernel = dp
        .runner(ProgramKind::Balancer)
        .unwrap()
        .run(frame)
        .unwrap();
    let expected = model.process(frame);
    assert_eq!(
        kernel.action,
        expected.action.code(),
        "action for frame {frame:02x?}: model {expected:?}"
    );
    assert_eq!(kernel.frame, expected.frame, "bytes for frame {frame:02x?}");
    (kernel, expected)
}

/// The model of `dp`'s current programmed state, keeping `flows`.
pub fn resync(dp: &mut Dataplane, model: &mut Model) {
    model.state = dp.programmer().state().clone();
}

/// A small deterministic generator (xorshift64): a test replays exactly.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
