//! VIP lookup, and the checks only VIP traffic is held to.

use lb_abi::{
    filter::filter_bit,
    stats::GlobalCounter,
    vip::{VipKey, VipValue},
    vip_cache::{same_vip, vip_cache_index},
};

use crate::{
    maps::{VIP_CACHE, VIP_CACHE_EPOCH, VIP_FILTER, VIPS, caches_enabled},
    parse::{ETH_LEN, Headers, l4_min_len},
    verdict::Verdict,
};

/// Passes traffic to addresses that have no VIP. Most traffic through a
/// node is not for a VIP: an inlined array load settles it without hashing
/// a key.
#[inline(always)]
pub fn prefilter(key: &VipKey) -> Result<(), Verdict> {
    let (word, mask) = filter_bit(&key.addr);
    let bits = VIP_FILTER.get(word).copied().unwrap_or(0);
    if bits & mask == 0 {
        return Err(Verdict::pass(GlobalCounter::PassNotVip));
    }
    Ok(())
}

/// The VIP the packet is addressed to, or pass: the exact (address, port,
/// protocol), else the address's all-ports VIP (port 0) for the protocol.
/// Answered from this CPU's VIP cache when it holds a copy taken under the
/// current epoch (see `lb_abi::vip_cache`).
#[inline(always)]
pub fn lookup(key: &VipKey) -> Result<VipValue, Verdict> {
    if !caches_enabled() {
        return map_lookup(key);
    }
    let Some(epoch) = VIP_CACHE_EPOCH.get_ptr(0) else {
        return map_lookup(key);
    };
    // SAFETY: an aligned u64 that userspace rewrites whole. Read before the
    // map: a copy of what the map gave is then never newer than its epoch.
    let epoch = unsafe { core::ptr::read_volatile(epoch) };
    let Some(slot) = VIP_CACHE.get_ptr_mut(vip_cache_index(key)) else {
        return map_lookup(key);
    };
    // SAFETY: this CPU's slot; only this CPU's programs touch it, one at a
    // time.
    let slot = unsafe { &mut *slot };
    if slot.epoch == epoch && same_vip(&slot.key, key) {
        return Ok(slot.value);
    }
    let value = map_lookup(key)?;
    // Field by field: a whole-struct write compiles to a call to a
    // byte-loop `memcpy` for the key.
    slot.key = *key;
    slot.value = value;
    slot.epoch = epoch;
    Ok(value)
}

/// [`lookup`] in the VIP map itself.
#[inline(always)]
fn map_lookup(key: &VipKey) -> Result<VipValue, Verdict> {
    // SAFETY (both lookups): VIPS has no preallocation, so the element we
    // read stays intact for the whole program run even if userspace
    // replaces it meanwhile; we copy it out at once.
    if let Some(value) = unsafe { VIPS.get(key) } {
        return Ok(*value);
    }
    let all_ports = VipKey { port: 0, ..*key };
    let value = unsafe { VIPS.get(&all_ports) };
    value
        .copied()
        .ok_or(Verdict::pass(GlobalCounter::PassNotVip))
}

/// Drops VIP traffic we will not forward: IPv4 options, fragments, and IP
/// lengths that disagree with the frame (a backend would get garbage).
#[inline(always)]
pub fn check(h: &Headers) -> Result<(), Verdict> {
    if h.has_options() {
        return Err(Verdict::drop(GlobalCounter::DropIpv4Options));
    }
    if h.is_fragment() {
        return Err(Verdict::drop(GlobalCounter::DropFragment));
    }
    if h.ip_len < h.l3_len + l4_min_len(h.proto) || h.ip_len + ETH_LEN as u32 > h.frame_len {
        return Err(Verdict::drop(GlobalCounter::DropBadLength));
    }
    Ok(())
}
