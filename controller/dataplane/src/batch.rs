//! A batch of changes: what [`crate::Programmer::apply`] takes, checked
//! whole before any map is touched, and its rings built on every core.

use std::{collections::HashMap, net::IpAddr, thread};

use lb_abi::{ip_from_wire, vip::VipKey};
use lb_maglev::{MaglevError, Member};
use thiserror::Error;

use crate::config::{ConfigError, NodeConfig, VipConfig};

/// Changes applied together: node settings, VIPs added or replaced, VIPs
/// removed. A key appears at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// New node settings, applied before any VIP of the batch.
    pub node: Option<NodeConfig>,
    /// VIPs to add, or to replace whole (flags and backends).
    pub upserts: Vec<VipConfig>,
    /// VIPs to remove, by key.
    pub removals: Vec<VipKey>,
}

impl Batch {
    /// A batch of one upsert.
    pub fn upsert(config: VipConfig) -> Self {
        Self {
            upserts: vec![config],
            ..Self::default()
        }
    }
}

/// One reason a batch was refused: what it is about (`node`, or the VIP as
/// `address:port/protocol`) and the field at fault.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{subject}: {error}")]
pub struct Rejection {
    /// `node`, or the VIP as `10.0.0.1:80/tcp`.
    pub subject: String,
    pub error: ConfigError,
}

impl Rejection {
    fn vip(key: &VipKey, error: ConfigError) -> Self {
        Self {
            subject: format!("VIP {}", describe(key)),
            error,
        }
    }
}

/// A VIP key as operators write it: `10.0.0.1:80/tcp`, `[2001:db8::1]:0/udp`.
pub fn describe(key: &VipKey) -> String {
    let proto = match key.proto {
        lb_abi::PROTO_TCP => "tcp".to_owned(),
        lb_abi::PROTO_UDP => "udp".to_owned(),
        other => format!("proto-{other}"),
    };
    let port = u16::from_be(key.port);
    match ip_from_wire(key.family, key.addr) {
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}/{proto}"),
        Some(a) => format!("{a}:{port}/{proto}"),
        None => format!("family-{}:{port}/{proto}", key.family),
    }
}

/// Every reason to refuse `batch`, given which VIPs are programmed and
/// whether node settings have been set. Empty: the batch may be applied.
pub(crate) fn check(
    batch: &Batch,
    programmed: impl Fn(&VipKey) -> bool,
    node_set: bool,
) -> Vec<Rejection> {
    let mut rejections = Vec::new();
    if let Some(node) = &batch.node
        && let Err(error) = node.to_control()
    {
        rejections.push(Rejection {
            subject: "node".to_owned(),
            error,
        });
    }
    let mut seen: HashMap<VipKey, String> = HashMap::new();
    for (i, config) in batch.upserts.iter().enumerate() {
        let key = config.key();
        if let Err(error) = config.validate() {
            rejections.push(Rejection::vip(&key, error));
        }
        if batch.node.is_none() && !node_set {
            rejections.push(Rejection::vip(
                &key,
                ConfigError::new("node", "node settings must be set before any VIP"),
            ));
        }
        if let Some(first) = seen.insert(key, format!("upserts[{i}]")) {
            rejections.push(Rejection::vip(
                &key,
                ConfigError::new(format!("upserts[{i}]"), format!("same VIP as {first}")),
            ));
        }
    }
    for (i, key) in batch.removals.iter().enumerate() {
        if let Some(first) = seen.insert(*key, format!("removals[{i}]")) {
            rejections.push(Rejection::vip(
                key,
                ConfigError::new(format!("removals[{i}]"), format!("same VIP as {first}")),
            ));
        } else if !programmed(key) {
            rejections.push(Rejection::vip(
                key,
                ConfigError::new(format!("removals[{i}]"), "is not programmed"),
            ));
        }
    }
    rejections
}

/// Ring entries below which a batch's rings are built on one core.
const PARALLEL_RING_ENTRIES: u64 = 4 * 65_537;

/// The Maglev ring of each config, as indices into its backends (`None`:
/// no backend takes new flows), built on every core the process may use.
pub(crate) fn build_rings(
    configs: &[&VipConfig],
    ring_size: u32,
) -> Result<Vec<Option<Vec<u32>>>, Rejection> {
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    // Starting threads costs tens of microseconds: worth it only for more
    // than a couple of full-size rings.
    let work = configs.len() as u64 * u64::from(ring_size);
    if configs.len() < 2 || workers < 2 || work < PARALLEL_RING_ENTRIES {
        return configs.iter().map(|c| build_ring(c, ring_size)).collect();
    }
    let chunk = configs.len().div_ceil(workers);
    thread::scope(|s| {
        let handles: Vec<_> = configs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|c| build_ring(c, ring_size))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut rings = Vec::with_capacity(configs.len());
        for handle in handles {
            rings.extend(handle.join().expect("ring builder panicked")?);
        }
        Ok(rings)
    })
}

