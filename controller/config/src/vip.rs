//! A VIP: decoded from its stored JSON, checked field by field.

use std::net::{IpAddr, Ipv4Addr};

use lb_proto::v1 as pb;

use crate::{
    error::{ConfigError, Rejection},
    keys::Keys,
};

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// What the dataplane keys a VIP on. Two stored VIPs with one id claim
/// the same traffic; a rename keeps the id, so it costs the maps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipId {
    pub address: IpAddr,
    /// 0 for an all-ports VIP.
    pub port: u16,
    pub protocol: Protocol,
}

/// The named options of a VIP (`lb.v1.VipOptions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipOptions {
    pub source_only_hash: bool,
    pub no_flow_table: bool,
    pub all_ports: bool,
    pub clamp_mss: bool,
    pub local_services: bool,
    pub pass_echo: bool,
    /// `None`: the node's guard; `Some(0)`: no guard.
    pub new_flows_per_cpu_per_sec: Option<u32>,
}

/// The one way a backend leaves rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    Active,
    /// No new flows; placed flows stay.
    Draining,
}

/// A backend of a VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    /// 1 to [`lb_maglev::MAX_WEIGHT`].
    pub weight: u32,
    pub state: BackendState,
}

/// A VIP as its key holds it, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub options: VipOptions,
    pub backends: Vec<Backend>,
}

impl Vip {
    /// What the dataplane keys this VIP on.
    pub fn id(&self) -> VipId {
        VipId {
            address: self.address,
            port: self.port,
            protocol: self.protocol,
        }
    }

    /// Reads the value stored at `key`: the key's shape, the JSON, the
    /// schema version, then every field. The first fault found is
    /// reported; a VIP with any fault is refused whole.
    pub fn decode(keys: &Keys, key: &str, value: &[u8]) -> Result<Self, ConfigError> {
        let name = keys.vip_name(key)?;
        let stored: pb::Vip = decode_json(key, value)?;
        let bad =
            |field: &str, reason: String| ConfigError::new(key, Rejection::Invalid, field, reason);
        if stored.schema > lb_proto::SCHEMA {
            return Err(ConfigError::new(
                key,
                Rejection::NewerSchema,
                "schema",
                format!(
                    "written for lb.v1 schema {}, this controller knows up to {}: \
                     upgrade it to program this VIP",
                    stored.schema,
                    lb_proto::SCHEMA
                ),
            ));
        }
        if stored.name != name {
            return Err(bad(
                "name",
                format!("{:?} is not the key's name {name:?}", stored.name),
            ));
        }
        let address = unicast(&stored.address).map_err(|reason| bad("address", reason))?;
        let protocol = match pb::Protocol::try_from(stored.protocol) {
            Ok(pb::Protocol::Tcp) => Protocol::Tcp,
            Ok(pb::Protocol::Udp) => Protocol::Udp,
            _ => {
                return Err(bad(
                    "protocol",
                    "is PROTOCOL_TCP or PROTOCOL_UDP, and must be set".into(),
                ));
            }
        };
        let o = stored.options.unwrap_or_default();
        let options = VipOptions {
            source_only_hash: o.source_only_hash,
            no_flow_table: o.no_flow_table,
            all_ports: o.all_ports,
            clamp_mss: o.clamp_mss,
            local_services: o.local_services,
            pass_echo: o.pass_echo,
            new_flows_per_cpu_per_sec: o.new_flows_per_cpu_per_sec,
        };
        let port = match (u16::try_from(stored.port), options.all_ports) {
            (Ok(0), true) => 0,
            (Ok(0), false) => {
                return Err(bad(
                    "port",
                    "0 serves every port: set options.allPorts to mean it".into(),
                ));
            }
            (Ok(_), true) => {
                return Err(bad(
                    "port",
                    "must be 0 (absent) with options.allPorts".into(),
                ));
            }
            (Ok(port), false) => port,
            (Err(_), _) => return Err(bad("port", format!("{} is above 65535", stored.port))),
        };
        let mut backends: Vec<Backend> = Vec::with_capacity(stored.backends.len());
        for (i, b) in stored.backends.iter().enumerate() {
            let field = |f: &str| format!("backends[{i}].{f}");
            let backend_address =
                unicast(&b.address).map_err(|reason| bad(&field("address"), reason))?;
            if address.is_ipv6() && backend_address.is_ipv4() {
                return Err(bad(
                    &field("address"),
                    format!("IPv4 backend {backend_address} cannot carry IPv6 VIP {address}"),
                ));
            }
            if let Some(j) = backends.iter().position(|o| o.address == backend_address) {
                return Err(bad(
                    &field("address"),
                    format!("{backend_address} is already backends[{j}]"),
                ));
            }
            let weight = match b.weight {
                None => 1,
                Some(0) => {
                    return Err(bad(
                        &field("weight"),
                        "0 is not a weight: to drain a backend, set its state to \
                         BACKEND_STATE_DRAINING"
                            .into(),
                    ));
                }
                Some(w) if w > lb_maglev::MAX_WEIGHT => {
                    return Err(bad(
                        &field("weight"),
                        format!("{w} is above the maximum {}", lb_maglev::MAX_WEIGHT),
                    ));
                }
                Some(w) => w,
            };
            let state = match pb::BackendState::try_from(b.state) {
                Ok(pb::BackendState::Unspecified | pb::BackendState::Active) => {
                    BackendState::Active
                }
                Ok(pb::BackendState::Draining) => BackendState::Draining,
                Err(_) => return Err(bad(&field("state"), format!("unknown state {}", b.state))),
            };
            backends.push(Backend {
                address: backend_address,
                weight,
                state,
            });
        }
        Ok(Vip {
            name: name.to_owned(),
            address,
            port,
            protocol,
            options,
            backends,
        })
    }

