//! `decap`: the XDP program for backends.
//!
//! Strips the balancer's outer header (IPIP, IP6IP6 or 4in6) from packets
//! addressed to one of this host's tunnel addresses and hands the inner
//! packet to the kernel stack, which sees it as if the client had sent it
//! here directly; the backend then answers the client itself (DSR). Only
//! packets for this host's VIPs are stripped (and, when configured, only
//! from the balancers' source prefixes); the rest are refused by policy.
//! The outer ECN mark is carried inward by RFC 6040. All other packets pass
//! untouched. Every packet is counted once; see `lb_abi::decap`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    helpers::generated::bpf_xdp_adjust_head,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_abi::{
    AddrKey, FAMILY_V4, FAMILY_V6,
    decap::{
        DECAP_COUNTERS, DECAP_VIP_PROBES, DECAP_VIP_SLOTS, DecapCounter, DecapPolicy, ECN_DROP,
        MAX_SOURCE_PREFIXES, MAX_TUNNEL_ADDRS, REFUSED_PASS, SourcePrefix, ecn_on_strip,
        vip_home_slot,
    },
};
use lb_ebpf::csum;
use lb_ebpf::packet::{
    ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPV4_LEN, IPV6_LEN, bytes_at, load,
    store,
};

#[btf_map]
static DECAP_ADDRS: Array<AddrKey, { MAX_TUNNEL_ADDRS as usize }> = Array::new();

#[btf_map]
static DECAP_STATS: PerCpuArray<u64, { DECAP_COUNTERS as usize }> = PerCpuArray::new();

#[btf_map]
static DECAP_VIPS: Array<AddrKey, { DECAP_VIP_SLOTS as usize }> = Array::new();

#[btf_map]
static DECAP_SOURCES: Array<SourcePrefix, { MAX_SOURCE_PREFIXES as usize }> = Array::new();

#[btf_map]
static DECAP_POLICY: Array<DecapPolicy, 1> = Array::new();

/// Non-zero only in the benchmark harness: after stripping the outer
/// header, put it back, so `BPF_PROG_TEST_RUN` with `repeat` decapsulates
/// every time. The verifier prunes the branch when zero.
#[unsafe(no_mangle)]
static BENCH_RESTORE: u8 = 0;

#[xdp]
pub fn decap(ctx: XdpContext) -> u32 {
    let counter = match strip(&ctx) {
        Ok(c) | Err(c) => c,
    };
    if let Some(slot) = DECAP_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe { *slot += 1 };
    }
    match counter {
        DecapCounter::RefusedInnerNotVip | DecapCounter::RefusedOuterSource
            if policy().refused != REFUSED_PASS =>
        {
            xdp_action::XDP_DROP
        }
        DecapCounter::DropCeNotEct => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn policy() -> DecapPolicy {
    DECAP_POLICY.get(0).copied().unwrap_or_default()
}

/// The outer header of a tunnel packet to this host.
struct Outer {
    len: usize,
    inner_v6: bool,
    /// The outer ECN codepoint.
    ecn: u8,
    counter: DecapCounter,
}

#[inline(always)]
fn strip(ctx: &XdpContext) -> Result<DecapCounter, DecapCounter> {
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(DecapCounter::PassNotTunnel)?;
    let ethertype: u16 = load(eth, 12);
    let outer = if ethertype == ETH_P_IP {
        outer_v4(ctx)?
    } else if ethertype == ETH_P_IPV6 {
        outer_v6(ctx)?
    } else {
        return Err(DecapCounter::PassNotTunnel);
    };
    // The inner header must be there and of the family the outer names.
    let (inner_len, version) = if outer.inner_v6 {
        (IPV6_LEN, 6)
    } else {
        (IPV4_LEN, 4)
    };
    let inner = bytes_at(ctx, ETH_LEN + outer.len, inner_len).ok_or(DecapCounter::PassMalformed)?;
    if load::<u8>(inner, 0) >> 4 != version {
        return Err(DecapCounter::PassMalformed);
    }
    let inner_dst = if outer.inner_v6 {
        AddrKey::from_wire(
            FAMILY_V6,
            [
                load(inner, 24),
                load(inner, 28),
                load(inner, 32),
                load(inner, 36),
            ],
        )
    } else {
        AddrKey::from_wire(FAMILY_V4, [load(inner, 16), 0, 0, 0])
    };
    if !is_vip(&inner_dst) {
        return Err(DecapCounter::RefusedInnerNotVip);
    }
    let ecn = ecn_on_strip(outer.ecn, inner_ecn(inner, outer.inner_v6));
    if ecn == ECN_DROP {
        return Err(DecapCounter::DropCeNotEct);
    }
    let macs: (u64, u32) = (load(eth, 0), load(eth, 8));
    // SAFETY: a plain read of an initialised static.
    let restore = unsafe { core::ptr::read_volatile(&BENCH_RESTORE) } != 0;
    let saved = if restore {
        Some(save_outer(ctx)?)
    } else {
        None
    };
    // SAFETY: the helper only moves ctx->data; every pointer is re-derived
    // from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer.len as i32) } != 0 {
        return Err(DecapCounter::PassMalformed);
    }
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(DecapCounter::PassMalformed)?;
    store(eth, 0, macs.0);
    store(eth, 8, macs.1);
    store(eth, 12, if outer.inner_v6 { ETH_P_IPV6 } else { ETH_P_IP });
    set_inner_ecn(ctx, outer.inner_v6, ecn)?;
    if let Some(words) = saved {
        restore_outer(ctx, &words, outer.len)?;
    }
    Ok(outer.counter)
}

