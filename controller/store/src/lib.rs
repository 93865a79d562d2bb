//! Second stage of the control path: where the desired configuration is
//! kept, behind one contract that etcd and the embedded store both meet.
//!
//! The contract is etcd's, reduced to what a controller uses:
//! - one revision, counting every transaction that changed something, and
//!   per key the revision that created it and the one that last changed it
//!   (`create_revision`, `mod_revision`);
//! - a listing of a prefix at a revision (the current one by default), so
//!   that a watch can start exactly after it;
//! - a watch of a prefix from a revision, its events in revision order and
//!   each with the key's previous value, failing with
//!   [`StoreError::Compacted`] when that revision's history is gone;
//! - transactions of compare-on-`mod_revision` then puts and deletes, with
//!   etcd's default limits ([`MAX_TXN_OPS`], [`MAX_REQUEST_BYTES`]) so a
//!   configuration that fits one store fits the other.
//!
//! [`contract`] (feature `contract`) is the suite every store must pass.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod embedded;
mod error;

use std::future::Future;

pub use embedded::{EmbeddedStore, HISTORY_REVISIONS};
pub use error::StoreError;

/// A store revision; 0 is "never" (a key that does not exist has
/// `mod_revision` 0, as in etcd).
pub type Revision = u64;

/// Most compares, and most writes (puts and deletes), in one transaction:
/// etcd's `--max-txn-ops` default, which bounds each list of a
/// transaction on its own.
pub const MAX_TXN_OPS: usize = 128;
/// Most bytes of keys and values in one transaction: etcd's
/// `--max-request-bytes` default, 1.5 MiB.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// A key's value and its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// Writes since the key was created, 1 for the first.
    pub version: u64,
}

/// A prefix as it stood at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub revision: Revision,
    /// In key order.
    pub kvs: Vec<KeyValue>,
}

/// What happened to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Created or changed; `prev` is the value before, if any.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// Deleted at `revision`; `prev` is the value deleted.
    Delete {
        key: String,
        revision: Revision,
        prev: KeyValue,
    },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// A condition of a transaction: the key's `mod_revision` is `equals`
/// (0: the key does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub mod_revision: Revision,
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Deleting a key that does not exist changes nothing.
    Delete {
        key: String,
    },
}

/// Compares, then writes if every compare holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Checks the limits every store applies: etcd's sizes, and no key
    /// written twice (etcd refuses that too).
    pub fn check_limits(&self) -> Result<(), StoreError> {
        let mut written = std::collections::HashSet::new();
        for op in &self.ops {
            let (Op::Put { key, .. } | Op::Delete { key }) = op;
            if !written.insert(key.as_str()) {
                return Err(StoreError::DuplicateKey { key: key.clone() });
            }
        }
        // As etcd counts: compares and writes each up to the limit.
        let ops = self.compares.len().max(self.ops.len());
        if ops > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps {
                ops,
                limit: MAX_TXN_OPS,
            });
        }
        let bytes: usize = self.compares.iter().map(|c| c.key.len()).sum::<usize>()
            + self
                .ops
                .iter()
                .map(|op| match op {
                    Op::Put { key, value } => key.len() + value.len(),
                    Op::Delete { key } => key.len(),
                })
                .sum::<usize>();
        if bytes > MAX_REQUEST_BYTES {
            return Err(StoreError::TooLarge {
                bytes,
                limit: MAX_REQUEST_BYTES,
            });
        }
        Ok(())
    }
}

/// What a transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held (and so the writes were made).
    pub succeeded: bool,
    /// The store's revision after it: the transaction's own when it wrote
    /// something, else the current one.
    pub revision: Revision,
}

/// A stream of events from a watch, in revision order.
pub struct Watch {
    events: tokio::sync::mpsc::Receiver<Result<Event, StoreError>>,
}

impl Watch {
    pub(crate) fn new(events: tokio::sync::mpsc::Receiver<Result<Event, StoreError>>) -> Self {
        Self { events }
    }

    /// The next event, or the error that ended the watch; `None` once the
    /// store is gone.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.events.recv().await
    }

    /// The next event if one is already here, without waiting: to take a
    /// burst of events into one reconcile.
    pub fn try_next(&mut self) -> Option<Result<Event, StoreError>> {
        self.events.try_recv().ok()
    }
}

/// The store contract.
pub trait Store: Send + Sync {
    /// The current revision.
    fn revision(&self) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Every key under `prefix` at revision `at` (`None`: the current one).
    fn list(
        &self,
        prefix: &str,
        at: Option<Revision>,
    ) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Events under `prefix` from revision `from` on (inclusive).
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> impl Future<Output = Result<Watch, StoreError>> + Send;

    /// Applies `txn` atomically; acknowledged means durable.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnOutcome, StoreError>> + Send;
}
