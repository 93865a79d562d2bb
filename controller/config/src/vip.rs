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
    /// Who manages the VIP (`lbctl apply --owner`); empty: nobody. No
    /// controller acts on it.
    pub owner: String,
    /// `health_check` is set: reserved, accepted and kept, not acted on.
    pub health_check: bool,
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
        keys.vip_name(key)?;
        let stored: pb::Vip = decode_json(key, value)?;
        Self::from_proto(keys, key, stored).map_err(|mut faults| faults.swap_remove(0))
    }

    /// Checks a schema message as the value of `key`: every fault, in
    /// field order (never an empty list), so that a writer can name them
    /// all at once.
    pub fn from_proto(keys: &Keys, key: &str, stored: pb::Vip) -> Result<Self, Vec<ConfigError>> {
        let name = keys.vip_name(key).map_err(|e| vec![e])?;
        if stored.schema > lb_proto::SCHEMA {
            return Err(vec![ConfigError::new(
                key,
                Rejection::NewerSchema,
                "schema",
                format!(
                    "written for lb.v1 schema {}, this controller knows up to {}: \
                     upgrade it to program this VIP",
                    stored.schema,
                    lb_proto::SCHEMA
                ),
            )]);
        }
        let mut faults = Vec::new();
        let mut bad = |field: &str, reason: String| {
            faults.push(ConfigError::new(key, Rejection::Invalid, field, reason));
        };
        if stored.name != name {
            bad(
                "name",
                format!("{:?} is not the key's name {name:?}", stored.name),
            );
        }
        let address = unicast(&stored.address)
            .map_err(|reason| bad("address", reason))
            .ok();
        let protocol = match pb::Protocol::try_from(stored.protocol) {
            Ok(pb::Protocol::Tcp) => Some(Protocol::Tcp),
            Ok(pb::Protocol::Udp) => Some(Protocol::Udp),
            _ => {
                bad(
                    "protocol",
                    "is PROTOCOL_TCP or PROTOCOL_UDP, and must be set".into(),
                );
                None
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
            (Ok(0), true) => Some(0),
            (Ok(0), false) => {
                bad(
                    "port",
                    "0 serves every port: set options.allPorts to mean it".into(),
                );
                None
            }
            (Ok(_), true) => {
                bad("port", "must be 0 (absent) with options.allPorts".into());
                None
            }
            (Ok(port), false) => Some(port),
            (Err(_), _) => {
                bad("port", format!("{} is above 65535", stored.port));
                None
            }
        };
        if let Err(reason) = check_owner(&stored.owner) {
            bad("owner", reason);
        }
        let mut backends: Vec<Backend> = Vec::with_capacity(stored.backends.len());
        for (i, b) in stored.backends.iter().enumerate() {
            let field = |f: &str| format!("backends[{i}].{f}");
            let backend_address = match unicast(&b.address) {
                Ok(a) => Some(a),
                Err(reason) => {
                    bad(&field("address"), reason);
                    None
                }
            };
            if let (Some(vip), Some(backend)) = (address, backend_address) {
                if vip.is_ipv6() && backend.is_ipv4() {
                    bad(
                        &field("address"),
                        format!("IPv4 backend {backend} cannot carry IPv6 VIP {vip}"),
                    );
                } else if let Some(j) = backends.iter().position(|o| o.address == backend) {
                    bad(
                        &field("address"),
                        format!("{backend} is already backends[{j}]"),
                    );
                }
            }
            let weight = match b.weight {
                None => Some(1),
                Some(0) => {
                    bad(
                        &field("weight"),
                        "0 is not a weight: to drain a backend, set its state to \
                         BACKEND_STATE_DRAINING"
                            .into(),
                    );
                    None
                }
                Some(w) if w > lb_maglev::MAX_WEIGHT => {
                    bad(
                        &field("weight"),
                        format!("{w} is above the maximum {}", lb_maglev::MAX_WEIGHT),
                    );
                    None
                }
                Some(w) => Some(w),
            };
            let state = match pb::BackendState::try_from(b.state) {
                Ok(pb::BackendState::Unspecified | pb::BackendState::Active) => {
                    Some(BackendState::Active)
                }
                Ok(pb::BackendState::Draining) => Some(BackendState::Draining),
                Err(_) => {
                    bad(&field("state"), format!("unknown state {}", b.state));
                    None
                }
            };
            if let (Some(address), Some(weight), Some(state)) = (backend_address, weight, state) {
                backends.push(Backend {
                    address,
                    weight,
                    state,
                });
            }
        }
        match (address, port, protocol) {
            (Some(address), Some(port), Some(protocol)) if faults.is_empty() => Ok(Vip {
                name: name.to_owned(),
                address,
                port,
                protocol,
                options,
                backends,
                owner: stored.owner,
                health_check: stored.health_check.is_some(),
            }),
            _ => Err(faults),
        }
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
            health_check: self.health_check.then_some(pb::HealthCheck {}),
            owner: self.owner.clone(),
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

/// Most bytes of an owner.
const MAX_OWNER_LEN: usize = 253;

fn check_owner(owner: &str) -> Result<(), String> {
    if owner.len() > MAX_OWNER_LEN {
        return Err(format!(
            "an owner has at most {MAX_OWNER_LEN} bytes, not {}",
            owner.len()
        ));
    }
    match owner
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        Some(c) => Err(format!(
            "{owner:?} has {c:?}; an owner has letters, digits, '-', '_', '.' and '/'"
        )),
        None => Ok(()),
    }
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
