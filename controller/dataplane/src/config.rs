//! What an operator asks of the dataplane, validated before any map is
//! touched. Every rejection names the field at fault.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_abi::{PROTO_TCP, PROTO_UDP, control::Control, vip::VipKey};
use thiserror::Error;

/// A rejected configuration: which field, and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Path of the offending field, such as `backends[2].address`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

/// How an XDP program is attached, as operators name it on a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP, in the driver (`driver`).
    Driver,
    /// Generic XDP, in the kernel stack after the driver (`generic`).
    Generic,
}

impl std::str::FromStr for AttachMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "driver" => Ok(AttachMode::Driver),
            "generic" => Ok(AttachMode::Generic),
            other => Err(ConfigError::new(
                "mode",
                format!("{other:?} is neither \"driver\" nor \"generic\""),
            )),
        }
    }
}

impl From<AttachMode> for aya::programs::XdpMode {
    fn from(mode: AttachMode) -> Self {
        match mode {
            AttachMode::Driver => aya::programs::XdpMode::Driver,
            AttachMode::Generic => aya::programs::XdpMode::Skb,
        }
    }
}

/// A backend of a VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Tunnel destination. An IPv6 VIP needs IPv6 backends; an IPv4 VIP
    /// takes either (IPv6 backends get 4in6).
    pub address: IpAddr,
    /// Relative share of new flows; 0 drains (no new flows, existing flows
    /// stay). At most [`lb_maglev::MAX_WEIGHT`].
    pub weight: u32,
}

/// A VIP and its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConfig {
    pub address: IpAddr,
    /// Destination port; 0 = every port of the address for this protocol
    /// (a VIP for a specific port takes precedence).
    pub port: u16,
    pub protocol: Protocol,
    /// `lb_abi::vip::flags` bits.
    pub flags: u32,
    /// This VIP's SYN-flood guard: new flows per second per CPU past which
    /// its new flows are balanced but not recorded. `None`: the node's
    /// `LoadOptions::new_flows_per_cpu_per_sec`; `Some(0)`: off.
    pub new_flows_per_cpu_per_sec: Option<u32>,
    pub backends: Vec<BackendConfig>,
    /// The store revision this config came from (its `mod_revision`), 0
    /// when it came from no store. Kept in the maps beside the VIP, so a
    /// restarted controller knows which config the maps hold.
    pub revision: u64,
}

impl VipConfig {
    /// The `lb_abi::flood::FLOOD_LIMITS` entry of this VIP.
    pub(crate) fn flood_limit(&self) -> u32 {
        match self.new_flows_per_cpu_per_sec {
            None => lb_abi::flood::LIMIT_NODE_DEFAULT,
            Some(0) => lb_abi::flood::LIMIT_OFF,
            Some(n) => n,
        }
    }

    /// The inverse of [`Self::flood_limit`].
    pub(crate) fn from_flood_limit(limit: u32) -> Option<u32> {
        match limit {
            lb_abi::flood::LIMIT_NODE_DEFAULT => None,
            lb_abi::flood::LIMIT_OFF => Some(0),
            n => Some(n),
        }
    }

    /// The VIP map key of this VIP.
    pub fn key(&self) -> VipKey {
        VipKey::new(self.address, self.port, self.protocol.number())
    }

    /// Checks everything that can be checked without the maps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !usable_unicast(self.address) {
            return Err(ConfigError::new(
                "address",
                format!("{} is not a unicast address", self.address),
            ));
        }
        let unknown = self.flags & !lb_abi::vip::flags::ALL;
        if unknown != 0 {
            return Err(ConfigError::new(
                "flags",
                format!("unknown flag bits {unknown:#x}"),
            ));
        }
        if self.new_flows_per_cpu_per_sec == Some(lb_abi::flood::LIMIT_OFF) {
            return Err(ConfigError::new(
                "new_flows_per_cpu_per_sec",
                format!(
                    "{} is reserved; 0 turns the guard off",
                    lb_abi::flood::LIMIT_OFF
                ),
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            if !usable_unicast(b.address) {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!("{} is not a unicast address", b.address),
                ));
            }
            if self.address.is_ipv6() && b.address.is_ipv4() {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!(
                        "IPv4 backend {} cannot carry IPv6 VIP {}",
                        b.address, self.address
                    ),
                ));
            }
            if b.weight > lb_maglev::MAX_WEIGHT {
                return Err(ConfigError::new(
                    format!("backends[{i}].weight"),
                    format!(
                        "{} is above the maximum {}",
                        b.weight,
                        lb_maglev::MAX_WEIGHT
                    ),
                ));
            }
            if let Some(j) = self.backends[..i]
                .iter()
                .position(|o| o.address == b.address)
            {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!("{} is already backends[{j}]", b.address),
                ));
            }
        }
        Ok(())
    }
}

fn usable_unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST))
}

/// The smallest node MTU: IPv6's minimum link MTU (RFC 8200 §5).
pub const MIN_MTU: u16 = 1280;

