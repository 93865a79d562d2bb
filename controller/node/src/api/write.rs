//! The validating writer: every change is checked as a controller would
//! check it, against this node's sizes and the VIPs it knows, then made
//! in the store under a compare on the VIP's `mod_revision`, so that no
//! write lands on a version it did not read.

use std::collections::BTreeMap;

use lb_config::{Keys, Vip, VipId};
use lb_proto::v1::{self as pb, ErrorReason, VipResource};
use lb_reconcile::Desired;
use lb_store::{Compare, KeyValue, Op, Revision, Store, Txn};
use tonic::Code;

use super::error::{ApiError, ApiResult};

/// What this node can hold: the sizes its dataplane was loaded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub max_vips: usize,
    pub max_backends: usize,
    pub ring_size: u32,
}

/// How long a change without an etag keeps reading again after another
/// writer won its compare. Bounded by time, not by attempts: with N
/// writers at once, one of them may lose N - 1 times in a row.
pub const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// After a lost compare: waits a moment (up to 8 ms, so that racing
/// writers spread out) and says whether to read again.
pub async fn again(started: std::time::Instant) -> bool {
    if started.elapsed() > RETRY_FOR {
        return false;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tokio::time::sleep(std::time::Duration::from_micros(u64::from(nanos % 8000))).await;
    true
}

/// A VIP's key as the store has it, and its value read as a resource.
pub struct Stored {
    pub kv: KeyValue,
    pub resource: VipResource,
}

/// The writer over one store.
#[derive(Clone)]
pub struct Writer<S> {
    pub store: S,
    pub keys: Keys,
    pub sizes: Sizes,
}

impl<S: Store + Clone> Writer<S> {
    /// The VIP named `name`, or NOT_FOUND.
    pub async fn get(&self, name: &str) -> ApiResult<Stored> {
        check_name(name, "name")?;
        let key = self.keys.vip(name);
        let listing = self.store.list(&key, None).await?;
        let kv = listing
            .kvs
            .into_iter()
            .find(|kv| kv.key == key)
            .ok_or_else(|| ApiError::not_found(name))?;
        let resource = self.resource(&kv, listing.revision);
        Ok(Stored { kv, resource })
    }

    /// `kv` as a resource read at `revision`.
    pub fn resource(&self, kv: &KeyValue, revision: Revision) -> VipResource {
        let (vip, invalid) = match Vip::decode(&self.keys, &kv.key, &kv.value) {
            Ok(v) => (Some(v.to_proto()), String::new()),
            Err(e) => (
                serde_json::from_slice::<pb::Vip>(&kv.value).ok(),
                format!("{}: {}", e.field, e.reason),
            ),
        };
        VipResource {
            vip,
            etag: kv.mod_revision.to_string(),
            create_revision: kv.create_revision,
            store_revision: revision,
            invalid,
        }
    }

    /// `vip` as a controller reads it, each fault named under `prefix`.
    pub fn check(&self, prefix: &str, vip: Option<pb::Vip>) -> ApiResult<Vip> {
        let Some(mut vip) = vip else {
            return Err(ApiError::field(prefix.trim_end_matches('.'), "is required"));
        };
        check_name(&vip.name, &format!("{prefix}name"))?;
        if vip.schema == 0 {
            vip.schema = lb_proto::SCHEMA;
        }
        let key = self.keys.vip(&vip.name);
        let vip =
            Vip::from_proto(&self.keys, &key, vip).map_err(|f| ApiError::config(prefix, f))?;
        if vip.backends.len() > self.sizes.ring_size as usize {
            return Err(ApiError::field(
                format!("{prefix}backends"),
                format!(
                    "{} backends do not fit a Maglev ring of {} slots on this node",
                    vip.backends.len(),
                    self.sizes.ring_size
                ),
            ));
        }
        Ok(vip)
    }

    /// Makes one VIP change: `next` (None: delete) for the VIP named
    /// `name`, given as read in `stored` (None: it must not exist yet).
    /// The write is conditional on the version read.
    pub async fn write(
        &self,
        name: &str,
        read: Option<&KeyValue>,
        next: Option<&Vip>,
        validate_only: bool,
    ) -> ApiResult<Written> {
        let key = self.keys.vip(name);
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                mod_revision: read.map_or(0, |kv| kv.mod_revision),
            }],
            ops: vec![match next {
                Some(vip) => Op::Put {
                    key: key.clone(),
                    value: vip.encode(),
                },
                None => Op::Delete { key: key.clone() },
            }],
        };
        txn.check_limits()?;
        if validate_only {
            return Ok(Written::Done(self.store.revision().await?));
        }
        let outcome = self.store.txn(txn).await?;
        Ok(if outcome.succeeded {
            Written::Done(outcome.revision)
        } else {
            Written::Lost
        })
    }

    /// A read-modify-write of the VIP `name`: `change` turns the stored
    /// VIP into the next one. With an etag, only that version is changed
    /// (ABORTED otherwise); without, a lost compare reads again.
    pub async fn modify(
        &self,
        name: &str,
        etag: &str,
        validate_only: bool,
        desired: &Desired,
        change: impl Fn(&mut pb::Vip) -> ApiResult<()>,
    ) -> ApiResult<VipResource> {
        let wanted = parse_etag(etag, "etag")?;
        let started = std::time::Instant::now();
        loop {
            let stored = self.get(name).await?;
            if let Some(wanted) = wanted
                && wanted != stored.kv.mod_revision
            {
                return Err(ApiError::stale_etag(name, etag, stored.kv.mod_revision));
            }
            let Some(mut vip) = stored
                .resource
                .vip
                .clone()
                .filter(|_| stored.resource.invalid.is_empty())
            else {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    ErrorReason::InvalidField,
                    format!(
                        "VIP {name:?} as stored is refused by controllers ({}): replace it whole \
                         with `lbctl vip update` or delete it",
                        stored.resource.invalid
                    ),
                ));
            };
            change(&mut vip)?;
            let next = self.check("vip.", Some(vip))?;
            self.fits(desired, std::slice::from_ref(&next), &[name])?;
            match self
                .write(name, Some(&stored.kv), Some(&next), validate_only)
                .await?
            {
                Written::Done(revision) => {
                    let mod_revision = if validate_only {
                        stored.kv.mod_revision
                    } else {
                        revision
                    };
                    return Ok(written(&next, &stored.kv, mod_revision, revision));
                }
                Written::Lost if wanted.is_some() => {
                    let now = self.get(name).await?.kv.mod_revision;
                    return Err(ApiError::stale_etag(name, etag, now));
                }
                Written::Lost if again(started).await => continue,
                Written::Lost => return Err(kept_changing(name)),
            }
        }
    }

    /// Whether `vips`, replacing the VIPs named in `leaving`, fit this
    /// node beside the VIPs it programs now: no other VIP serves the same
    /// address, port and protocol, and the VIP and backend counts stay
    /// within the node's sizes.
    pub fn fits(&self, desired: &Desired, vips: &[Vip], leaving: &[&str]) -> ApiResult<()> {
        let keys: Vec<String> = vips
            .iter()
            .map(|v| self.keys.vip(&v.name))
            .chain(leaving.iter().map(|n| self.keys.vip(n)))
            .collect();
        let staying = || desired.vips.values().filter(|a| !keys.contains(&a.key));
        let mut services: BTreeMap<VipId, &str> = staying()
            .map(|a| (a.vip.id(), a.vip.name.as_str()))
            .collect();
        for vip in vips {
            if let Some(other) = services.insert(vip.id(), &vip.name) {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    ErrorReason::VipAddressTaken,
                    format!(
                        "VIP {other:?} already serves {}: two VIPs cannot share an address, \
                         port and protocol",
                        super::views::service_name(&(
                            vip.address,
                            vip.port,
                            crate::apply::protocol(vip.protocol).number()
                        ))
                    ),
                )
                .with("vip", other));
            }
        }
        let count = staying().count() + vips.len();
        if count > self.sizes.max_vips {
            return Err(over("VIPs", count, self.sizes.max_vips));
        }
        let backends = staying().map(|a| a.vip.backends.len()).sum::<usize>()
            + vips.iter().map(|v| v.backends.len()).sum::<usize>();
        if backends > self.sizes.max_backends {
            return Err(over("backends", backends, self.sizes.max_backends));
        }
        Ok(())
    }
}

