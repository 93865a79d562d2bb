//! The userspace side of the XDP dataplane: load, attach, program, observe.
//!
//! - [`Dataplane::load`] loads the embedded eBPF object with the sizes of
//!   [`LoadOptions`] and hands out the [`Programmer`], the only writer of the
//!   maps.
//! - [`Programmer::apply`] takes a [`Batch`] of node settings, VIP upserts
//!   and removals, refused whole if any of it is invalid, and changes each
//!   VIP so that every packet sees its whole old state or its whole new
//!   state (see [`programmer`] for how); [`Programmer::upsert_vip`] and
//!   [`Programmer::remove_vip`] are batches of one.
//! - [`Programmer::state`] mirrors what the maps hold for `lb_model`, which
//!   answers "which backend gets this flow" without the kernel;
//!   [`Programmer::read_back`] rebuilds a programmer from the maps alone.
//! - [`Programmer::stats`] sums the per-CPU counters.
//! - [`Dataplane::attach`] puts a program on an interface; [`Runner`] runs
//!   one on a frame with `BPF_PROG_TEST_RUN`.
//!
//! # Example
//! ```no_run
//! use lb_dataplane::{Dataplane, LoadOptions, NodeConfig, Protocol, VipConfig, BackendConfig};
//!
//! let mut dp = Dataplane::load(&LoadOptions::default())?;
//! dp.programmer().set_node(&NodeConfig::default())?;
//! dp.programmer().upsert_vip(&VipConfig {
//!     address: "10.0.0.100".parse().unwrap(),
//!     port: 80,
//!     protocol: Protocol::Tcp,
//!     flags: 0,
//!     new_flows_per_cpu_per_sec: None,
//!     backends: vec![BackendConfig { address: "10.1.0.1".parse().unwrap(), weight: 1 }],
//!     revision: 0,
//! })?;
//! dp.attach(lb_dataplane::ProgramKind::Balancer, "eth0", aya::programs::XdpMode::Driver)?;
//! # Ok::<(), lb_dataplane::DataplaneError>(())
//! ```

mod barrier;
mod batch;
mod book;
mod clock;
pub mod config;
mod decap;
mod error;
mod ids;
mod maps;
mod mmap;
mod offloads;
mod options;
mod plan;
pub mod programmer;
mod read_back;
mod runner;
mod stats;
mod write;

use std::ffi::CString;

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{ProgramError, Xdp, XdpMode},
};
use lb_abi::{
    backend::BACKENDS,
    clock::TICK_NS,
    filter::VIP_ADDRS,
    flood::{FLOOD, FLOOD_LIMITS, FLOOD_THRESHOLD},
    flow::{FLOW_TABLE_PER_CPU_LRU, UDP_FLOW_TIMEOUT_NS},
    flow_cache::{
        CACHES_ENABLED, FLOW_CACHE, FLOW_CACHE_EPOCHS, FLOW_CACHE_GATED, FLOW_CACHE_SLOTS,
        TCP_REFRESH_NS,
    },
    reply_limit::{REPLY_COST_NS, reply_cost_ns},
    ring::{RING_SIZE, RINGS},
    stats::{BACKEND_STATS, VIP_STATS},
    vip::{VIP_GENERATIONS, VIP_STATE, VIPS},
    writer::MEMBERS,
};

use crate::maps::Maps;
pub use crate::{
    batch::{Batch, Rejection, describe},
    config::{AttachMode, BackendConfig, ConfigError, NodeConfig, Protocol, VipConfig},
    decap::{Decap, DecapStats, RefusedPolicy},
    error::DataplaneError,
    options::{FlowTableLru, LoadOptions, MapMemory},
    programmer::{Fill, Observer, Programmer, Usage},
    runner::{RunResult, Runner},
    stats::{Applied, Stats, StatsReader},
};

/// The compiled balancer object, built by `build.rs`.
static BALANCER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer"));

/// The XDP programs in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// The load balancer.
    Balancer,
    /// `XDP_PASS` only: lets native-mode `XDP_TX` frames reach a veth peer,
    /// and is the empty baseline of the benchmarks.
    Pass,
}

impl ProgramKind {
    const fn name(self) -> &'static str {
        match self {
            ProgramKind::Balancer => "balancer",
            ProgramKind::Pass => "pass",
        }
    }
}

/// The loaded dataplane: programs (verified and loaded, attached on
/// request) and the programmer of their maps. Dropping it detaches the
/// programs and frees the maps.
pub struct Dataplane {
    ebpf: Ebpf,
    programmer: Programmer,
}

