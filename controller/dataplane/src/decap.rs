//! The decap program for backends: load, configure tunnel addresses, the
//! host's VIPs, the balancers' source prefixes and the refusal policy;
//! attach, observe.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use ipnet::IpNet;
use lb_abi::{
    AddrKey,
    decap::{
        DECAP_ADDRS, DECAP_POLICY, DECAP_SOURCES, DECAP_STATS, DECAP_VIP_PROBES, DECAP_VIP_SLOTS,
        DECAP_VIPS, DecapCounter, DecapPolicy, MAX_DECAP_VIPS, MAX_SOURCE_PREFIXES,
        MAX_TUNNEL_ADDRS, REFUSED_DROP, REFUSED_PASS, SourcePrefix, vip_home_slot,
    },
};

use crate::{DataplaneError, attach_xdp, error::map_err, runner::Runner, typed, xdp, xdp_mut};

const PROGRAM: &str = "decap";

/// The compiled decap object, built by `build.rs`.
static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/decap"));

/// What the decap program did, summed over CPUs.
pub type DecapStats = BTreeMap<DecapCounter, u64>;

/// What happens to a tunnel packet the program refuses (inner destination
/// not a VIP of this host, or outer source outside the balancers'
/// prefixes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RefusedPolicy {
    /// Dropped: the default, so the backend relays nothing.
    #[default]
    Drop,
    /// Passed to the kernel stack untouched, for hosts whose own tunnel
    /// devices are meant to see such packets.
    Pass,
}

