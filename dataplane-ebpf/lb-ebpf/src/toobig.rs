//! Packets too big for the MTU once encapsulated.
//!
//! The balancer does not fragment. An IPv4 packet with DF set is answered
//! with ICMP destination-unreachable / fragmentation-needed, an IPv6 packet
//! with ICMPv6 packet-too-big, both carrying the MTU the client may use (the
//! configured MTU less the outer header) and sent back where the packet came
//! from with `XDP_TX`; the client lowers its path MTU and resends. An IPv4
//! packet without DF is dropped and counted.
//!
//! The reply quotes the packet's IP header and the first 8 bytes after it:
//! all RFC 792 asks for, and for ICMPv6 less than RFC 4443's "as much as
//! fits in 1280 bytes" allows, but enough for the client to match its
//! socket, and it keeps the reply to a fixed size the verifier can follow.
//! The reply's source is the VIP the packet was sent to.
//!
//! Some senders are never answered (the packet is dropped and counted):
//! sources that are not one host (multicast, broadcast, reserved,
//! unspecified) or are this host's own (loopback), and frames sent to a
//! group MAC, whose reply would carry that MAC as its source. The rest are
//! answered at most at the rate `lb_abi::reply_limit` allows per CPU.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_abi::{FAMILY_V4, stats::GlobalCounter};
use lb_ebpf::packet::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, IPV6_LEN, bytes_at, load, store};

use crate::{
    maps::{REPLY_BUCKET, reply_cost_ns},
    parse::Headers,
    verdict::Verdict,
};

/// ICMP header plus the quoted IPv4 header and 8 bytes.
const ICMP4_LEN: usize = 8 + IPV4_LEN + 8;
/// ICMPv6 header plus the quoted IPv6 header and 8 bytes.
const ICMP6_LEN: usize = 8 + IPV6_LEN + 8;
const REPLY_TTL: u8 = 64;

/// Answers (or drops) a packet whose encapsulation would exceed the MTU;
/// `mtu` is the size the client's packets must fit in.
#[inline(always)]
pub fn answer(ctx: &XdpContext, h: &Headers, mtu: u32) -> Verdict {
    if h.family == FAMILY_V4 && !h.dont_fragment() {
        return Verdict::drop(GlobalCounter::DropTooBig);
    }
    let built = if h.family == FAMILY_V4 {
        reply_v4(ctx, mtu)
    } else {
        reply_v6(ctx, mtu)
    };
    match built {
        Ok(()) => Verdict::tx(GlobalCounter::TxIcmpTooBig),
        Err(counter) => Verdict::drop(counter),
    }
}

/// Takes one reply's credit from this CPU's bucket; `false`: over the rate.
#[inline(always)]
fn admit_reply() -> bool {
    let cost = reply_cost_ns();
    if cost == 0 {
        return true;
    }
    let Some(bucket) = REPLY_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot, only this CPU touches it.
    unsafe { (*bucket).admit(crate::clock::now_ns(), cost) }
}

/// Whether a frame was sent to a group (multicast or broadcast) MAC.
#[inline(always)]
fn to_group_mac(eth: *const u8) -> bool {
    load::<u8>(eth, 0) & 1 != 0
}

/// Whether an IPv4 source (network order in memory) is one no reply may
/// go to: 0/8, 127/8, or 224/3 (multicast, reserved, broadcast).
#[inline(always)]
fn unanswerable_v4(source: u32) -> bool {
    let first = source as u8;
    first == 0 || first == 127 || first >= 224
}

/// Whether an IPv6 source is one no reply may go to: ::, ::1, ff00::/8.
#[inline(always)]
fn unanswerable_v6(source: &[u32; 4]) -> bool {
    let upper = source[0] | source[1] | source[2];
    source[0] as u8 == 0xff
        || (upper == 0 && (source[3] == 0 || source[3] == u32::from_ne_bytes([0, 0, 0, 1])))
}

/// The original MACs, swapped for the way back: (new dst as u32 + u16,
/// new src as u16 + u32).
#[inline(always)]
fn swapped_macs(eth: *const u8) -> (u32, u16, u16, u32) {
    (load(eth, 6), load(eth, 10), load(eth, 0), load(eth, 2))
}

#[inline(always)]
fn write_macs(f: *mut u8, macs: (u32, u16, u16, u32), ethertype: u16) {
    store(f, 0, macs.0);
    store(f, 4, macs.1);
    store(f, 6, macs.2);
    store(f, 8, macs.3);
    store(f, 12, ethertype);
}

