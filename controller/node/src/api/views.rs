//! Desired, applied and actual side by side: what the store asks of this
//! node (the last reconcile's decision), what the controller programmed
//! (its book), and what the maps hold (read back from them alone). Each
//! view is digested the same way, so equal digests mean equal programmed
//! state, and each VIP is compared across the three.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use lb_dataplane::{Protocol, VipConfig};
use lb_proto::v1 as pb;
use sha2::{Digest, Sha256};

use crate::{
    apply,
    status::{NodeStatus, Problem, SyncState},
};

/// A VIP as the dataplane keys it: (address, port, protocol number).
type Service = (IpAddr, u16, u8);

/// The maps' VIPs read back, or why they could not be.
pub type Actual = Result<Vec<VipConfig>, String>;

/// One VIP's config in the canonical form the digests hash: backends
/// sorted, every field spelled out.
fn canonical(c: &VipConfig) -> String {
    let mut backends: Vec<(IpAddr, u32)> =
        c.backends.iter().map(|b| (b.address, b.weight)).collect();
    backends.sort();
    let mut line = format!(
        "{} flags={:#x} flood={:?} revision={} backends=",
        service_name(&key(c)),
        c.flags,
        c.new_flows_per_cpu_per_sec,
        c.revision
    );
    for (address, weight) in backends {
        let _ = write!(line, "{address}*{weight},");
    }
    line
}

fn key(c: &VipConfig) -> Service {
    (c.address, c.port, c.protocol.number())
}

/// `address:port/protocol`.
pub fn service_name(&(address, port, protocol): &Service) -> String {
    let proto = if protocol == Protocol::Tcp.number() {
        "tcp"
    } else {
        "udp"
    };
    match address {
        IpAddr::V4(a) => format!("{a}:{port}/{proto}"),
        IpAddr::V6(a) => format!("[{a}]:{port}/{proto}"),
    }
}

