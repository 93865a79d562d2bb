//! One pass of the control loop: list the store, decide, write the
//! difference. The watch-driven loop and the status it feeds build on it.

use std::collections::HashMap;

use lb_config::{Keys, Vip};
use lb_dataplane::{DataplaneError, Programmer};
use lb_reconcile::{Admitted, Desired, Limits, Plan, StoredKey, desired, plan};
use lb_store::{Revision, Store, StoreError};
use thiserror::Error;

use crate::apply;

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("listing the store: {0}")]
    List(#[source] StoreError),
    #[error("programming the dataplane: {0}")]
    Apply(#[source] DataplaneError),
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct Synced {
    /// The store revision the pass listed: every change up to it is in
    /// the maps.
    pub revision: Revision,
    pub desired: Desired,
    pub plan: Plan,
}

/// The state a node keeps between passes: the last good version of every
/// admitted key.
#[derive(Clone, Debug, Default)]
pub struct LastGood(HashMap<String, Admitted>);

/// Lists the VIPs under `keys`, decides what this node programs, and
/// applies the difference in one batch. With nothing to change it writes
/// nothing.
pub async fn sync_once(
    store: &impl Store,
    keys: &Keys,
    programmer: &mut Programmer,
    limits: Limits,
    last_good: &mut LastGood,
) -> Result<Synced, SyncError> {
    let listing = store
        .list(&keys.vips(), None)
        .await
        .map_err(SyncError::List)?;
    let stored: Vec<StoredKey> = listing
        .kvs
        .iter()
        .map(|kv| StoredKey {
            key: kv.key.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            vip: Vip::decode(keys, &kv.key, &kv.value),
        })
        .collect();
    let desired = desired(&stored, limits, &last_good.0);
    let plan = plan(&desired, &apply::programmed(&programmer.snapshot()));
    if !plan.is_empty() {
        programmer
            .apply(&apply::batch(&plan))
            .map_err(SyncError::Apply)?;
    }
    last_good.0 = desired
        .vips
        .values()
        .map(|a| (a.key.clone(), a.clone()))
        .collect();
    Ok(Synced {
        revision: listing.revision,
        desired,
        plan,
    })
}