/// What a conditional write did.
pub enum Written {
    /// Made (or, validating, would be) at this store revision.
    Done(Revision),
    /// Another writer changed the VIP since it was read.
    Lost,
}

/// The resource a write left: `vip` at `mod_revision`.
pub fn written(
    vip: &Vip,
    read: &KeyValue,
    mod_revision: Revision,
    revision: Revision,
) -> VipResource {
    VipResource {
        vip: Some(vip.to_proto()),
        etag: mod_revision.to_string(),
        create_revision: read.create_revision,
        store_revision: revision,
        invalid: String::new(),
    }
}

/// Other writers kept winning for [`RETRY_FOR`].
pub fn kept_changing(name: &str) -> ApiError {
    ApiError::new(
        Code::Aborted,
        ErrorReason::EtagMismatch,
        format!(
            "VIP {name:?} kept changing under other writers for {} s; retry",
            RETRY_FOR.as_secs()
        ),
    )
}

fn over(what: &str, count: usize, limit: usize) -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        ErrorReason::OverNodeCapacity,
        format!(
            "this node holds {limit} {what} and this change needs {count}: remove others first, \
             or load the node with larger sizes (node.sizes)"
        ),
    )
}

/// An etag as the API hands them out: a revision, as text; empty is none.
pub fn parse_etag(etag: &str, field: &str) -> ApiResult<Option<Revision>> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.parse().map(Some).map_err(|_| {
        ApiError::field(
            field,
            format!("{etag:?} is not an etag: send back the `etag` a read returned"),
        )
    })
}

/// A VIP name, checked before it makes a key.
pub fn check_name(name: &str, field: &str) -> ApiResult<()> {
    Keys::new("")
        .expect("the empty prefix")
        .vip_name(&format!("/lb/v1/vips/{name}"))
        .map(drop)
        .map_err(|e| ApiError::field(field, e.reason))
}
