//! One pass of the control loop from a fresh listing: what a controller
//! does at start and after its watch was compacted away.

use lb_dataplane::{DataplaneError, Programmer};
use lb_store::{Revision, Store, StoreError};
use thiserror::Error;

use crate::reconciler::{Pass, Reconciler};

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
    pub pass: Pass,
}

/// Lists the VIPs, replaces the reconciler's view with them, and applies
/// the difference.
pub async fn sync_once(
    store: &impl Store,
    reconciler: &mut Reconciler,
    programmer: &mut Programmer,
) -> Result<Synced, SyncError> {
    let listing = store
        .list(&reconciler.keys().vips(), None)
        .await
        .map_err(SyncError::List)?;
    reconciler.replace_all(&listing);
    let pass = reconciler.reconcile(programmer).map_err(SyncError::Apply)?;
    Ok(Synced {
        revision: listing.revision,
        pass,
    })
}