/// Sums `N` 16-bit words at `p` (one's complement, unfolded).
#[inline(always)]
fn sum_words<const N: usize>(p: *const u8, mut sum: u32) -> u32 {
    let mut i = 0;
    while i < N {
        sum += u32::from(load::<u16>(p, 2 * i));
        i += 1;
    }
    sum
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Shrinks the frame to `len` bytes.
#[inline(always)]
fn truncate(ctx: &XdpContext, len: usize) -> Option<()> {
    let delta = len as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: the helper only moves ctx->data_end.
    (unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0).then_some(())
}

#[inline(always)]
fn reply_v4(ctx: &XdpContext, mtu: u32) -> Result<(), GlobalCounter> {
    let no_room = GlobalCounter::DropNoHeadroom;
    let f = bytes_at(ctx, 0, ETH_LEN + ICMP4_LEN - 8).ok_or(no_room)?;
    let macs = swapped_macs(f);
    let (client, vip): (u32, u32) = (load(f, ETH_LEN + 12), load(f, ETH_LEN + 16));
    if to_group_mac(f) || unanswerable_v4(client) {
        return Err(GlobalCounter::DropTooBigUnanswerable);
    }
    if !admit_reply() {
        return Err(GlobalCounter::DropTooBigRateLimited);
    }
    // Room for a new IPv4 and ICMP header in front of the quoted header.
    let room = IPV4_LEN + 8;
    // SAFETY: moves ctx->data only; pointers are re-derived below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) } != 0 {
        return Err(no_room);
    }
    let f = bytes_at(ctx, 0, ETH_LEN + IPV4_LEN + ICMP4_LEN).ok_or(no_room)?;
    write_macs(f, macs, ETH_P_IP);
    let ip = ETH_LEN;
    let w0 = u16::from_ne_bytes([0x45, 0]);
    let w1 = ((IPV4_LEN + ICMP4_LEN) as u16).to_be();
    let w4 = u16::from_ne_bytes([REPLY_TTL, 1]);
    store(f, ip, w0);
    store(f, ip + 2, w1);
    store(f, ip + 4, 0u32);
    store(f, ip + 8, w4);
    store(
        f,
        ip + 10,
        lb_ebpf::csum::ipv4_header(&[w0, w1, 0, 0, w4], vip, client),
    );
    store(f, ip + 12, vip);
    store(f, ip + 16, client);
    let icmp = ETH_LEN + IPV4_LEN;
    store(f, icmp, u16::from_ne_bytes([3, 4]));
    store(f, icmp + 2, 0u16);
    store(f, icmp + 4, 0u16);
    store(f, icmp + 6, (mtu as u16).to_be());
    // SAFETY: `f` holds the whole reply (checked above).
    let sum = sum_words::<{ ICMP4_LEN / 2 }>(unsafe { f.add(icmp) }, 0);
    store(f, icmp + 2, fold(sum));
    truncate(ctx, ETH_LEN + IPV4_LEN + ICMP4_LEN).ok_or(no_room)
}

#[inline(always)]
fn reply_v6(ctx: &XdpContext, mtu: u32) -> Result<(), GlobalCounter> {
    let no_room = GlobalCounter::DropNoHeadroom;
    let f = bytes_at(ctx, 0, ETH_LEN + ICMP6_LEN - 8).ok_or(no_room)?;
    let macs = swapped_macs(f);
    let client: [u32; 4] = [
        load(f, ETH_LEN + 8),
        load(f, ETH_LEN + 12),
        load(f, ETH_LEN + 16),
        load(f, ETH_LEN + 20),
    ];
    if to_group_mac(f) || unanswerable_v6(&client) {
        return Err(GlobalCounter::DropTooBigUnanswerable);
    }
    if !admit_reply() {
        return Err(GlobalCounter::DropTooBigRateLimited);
    }
    let vip: [u32; 4] = [
        load(f, ETH_LEN + 24),
        load(f, ETH_LEN + 28),
        load(f, ETH_LEN + 32),
        load(f, ETH_LEN + 36),
    ];
    let room = IPV6_LEN + 8;
    // SAFETY: moves ctx->data only; pointers are re-derived below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) } != 0 {
        return Err(no_room);
    }
    let f = bytes_at(ctx, 0, ETH_LEN + IPV6_LEN + ICMP6_LEN).ok_or(no_room)?;
    write_macs(f, macs, ETH_P_IPV6);
    let ip = ETH_LEN;
    store(f, ip, u32::from_ne_bytes([0x60, 0, 0, 0]));
    store(f, ip + 4, (ICMP6_LEN as u16).to_be());
    store(f, ip + 6, u16::from_ne_bytes([58, REPLY_TTL]));
    store(f, ip + 8, vip);
    store(f, ip + 24, client);
    let icmp = ETH_LEN + IPV6_LEN;
    store(f, icmp, u16::from_ne_bytes([2, 0]));
    store(f, icmp + 2, 0u16);
    store(f, icmp + 4, mtu.to_be());
    // Pseudo-header: addresses, upper-layer length, next header.
    // SAFETY: `f` holds the whole reply (checked above).
    let mut sum = sum_words::<16>(unsafe { f.add(ip + 8) }, 0);
    sum += u32::from(u16::from_ne_bytes([0, ICMP6_LEN as u8]));
    sum += u32::from(u16::from_ne_bytes([0, 58]));
    // SAFETY: as above.
    sum = sum_words::<{ ICMP6_LEN / 2 }>(unsafe { f.add(icmp) }, sum);
    store(f, icmp + 2, fold(sum));
    truncate(ctx, ETH_LEN + IPV6_LEN + ICMP6_LEN).ok_or(no_room)
}