/// Bytes saved for the bench restore: Ethernet plus the longest outer
/// header, rounded up to whole words.
const SAVED_WORDS: usize = (ETH_LEN + IPV6_LEN).div_ceil(8);

/// Benchmarks only: the frame's first bytes, before stripping.
#[inline(always)]
fn save_outer(ctx: &XdpContext) -> Result<[u64; SAVED_WORDS], DecapCounter> {
    let f = bytes_at(ctx, 0, SAVED_WORDS * 8).ok_or(DecapCounter::PassMalformed)?;
    let mut words = [0u64; SAVED_WORDS];
    let mut i = 0;
    while i < SAVED_WORDS {
        words[i] = load(f, i * 8);
        i += 1;
    }
    Ok(words)
}

/// Benchmarks only: grows the frame back by `outer` bytes and writes the
/// saved bytes over its start. The bytes past the outer header were never
/// changed, so the frame is as it came in.
#[inline(always)]
fn restore_outer(
    ctx: &XdpContext,
    words: &[u64; SAVED_WORDS],
    outer: usize,
) -> Result<(), DecapCounter> {
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer as i32)) } != 0 {
        return Err(DecapCounter::PassMalformed);
    }
    let f = bytes_at(ctx, 0, SAVED_WORDS * 8).ok_or(DecapCounter::PassMalformed)?;
    let mut i = 0;
    while i < SAVED_WORDS {
        store(f, i * 8, words[i]);
        i += 1;
    }
    Ok(())
}

/// The ECN codepoint of an IP header of the given family.
#[inline(always)]
fn inner_ecn(ip: *const u8, v6: bool) -> u8 {
    if v6 {
        (load::<u8>(ip, 1) >> 4) & 3
    } else {
        load::<u8>(ip, 1) & 3
    }
}

/// Writes the stripped packet's ECN field, fixing the IPv4 checksum; a
/// no-op when it is unchanged (the common case: no congestion mark).
#[inline(always)]
fn set_inner_ecn(ctx: &XdpContext, v6: bool, ecn: u8) -> Result<(), DecapCounter> {
    if v6 {
        let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(DecapCounter::PassMalformed)?;
        let b1: u8 = load(ip, 1);
        if (b1 >> 4) & 3 != ecn {
            store(ip, 1, (b1 & !0x30) | (ecn << 4));
        }
    } else {
        let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(DecapCounter::PassMalformed)?;
        let old: u16 = load(ip, 0);
        let tos: u8 = load(ip, 1);
        if tos & 3 != ecn {
            store(ip, 1, (tos & !3) | ecn);
            let new: u16 = load(ip, 0);
            store(ip, 10, csum::replace16(load(ip, 10), old, new));
        }
    }
    Ok(())
}

