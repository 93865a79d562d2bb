//! What the programming benches share: who owns each ring slot, a frame
//! that proves a change live, and the memory a run holds.

use std::net::{IpAddr, Ipv4Addr};

use lb_abi::{
    FAMILY_V4, PROTO_TCP,
    flow::FlowKey,
    hash::{flow_hash, ring_index},
    wire_addr, wire_port,
};
use lb_dataplane::programmer::backend_identity;

use super::client_frame;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The owner of every slot of a ring of `ring_size` built from `backends`
/// (address, weight), as the programmer builds it.
pub fn owners(backends: &[(IpAddr, u32)], ring_size: u32) -> Vec<IpAddr> {
    let ids: Vec<Vec<u8>> = backends.iter().map(|(a, _)| backend_identity(*a)).collect();
    let members: Vec<lb_maglev::Member<'_>> = ids
        .iter()
        .zip(backends)
        .map(|(id, (_, w))| lb_maglev::Member::new(id, *w))
        .collect();
    lb_maglev::build(&members, ring_size)
        .unwrap()
        .into_iter()
        .map(|m| backends[m as usize].0)
        .collect()
}

/// A SYN from [`CLIENT`] to `vip`:80 whose flow lands on a slot whose
/// owner differs between `before` and `after`, and its owner after.
pub fn frame_on_changed_slot(
    vip: IpAddr,
    before: &[IpAddr],
    after: &[IpAddr],
) -> (Vec<u8>, Ipv4Addr) {
    let ring_size = after.len() as u32;
    let (_, vip_wire) = wire_addr(vip);
    let (_, client) = wire_addr(IpAddr::V4(CLIENT));
    for port in 1..=u16::MAX {
        let key = FlowKey {
            src: client,
            dst: vip_wire,
            src_port: wire_port(port),
            dst_port: wire_port(80),
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let slot = ring_index(flow_hash(&key, false), ring_size) as usize;
        if before[slot] != after[slot] {
            let IpAddr::V4(owner) = after[slot] else {
                unreachable!()
            };
            let frame = client_frame(IpAddr::V4(CLIENT), port, &vip.to_string(), true);
            return (frame, owner);
        }
    }
    panic!("no client port lands on a changed slot");
}

/// Locked kernel memory of every map this process holds open.
pub fn map_memory() -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if !info.contains("map_type:") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// A `kB` line of `/proc/self/status`, in bytes.
pub fn resident_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The size of a programming bench: `LB_BENCH_VIPS` VIPs (1,000) of
/// `LB_BENCH_BACKENDS` backends (100), `LB_BENCH_CHANGES` changes (1,000).
pub struct Scale {
    pub vips: u32,
    pub per_vip: u32,
    pub changes: u32,
}

impl Scale {
    pub fn from_env() -> Self {
        Self {
            vips: super::env("LB_BENCH_VIPS", 1_000),
            per_vip: super::env("LB_BENCH_BACKENDS", 100),
            changes: super::env("LB_BENCH_CHANGES", 1_000),
        }
    }

    /// Room for the VIPs and one more backend each, with rings of
    /// `ring_size` and a small flow table.
    pub fn load_options(&self, ring_size: u32) -> lb_dataplane::LoadOptions {
        lb_dataplane::LoadOptions {
            ring_size,
            max_vips: self.vips.max(1).next_power_of_two(),
            max_backends: (self.vips * (self.per_vip + 1)).next_power_of_two(),
            flow_table_entries: 1 << 16,
            ..lb_dataplane::LoadOptions::default()
        }
    }
}
