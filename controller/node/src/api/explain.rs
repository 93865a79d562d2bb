//! `ExplainFlow`: which VIP a 5-tuple matches and where the balancer sends
//! it, answered by the dataplane model (`lb_model`) over the maps as read
//! back, with the flow's flow-table entry when the table has one. The
//! packet explained is an established flow's (a TCP ACK, or a UDP
//! datagram), so the flow table is consulted as the program consults it.

use std::{collections::BTreeMap, net::IpAddr};

use etherparse::PacketBuilder;
use lb_abi::{
    hash::{flow_hash, ring_index},
    ip_from_wire,
    vip::{VipKey, flags},
};
use lb_dataplane::Programmer;
use lb_model::{Action, Model};
use lb_proto::v1::{self as pb, FlowExplanation, Placement, Verdict};

use super::{
    error::{ApiError, ApiResult},
    views::service_name,
};

/// The flow asked about, checked.
pub struct Flow {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    pub source_port: u16,
    pub destination_port: Option<u16>,
}

impl Flow {
    pub fn from_request(r: &pb::ExplainFlowRequest) -> ApiResult<Self> {
        let address = |text: &str, field: &str| {
            text.parse::<IpAddr>().map_err(|_| {
                ApiError::field(field, format!("{text:?} is not an IPv4 or IPv6 address"))
            })
        };
        let port = |p: u32, field: &str| {
            u16::try_from(p).map_err(|_| ApiError::field(field, format!("{p} is above 65535")))
        };
        let source = address(&r.source, "source")?;
        let destination = address(&r.destination, "destination")?;
        if source.is_ipv4() != destination.is_ipv4() {
            return Err(ApiError::field(
                "source",
                format!("{source} and {destination} are of different families"),
            ));
        }
        let protocol = match pb::Protocol::try_from(r.protocol) {
            Ok(pb::Protocol::Tcp) => lb_abi::PROTO_TCP,
            Ok(pb::Protocol::Udp) => lb_abi::PROTO_UDP,
            _ => {
                return Err(ApiError::field(
                    "protocol",
                    "is PROTOCOL_TCP or PROTOCOL_UDP",
                ));
            }
        };
        Ok(Self {
            source,
            destination,
            protocol,
            source_port: port(r.source_port, "source_port")?,
            destination_port: r
                .destination_port
                .map(|p| port(p, "destination_port"))
                .transpose()?,
        })
    }
}

