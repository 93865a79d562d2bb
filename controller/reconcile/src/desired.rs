//! The store's keys into the VIPs this node programs.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use lb_config::{ConfigError, Vip, VipId};

/// One key as the store listed it, decoded by `lb-config`.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub key: String,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Shared, so that each pass's decision copies no backend list.
    pub vip: Result<Arc<Vip>, ConfigError>,
}

/// The node's sizes: what it can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_vips: usize,
    /// Over all VIPs.
    pub max_backends: usize,
}

/// A VIP this node programs, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub key: String,
    pub create_revision: u64,
    /// The revision of the version programmed: the key's own, or for a
    /// stale key that of its last good version.
    pub mod_revision: u64,
    pub vip: Arc<Vip>,
    /// Set when the key's current value is invalid and this is its last
    /// good version.
    pub stale: Option<ConfigError>,
}

/// Why a key is not programmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its value is invalid and it has no last good version.
    Invalid(ConfigError),
    /// An older key claims the same VIP.
    Duplicate { winner: String },
    /// The node holds no more VIPs, or not this VIP's backends.
    OverCapacity { what: &'static str, limit: usize },
}

/// A key not programmed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub key: String,
    pub refusal: Refusal,
}

/// What this node should program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub vips: BTreeMap<VipId, Admitted>,
    /// In key order.
    pub refused: Vec<Refused>,
}

