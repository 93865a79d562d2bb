//! The load balancer's XDP programs (the `balancer` object; backends run
//! `decap`, in src/bin/decap.rs).
//!
//! - `balancer`: packets to a VIP go to a backend chosen by the flow table or
//!   the VIP's Maglev ring, encapsulated IP-in-IP and sent back out with
//!   `XDP_TX`; everything else is passed untouched. The path: `parse` →
//!   `vip::prefilter` (address bitmap) → `select::flow_hit` (non-SYN: this
//!   CPU's flow cache, then the flow table) or `vip::lookup` (this CPU's
//!   VIP cache, then the VIP map) + `select::from_vip` (ring) → MTU check
//!   (`toobig`) → `encap`. ICMP errors about VIP flows take `icmp`.
//!   Traffic to a VIP address that no VIP balances is settled by `closed`.
//! - `pass`: returns `XDP_PASS`. Native XDP on a veth only delivers `XDP_TX`
//!   frames to a peer that has a program attached; this is that program, and
//!   the empty baseline of the benchmarks.
//!
//! The stages return `Result<_, Verdict>`: an `Err` ends processing with an
//! action and the one counter that records it.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target has no atomic read-modify-write types.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod clock;
mod closed;
mod encap;
mod flood;
mod icmp;
mod maps;
mod mss;
mod parse;
mod select;
mod stats;
mod toobig;
mod verdict;
mod vip;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_abi::{
    stats::GlobalCounter,
    vip::{flags, max_mss},
};

use crate::verdict::Verdict;

#[xdp]
// The macro wraps this in the program's entry; without the hint LLVM would
// leave it a BPF-to-BPF call, which costs a call and a return per packet.
#[inline(always)]
pub fn balancer(ctx: XdpContext) -> u32 {
    let verdict = match forward(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::bump(verdict.counter);
    verdict.action
}

#[inline(always)]
fn forward(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    // One copy of the path per family: see `parse::parse`.
    let ethertype = parse::ethertype(ctx)?;
    if ethertype == parse::ETH_P_IP {
        let r = parse::parse(ctx, parse::Family::V4).and_then(|h| forward_ip(ctx, h));
        closed::settle(ctx, false, r)
    } else if ethertype == parse::ETH_P_IPV6 {
        let r = parse::parse(ctx, parse::Family::V6).and_then(|h| forward_ip(ctx, h));
        closed::settle(ctx, true, r)
    } else if ethertype == parse::ETH_P_8021Q || ethertype == parse::ETH_P_8021AD {
        Err(Verdict::pass(GlobalCounter::PassVlanTagged))
    } else {
        Err(Verdict::pass(GlobalCounter::PassNotIp))
    }
}

#[inline(always)]
fn forward_ip(ctx: &XdpContext, headers: parse::Headers) -> Result<Verdict, Verdict> {
    if headers.proto == parse::PROTO_ICMP || headers.proto == parse::PROTO_ICMPV6 {
        return icmp::forward(ctx, &headers);
    }
    let vip_key = parse::vip_key(ctx, &headers)?;
    vip::prefilter(&vip_key)?;
    let (flow, syn) = parse::flow_key(ctx, &headers, &vip_key)?;
    // A SYN starts a new connection: it must not inherit a stale decision
    // from an earlier connection on the same 5-tuple.
    let hit = if syn {
        None
    } else {
        select::flow_hit(&flow, select::Lookup::Traffic)
    };
    // Only a SYN asks for the clamp, and a SYN never takes a hit.
    let (chosen, vip_index, clamp) = match hit {
        Some((chosen, vip_index)) => {
            // A hit skips the VIP lookup, not the checks VIP traffic is
            // held to.
            vip::check(&headers)?;
            (chosen, vip_index, false)
        }
        None => {
            let vip = vip::lookup(&vip_key)?;
            vip::check(&headers)?;
            let clamp = syn && vip.flags & flags::CLAMP_MSS != 0;
            (select::from_vip(&flow, syn, &vip)?, vip.vip_index, clamp)
        }
    };
    let (control, fits) = encap::room(&chosen.backend)?;
    if headers.ip_len > fits {
        return Err(toobig::answer(ctx, &headers, fits));
    }
    if clamp {
        mss::clamp(ctx, &headers, max_mss(fits, headers.l3_len));
    }
    encap::encapsulate(ctx, &headers, &flow, &chosen.backend, control)?;
    stats::traffic(vip_index, chosen.backend_id, headers.frame_len);
    Ok(Verdict::tx(chosen.via))
}

#[xdp]
pub fn pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
