//! Fourth stage: a plan into the dataplane's batch, and the dataplane's
//! state into the form reconcile compares. The one place that knows both
//! the schema's words and the maps' bits.

use std::collections::BTreeMap;

use lb_abi::vip::flags;
use lb_config::{Protocol, VipId, VipOptions};
use lb_dataplane::{BackendConfig, Batch, VipConfig, programmer::Snapshot};
use lb_reconcile::{Admitted, InMaps, Plan, ProgrammedVip};

/// The dataplane's config of an admitted VIP. The revision kept in the
/// maps is that of the version programmed.
pub fn vip_config(admitted: &Admitted) -> VipConfig {
    let vip = &admitted.vip;
    let programmed = ProgrammedVip::of(vip);
    VipConfig {
        address: vip.address,
        port: vip.port,
        protocol: protocol(vip.protocol),
        flags: option_flags(&vip.options),
        new_flows_per_cpu_per_sec: vip.options.new_flows_per_cpu_per_sec,
        backends: programmed
            .backends
            .into_iter()
            .map(|(address, weight)| BackendConfig { address, weight })
            .collect(),
        revision: admitted.mod_revision,
    }
}

/// The batch that carries out `plan`.
pub fn batch(plan: &Plan) -> Batch {
    Batch {
        node: None,
        upserts: plan.upserts.iter().map(vip_config).collect(),
        removals: plan
            .removals
            .iter()
            .map(|id| lb_abi::vip::VipKey::new(id.address, id.port, protocol(id.protocol).number()))
            .collect(),
    }
}

/// What the maps hold, in the form reconcile compares. The maps keep a
/// version's revision but not its key, so nothing read back is known
/// equal by revision alone.
pub fn programmed(snapshot: &Snapshot) -> BTreeMap<VipId, InMaps> {
    snapshot
        .vips
        .values()
        .map(|p| {
            let c = &p.config;
            let id = VipId {
                address: c.address,
                port: c.port,
                protocol: match c.protocol {
                    lb_dataplane::Protocol::Tcp => Protocol::Tcp,
                    lb_dataplane::Protocol::Udp => Protocol::Udp,
                },
            };
            let form = ProgrammedVip {
                options: options_of(c.flags, c.port, c.new_flows_per_cpu_per_sec),
                backends: c.backends.iter().map(|b| (b.address, b.weight)).collect(),
            };
            (id, InMaps { form, from: None })
        })
        .collect()
}

/// The dataplane's spelling of a protocol.
pub fn protocol(p: Protocol) -> lb_dataplane::Protocol {
    match p {
        Protocol::Tcp => lb_dataplane::Protocol::Tcp,
        Protocol::Udp => lb_dataplane::Protocol::Udp,
    }
}

/// The option names as `lb_abi::vip::flags` bits. `all_ports` is no bit:
/// it is port 0.
fn option_flags(o: &VipOptions) -> u32 {
    [
        (o.source_only_hash, flags::HASH_SRC_ONLY),
        (o.no_flow_table, flags::NO_FLOW_TABLE),
        (o.local_services, flags::OPEN_ADDRESS),
        (o.pass_echo, flags::PASS_ECHO),
        (o.clamp_mss, flags::CLAMP_MSS),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(0, |bits, (_, bit)| bits | bit)
}

fn options_of(bits: u32, port: u16, new_flows_per_cpu_per_sec: Option<u32>) -> VipOptions {
    VipOptions {
        source_only_hash: bits & flags::HASH_SRC_ONLY != 0,
        no_flow_table: bits & flags::NO_FLOW_TABLE != 0,
        all_ports: port == 0,
        clamp_mss: bits & flags::CLAMP_MSS != 0,
        local_services: bits & flags::OPEN_ADDRESS != 0,
        pass_echo: bits & flags::PASS_ECHO != 0,
        new_flows_per_cpu_per_sec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_maps_to_its_bit_and_back() {
        let all = VipOptions {
            source_only_hash: true,
            no_flow_table: true,
            all_ports: false,
            clamp_mss: true,
            local_services: true,
            pass_echo: true,
            new_flows_per_cpu_per_sec: Some(5),
        };
        assert_eq!(option_flags(&all), flags::ALL);
        assert_eq!(options_of(flags::ALL, 80, Some(5)), all);
        for bit in 0..5 {
            let one = options_of(1 << bit, 80, None);
            assert_eq!(option_flags(&one), 1 << bit, "bit {bit}");
        }
        assert!(options_of(0, 0, None).all_ports);
    }
}
