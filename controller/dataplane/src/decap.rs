//! The decap program for backends: load, configure tunnel addresses,
//! attach, observe.

use std::{collections::BTreeMap, net::IpAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use lb_abi::{
    AddrKey,
    decap::{DECAP_ADDRS, DECAP_STATS, DecapCounter, MAX_TUNNEL_ADDRS},
};

use crate::{DataplaneError, attach_xdp, error::map_err, runner::Runner, typed, xdp, xdp_mut};

const PROGRAM: &str = "decap";

/// The compiled decap object, built by `build.rs`.
static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/decap"));

/// What the decap program did, summed over CPUs.
pub type DecapStats = BTreeMap<DecapCounter, u64>;

/// The loaded decap program and its maps. Dropping it detaches the program.
pub struct Decap {
    ebpf: Ebpf,
    addresses: Array<MapData, AddrKey>,
    /// What each slot of `addresses` holds.
    slots: [Option<IpAddr>; MAX_TUNNEL_ADDRS as usize],
    stats: PerCpuArray<MapData, u64>,
}

impl Decap {
    /// Loads and verifies the program; no tunnel address yet.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(false)
    }

    /// Benchmarks only: a program that puts the outer header back after
    /// stripping it, so repeated `BPF_PROG_TEST_RUN` runs of one frame all
    /// decapsulate. Never attach it to a backend.
    pub fn load_for_bench() -> Result<Self, DataplaneError> {
        Self::load_with(true)
    }

    fn load_with(bench_restore: bool) -> Result<Self, DataplaneError> {
        let bench_restore = u8::from(bench_restore);
        let mut ebpf = EbpfLoader::new()
            .override_global("BENCH_RESTORE", &bench_restore, true)
            .load(DECAP_OBJECT)
            .map_err(DataplaneError::Load)?;
        program(&mut ebpf)?
            .load()
            .map_err(|source| DataplaneError::Program {
                program: PROGRAM,
                op: "load",
                source,
            })?;
        Ok(Self {
            addresses: typed(&mut ebpf, DECAP_ADDRS)?,
            slots: [None; MAX_TUNNEL_ADDRS as usize],
            stats: typed(&mut ebpf, DECAP_STATS)?,
            ebpf,
        })
    }

    /// Decapsulates tunnel packets addressed to `address` from now on (at
    /// most `lb_abi::decap::MAX_TUNNEL_ADDRS` addresses).
    pub fn add_address(&mut self, address: IpAddr) -> Result<(), DataplaneError> {
        if self.slots.contains(&Some(address)) {
            return Ok(());
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(DataplaneError::Full {
                what: "tunnel address",
                limit: MAX_TUNNEL_ADDRS,
                needed: 1,
                free: 0,
            })?;
        self.addresses
            .set(slot as u32, &AddrKey::new(address), 0)
            .map_err(map_err(DECAP_ADDRS, "set"))?;
        self.slots[slot] = Some(address);
        Ok(())
    }

    /// Stops decapsulating for `address`.
    pub fn remove_address(&mut self, address: IpAddr) -> Result<(), DataplaneError> {
        let Some(slot) = self.slots.iter().position(|s| *s == Some(address)) else {
            return Ok(());
        };
        self.addresses
            .set(slot as u32, &AddrKey::default(), 0)
            .map_err(map_err(DECAP_ADDRS, "clear"))?;
        self.slots[slot] = None;
        Ok(())
    }

    /// Attaches the program to `interface` (resolved in the calling thread's
    /// network namespace) until this value is dropped.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<(), DataplaneError> {
        attach_xdp(program(&mut self.ebpf)?, PROGRAM, interface, mode)
    }

    /// Runs the program on frames with `BPF_PROG_TEST_RUN`.
    pub fn runner(&self) -> Result<Runner<'_>, DataplaneError> {
        Ok(Runner {
            program: xdp(&self.ebpf, PROGRAM)?,
            name: PROGRAM,
        })
    }

    /// Every counter, summed over CPUs.
    pub fn stats(&self) -> Result<DecapStats, DataplaneError> {
        DecapCounter::ALL
            .iter()
            .map(|&c| {
                let per_cpu = self
                    .stats
                    .get(&(c as u32), 0)
                    .map_err(map_err(DECAP_STATS, "get"))?;
                Ok((c, per_cpu.iter().sum()))
            })
            .collect()
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    xdp_mut(ebpf, PROGRAM)
}