impl Dataplane {
    /// Loads and verifies the programs with the given sizes.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        Self::load_object(BALANCER_OBJECT, options)
    }

    /// [`Dataplane::load`] with a balancer object other than the one built
    /// into this crate: another build of it, to time side by side with
    /// this one (the `xdp_ab` bench). The object must declare every map
    /// and global this crate programs; one built before a map was added
    /// fails to load, naming it.
    pub fn load_object(object: &[u8], options: &LoadOptions) -> Result<Self, DataplaneError> {
        options.validate()?;
        let memory = options.memory(possible_cpus()?);
        check_memory(&memory)?;
        let bench_restore = u8::from(options.bench_restore);
        let caches = u8::from(options.per_cpu_caches);
        let gated = u8::from(options.flow_cache_gate);
        let udp_timeout_ns = options.udp_flow_timeout.as_nanos() as u64;
        let cache_slots = options.allocated_flow_cache_slots();
        let tick_ns = clock::tick_ns().map_err(DataplaneError::Clock)?;
        let (flows_in_use, flows_unused) = options.flow_table_lru.maps();
        let per_cpu_lru = u8::from(options.flow_table_lru == FlowTableLru::PerCpu);
        let mut ebpf = EbpfLoader::new()
            .override_global(RING_SIZE, &options.ring_size, true)
            .override_global("BENCH_RESTORE", &bench_restore, true)
            .override_global("READER_PAUSE_TURNS", &options.reader_pause_turns(), true)
            .override_global(CACHES_ENABLED, &caches, true)
            .override_global(FLOW_CACHE_SLOTS, &cache_slots, true)
            .override_global(FLOW_CACHE_GATED, &gated, true)
            .override_global(FLOOD_THRESHOLD, &options.new_flows_per_cpu_per_sec, true)
            .override_global(UDP_FLOW_TIMEOUT_NS, &udp_timeout_ns, true)
            .override_global(
                REPLY_COST_NS,
                &reply_cost_ns(options.too_big_replies_per_cpu_per_sec),
                true,
            )
            .override_global(
                TCP_REFRESH_NS,
                &(options.tcp_flow_refresh.as_nanos() as u64),
                true,
            )
            .override_global(TICK_NS, &tick_ns, true)
            .override_global(FLOW_TABLE_PER_CPU_LRU, &per_cpu_lru, true)
            .map_max_entries(VIPS, options.max_vips)
            .map_max_entries(VIP_STATE, options.max_vips)
            .map_max_entries(MEMBERS, options.max_backends)
            .map_max_entries(VIP_STATS, options.max_vips)
            .map_max_entries(VIP_GENERATIONS, options.max_vips)
            .map_max_entries(VIP_ADDRS, options.max_vips)
            .map_max_entries(FLOOD, options.max_vips)
            .map_max_entries(FLOOD_LIMITS, options.max_vips)
            .map_max_entries(BACKENDS, options.max_backends)
            .map_max_entries(BACKEND_STATS, options.max_backends)
            .map_max_entries(flows_in_use, options.flow_table_entries)
            // One entry per CPU is the least a per-CPU LRU takes.
            .map_max_entries(flows_unused, possible_cpus()?)
            .map_max_entries(FLOW_CACHE, cache_slots)
            .map_max_entries(FLOW_CACHE_EPOCHS, cache_slots)
            .map_max_entries(RINGS, options.ring_pairs())
            .load(object)
            .map_err(|e| refused_map(e, &memory))?;
        for kind in [ProgramKind::Balancer, ProgramKind::Pass] {
            let program = xdp_mut(&mut ebpf, kind.name())?;
            program.load().map_err(|source| DataplaneError::Program {
                program: kind.name(),
                op: "load",
                source,
            })?;
        }
        let maps = Maps::open(flows_in_use, |name| {
            ebpf.take_map(name).ok_or(DataplaneError::MissingMap {
                map: name,
                source: None,
            })
        })?;
        let programmer = Programmer::fresh(maps, options)?;
        Ok(Self { ebpf, programmer })
    }

    /// The writer of the maps.
    pub fn programmer(&mut self) -> &mut Programmer {
        &mut self.programmer
    }

    /// Runs `kind` on frames with `BPF_PROG_TEST_RUN`.
    pub fn runner(&self, kind: ProgramKind) -> Result<Runner<'_>, DataplaneError> {
        Ok(Runner {
            program: xdp(&self.ebpf, kind.name())?,
            name: kind.name(),
        })
    }

    /// A runner and the programmer at once, for driving both from two
    /// threads.
    pub fn split(
        &mut self,
        kind: ProgramKind,
    ) -> Result<(Runner<'_>, &mut Programmer), DataplaneError> {
        let program = xdp(&self.ebpf, kind.name())?;
        Ok((
            Runner {
                program,
                name: kind.name(),
            },
            &mut self.programmer,
        ))
    }

    /// Attaches `kind` to `interface` (resolved in the calling thread's
    /// network namespace). It stays attached until the dataplane is dropped.
    /// Generic mode is refused while GRO is on for the interface
    /// ([`DataplaneError::GenericModeWithGro`]: it would see coalesced
    /// packets); on a veth, whose peer's segmentation offloads reach it
    /// whole, also turn the peer's TSO and GSO off, or use driver mode,
    /// which turns them off itself.
    pub fn attach(
        &mut self,
        kind: ProgramKind,
        interface: &str,
        mode: XdpMode,
    ) -> Result<(), DataplaneError> {
        attach_xdp(
            xdp_mut(&mut self.ebpf, kind.name())?,
            kind.name(),
            interface,
            mode,
        )
    }
}