/// Whether the outer source is one of the balancers', when the policy
/// asks.
#[inline(always)]
fn source_allowed(family: u8, src: &[u32; 4]) -> bool {
    if policy().check_sources == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_SOURCE_PREFIXES {
        if let Some(p) = DECAP_SOURCES.get(i)
            && p.contains(family, src)
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `dst` is one of this host's VIPs: somewhere in its probe
/// window (see `lb_abi::decap`).
#[inline(always)]
fn is_vip(dst: &AddrKey) -> bool {
    let home = vip_home_slot(&dst.addr);
    let mut p = 0;
    while p < DECAP_VIP_PROBES {
        if let Some(slot) = DECAP_VIPS.get((home + p) & (DECAP_VIP_SLOTS - 1))
            && slot.family == dst.family
            && slot.addr == dst.addr
        {
            return true;
        }
        p += 1;
    }
    false
}

/// Whether `dst` is one of this host's tunnel addresses.
#[inline(always)]
fn is_local(dst: &AddrKey) -> bool {
    let mut i = 0;
    while i < MAX_TUNNEL_ADDRS {
        if let Some(slot) = DECAP_ADDRS.get(i)
            && slot.family == dst.family
            && slot.addr == dst.addr
        {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn outer_v4(ctx: &XdpContext) -> Result<Outer, DecapCounter> {
    let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(DecapCounter::PassNotTunnel)?;
    let proto: u8 = load(ip, 9);
    if proto != IPPROTO_IPIP {
        return Err(DecapCounter::PassNotTunnel);
    }
    let dst = AddrKey::from_wire(FAMILY_V4, [load(ip, 16), 0, 0, 0]);
    if !is_local(&dst) {
        return Err(DecapCounter::PassNotLocal);
    }
    if u16::from_be(load(ip, 6)) & 0x3fff != 0 {
        return Err(DecapCounter::PassFragment);
    }
    if load::<u8>(ip, 0) != 0x45 {
        return Err(DecapCounter::PassMalformed);
    }
    if !source_allowed(FAMILY_V4, &[load(ip, 12), 0, 0, 0]) {
        return Err(DecapCounter::RefusedOuterSource);
    }
    Ok(Outer {
        len: IPV4_LEN,
        inner_v6: false,
        ecn: load::<u8>(ip, 1) & 3,
        counter: DecapCounter::DecapIpip,
    })
}

#[inline(always)]
fn outer_v6(ctx: &XdpContext) -> Result<Outer, DecapCounter> {
    let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(DecapCounter::PassNotTunnel)?;
    let next: u8 = load(ip, 6);
    let (inner_v6, counter) = if next == IPPROTO_IPV6 {
        (true, DecapCounter::DecapIp6ip6)
    } else if next == IPPROTO_IPIP {
        (false, DecapCounter::Decap4in6)
    } else {
        return Err(DecapCounter::PassNotTunnel);
    };
    let dst = AddrKey::from_wire(
        FAMILY_V6,
        [load(ip, 24), load(ip, 28), load(ip, 32), load(ip, 36)],
    );
    if !is_local(&dst) {
        return Err(DecapCounter::PassNotLocal);
    }
    let src = [load(ip, 8), load(ip, 12), load(ip, 16), load(ip, 20)];
    if !source_allowed(FAMILY_V6, &src) {
        return Err(DecapCounter::RefusedOuterSource);
    }
    Ok(Outer {
        len: IPV6_LEN,
        inner_v6,
        ecn: (load::<u8>(ip, 1) >> 4) & 3,
        counter,
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