    /// The stored form: canonical proto3 JSON, defaults omitted, so that
    /// two writers of one VIP write the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_proto()).expect("a message always serializes")
    }

    /// The schema message of this VIP.
    pub fn to_proto(&self) -> pb::Vip {
        let o = &self.options;
        pb::Vip {
            schema: lb_proto::SCHEMA,
            name: self.name.clone(),
            address: self.address.to_string(),
            port: u32::from(self.port),
            protocol: match self.protocol {
                Protocol::Tcp => pb::Protocol::Tcp,
                Protocol::Udp => pb::Protocol::Udp,
            }
            .into(),
            options: (*o != VipOptions::default()).then_some(pb::VipOptions {
                source_only_hash: o.source_only_hash,
                no_flow_table: o.no_flow_table,
                all_ports: o.all_ports,
                clamp_mss: o.clamp_mss,
                local_services: o.local_services,
                pass_echo: o.pass_echo,
                new_flows_per_cpu_per_sec: o.new_flows_per_cpu_per_sec,
            }),
            backends: self
                .backends
                .iter()
                .map(|b| pb::Backend {
                    address: b.address.to_string(),
                    weight: (b.weight != 1).then_some(b.weight),
                    state: match b.state {
                        BackendState::Active => pb::BackendState::Unspecified,
                        BackendState::Draining => pb::BackendState::Draining,
                    }
                    .into(),
                })
                .collect(),
            health_check: None,
        }
    }
}

/// The document at `key` as a schema message: UTF-8 JSON, every field
/// known. A serde error carries the path of the field it stopped at.
fn decode_json<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, ConfigError> {
    decode_document(key, &mut serde_json::Deserializer::from_slice(value))
}

/// A schema message from any serde document, errors named as
/// [`decode_json`] names them.
pub(crate) fn decode_document<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    key: &str,
    document: D,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(document).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        // The path names the field the decoder stopped at, an unknown one
        // included; `.` is the document itself.
        let kind = if message.starts_with("unknown field") {
            Rejection::UnknownField
        } else {
            Rejection::Malformed
        };
        let field = if path == "." {
            "(document)".to_owned()
        } else {
            path
        };
        let reason = if kind == Rejection::UnknownField {
            "not in the lb.v1 schema this controller knows: written by a newer \
             controller or lbctl, or misspelt"
                .to_owned()
        } else {
            message
        };
        ConfigError::new(key, kind, field, reason)
    })
}

fn unicast(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{ip} is not a unicast address"));
    }
    Ok(ip)
}
