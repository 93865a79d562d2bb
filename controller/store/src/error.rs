use std::path::PathBuf;

use thiserror::Error;

use crate::Revision;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error(
        "revision {requested} is compacted (history kept from {compacted} on): list again and watch from there"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (the store is at {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("a transaction holds at most {limit} operations, this one {ops}")]
    TooManyOps { ops: usize, limit: usize },
    #[error("a transaction writes {key} twice")]
    DuplicateKey { key: String },
    #[error("a transaction holds at most {limit} bytes, this one {bytes}")]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "{path}: the store is open in another process (another lb-controller?); stop it, or give this one its own --store"
    )]
    Locked { path: PathBuf },
    #[error(
        "{path}: the store file is corrupt ({reason}); it was left as it is: restore it from a backup, or move it aside to start empty"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path}: the store was written by a newer version (format {found}, this one knows {known}); it was left as it is: run the newer lb-controller"
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        known: u64,
    },
    #[error("{path}: {op}: {reason}")]
    Io {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error("the store is closed")]
    Closed,
}
