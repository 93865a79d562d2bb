//! Errors of the dataplane crate.

use aya::{EbpfError, maps::MapError, programs::ProgramError};
use thiserror::Error;

use crate::config::ConfigError;

/// Why a dataplane operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataplaneError {
    /// The configuration was rejected; nothing was changed.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A batch was refused whole, for every reason listed; nothing was
    /// changed.
    #[error("batch refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<crate::batch::Rejection>),
    /// Loading the eBPF object (maps or verifier) failed.
    #[error("loading the eBPF object")]
    Load(#[source] EbpfError),
    /// A map the programs need is missing from the object.
    #[error("map {map} is missing from the eBPF object or has the wrong type")]
    MissingMap {
        map: &'static str,
        #[source]
        source: Option<MapError>,
    },
    /// A program is missing or failed to load, attach or run.
    #[error("program {program}: {op}")]
    Program {
        program: &'static str,
        op: &'static str,
        #[source]
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("{op} on map {map}")]
    Map {
        map: &'static str,
        op: &'static str,
        #[source]
        source: MapError,
    },
    /// A map's values could not be mapped into memory.
    #[error("mapping {bytes} bytes of map {map} into memory")]
    Mmap {
        map: &'static str,
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
    /// The reader barrier (a grace-period wait) failed.
    #[error("waiting out readers (reader barrier)")]
    Barrier(#[source] std::io::Error),
    /// The kernel's tick length could not be read.
    #[error("reading the kernel's tick length")]
    Clock(#[source] std::io::Error),
    /// A table sized at load time has too few free entries for a batch;
    /// nothing was changed.
    #[error(
        "{what} table is full: the batch needs {needed} new entries, {free} of {limit} are free"
    )]
    Full {
        what: &'static str,
        limit: u32,
        needed: u32,
        free: u32,
    },
    /// A write failed part-way through a batch and taking back the writes
    /// before it failed too: the maps disagree with the bookkeeping until
    /// the state is read back.
    #[error("{error}; undoing the batch failed as well: {}", .undo.join("; "))]
    UndoFailed {
        error: Box<DataplaneError>,
        undo: Vec<String>,
    },
    /// A failure injected by a test (`Programmer::fail_write`).
    #[error("injected failure")]
    Injected,
    /// The maps hold state this programmer cannot adopt.
    #[error("reading the state back from the maps: {0}")]
    ReadBack(String),
    /// The maps of the sizes asked for need more memory than the kernel
    /// has or will give; nothing was loaded.
    #[error(
        "{field} = {entries}: map {map} needs {} MiB, and the kernel {}",
        bytes >> 20,
        match available { Some(a) => format!("has {} MiB available", a >> 20), None => "refused it".to_owned() }
    )]
    TooLarge {
        field: &'static str,
        map: &'static str,
        entries: u32,
        bytes: u64,
        /// Memory available at load time, when the refusal is ours.
        available: Option<u64>,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The number of possible CPUs could not be read.
    #[error("counting possible CPUs")]
    Cpus(#[source] std::io::Error),
    /// The VIP is not programmed.
    #[error("no such VIP")]
    NoSuchVip,
    /// Generic XDP refused: the interface coalesces packets (GRO) before
    /// generic XDP sees them.
    #[error(
        "generic (skb) XDP on {interface} while GRO is on: it would see coalesced packets up to 64 KB and answer them as too big; turn GRO off (`ethtool -K {interface} gro off`) or attach in driver mode"
    )]
    GenericModeWithGro { interface: String },
    /// A network interface could not be resolved.
    #[error("interface {name}")]
    Interface {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn map_err(
    map: &'static str,
    op: &'static str,
) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, op, source }
}
