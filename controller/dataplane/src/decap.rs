//! The decap program for backends: load, configure tunnel addresses,
//! attach, observe.

use std::{collections::BTreeMap, net::IpAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use lb_abi::{
    AddrKey,
    decap::{DECAP_ADDRS, DECAP_STATS, DecapCounter},
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
    addresses: BpfHashMap<MapData, AddrKey, u32>,
    stats: PerCpuArray<MapData, u64>,
}

impl Decap {
    /// Loads and verifies the program; no tunnel address yet.
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new()
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
            stats: typed(&mut ebpf, DECAP_STATS)?,
            ebpf,
        })
    }

    /// Decapsulates tunnel packets addressed to `address` from now on.
    pub fn add_address(&mut self, address: IpAddr) -> Result<(), DataplaneError> {
        self.addresses
            .insert(&AddrKey::new(address), &1, 0)
            .map_err(map_err(DECAP_ADDRS, "insert"))
    }

    /// Stops decapsulating for `address`.
    pub fn remove_address(&mut self, address: IpAddr) -> Result<(), DataplaneError> {
        self.addresses
            .remove(&AddrKey::new(address))
            .map_err(map_err(DECAP_ADDRS, "remove"))
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
