//! Header parsing with bounds checks the verifier accepts.
//!
//! Policy for what cannot be parsed: if the packet is cut short or malformed
//! before its VIP could be known, it is passed to the kernel stack untouched
//! (which drops what it cannot use) and counted; such a packet can never
//! reach a backend. Checks that only matter for VIP traffic (options,
//! fragments, lengths) are made by [`crate::vip`] after the VIP is known, so
//! other traffic passes untouched whatever it carries.

use aya_ebpf::programs::XdpContext;
use lb_abi::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, flow::FlowKey, stats::GlobalCounter};

use crate::verdict::Verdict;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const TCP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;

// EtherTypes as a native load of their wire bytes reads them.
const ETH_P_IP: u16 = 0x0800u16.to_be();
const ETH_P_IPV6: u16 = 0x86DDu16.to_be();

const TCP_SYN: u8 = 0x02;

/// A parsed VIP candidate.
pub struct Packet {
    pub key: FlowKey,
    /// Bytes of the frame as received.
    pub frame_len: u32,
    /// Length of the inner IP packet by its own header (IPv4 total length,
    /// IPv6 payload length + 40).
    pub ip_len: u32,
    /// Length of the IP header(s) before the L4 header.
    pub l3_len: u32,
    /// IPv4 TOS or IPv6 traffic class, copied to the outer header.
    pub tos: u8,
    pub syn: bool,
    /// IPv4 header longer than 20 bytes.
    pub has_options: bool,
    /// First fragment of a fragmented IPv4 packet.
    pub is_fragment: bool,
}

/// A pointer to `len` bytes at `offset`, if the packet holds them.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return None;
    }
    Some((start + offset) as *mut u8)
}

/// Loads a `T` from packet memory in one instruction.
///
/// Headers behind the 14-byte Ethernet header are only 2-byte aligned.
/// `read_unaligned` would make LLVM split every word into byte loads (the
/// BPF backend assumes no misaligned access), and enabling misaligned access
/// for the whole program makes it misalign stack slots too, which the
/// verifier rejects. So, as C XDP programs do, we load packet words as if
/// aligned: the kernel's BPF targets (x86-64, arm64) handle misaligned
/// packet loads, and the verifier allows them without strict alignment.
#[inline(always)]
pub fn load<T: Copy>(ptr: *const u8, offset: usize) -> T {
    // SAFETY: callers bounds-checked `ptr + offset + size_of::<T>()`; see
    // above for alignment.
    unsafe { ptr.add(offset).cast::<T>().read() }
}

/// Parses Ethernet, IPv4/IPv6 and the TCP/UDP ports.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Verdict> {
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let ethertype: u16 = load(eth, 12);
    if ethertype == ETH_P_IP {
        parse_v4(ctx, frame_len)
    } else if ethertype == ETH_P_IPV6 {
        parse_v6(ctx, frame_len)
    } else {
        Err(Verdict::pass(GlobalCounter::PassNotIp))
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, frame_len: u32) -> Result<Packet, Verdict> {
    let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let ver_ihl: u8 = load(ip, 0);
    let ihl = (ver_ihl & 0x0f) as usize;
    if ver_ihl >> 4 != 4 || ihl < 5 {
        return Err(Verdict::pass(GlobalCounter::PassBadIpHeader));
    }
    let frag = u16::from_be(load(ip, 6));
    if frag & 0x1fff != 0 {
        return Err(Verdict::pass(GlobalCounter::PassLaterFragment));
    }
    let proto: u8 = load(ip, 9);
    let l3_len = ihl * 4;
    let mut key = FlowKey {
        src: [load(ip, 12), 0, 0, 0],
        dst: [load(ip, 16), 0, 0, 0],
        proto,
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    let syn = parse_l4(ctx, ETH_LEN + l3_len, &mut key)?;
    Ok(Packet {
        key,
        frame_len,
        ip_len: u32::from(u16::from_be(load(ip, 2))),
        l3_len: l3_len as u32,
        tos: load(ip, 1),
        syn,
        has_options: ihl != 5,
        is_fragment: frag & 0x2000 != 0,
    })
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, frame_len: u32) -> Result<Packet, Verdict> {
    let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let b0: u8 = load(ip, 0);
    if b0 >> 4 != 6 {
        return Err(Verdict::pass(GlobalCounter::PassBadIpHeader));
    }
    let b1: u8 = load(ip, 1);
    let mut key = FlowKey {
        src: [load(ip, 8), load(ip, 12), load(ip, 16), load(ip, 20)],
        dst: [load(ip, 24), load(ip, 28), load(ip, 32), load(ip, 36)],
        proto: load(ip, 6),
        family: FAMILY_V6,
        ..FlowKey::default()
    };
    let syn = parse_l4(ctx, ETH_LEN + IPV6_LEN, &mut key)?;
    Ok(Packet {
        key,
        frame_len,
        ip_len: u32::from(u16::from_be(load(ip, 4))) + IPV6_LEN as u32,
        l3_len: IPV6_LEN as u32,
        tos: (b0 << 4) | (b1 >> 4),
        syn,
        has_options: false,
        is_fragment: false,
    })
}

/// Fills the ports of `key`; returns whether this is a TCP SYN.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, offset: usize, key: &mut FlowKey) -> Result<bool, Verdict> {
    let truncated = Verdict::pass(GlobalCounter::PassTruncated);
    if key.proto == PROTO_TCP {
        let tcp = bytes_at(ctx, offset, TCP_LEN).ok_or(truncated)?;
        key.src_port = load(tcp, 0);
        key.dst_port = load(tcp, 2);
        let flags: u8 = load(tcp, 13);
        Ok(flags & TCP_SYN != 0)
    } else if key.proto == PROTO_UDP {
        let udp = bytes_at(ctx, offset, UDP_LEN).ok_or(truncated)?;
        key.src_port = load(udp, 0);
        key.dst_port = load(udp, 2);
        Ok(false)
    } else {
        Err(Verdict::pass(GlobalCounter::PassOtherProtocol))
    }
}

/// Minimum L4 header length of a TCP or UDP packet.
#[inline(always)]
pub fn l4_min_len(proto: u8) -> u32 {
    if proto == PROTO_TCP {
        TCP_LEN as u32
    } else {
        UDP_LEN as u32
    }
}
