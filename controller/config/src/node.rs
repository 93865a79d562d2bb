//! A node's settings (`lb.v1.NodeSettings`): decoded from a document (the
//! controller's config file today, `/lb/v1/settings` in a fleet), checked
//! field by field.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_proto::v1 as pb;

use crate::{
    error::{ConfigError, Rejection},
    vip::decode_document,
};

/// The MTU of a node whose settings name none: Ethernet's.
pub const DEFAULT_MTU: u16 = 1500;

/// How the balancer attaches to its interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP, in the driver.
    #[default]
    Driver,
    /// Generic XDP, after the kernel has built its socket buffer.
    Generic,
}

/// Where encapsulated frames go next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gateway {
    /// The next hop of the interface's default route, its MAC from the
    /// neighbour table, followed as the tables change.
    #[default]
    Resolve,
    /// This MAC, whatever the tables say.
    Static([u8; 6]),
}

/// Load-time sizes; `None` keeps the dataplane's default. Bounds are the
/// dataplane's to check: it names the field it refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub flow_table_entries: Option<u32>,
    pub max_vips: Option<u32>,
    pub max_backends: Option<u32>,
    pub ring_size: Option<u32>,
    pub flow_cache_slots: Option<u32>,
    pub new_flows_per_cpu_per_sec: Option<u32>,
    pub too_big_replies_per_cpu_per_sec: Option<u32>,
    pub udp_flow_timeout_ms: Option<u32>,
}

/// A node's settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// `None`: the controller's `--interface` must name it.
    pub interface: Option<String>,
    pub attach_mode: AttachMode,
    pub mtu: u16,
    pub outer_source_v4: (Ipv4Addr, u8),
    pub outer_source_v6: (Ipv6Addr, u8),
    pub gateway: Gateway,
    pub sizes: Sizes,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self::from_proto("(defaults)", pb::NodeSettings::default())
            .expect("the empty document is valid")
    }
}

impl NodeSettings {
    /// Reads a settings document (any serde format: the JSON of the store,
    /// the YAML of a file) from `source`, which errors name as their key.
    pub fn decode<'de, D: serde::Deserializer<'de>>(
        source: &str,
        document: D,
    ) -> Result<Self, ConfigError> {
        Self::from_proto(source, decode_document(source, document)?)
    }

    /// Checks a settings message field by field.
    pub fn from_proto(source: &str, s: pb::NodeSettings) -> Result<Self, ConfigError> {
        let bad = |field: &str, reason: String| {
            ConfigError::new(source, Rejection::Invalid, field, reason)
        };
        if s.schema > lb_proto::SCHEMA {
            return Err(ConfigError::new(
                source,
                Rejection::NewerSchema,
                "schema",
                format!(
                    "written for lb.v1 schema {}, this controller knows up to {}",
                    s.schema,
                    lb_proto::SCHEMA
                ),
            ));
        }
        let interface = match s.interface.as_str() {
            "" => None,
            name if name.len() < 16 && !name.contains(['/', ' ', '\0']) => Some(name.to_owned()),
            name => {
                return Err(bad(
                    "interface",
                    format!(
                        "{name:?} is not an interface name (at most 15 bytes, no `/` or space)"
                    ),
                ));
            }
        };
        let attach_mode = match pb::AttachMode::try_from(s.attach_mode) {
            Ok(pb::AttachMode::Unspecified | pb::AttachMode::Driver) => AttachMode::Driver,
            Ok(pb::AttachMode::Generic) => AttachMode::Generic,
            Err(_) => return Err(bad("attachMode", format!("unknown mode {}", s.attach_mode))),
        };
        let mtu = match s.mtu {
            0 => DEFAULT_MTU,
            m if (1280..=9216).contains(&m) => m as u16,
            m => {
                return Err(bad(
                    "mtu",
                    format!("{m} is not 1280 to 9216 (IPv6's least, and a jumbo frame's most)"),
                ));
            }
        };
        let outer_source_v4 = match s.outer_source_v4.as_str() {
            "" => (Ipv4Addr::new(172, 16, 0, 0), 16),
            text => prefix(text, 0..=32).map_err(|r| bad("outerSourceV4", r))?,
        };
        let outer_source_v6 = match s.outer_source_v6.as_str() {
            "" => (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 96),
            text => prefix(text, 96..=128).map_err(|r| bad("outerSourceV6", r))?,
        };
        let gateway = match s.gateway.map(|g| g.mac).unwrap_or_default().as_str() {
            "" => Gateway::Resolve,
            text => Gateway::Static(mac(text).map_err(|r| bad("gateway.mac", r))?),
        };
        let z = s.sizes.unwrap_or_default();
        Ok(Self {
            interface,
            attach_mode,
            mtu,
            outer_source_v4,
            outer_source_v6,
            gateway,
            sizes: Sizes {
                flow_table_entries: z.flow_table_entries,
                max_vips: z.max_vips,
                max_backends: z.max_backends,
                ring_size: z.ring_size,
                flow_cache_slots: z.flow_cache_slots,
                new_flows_per_cpu_per_sec: z.new_flows_per_cpu_per_sec,
                too_big_replies_per_cpu_per_sec: z.too_big_replies_per_cpu_per_sec,
                udp_flow_timeout_ms: z.udp_flow_timeout_ms,
            },
        })
    }
}