/// Explains `flow` over the maps `maps` read back; `names` names the
/// VIPs by service.
pub fn explain(
    maps: &Programmer,
    names: &BTreeMap<(IpAddr, u16, u8), String>,
    flow: &Flow,
) -> ApiResult<FlowExplanation> {
    let state = maps.state();
    let destination_port = match flow.destination_port {
        Some(p) => p,
        None => only_port(maps, flow)?,
    };
    let frame = frame(flow, destination_port, state.control.src_mac);
    let parsed = lb_model::parse(&frame).expect("a frame we built parses");
    let key = parsed.key;
    let entry = maps
        .flow_entry(&key)
        .map_err(|e| super::node::unreadable(&e.to_string()))?;
    let exact = VipKey::of_flow(&key);
    let vip_key = if state.vips.contains_key(&exact) {
        Some(exact)
    } else {
        let all = VipKey { port: 0, ..exact };
        state.vips.contains_key(&all).then_some(all)
    };
    let vip = vip_key.and_then(|k| state.vips.get(&k).cloned());
    let ring_size = state.ring_size;
    let mut model = Model::new(state);
    if let Some(entry) = entry {
        model.flows.insert(key, entry);
    }
    let outcome = model.process(&frame);
    let service = vip_key.map(|k| {
        let address = ip_from_wire(k.family, k.addr).expect("a VIP key's family");
        (address, u16::from_be(k.port), k.proto)
    });
    let mut e = FlowExplanation {
        counter: outcome.counter.label().to_owned(),
        vip: service
            .and_then(|s| names.get(&s).cloned())
            .unwrap_or_default(),
        service: service.map(|s| service_name(&s)).unwrap_or_default(),
        ring_size,
        ..FlowExplanation::default()
    };
    let hit = outcome.flow_lookup == Some(true);
    e.flow_entry_outdated = entry.is_some() && !hit;
    match (outcome.action, outcome.sent_to) {
        (Action::Tx, Some((_, backend_id))) => {
            e.verdict = Verdict::Sent.into();
            let backend = model
                .state
                .backends
                .get(&backend_id)
                .and_then(|b| ip_from_wire(b.family, b.addr));
            // A hit sends to the backend the entry remembers.
            let backend = if hit {
                entry.and_then(|f| ip_from_wire(f.backend.family, f.backend.addr))
            } else {
                backend
            };
            e.backend = backend.map(|b| b.to_string()).unwrap_or_default();
            if hit {
                e.placement = Placement::FlowTable.into();
                e.explanation = format!(
                    "an established flow: its flow-table entry sends it to {}",
                    e.backend
                );
            } else {
                let vip = vip.expect("a flow sent by the ring matched a VIP");
                let src_only = vip.flags & flags::HASH_SRC_ONLY != 0;
                e.ring_slot = ring_index(flow_hash(&key, src_only), ring_size);
                e.placement = Placement::Ring.into();
                e.explanation = format!(
                    "{}Maglev slot {} of {}'s ring ({} slots{}) holds {}",
                    if e.flow_entry_outdated {
                        "its flow-table entry is outdated (its backend or VIP moved on); "
                    } else {
                        "no flow-table entry; "
                    },
                    e.ring_slot,
                    if e.vip.is_empty() { &e.service } else { &e.vip },
                    ring_size,
                    if src_only {
                        ", hashed on the source alone"
                    } else {
                        ""
                    },
                    e.backend
                );
            }
        }
        (Action::Tx, None) => {
            e.verdict = Verdict::Sent.into();
            e.explanation = format!("answered by the balancer itself ({})", e.counter);
        }
        (Action::Pass, _) => {
            e.verdict = Verdict::Passed.into();
            e.explanation = format!("handed to the node's stack untouched ({})", e.counter);
        }
        (Action::Drop, _) => {
            e.verdict = Verdict::Dropped.into();
            e.explanation = format!("dropped, counted under {}", e.counter);
        }
    }
    Ok(e)
}

/// The port of the one VIP of the flow's destination and protocol.
fn only_port(maps: &Programmer, flow: &Flow) -> ApiResult<u16> {
    let ports: Vec<u16> = maps
        .vips()
        .filter(|c| c.address == flow.destination && c.protocol.number() == flow.protocol)
        .map(|c| c.port)
        .collect();
    match ports[..] {
        [port] => Ok(port),
        [] => Err(ApiError::field(
            "destination_port",
            format!(
                "no VIP of {} for that protocol to take the port from: give the port",
                flow.destination
            ),
        )),
        _ => Err(ApiError::field(
            "destination_port",
            format!(
                "{} has VIPs on ports {ports:?}: say which",
                flow.destination
            ),
        )),
    }
}

/// An established flow's packet of `flow`, addressed to the node.
fn frame(flow: &Flow, destination_port: u16, node_mac: [u8; 6]) -> Vec<u8> {
    let client_mac = [0x02, 0, 0, 0, 0, 1];
    let builder = PacketBuilder::ethernet2(client_mac, node_mac);
    let builder = match (flow.source, flow.destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => builder.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => builder.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("checked to be of one family"),
    };
    let payload = [0u8; 16];
    let mut frame = Vec::new();
    if flow.protocol == lb_abi::PROTO_TCP {
        builder
            .tcp(flow.source_port, destination_port, 1, 65_535)
            .ack(1)
            .write(&mut frame, &payload)
            .expect("a frame is written to a Vec");
    } else {
        builder
            .udp(flow.source_port, destination_port)
            .write(&mut frame, &payload)
            .expect("a frame is written to a Vec");
    }
    frame
}
