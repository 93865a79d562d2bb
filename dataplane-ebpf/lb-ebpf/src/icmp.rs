//! ICMP errors about VIP flows.
//!
//! A router on the way from a backend to a client that cannot forward the
//! backend's packet (unreachable, or too big for its link) sends an ICMP
//! error to the packet's source: the VIP, so it lands on a balancer. It must
//! reach the backend that owns the flow, or path-MTU discovery breaks. The
//! error quotes the backend's packet (VIP → client); reversed, that is the
//! client's 5-tuple, which picks the backend exactly as the flow's own
//! packets do: the flow table, else the VIP's ring (without recording a
//! flow). Steered: ICMPv4 destination unreachable (type 3, all codes),
//! ICMPv6 destination unreachable (1) and packet too big (2). ICMPv6
//! neighbour discovery passes to the stack; echo requests and other ICMP
//! get provisional closed-address drops (`crate::closed`): passed to an
//! address with no VIP, dropped at a closed VIP address.

use aya_ebpf::programs::XdpContext;
use lb_abi::{
    AddrKey, FAMILY_V4, PROTO_TCP, PROTO_UDP, flow::FlowKey, stats::GlobalCounter, vip::VipKey,
};
use lb_ebpf::packet::{IPV4_LEN, IPV6_LEN, bytes_at, load};

use crate::{
    encap, maps,
    parse::{self, Headers},
    select, stats,
    verdict::Verdict,
    vip,
};

/// Sends an ICMP error about a VIP flow to the flow's backend.
#[inline(always)]
pub fn forward(ctx: &XdpContext, h: &Headers) -> Result<Verdict, Verdict> {
    let other = Verdict::drop(GlobalCounter::DropClosedProtocol);
    let icmp = bytes_at(ctx, h.l4, 8).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let kind: u8 = load(icmp, 0);
    let (steered, echo) = if h.family == FAMILY_V4 {
        (kind == 3, kind == 8)
    } else {
        // Router/neighbour solicitation and advertisement, redirect.
        if (133..=137).contains(&kind) {
            return Err(Verdict::pass(GlobalCounter::PassOtherProtocol));
        }
        (kind == 1 || kind == 2, kind == 128)
    };
    if echo {
        return Err(Verdict::drop(GlobalCounter::DropClosedEcho));
    }
    if !steered {
        return Err(other);
    }
    let outer_dst = parse::destination(ctx, h.family != FAMILY_V4).ok_or(other)?;
    let Some(flow) = quoted_flow(ctx, h) else {
        return Err(unreadable(h.family, outer_dst));
    };
    // An error about a VIP flow is sent to the VIP.
    if flow.dst != outer_dst {
        return Err(other);
    }
    let vip_key = VipKey::of_flow(&flow);
    vip::prefilter(&vip_key)?;
    let vip = vip::lookup(&vip_key)?;
    vip::check(h)?;
    let chosen = match select::flow_hit(&flow, select::Lookup::IcmpError) {
        Some((chosen, _)) => chosen,
        None => select::from_ring(&flow, &vip)?,
    };
    let (control, fits) = encap::room(&chosen.backend)?;
    // Never answer an ICMP error with another: too big is dropped.
    if h.ip_len > fits {
        return Err(Verdict::drop(GlobalCounter::DropTooBig));
    }
    encap::encapsulate(ctx, h, &flow, &chosen.backend, control)?;
    stats::traffic(vip.vip_index, chosen.backend_id, h.frame_len);
    Ok(Verdict::tx(GlobalCounter::TxIcmpToBackend))
}

/// The client's 5-tuple, from the quoted backend packet (reversed).
#[inline(always)]
fn quoted_flow(ctx: &XdpContext, h: &Headers) -> Option<FlowKey> {
    let quoted = h.l4 + 8;
    let (src, dst, proto, l4) = if h.family == FAMILY_V4 {
        let ip = bytes_at(ctx, quoted, IPV4_LEN)?;
        let ver_ihl: u8 = load(ip, 0);
        let ihl = (ver_ihl & 0x0f) as usize;
        if ver_ihl >> 4 != 4 || ihl < 5 {
            return None;
        }
        // The quoted packet went VIP → client; the flow is client → VIP.
        let src = [load(ip, 16), 0, 0, 0];
        let dst = [load(ip, 12), 0, 0, 0];
        (src, dst, load::<u8>(ip, 9), quoted + ihl * 4)
    } else {
        let ip = bytes_at(ctx, quoted, IPV6_LEN)?;
        if load::<u8>(ip, 0) >> 4 != 6 {
            return None;
        }
        let src = [load(ip, 24), load(ip, 28), load(ip, 32), load(ip, 36)];
        let dst = [load(ip, 8), load(ip, 12), load(ip, 16), load(ip, 20)];
        (src, dst, load::<u8>(ip, 6), quoted + IPV6_LEN)
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let ports = bytes_at(ctx, l4, 4)?;
    Some(FlowKey {
        src,
        dst,
        src_port: load(ports, 2),
        dst_port: load(ports, 0),
        proto,
        family: h.family,
        _pad: [0; 2],
    })
}

/// An error whose quoted packet cannot be read: dropped if it was sent to
/// an address with a VIP (it can only have been about a VIP flow we cannot
/// place), passed otherwise.
//
// The key is built here, off the steered path: LLVM writes its three
// padding bytes with a call to a byte-loop `memset`.
#[inline(always)]
fn unreadable(family: u8, outer_dst: [u32; 4]) -> Verdict {
    let key = AddrKey::from_wire(family, outer_dst);
    // SAFETY: no preallocation; only presence is tested.
    if unsafe { maps::VIP_ADDRS.get(&key) }.is_some() {
        Verdict::drop(GlobalCounter::DropBadIcmp)
    } else {
        Verdict::pass(GlobalCounter::PassOtherProtocol)
    }
}