/// `address/len`, the length within `lengths`.
fn prefix<A: std::str::FromStr>(
    text: &str,
    lengths: std::ops::RangeInclusive<u8>,
) -> Result<(A, u8), String> {
    let shape = || {
        format!(
            "{text:?} is not `address/length` with a length of {} to {}",
            lengths.start(),
            lengths.end()
        )
    };
    let (address, len) = text.split_once('/').ok_or_else(shape)?;
    let address = address.parse().map_err(|_| shape())?;
    let len: u8 = len.parse().map_err(|_| shape())?;
    if !lengths.contains(&len) {
        return Err(shape());
    }
    Ok((address, len))
}

/// `aa:bb:cc:dd:ee:ff`, one station's.
pub fn mac(text: &str) -> Result<[u8; 6], String> {
    let shape = || format!("{text:?} is not a MAC address (`aa:bb:cc:dd:ee:ff`)");
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        let part = parts.next().ok_or_else(shape)?;
        if part.len() != 2 {
            return Err(shape());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| shape())?;
    }
    if parts.next().is_some() {
        return Err(shape());
    }
    if out[0] & 1 != 0 || out == [0; 6] {
        return Err(format!("{text} is not one station's MAC (group or zero)"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<NodeSettings, ConfigError> {
        let mut d = serde_json::Deserializer::from_str(json);
        NodeSettings::decode("node.yaml", &mut d)
    }

    #[test]
    fn empty_document_takes_the_defaults() {
        let s = decode("{}").unwrap();
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.gateway, Gateway::Resolve);
        assert_eq!(s.outer_source_v4, (Ipv4Addr::new(172, 16, 0, 0), 16));
        assert_eq!(s.attach_mode, AttachMode::Driver);
    }

    #[test]
    fn fields_read_in_either_spelling() {
        let s = decode(
            r#"{"interface":"eth1","attach_mode":"ATTACH_MODE_GENERIC","mtu":9000,
                "outerSourceV4":"10.200.0.0/24","gateway":{"mac":"02:00:00:00:00:01"},
                "sizes":{"maxVips":16,"ring_size":251}}"#,
        )
        .unwrap();
        assert_eq!(s.interface.as_deref(), Some("eth1"));
        assert_eq!(s.attach_mode, AttachMode::Generic);
        assert_eq!(s.mtu, 9000);
        assert_eq!(s.outer_source_v4, (Ipv4Addr::new(10, 200, 0, 0), 24));
        assert_eq!(s.gateway, Gateway::Static([2, 0, 0, 0, 0, 1]));
        assert_eq!(s.sizes.max_vips, Some(16));
        assert_eq!(s.sizes.ring_size, Some(251));
    }

    #[test]
    fn each_bad_field_is_named() {
        for (json, field, kind) in [
            (r#"{"mtu":1000}"#, "mtu", Rejection::Invalid),
            (
                r#"{"outerSourceV4":"10.0.0.0"}"#,
                "outerSourceV4",
                Rejection::Invalid,
            ),
            (
                r#"{"outerSourceV6":"100::/64"}"#,
                "outerSourceV6",
                Rejection::Invalid,
            ),
            (
                r#"{"gateway":{"mac":"ff:ff:ff:ff:ff:ff"}}"#,
                "gateway.mac",
                Rejection::Invalid,
            ),
            (
                r#"{"gateway":{"mac":"02:00:00:00:01"}}"#,
                "gateway.mac",
                Rejection::Invalid,
            ),
            (r#"{"interface":"a/b"}"#, "interface", Rejection::Invalid),
            (
                r#"{"sizes":{"maxVipz":1}}"#,
                "sizes.maxVipz",
                Rejection::UnknownField,
            ),
            (r#"{"schema":9}"#, "schema", Rejection::NewerSchema),
        ] {
            let e = decode(json).unwrap_err();
            assert_eq!((e.field.as_str(), e.kind), (field, kind), "{json}: {e}");
            assert_eq!(e.key, "node.yaml");
        }
    }
}
