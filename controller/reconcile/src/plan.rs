//! Desired against programmed: the smallest set of writes.

use std::{collections::BTreeMap, net::IpAddr};

use lb_config::{BackendState, Vip, VipId, VipOptions};

use crate::desired::{Admitted, Desired};

/// A VIP as the maps hold it, without what a write would not change (its
/// name, its store revision): two VIPs with equal forms need no write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammedVip {
    pub options: VipOptions,
    /// In the VIP's order; weight 0 is a draining backend, as the
    /// dataplane spells it.
    pub backends: Vec<(IpAddr, u32)>,
}

impl ProgrammedVip {
    /// The form `vip` takes in the maps.
    pub fn of(vip: &Vip) -> Self {
        Self {
            options: vip.options,
            backends: vip
                .backends
                .iter()
                .map(|b| {
                    let weight = match b.state {
                        BackendState::Active => b.weight,
                        BackendState::Draining => 0,
                    };
                    (b.address, weight)
                })
                .collect(),
        }
    }
}

/// A VIP in the maps: its form, and the store key and revision its version
/// came from when known (a version this process programmed). With them,
/// a key whose revision has not moved is known equal without comparing its
/// backends: a pass over 1,000 VIPs compares only those that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InMaps {
    pub form: ProgrammedVip,
    pub from: Option<(String, u64)>,
}

impl InMaps {
    /// What programming `admitted` leaves in the maps.
    pub fn of(admitted: &Admitted) -> Self {
        Self {
            form: ProgrammedVip::of(&admitted.vip),
            from: Some((admitted.key.clone(), admitted.mod_revision)),
        }
    }

    fn holds(&self, admitted: &Admitted) -> bool {
        match &self.from {
            Some((key, revision)) if *key == admitted.key && *revision == admitted.mod_revision => {
                true
            }
            _ => self.form == ProgrammedVip::of(&admitted.vip),
        }
    }
}

/// The writes that bring the maps to the desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// VIPs to add or replace, in id order.
    pub upserts: Vec<Admitted>,
    /// VIPs to remove, in id order.
    pub removals: Vec<VipId>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// Desired against `programmed` (what the maps hold, by id). Applying the
