//! VIP lookup, and the checks only VIP traffic is held to.

use lb_abi::{
    stats::GlobalCounter,
    vip::{VipKey, VipValue},
};

use crate::{
    maps::VIPS,
    parse::{ETH_LEN, Packet, l4_min_len},
    verdict::Verdict,
};

/// The VIP the packet is addressed to, or pass.
#[inline(always)]
pub fn lookup(pkt: &Packet) -> Result<VipValue, Verdict> {
    let key = VipKey {
        addr: pkt.key.dst,
        port: pkt.key.dst_port,
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    // SAFETY: VIPS has no preallocation, so the element we read stays intact
    // for the whole program run even if userspace replaces it meanwhile; we
    // copy it out at once.
    let value = unsafe { VIPS.get(&key) };
    value
        .copied()
        .ok_or(Verdict::pass(GlobalCounter::PassNotVip))
}

/// Drops VIP traffic we will not forward: IPv4 options, fragments, and IP
/// lengths that disagree with the frame (a backend would get garbage).
#[inline(always)]
pub fn check(pkt: &Packet) -> Result<(), Verdict> {
    if pkt.has_options {
        return Err(Verdict::drop(GlobalCounter::DropIpv4Options));
    }
    if pkt.is_fragment {
        return Err(Verdict::drop(GlobalCounter::DropFragment));
    }
    if pkt.ip_len < pkt.l3_len + l4_min_len(pkt.key.proto)
        || pkt.ip_len + ETH_LEN as u32 > pkt.frame_len
    {
        return Err(Verdict::drop(GlobalCounter::DropBadLength));
    }
    Ok(())
}
