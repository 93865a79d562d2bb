//! VIP lookup, and the checks only VIP traffic is held to.

use lb_abi::{
    filter::filter_bit,
    stats::GlobalCounter,
    vip::{LiveVip, VipKey, VipState},
    vip_cache::{same_vip, vip_cache_index},
};

use crate::{
    maps::{VIP_CACHE, VIP_CACHE_EPOCH, VIP_FILTER, VIP_STATE, VIPS, caches_enabled},
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

/// The VIP the packet is addressed to, or a closed-port drop for
/// `crate::closed` to settle: the exact (address, port,
/// protocol), else the address's all-ports VIP (port 0) for the protocol.
/// Its index comes from this CPU's VIP cache when it holds a copy taken
/// under the current epoch (see `lb_abi::vip_cache`), else from the map;
/// its state always from `VIP_STATE`.
#[inline(always)]
pub fn lookup(key: &VipKey) -> Result<LiveVip, Verdict> {
    if caches_enabled() {
        cached_lookup(key)
    } else {
        map_lookup(key)
    }
}

/// The filter let the address through, but no VIP serves the port: a
/// closed-address drop, unless the filter erred (`crate::closed`).
#[inline(always)]
fn not_vip() -> Verdict {
    Verdict::drop(GlobalCounter::DropClosedPort)
}

/// [`lookup`] through the VIP map.
#[inline(always)]
fn map_lookup(key: &VipKey) -> Result<LiveVip, Verdict> {
    let index = map_index(key);
    // `NO_INDEX` finds no entry.
    let state = VIP_STATE.get_ptr(index).ok_or(not_vip())?;
    // SAFETY: an entry of an array that lives as long as the program. The
    // word first, in one aligned load: userspace rewrites an index's key
    // only after a reader barrier, and before the word that goes with it
    // (`lb_abi::vip`), so a key read after a word is that word's VIP's.
    let word = unsafe { core::ptr::read_volatile(&(*state).word) };
    let owner = unsafe { &(*state).key };
    // The index may have come from a map element recycled for another VIP
    // while we read it: the key says whose it is.
    let asked = if owner.port == 0 {
        VipKey { port: 0, ..*key }
    } else {
        *key
    };
    if !same_vip(owner, &asked) {
        return Err(not_vip());
    }
    unpack(index, state, word)
}

/// The VIP at `index` whose state is at `state` and whose word was read
/// as `word`; pass for a word that names no VIP.
#[inline(always)]
fn unpack(index: u32, state: *const VipState, word: u64) -> Result<LiveVip, Verdict> {
    // SAFETY: as in `map_lookup`; a u32 written whole.
    let generation = unsafe { (*state).generation };
    VipState::unpack(index, word, generation).ok_or(not_vip())
}

/// [`lookup`] through this CPU's VIP cache, filling it on a miss. A copy
/// holds an index whose key [`map_lookup`] checked, under an epoch read
/// before: the index changes owner only after its VIP's removal, which
/// bumps the epoch, so a current copy needs no second check.
#[inline(always)]
fn cached_lookup(key: &VipKey) -> Result<LiveVip, Verdict> {
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
        let index = slot.vip_index;
        let state = VIP_STATE.get_ptr(index).ok_or(not_vip())?;
        // SAFETY: as in `map_lookup`.
        let word = unsafe { core::ptr::read_volatile(&(*state).word) };
        return unpack(index, state, word);
    }
    let live = map_lookup(key)?;
    // Field by field: a whole-struct write compiles to a call to a
    // byte-loop `memcpy` for the key.
    slot.key = *key;
    slot.vip_index = live.vip_index;
    slot.epoch = epoch;
    Ok(live)
}

/// The index of no VIP. (An `Option<u32>` would leave its payload
/// undefined on `None`, and the verifier refuses reading it.)
const NO_INDEX: u32 = u32::MAX;

/// The VIP index of `key` in the VIP map itself, or [`NO_INDEX`].
#[inline(always)]
fn map_index(key: &VipKey) -> u32 {
    // SAFETY (both lookups): a u32 read whole at once; which VIP it belongs
    // to is checked against `VIP_STATE` (`map_lookup`).
    if let Some(index) = unsafe { VIPS.get(key) } {
        return *index;
    }
    let all_ports = VipKey { port: 0, ..*key };
    match unsafe { VIPS.get(&all_ports) } {
        Some(index) => *index,
        None => NO_INDEX,
    }
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