/// The Maglev ring of `config` as indices into its backends, or `None` when
/// no backend takes new flows.
pub(crate) fn build_ring(
    config: &VipConfig,
    ring_size: u32,
) -> Result<Option<Vec<u32>>, Rejection> {
    let identities: Vec<Vec<u8>> = config
        .backends
        .iter()
        .map(|b| backend_identity(b.address))
        .collect();
    let members: Vec<Member<'_>> = identities
        .iter()
        .zip(&config.backends)
        .map(|(id, b)| Member::new(id, b.weight))
        .collect();
    match lb_maglev::build(&members, ring_size) {
        Ok(ring) => Ok(Some(ring)),
        Err(MaglevError::ZeroTotalWeight) => Ok(None),
        Err(e) => Err(Rejection::vip(
            &config.key(),
            ConfigError::new("backends", e.to_string()),
        )),
    }
}

/// The canonical identity a backend is hashed by: family tag, then the
/// address bytes.
pub fn backend_identity(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => [&[lb_abi::FAMILY_V4][..], &a.octets()].concat(),
        IpAddr::V6(a) => [&[lb_abi::FAMILY_V6][..], &a.octets()].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, test_vip as vip};

    /// The ring a VIP gets is what every node computes from its config;
    /// this pins the backend encoding and the Maglev build together.
    #[test]
    fn golden_ring_of_a_config() {
        let config = vip(
            "10.0.0.1",
            &[("10.1.0.1", 1), ("10.1.0.2", 2), ("2001:db8::3", 0)],
        );
        let ring = build_ring(&config, 13).unwrap().unwrap();
        assert_eq!(ring, [1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(
            backend_identity("10.1.0.1".parse().unwrap()),
            [4, 10, 1, 0, 1]
        );
        assert_eq!(build_ring(&vip("10.0.0.1", &[]), 13).unwrap(), None);
    }

    #[test]
    fn parallel_builds_equal_single_ones_in_order() {
        let configs: Vec<VipConfig> = (1..=9)
            .map(|i| vip(&format!("10.0.0.{i}"), &[("10.1.0.1", i), ("10.1.0.2", 1)]))
            .collect();
        let refs: Vec<&VipConfig> = configs.iter().collect();
        // Enough ring entries to be built on every core.
        let m = 65_537;
        assert!(refs.len() as u64 * m >= PARALLEL_RING_ENTRIES);
        let rings = build_rings(&refs, m as u32).unwrap();
        for (config, ring) in configs.iter().zip(rings) {
            assert_eq!(ring, build_ring(config, m as u32).unwrap());
        }
    }

    #[test]
    fn every_rejection_is_named_and_the_batch_refused_whole() {
        let good = vip("10.0.0.1", &[("10.1.0.1", 1)]);
        let bad_backend = vip("10.0.0.2", &[("224.0.0.1", 1)]);
        let batch = Batch {
            node: Some(NodeConfig {
                outer_ttl: 0,
                ..NodeConfig::default()
            }),
            upserts: vec![good.clone(), bad_backend.clone(), good.clone()],
            removals: vec![vip("10.0.0.3", &[]).key()],
        };
        let rejections = check(&batch, |_| false, true);
        let named: Vec<(String, String)> = rejections
            .iter()
            .map(|r| (r.subject.clone(), r.error.field.clone()))
            .collect();
        assert_eq!(
            named,
            [
                ("node".to_owned(), "outer_ttl".to_owned()),
                (
                    "VIP 10.0.0.2:80/tcp".to_owned(),
                    "backends[0].address".to_owned()
                ),
                ("VIP 10.0.0.1:80/tcp".to_owned(), "upserts[2]".to_owned()),
                ("VIP 10.0.0.3:80/tcp".to_owned(), "removals[0]".to_owned()),
            ]
        );
        assert!(check(&Batch::upsert(good.clone()), |_| false, true).is_empty());
        let before_node = check(&Batch::upsert(good), |_| false, false);
        assert_eq!(before_node[0].error.field, "node");
    }

    #[test]
    fn keys_are_described_as_operators_write_them() {
        let v6 = VipConfig {
            protocol: Protocol::Udp,
            port: 0,
            ..vip("2001:db8::1", &[])
        };
        assert_eq!(describe(&v6.key()), "[2001:db8::1]:0/udp");
    }
}