/// plan and planning again gives an empty plan.
pub fn plan(desired: &Desired, programmed: &BTreeMap<VipId, InMaps>) -> Plan {
    let upserts = desired
        .vips
        .iter()
        .filter(|(id, admitted)| !programmed.get(*id).is_some_and(|p| p.holds(admitted)))
        .map(|(_, admitted)| admitted.clone())
        .collect();
    let removals = programmed
        .keys()
        .filter(|id| !desired.vips.contains_key(*id))
        .copied()
        .collect();
    Plan { upserts, removals }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lb_config::{Backend, Protocol};

    use super::*;
    use crate::desired::{Limits, StoredKey, desired};

    fn vip(name: &str, address: &str, weights: &[u32]) -> Vip {
        Vip {
            name: name.into(),
            address: address.parse().unwrap(),
            port: 443,
            protocol: Protocol::Tcp,
            options: VipOptions::default(),
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| Backend {
                    address: format!("10.1.0.{}", i + 1).parse().unwrap(),
                    weight,
                    state: BackendState::Active,
                })
                .collect(),
            owner: String::new(),
            health_check: false,
        }
    }

    fn want(vips: &[Vip]) -> Desired {
        let keys: Vec<_> = vips
            .iter()
            .enumerate()
            .map(|(i, v)| StoredKey {
                key: format!("/lb/v1/vips/{}", v.name),
                create_revision: i as u64 + 1,
                mod_revision: i as u64 + 1,
                vip: Ok(std::sync::Arc::new(v.clone())),
            })
            .collect();
        let room = Limits {
            max_vips: 100,
            max_backends: 1000,
        };
        desired(&keys, room, &HashMap::new())
    }

    /// Forms only, as read back from the maps.
    fn programmed(vips: &[Vip]) -> BTreeMap<VipId, InMaps> {
        vips.iter()
            .map(|v| {
                let in_maps = InMaps {
                    form: ProgrammedVip::of(v),
                    from: None,
                };
                (v.id(), in_maps)
            })
            .collect()
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.upserts.iter().map(|a| a.vip.name.as_str()).collect()
    }

    #[test]
    fn plans_cover_add_change_remove_and_nothing_else() {
        let web = vip("web", "192.0.2.1", &[1, 1]);
        let api = vip("api", "192.0.2.2", &[1]);
        let old = vip("old", "192.0.2.3", &[1]);
        let mut drained = web.clone();
        drained.backends[1].state = BackendState::Draining;
        // What, programmed before, desired after, upserted, removed.
        type Case<'a> = (&'a str, Vec<Vip>, Vec<Vip>, Vec<&'a str>, Vec<&'a Vip>);
        let cases: &[Case] = &[
            (
                "empty to one",
                vec![],
                vec![web.clone()],
                vec!["web"],
                vec![],
            ),
            (
                "unchanged",
                vec![web.clone(), api.clone()],
                vec![web.clone(), api.clone()],
                vec![],
                vec![],
            ),
            (
                "a backend drained",
                vec![web.clone()],
                vec![drained.clone()],
                vec!["web"],
                vec![],
            ),
            (
                "a weight changed",
                vec![api.clone()],
                vec![vip("api", "192.0.2.2", &[2])],
                vec!["api"],
                vec![],
            ),
            (
                "removed",
                vec![web.clone(), old.clone()],
                vec![web.clone()],
                vec![],
                vec![&old],
            ),
            (
                "renamed",
                vec![web.clone()],
                vec![vip("www", "192.0.2.1", &[1, 1])],
                vec![],
                vec![],
            ),
            (
                "moved to another address",
                vec![api.clone()],
                vec![vip("api", "192.0.2.9", &[1])],
                vec!["api"],
                vec![&api],
            ),
        ];
        for (what, before, after, upserts, removals) in cases {
            let p = plan(&want(after), &programmed(before));
            assert_eq!(names(&p), *upserts, "{what}");
            let removed: Vec<VipId> = removals.iter().map(|v| v.id()).collect();
            assert_eq!(p.removals, removed, "{what}");
            // Idempotent: once applied, nothing is left to do.
            assert!(plan(&want(after), &programmed(after)).is_empty(), "{what}");
        }
    }

    #[test]
    fn an_unmoved_key_and_revision_is_not_compared_but_another_key_is() {
        let web = vip("web", "192.0.2.1", &[1, 1]);
        let desired = want(std::slice::from_ref(&web));
        let admitted = desired.vips.values().next().unwrap();
        let mut in_maps: BTreeMap<VipId, InMaps> =
            [(web.id(), InMaps::of(admitted))].into_iter().collect();
        assert!(plan(&desired, &in_maps).is_empty());
        // A form that differs behind the same key and revision is not
        // looked at: the revision says it is this version.
        let entry = in_maps.get_mut(&web.id()).unwrap();
        entry.form.backends.pop();
        assert!(plan(&desired, &in_maps).is_empty());
        // Another key at the same revision (one transaction wrote both)
        // is compared by form.
        let entry = in_maps.get_mut(&web.id()).unwrap();
        entry.from = Some(("/lb/v1/vips/other".into(), admitted.mod_revision));
        assert_eq!(names(&plan(&desired, &in_maps)), ["web"]);
    }

    #[test]
    fn a_drained_backend_is_weight_zero_in_the_maps() {
        let mut web = vip("web", "192.0.2.1", &[3, 5]);
        web.backends[0].state = BackendState::Draining;
        assert_eq!(
            ProgrammedVip::of(&web).backends,
            [
                ("10.1.0.1".parse().unwrap(), 0),
                ("10.1.0.2".parse().unwrap(), 5)
            ]
        );
    }
}