/// Node-wide settings: how encapsulated frames leave this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// MAC of the next hop every encapsulated frame is sent to.
    pub gateway_mac: [u8; 6],
    /// MAC of the interface the balancer is attached to.
    pub interface_mac: [u8; 6],
    /// TTL / hop limit of the outer header.
    pub outer_ttl: u8,
    /// Largest IP packet the balancer sends, outer header included. VIP
    /// packets that would exceed it get ICMP fragmentation-needed /
    /// packet-too-big (or are dropped: IPv4 without DF). At least 1280,
    /// the least an IPv6 link may carry.
    pub mtu: u16,
    /// Outer IPv4 source prefix; the host bits vary per flow.
    pub outer_source_v4: Ipv4Addr,
    /// Length of that prefix, 0..=32 (32 = one fixed source).
    pub outer_source_v4_prefix: u8,
    /// Outer IPv6 source prefix; the host bits vary per flow.
    pub outer_source_v6: Ipv6Addr,
    /// Length of that prefix, 96..=128 (only the last 32 bits vary).
    pub outer_source_v6_prefix: u8,
}

impl Default for NodeConfig {
    /// Katran's choices: 172.16.0.0/16 and 100::/96 sources, TTL 64; MTU 1500.
    fn default() -> Self {
        Self {
            gateway_mac: [0; 6],
            interface_mac: [0; 6],
            outer_ttl: lb_abi::limits::DEFAULT_OUTER_TTL,
            mtu: lb_abi::limits::DEFAULT_MTU,
            outer_source_v4: Ipv4Addr::new(172, 16, 0, 0),
            outer_source_v4_prefix: 16,
            outer_source_v6: Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            outer_source_v6_prefix: 96,
        }
    }
}

impl NodeConfig {
    /// Validates and lays the settings out as the control map value.
    pub fn to_control(&self) -> Result<Control, ConfigError> {
        if self.outer_ttl == 0 {
            return Err(ConfigError::new("outer_ttl", "must be at least 1"));
        }
        if self.mtu < MIN_MTU {
            return Err(ConfigError::new(
                "mtu",
                format!(
                    "{} is below {MIN_MTU}: IPv6 needs every link to carry 1280-byte packets \
                     (RFC 8200 section 5), and the node's MTU applies to both families",
                    self.mtu
                ),
            ));
        }
        for (field, mac) in [
            ("gateway_mac", self.gateway_mac),
            ("interface_mac", self.interface_mac),
        ] {
            if mac[0] & 1 != 0 {
                return Err(ConfigError::new(
                    field,
                    "is a multicast or broadcast MAC; frames must go to one station",
                ));
            }
        }
        if let Some(why) = martian_v4(self.outer_source_v4, self.outer_source_v4_prefix) {
            return Err(ConfigError::new("outer_source_v4", why));
        }
        if let Some(why) = martian_v6(self.outer_source_v6) {
            return Err(ConfigError::new("outer_source_v6", why));
        }
        if self.outer_source_v4_prefix > 32 {
            return Err(ConfigError::new("outer_source_v4_prefix", "must be 0..=32"));
        }
        if !(96..=128).contains(&self.outer_source_v6_prefix) {
            return Err(ConfigError::new(
                "outer_source_v6_prefix",
                "must be 96..=128",
            ));
        }
        let host_mask = |host_bits: u8| -> u32 {
            let mask = if host_bits >= 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            mask.to_be()
        };
        let v6 = self.outer_source_v6.octets();
        let w = |i: usize| u32::from_ne_bytes([v6[i], v6[i + 1], v6[i + 2], v6[i + 3]]);
        Ok(Control {
            gateway_mac: self.gateway_mac,
            src_mac: self.interface_mac,
            outer_ttl: self.outer_ttl,
            _pad: 0,
            mtu: self.mtu,
            outer_src_v4: u32::from_ne_bytes(self.outer_source_v4.octets()),
            outer_src_v4_host_mask: host_mask(32 - self.outer_source_v4_prefix),
            outer_src_v6: [w(0), w(4), w(8), w(12)],
            outer_src_v6_host_mask: host_mask(128 - self.outer_source_v6_prefix),
            _pad2: 0,
        })
    }
}

/// A TCP port-80 VIP with backends at their weights, for unit tests.
#[cfg(test)]
pub(crate) fn test_vip(address: &str, backends: &[(&str, u32)]) -> VipConfig {
    VipConfig {
        address: address.parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        flags: 0,
        new_flows_per_cpu_per_sec: None,
        backends: backends
            .iter()
            .map(|(b, weight)| BackendConfig {
                address: b.parse().unwrap(),
                weight: *weight,
            })
            .collect(),
        revision: 0,
    }
}

/// Why an outer IPv4 source prefix would put martian sources on the wire
/// (routers drop them, and backends must not trust them), if it would:
/// every address the host bits can make must be routable unicast.
fn martian_v4(prefix: Ipv4Addr, length: u8) -> Option<String> {
    if length < 8 {
        return Some(format!(
            "a /{length} prefix lets sources stray across /8s; use /8 or longer"
        ));
    }
    let first = prefix.octets()[0];
    let why = match first {
        0 => "is in 0.0.0.0/8 (this network)",
        127 => "is in 127.0.0.0/8 (loopback)",
        224..=239 => "is in 224.0.0.0/4 (multicast)",
        240..=255 => "is in 240.0.0.0/4 (reserved, broadcast)",
        169 if prefix.octets()[1] == 254 => "is in 169.254.0.0/16 (link-local)",
        _ => return None,
    };
    Some(format!("{prefix}/{length} {why}"))
}