/// SHA-256 of the view's canonical lines in service order, as hex.
pub fn digest<'c>(view: impl IntoIterator<Item = &'c VipConfig>) -> String {
    let mut lines: Vec<(Service, String)> =
        view.into_iter().map(|c| (key(c), canonical(c))).collect();
    lines.sort();
    let mut hash = Sha256::new();
    for (_, line) in &lines {
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The status message of `status` beside the maps' `actual` VIPs.
pub fn node_status(node: &str, status: &NodeStatus, actual: &Actual) -> pb::NodeStatus {
    let desired: Vec<(String, String, Option<&Problem>, VipConfig)> = status
        .desired
        .vips
        .values()
        .map(|a| {
            (
                a.vip.name.clone(),
                a.key.clone(),
                status.problems.get(&a.key),
                apply::vip_config(a),
            )
        })
        .collect();
    let applied: Vec<&VipConfig> = status.applied.vips().collect();
    let digests = pb::Digests {
        desired: digest(desired.iter().map(|d| &d.3)),
        applied: digest(applied.iter().copied()),
        actual: actual.as_ref().map(digest).unwrap_or_default(),
        actual_error: actual.as_ref().err().cloned().unwrap_or_default(),
    };
    let converged = digests.desired == digests.applied && digests.applied == digests.actual;

    #[derive(Default)]
    struct Row<'v> {
        name: String,
        problem: Option<&'v Problem>,
        desired: Option<&'v VipConfig>,
        applied: Option<&'v VipConfig>,
        actual: Option<&'v VipConfig>,
    }
    let mut rows: BTreeMap<Service, Row> = BTreeMap::new();
    for (name, _, problem, config) in &desired {
        let row = rows.entry(key(config)).or_default();
        row.name.clone_from(name);
        row.problem = *problem;
        row.desired = Some(config);
    }
    for config in &applied {
        rows.entry(key(config)).or_default().applied = Some(config);
    }
    if let Ok(actual) = actual {
        for config in actual {
            rows.entry(key(config)).or_default().actual = Some(config);
        }
    }
    let same = |a: Option<&VipConfig>, b: Option<&VipConfig>| a.map(canonical) == b.map(canonical);
    let mut vips: Vec<pb::VipStatus> = rows
        .into_iter()
        .map(|(service, row)| {
            let revision = |c: Option<&VipConfig>| c.map_or(0, |c| c.revision);
            let diverged = actual.is_ok() && !same(row.applied, row.actual);
            let (state, message) = if diverged {
                (pb::VipState::Diverged, divergence(row.applied, row.actual))
            } else if let Some(p @ Problem::Stale(_)) = row.problem {
                (pb::VipState::Stale, p.to_string())
            } else if !same(row.desired, row.applied) {
                (
                    pb::VipState::Pending,
                    match row.desired {
                        Some(_) => "the store's version is not applied yet".to_owned(),
                        None => "to be removed: no longer desired".to_owned(),
                    },
                )
            } else {
                (pb::VipState::Programmed, String::new())
            };
            pb::VipStatus {
                name: row.name,
                service: service_name(&service),
                state: state.into(),
                desired_revision: revision(row.desired),
                applied_revision: revision(row.applied),
                actual_revision: revision(row.actual),
                message,
                backends: row
                    .desired
                    .or(row.applied)
                    .or(row.actual)
                    .map_or(0, |c| c.backends.len() as u32),
            }
        })
        .collect();
    // Keys the node does not program at all, by key.
    for (key, problem) in &status.problems {
        if let Problem::Refused(_) = problem {
            let name = key.rsplit('/').next().unwrap_or(key);
            vips.push(pb::VipStatus {
                name: name.to_owned(),
                state: pb::VipState::Refused.into(),
                message: problem.to_string(),
                ..pb::VipStatus::default()
            });
        }
    }
    let u = &status.usage;
    let fill = |f: lb_dataplane::Fill| pb::Fill {
        used: f.used,
        capacity: f.capacity,
    };
    pb::NodeStatus {
        node: node.to_owned(),
        sync_state: match status.state {
            SyncState::Waiting => pb::SyncState::Waiting,
            SyncState::Syncing => pb::SyncState::Syncing,
            SyncState::InSync => pb::SyncState::InSync,
        }
        .into(),
        store_revision: status.store_revision,
        applied_revision: status.applied_revision,
        usage: Some(pb::MapUsage {
            vips: Some(fill(u.vips)),
            backends: Some(fill(u.backends)),
            ring_slots: Some(fill(u.ring_slots)),
            flow_table_entries: u.flow_table_entries,
        }),
        digests: Some(digests),
        vips,
        error: status.error.clone().unwrap_or_default(),
        converged,
    }
}

/// What differs between what was applied and what the maps hold.
fn divergence(applied: Option<&VipConfig>, actual: Option<&VipConfig>) -> String {
    match (applied, actual) {
        (Some(_), None) => "applied, but the maps do not hold it".to_owned(),
        (None, Some(_)) => "in the maps, but the controller did not program it".to_owned(),
        (Some(a), Some(m)) => {
            let backends = |c: &VipConfig| {
                let mut b: Vec<String> = c
                    .backends
                    .iter()
                    .map(|b| format!("{}*{}", b.address, b.weight))
                    .collect();
                b.sort();
                b.join(",")
            };
            if backends(a) != backends(m) {
                format!(
                    "the maps hold backends {} where {} was applied",
                    backends(m),
                    backends(a)
                )
            } else {
                format!(
                    "the maps hold revision {} flags {:#x} where revision {} flags {:#x} was applied",
                    m.revision, m.flags, a.revision, a.flags
                )
            }
        }
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_dataplane::BackendConfig;

    fn config(backends: &[(&str, u32)]) -> VipConfig {
        VipConfig {
            address: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            flags: 0,
            new_flows_per_cpu_per_sec: None,
            backends: backends
                .iter()
                .map(|(a, w)| BackendConfig {
                    address: a.parse().unwrap(),
                    weight: *w,
                })
                .collect(),
            revision: 7,
        }
    }

    #[test]
    fn a_digest_is_of_the_state_not_of_its_order() {
        let a = config(&[("10.0.0.1", 1), ("10.0.0.2", 2)]);
        let b = config(&[("10.0.0.2", 2), ("10.0.0.1", 1)]);
        assert_eq!(digest([&a]), digest([&b]));
        assert_ne!(
            digest([&a]),
            digest([&config(&[("10.0.0.1", 1), ("10.0.0.2", 3)])])
        );
        let mut later = a.clone();
        later.revision = 8;
        assert_ne!(digest([&a]), digest([&later]), "a revision is state too");
        assert_eq!(digest([]).len(), 64);
    }
}