/// The loaded decap program and its maps. Dropping it detaches the program.
pub struct Decap {
    ebpf: Ebpf,
    addresses: Array<MapData, AddrKey>,
    /// What each slot of `addresses` holds.
    slots: [Option<IpAddr>; MAX_TUNNEL_ADDRS as usize],
    vip_map: Array<MapData, AddrKey>,
    /// What `vip_map` holds: each VIP and its slot.
    vips: BTreeMap<IpAddr, u32>,
    /// Which slots of `vip_map` are taken.
    taken: Vec<bool>,
    sources: Array<MapData, SourcePrefix>,
    policy_map: Array<MapData, DecapPolicy>,
    /// What `policy_map` holds.
    policy: DecapPolicy,
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
            vip_map: typed(&mut ebpf, DECAP_VIPS)?,
            vips: BTreeMap::new(),
            taken: vec![false; DECAP_VIP_SLOTS as usize],
            sources: typed(&mut ebpf, DECAP_SOURCES)?,
            policy_map: typed(&mut ebpf, DECAP_POLICY)?,
            policy: DecapPolicy::default(),
            stats: typed(&mut ebpf, DECAP_STATS)?,
            ebpf,
        })
    }

    /// Strips tunnel packets whose inner destination is `vip` from now on
    /// (at most `lb_abi::decap::MAX_DECAP_VIPS` addresses).
    pub fn add_vip(&mut self, vip: IpAddr) -> Result<(), DataplaneError> {
        if self.vips.contains_key(&vip) {
            return Ok(());
        }
        let full = |free| DataplaneError::Full {
            what: "decap VIP address",
            limit: MAX_DECAP_VIPS,
            needed: 1,
            free,
        };
        if self.vips.len() >= MAX_DECAP_VIPS as usize {
            return Err(full(0));
        }
        let key = AddrKey::new(vip);
        let home = vip_home_slot(&key.addr);
        // At a quarter full, a window with no free slot is vanishingly
        // rare; it is refused rather than moving another address (which a
        // reader could miss mid-move).
        let slot = (0..DECAP_VIP_PROBES)
            .map(|p| (home + p) & (DECAP_VIP_SLOTS - 1))
            .find(|s| !self.taken[*s as usize])
            .ok_or_else(|| full(MAX_DECAP_VIPS - self.vips.len() as u32))?;
        self.vip_map
            .set(slot, &key, 0)
            .map_err(map_err(DECAP_VIPS, "set"))?;
        self.taken[slot as usize] = true;
        self.vips.insert(vip, slot);
        Ok(())
    }

    /// Refuses tunnel packets for `vip` from now on.
    pub fn remove_vip(&mut self, vip: IpAddr) -> Result<(), DataplaneError> {
        let Some(&slot) = self.vips.get(&vip) else {
            return Ok(());
        };
        self.vip_map
            .set(slot, &AddrKey::default(), 0)
            .map_err(map_err(DECAP_VIPS, "clear"))?;
        self.taken[slot as usize] = false;
        self.vips.remove(&vip);
        Ok(())
    }

    /// Makes the host's VIPs exactly `vips`: new ones are added before gone
    /// ones are removed, so a VIP in both sets is never refused; on an error
    /// the VIPs in force are as they were.
    pub fn set_vips(&mut self, vips: &BTreeSet<IpAddr>) -> Result<(), DataplaneError> {
        let free = MAX_DECAP_VIPS as usize - self.vips.len();
        let needed = vips.iter().filter(|v| !self.vips.contains_key(v)).count();
        if needed > free {
            return Err(DataplaneError::Full {
                what: "decap VIP address",
                limit: MAX_DECAP_VIPS,
                needed: needed as u32,
                free: free as u32,
            });
        }
        let mut added = Vec::new();
        for v in vips {
            if self.vips.contains_key(v) {
                continue;
            }
            if let Err(e) = self.add_vip(*v) {
                // All or nothing: the set in force stays as it was.
                for a in added {
                    let _ = self.remove_vip(a);
                }
                return Err(e);
            }
            added.push(*v);
        }
        let gone: Vec<IpAddr> = self
            .vips
            .keys()
            .filter(|v| !vips.contains(v))
            .copied()
            .collect();
        for v in gone {
            self.remove_vip(v)?;
        }
        Ok(())
    }

    /// The host's VIPs as programmed.
    pub fn vips(&self) -> BTreeSet<IpAddr> {
        self.vips.keys().copied().collect()
    }

    /// Strips tunnel packets only from outer sources in `prefixes` (the
    /// balancers' subnets); an empty list accepts any source. At most
    /// `lb_abi::decap::MAX_SOURCE_PREFIXES`.
    pub fn set_lb_sources(&mut self, prefixes: &[IpNet]) -> Result<(), DataplaneError> {
        if prefixes.len() > MAX_SOURCE_PREFIXES as usize {
            return Err(DataplaneError::Full {
                what: "balancer source prefix",
                limit: MAX_SOURCE_PREFIXES,
                needed: prefixes.len() as u32,
                free: MAX_SOURCE_PREFIXES,
            });
        }
        // Emptied: stop checking before the slots are cleared. Otherwise
        // the check stays on while slots change, so a source in neither
        // list is never let through.
        if prefixes.is_empty() {
            self.write_policy(DecapPolicy {
                check_sources: 0,
                ..self.policy
            })?;
        }
        for slot in 0..MAX_SOURCE_PREFIXES {
            let prefix = prefixes
                .get(slot as usize)
                .map(|p| SourcePrefix::new(p.addr(), p.prefix_len()))
                .unwrap_or_default();
            self.sources
                .set(slot, &prefix, 0)
                .map_err(map_err(DECAP_SOURCES, "set"))?;
        }
        self.write_policy(DecapPolicy {
            check_sources: u8::from(!prefixes.is_empty()),
            ..self.policy
        })
    }

    /// What refused tunnel packets get; see [`RefusedPolicy`].
    pub fn set_refused(&mut self, refused: RefusedPolicy) -> Result<(), DataplaneError> {
        self.write_policy(DecapPolicy {
            refused: match refused {
                RefusedPolicy::Drop => REFUSED_DROP,
                RefusedPolicy::Pass => REFUSED_PASS,
            },
            ..self.policy
        })
    }

    fn write_policy(&mut self, policy: DecapPolicy) -> Result<(), DataplaneError> {
        self.policy_map
            .set(0, &policy, 0)
            .map_err(map_err(DECAP_POLICY, "set"))?;
        self.policy = policy;
        Ok(())
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
    /// network namespace) until this value is dropped. Generic mode is
    /// refused while GRO is on, as for the balancer.
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
