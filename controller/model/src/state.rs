//! The programmed state the model runs on: what the maps hold.

use std::{collections::HashMap, sync::Arc};

use lb_abi::{backend::Backend, control::Control, filter::address, flow::FlowKey, vip::VipKey};

/// One VIP as the maps describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipEntry {
    pub vip_index: u32,
    pub flags: u32,
    /// The VIP's flow-table generation, recorded in the flows it places.
    pub generation: u32,
    /// The ring slot the VIP points at (`NO_RING` when none).
    pub ring_slot: u32,
    /// The ring's backend ids, `ring_size` of them.
    pub ring: Option<Arc<[u32]>>,
}

/// Everything userspace programs into the balancer's maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneState {
    pub control: Control,
    pub ring_size: u32,
    pub vips: HashMap<VipKey, VipEntry>,
    /// The VIP generation map by stats index: the generation whose flows are
    /// live (absent or 0: none).
    pub vip_generations: HashMap<u32, u32>,
    /// Backend table by id; absent ids read as empty.
    pub backends: HashMap<u32, Backend>,
}

impl DataplaneState {
    /// The VIP a packet with 5-tuple `key` belongs to: the exact (address,
    /// port, protocol), else the address's all-ports VIP (port 0).
    pub fn vip_for(&self, key: &FlowKey) -> Option<&VipEntry> {
        let exact = VipKey::of_flow(key);
        self.vips
            .get(&exact)
            .or_else(|| self.vips.get(&VipKey { port: 0, ..exact }))
    }

    /// What the address's VIPs ask of traffic to it that none balances
    /// (`lb_abi::filter::address` bits, OR-ed), or `None` with no VIP on it.
    pub fn address_bits(&self, family: u8, addr: [u32; 4]) -> Option<u32> {
        self.vips
            .iter()
            .filter(|(k, _)| k.family == family && k.addr == addr)
            .map(|(_, v)| address::from_vip_flags(v.flags))
            .reduce(|a, b| a | b)
    }
}