/// The keys of one listing (or the view a watch keeps) into the desired
/// state. `last_good` is the previous result's admitted VIPs by key: a key
/// whose value turned invalid keeps the version there.
pub fn desired<'k>(
    keys: impl IntoIterator<Item = &'k StoredKey>,
    limits: Limits,
    last_good: &HashMap<String, Admitted>,
) -> Desired {
    let mut refused = Vec::new();
    let mut candidates: Vec<Admitted> = Vec::new();
    for stored in keys {
        match &stored.vip {
            Ok(vip) => candidates.push(Admitted {
                key: stored.key.clone(),
                create_revision: stored.create_revision,
                mod_revision: stored.mod_revision,
                vip: Arc::clone(vip),
                stale: None,
            }),
            Err(error) => match last_good.get(&stored.key) {
                Some(good) => candidates.push(Admitted {
                    stale: Some(error.clone()),
                    ..good.clone()
                }),
                None => refused.push(Refused {
                    key: stored.key.clone(),
                    refusal: Refusal::Invalid(error.clone()),
                }),
            },
        }
    }
    // Oldest first: it wins a shared VIP and the node's room.
    candidates.sort_by(|a, b| (a.create_revision, &a.key).cmp(&(b.create_revision, &b.key)));
    let mut vips = BTreeMap::new();
    let mut backends = 0;
    for candidate in candidates {
        let id = candidate.vip.id();
        if let Some(winner) = vips.get(&id).map(|w: &Admitted| w.key.clone()) {
            refused.push(Refused {
                key: candidate.key,
                refusal: Refusal::Duplicate { winner },
            });
            continue;
        }
        if vips.len() == limits.max_vips {
            refused.push(Refused {
                key: candidate.key,
                refusal: Refusal::OverCapacity {
                    what: "VIPs",
                    limit: limits.max_vips,
                },
            });
            continue;
        }
        if backends + candidate.vip.backends.len() > limits.max_backends {
            refused.push(Refused {
                key: candidate.key,
                refusal: Refusal::OverCapacity {
                    what: "backends",
                    limit: limits.max_backends,
                },
            });
            continue;
        }
        backends += candidate.vip.backends.len();
        vips.insert(id, candidate);
    }
    refused.sort_by(|a, b| a.key.cmp(&b.key));
    Desired { vips, refused }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::{Backend, BackendState, Protocol, Rejection, VipOptions};

    fn vip(name: &str, address: &str, backends: usize) -> Vip {
        Vip {
            name: name.into(),
            address: address.parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            options: VipOptions::default(),
            backends: (0..backends)
                .map(|i| Backend {
                    address: format!("10.0.0.{}", i + 1).parse().unwrap(),
                    weight: 1,
                    state: BackendState::Active,
                })
                .collect(),
            owner: String::new(),
            health_check: false,
        }
    }

    fn stored(name: &str, create: u64, vip: Result<Vip, ConfigError>) -> StoredKey {
        StoredKey {
            key: format!("/lb/v1/vips/{name}"),
            create_revision: create,
            mod_revision: create + 10,
            vip: vip.map(Arc::new),
        }
    }

    fn invalid(name: &str) -> ConfigError {
        ConfigError {
            key: format!("/lb/v1/vips/{name}"),
            field: "port".into(),
            reason: "bad".into(),
            kind: Rejection::Invalid,
        }
    }

    const ROOM: Limits = Limits {
        max_vips: 10,
        max_backends: 100,
    };

    fn admitted_keys(d: &Desired) -> Vec<&str> {
        d.vips.values().map(|a| a.key.as_str()).collect()
    }

    fn refusals(d: &Desired) -> Vec<(&str, &Refusal)> {
        d.refused
            .iter()
            .map(|r| (r.key.as_str(), &r.refusal))
            .collect()
    }

    #[test]
    fn the_older_key_wins_a_shared_vip_whatever_the_listing_order() {
        let keys = [
            stored("young", 7, Ok(vip("young", "192.0.2.1", 1))),
            stored("old", 3, Ok(vip("old", "192.0.2.1", 2))),
        ];
        for order in [[0, 1], [1, 0]] {
            let listed: Vec<_> = order.iter().map(|&i| keys[i].clone()).collect();
            let d = desired(&listed, ROOM, &HashMap::new());
            assert_eq!(admitted_keys(&d), ["/lb/v1/vips/old"]);
            assert_eq!(
                refusals(&d),
                [(
                    "/lb/v1/vips/young",
                    &Refusal::Duplicate {
                        winner: "/lb/v1/vips/old".into()
                    }
                )]
            );
        }
    }

    #[test]
    fn past_the_nodes_sizes_the_oldest_are_admitted() {
        let keys = [
            stored("c", 3, Ok(vip("c", "192.0.2.3", 1))),
            stored("a", 1, Ok(vip("a", "192.0.2.1", 1))),
            stored("b", 2, Ok(vip("b", "192.0.2.2", 1))),
        ];
        let two = Limits {
            max_vips: 2,
            max_backends: 100,
        };
        let d = desired(&keys, two, &HashMap::new());
        assert_eq!(admitted_keys(&d), ["/lb/v1/vips/a", "/lb/v1/vips/b"]);
        assert_eq!(
            refusals(&d),
            [(
                "/lb/v1/vips/c",
                &Refusal::OverCapacity {
                    what: "VIPs",
                    limit: 2
                }
            )]
        );
        // Backends count over all VIPs; a VIP that does not fit is refused
        // whole, and a younger one that fits is still admitted.
        let keys = [
            stored("a", 1, Ok(vip("a", "192.0.2.1", 3))),
            stored("b", 2, Ok(vip("b", "192.0.2.2", 3))),
            stored("c", 3, Ok(vip("c", "192.0.2.3", 1))),
        ];
        let four = Limits {
            max_vips: 10,
            max_backends: 4,
        };
        let d = desired(&keys, four, &HashMap::new());
        assert_eq!(admitted_keys(&d), ["/lb/v1/vips/a", "/lb/v1/vips/c"]);
        assert_eq!(
            refusals(&d),
            [(
                "/lb/v1/vips/b",
                &Refusal::OverCapacity {
                    what: "backends",
                    limit: 4
                }
            )]
        );
    }

    #[test]
    fn an_invalid_update_keeps_the_last_good_version_stale() {
        let good = desired(
            &[stored("web", 1, Ok(vip("web", "192.0.2.1", 2)))],
            ROOM,
            &HashMap::new(),
        );
        let last_good: HashMap<_, _> = good
            .vips
            .values()
            .map(|a| (a.key.clone(), a.clone()))
            .collect();
        let keys = [
            stored("web", 1, Err(invalid("web"))),
            stored("new", 5, Err(invalid("new"))),
        ];
        let d = desired(&keys, ROOM, &last_good);
        let web = d.vips.values().next().unwrap();
        assert_eq!(*web.vip, vip("web", "192.0.2.1", 2), "last good version");
        assert_eq!(web.mod_revision, 11, "the good version's revision");
        assert_eq!(web.stale, Some(invalid("web")));
        // A key never good is refused, not stale.
        assert_eq!(
            refusals(&d),
            [("/lb/v1/vips/new", &Refusal::Invalid(invalid("new")))]
        );
    }

    #[test]
    fn a_rename_is_the_same_vip() {
        let before = desired(
            &[stored("web", 1, Ok(vip("web", "192.0.2.1", 2)))],
            ROOM,
            &HashMap::new(),
        );
        let after = desired(
            &[stored("www", 9, Ok(vip("www", "192.0.2.1", 2)))],
            ROOM,
            &HashMap::new(),
        );
        assert_eq!(
            before.vips.keys().collect::<Vec<_>>(),
            after.vips.keys().collect::<Vec<_>>()
        );
    }
}