/// The same for the outer IPv6 source prefix (only its last 32 bits vary).
fn martian_v6(prefix: Ipv6Addr) -> Option<String> {
    let s = prefix.segments();
    let why = if prefix.is_unspecified() || prefix.is_loopback() {
        "is the unspecified or loopback range"
    } else if s[0] & 0xff00 == 0xff00 {
        "is in ff00::/8 (multicast)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "is in fe80::/10 (link-local)"
    } else if s[..5] == [0; 5] && s[5] == 0xffff {
        "is in ::ffff:0:0/96 (IPv4-mapped)"
    } else {
        return None;
    };
    Some(format!("{prefix} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martian_outer_sources_and_group_macs_are_refused() {
        let field = |n: NodeConfig| n.to_control().unwrap_err().field;
        for (v4, len) in [
            ("127.0.0.0", 16),
            ("0.0.0.0", 8),
            ("224.1.0.0", 16),
            ("10.0.0.0", 4),
            ("169.254.0.0", 16),
        ] {
            let n = NodeConfig {
                outer_source_v4: v4.parse().unwrap(),
                outer_source_v4_prefix: len,
                ..NodeConfig::default()
            };
            assert_eq!(field(n), "outer_source_v4", "{v4}/{len}");
        }
        for v6 in ["::", "::1", "ff02::", "fe80::", "::ffff:0:0"] {
            let n = NodeConfig {
                outer_source_v6: v6.parse().unwrap(),
                ..NodeConfig::default()
            };
            assert_eq!(field(n), "outer_source_v6", "{v6}");
        }
        let n = NodeConfig {
            gateway_mac: [0xff; 6],
            ..NodeConfig::default()
        };
        assert_eq!(field(n), "gateway_mac");
        let n = NodeConfig {
            mtu: MIN_MTU - 1,
            ..NodeConfig::default()
        };
        assert_eq!(field(n), "mtu");
        let n = NodeConfig {
            mtu: MIN_MTU,
            ..NodeConfig::default()
        };
        assert!(n.to_control().is_ok());
        assert!(NodeConfig::default().to_control().is_ok());
    }

    fn vip(address: &str, backends: &[&str]) -> VipConfig {
        let weighted: Vec<(&str, u32)> = backends.iter().map(|b| (*b, 1)).collect();
        test_vip(address, &weighted)
    }

    #[test]
    fn errors_name_the_field() {
        let field = |c: VipConfig| c.validate().unwrap_err().field;
        assert_eq!(
            field(vip("2001:db8::1", &["2001:db8::2", "10.0.0.1"])),
            "backends[1].address"
        );
        assert_eq!(field(vip("0.0.0.0", &[])), "address");
        assert_eq!(
            field(vip("10.0.0.1", &["10.0.0.2", "10.0.0.2"])),
            "backends[1].address"
        );
        let mut c = vip("10.0.0.1", &["10.0.0.2"]);
        c.backends[0].weight = lb_maglev::MAX_WEIGHT + 1;
        assert_eq!(field(c), "backends[0].weight");
        let mut c = vip("10.0.0.1", &[]);
        c.flags = 1 << 7;
        assert_eq!(field(c), "flags");
        let mut c = vip("10.0.0.1", &[]);
        c.new_flows_per_cpu_per_sec = Some(u32::MAX);
        assert_eq!(field(c), "new_flows_per_cpu_per_sec");
        for limit in [None, Some(0), Some(7)] {
            let mut c = vip("10.0.0.1", &[]);
            c.new_flows_per_cpu_per_sec = limit;
            assert_eq!(VipConfig::from_flood_limit(c.flood_limit()), limit);
        }
        assert!(
            vip("10.0.0.1", &["10.0.0.2", "2001:db8::2"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn attach_mode_parses_operator_names() {
        assert_eq!("driver".parse(), Ok(AttachMode::Driver));
        assert_eq!("generic".parse(), Ok(AttachMode::Generic));
        assert_eq!("skb".parse::<AttachMode>().unwrap_err().field, "mode");
    }

    #[test]
    fn control_masks_cover_host_bits_in_wire_order() {
        let c = NodeConfig::default().to_control().unwrap();
        assert_eq!(c.outer_src_v4.to_ne_bytes(), [172, 16, 0, 0]);
        assert_eq!(c.outer_src_v4_host_mask.to_ne_bytes(), [0, 0, 255, 255]);
        assert_eq!(c.outer_src_v6_host_mask, u32::MAX);
        let err = NodeConfig {
            outer_source_v6_prefix: 64,
            ..NodeConfig::default()
        }
        .to_control()
        .unwrap_err();
        assert_eq!(err.field, "outer_source_v6_prefix");
    }
}