fn possible_cpus() -> Result<u32, DataplaneError> {
    aya::util::nr_cpus()
        .map(|n| n.get())
        .map_err(|(_, e)| DataplaneError::Cpus(e))
}

/// Refuses sizes whose maps together need more memory than is available,
/// before the kernel is asked: naming the largest map and what sizes it.
fn check_memory(memory: &[options::MapMemory]) -> Result<(), DataplaneError> {
    let Some(available) = mem_available() else {
        return Ok(());
    };
    let total: u64 = memory.iter().map(|m| m.bytes).sum();
    if total <= available {
        return Ok(());
    }
    let largest = &memory[0];
    Err(DataplaneError::TooLarge {
        field: largest.field,
        map: largest.map,
        entries: largest.entries,
        bytes: total,
        available: Some(available),
        source: None,
    })
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A load failure, as [`DataplaneError::TooLarge`] when the kernel refused
/// to create one of the sized maps for want of memory or size.
fn refused_map(error: aya::EbpfError, memory: &[options::MapMemory]) -> DataplaneError {
    if let aya::EbpfError::MapError(aya::maps::MapError::CreateError { name, io_error }) = &error
        && matches!(io_error.raw_os_error(), Some(libc::ENOMEM | libc::E2BIG))
        && let Some(m) = memory.iter().find(|m| m.map == name)
    {
        return DataplaneError::TooLarge {
            field: m.field,
            map: m.map,
            entries: m.entries,
            bytes: m.bytes,
            available: None,
            source: Some(std::io::Error::from_raw_os_error(
                io_error.raw_os_error().unwrap_or(0),
            )),
        };
    }
    DataplaneError::Load(error)
}

/// Attaches `program` to `interface`, resolved in the calling thread's
/// network namespace.
pub(crate) fn attach_xdp(
    program: &mut Xdp,
    name: &'static str,
    interface: &str,
    mode: XdpMode,
) -> Result<(), DataplaneError> {
    let interface_error = |source| DataplaneError::Interface {
        name: interface.to_owned(),
        source,
    };
    let c_name = CString::new(interface)
        .map_err(|e| interface_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: `c_name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(interface_error(std::io::Error::last_os_error()));
    }
    if mode == XdpMode::Skb && offloads::gro_enabled(interface).map_err(interface_error)? {
        return Err(DataplaneError::GenericModeWithGro {
            interface: interface.to_owned(),
        });
    }
    program
        .attach(index, mode)
        .map_err(|source| DataplaneError::Program {
            program: name,
            op: "attach",
            source,
        })?;
    Ok(())
}

fn not_found(name: &'static str) -> impl Fn(ProgramError) -> DataplaneError {
    move |source| DataplaneError::Program {
        program: name,
        op: "find",
        source,
    }
}

pub(crate) fn xdp<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp, DataplaneError> {
    ebpf.program(name)
        .ok_or(ProgramError::NotLoaded)
        .and_then(TryInto::try_into)
        .map_err(not_found(name))
}

pub(crate) fn xdp_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(ProgramError::NotLoaded)
        .and_then(TryInto::try_into)
        .map_err(not_found(name))
}

pub(crate) fn typed<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DataplaneError::MissingMap {
        map: name,
        source: None,
    })?;
    T::try_from(map).map_err(|e| DataplaneError::MissingMap {
        map: name,
        source: Some(e),
    })
}
