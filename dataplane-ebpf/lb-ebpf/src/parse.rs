//! Header parsing with bounds checks the verifier accepts.
//!
//! Policy for what cannot be parsed: if the packet is cut short or malformed
//! before its VIP could be known, it is passed to the kernel stack untouched
//! (which drops what it cannot use) and counted; such a packet can never
//! reach a backend. What parses but cannot be balanced (a later fragment,
//! another protocol, an IPv6 extension chain not followed) gets a
//! provisional closed-address drop that [`crate::closed`] settles by its
//! destination. Checks that only matter for VIP traffic (options,
//! fragments, lengths) are made by [`crate::vip`] after the VIP is known, so
//! other traffic passes untouched whatever it carries.
//!
//! IPv6 extension headers: up to [`MAX_EXT_HEADERS`] hop-by-hop, routing
//! (with no segments left: the VIP is the final destination) and
//! destination-options headers are skipped, so VIP traffic carrying them
//! is balanced; the backend gets them as sent.

use aya_ebpf::programs::XdpContext;
use lb_abi::{
    FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, flow::FlowKey, stats::GlobalCounter, vip::VipKey,
};

pub use lb_ebpf::packet::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, IPV6_LEN, bytes_at, load};

use crate::verdict::Verdict;

/// VLAN tag EtherTypes (802.1Q, 802.1ad), as a native load reads them.
pub const ETH_P_8021Q: u16 = 0x8100u16.to_be();
pub const ETH_P_8021AD: u16 = 0x88a8u16.to_be();

pub const TCP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;

const TCP_SYN: u8 = 0x02;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// What the headers say about a VIP candidate. Scalars only: addresses
/// and ports are read from the packet again where they are needed, which
/// is cheaper than carrying them (the program would spill them).
pub struct Headers {
    pub family: u8,
    pub proto: u8,
    /// Offset of the L4 header; the packet holds its minimal length.
    pub l4: usize,
    /// Bytes of the frame as received.
    pub frame_len: u32,
    /// Length of the inner IP packet by its own header (IPv4 total length,
    /// IPv6 payload length + 40).
    pub ip_len: u32,
    /// Length of the IP header(s) before the L4 header.
    pub l3_len: u32,
    /// IPv4 TOS or IPv6 traffic class, copied to the outer header.
    pub tos: u8,
    /// IPv4 flags and fragment offset, host order (offset 0: later
    /// fragments are not parsed); 0 for IPv6. One word rather than a flag
    /// each, so fewer values are held across the map lookups.
    pub frag: u16,
}

/// IPv4 flag bits, host order.
const MORE_FRAGMENTS: u16 = 0x2000;
const DONT_FRAGMENT: u16 = 0x4000;

impl Headers {
    /// An IPv4 header longer than 20 bytes.
    #[inline(always)]
    pub fn has_options(&self) -> bool {
        self.family == FAMILY_V4 && self.l3_len != IPV4_LEN as u32
    }

    /// The first fragment of a fragmented IPv4 packet.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.frag & MORE_FRAGMENTS != 0
    }

    /// IPv4 with the don't-fragment bit.
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.frag & DONT_FRAGMENT != 0
    }
}

/// The IP family of a frame.
pub enum Family {
    V4,
    V6,
}

/// The frame's EtherType, as a native load of its wire bytes reads it
/// (compare with [`ETH_P_IP`], [`ETH_P_IPV6`]).
#[inline(always)]
pub fn ethertype(ctx: &XdpContext) -> Result<u16, Verdict> {
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    Ok(load(eth, 12))
}

/// Parses the IP header of `family`, and checks the TCP/UDP/ICMP header
/// is there.
///
/// Called once per family with a constant `family`, so that the path after
/// it is inlined once per family too: every family test and header offset
/// then folds to a constant, instead of one merged path carrying the
/// family's values in (spilled) registers.
#[inline(always)]
pub fn parse(ctx: &XdpContext, family: Family) -> Result<Headers, Verdict> {
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let headers = match family {
        Family::V4 => parse_v4(ctx, frame_len)?,
        Family::V6 => parse_v6(ctx, frame_len)?,
    };
    let icmp = if headers.family == FAMILY_V4 {
        PROTO_ICMP
    } else {
        PROTO_ICMPV6
    };
    let l4_len = if headers.proto == PROTO_TCP {
        TCP_LEN
    } else if headers.proto == PROTO_UDP || headers.proto == icmp {
        UDP_LEN
    } else {
        return Err(Verdict::drop(GlobalCounter::DropClosedProtocol));
    };
    bytes_at(ctx, headers.l4, l4_len).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    Ok(headers)
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, frame_len: u32) -> Result<Headers, Verdict> {
    let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let ver_ihl: u8 = load(ip, 0);
    let ihl = (ver_ihl & 0x0f) as usize;
    if ver_ihl >> 4 != 4 || ihl < 5 {
        return Err(Verdict::pass(GlobalCounter::PassBadIpHeader));
    }
    let frag = u16::from_be(load(ip, 6));
    if frag & 0x1fff != 0 {
        return Err(Verdict::drop(GlobalCounter::DropClosedFragment));
    }
    let l3_len = ihl * 4;
    Ok(Headers {
        family: FAMILY_V4,
        proto: load(ip, 9),
        l4: ETH_LEN + l3_len,
        frame_len,
        ip_len: u32::from(u16::from_be(load(ip, 2))),
        l3_len: l3_len as u32,
        tos: load(ip, 1),
        frag,
    })
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, frame_len: u32) -> Result<Headers, Verdict> {
    let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
    let b0: u8 = load(ip, 0);
    if b0 >> 4 != 6 {
        return Err(Verdict::pass(GlobalCounter::PassBadIpHeader));
    }
    let b1: u8 = load(ip, 1);
    let (proto, l4) = skip_extension_headers(ctx, load(ip, 6))?;
    Ok(Headers {
        family: FAMILY_V6,
        proto,
        l4,
        frame_len,
        ip_len: u32::from(u16::from_be(load(ip, 4))) + IPV6_LEN as u32,
        l3_len: (l4 - ETH_LEN) as u32,
        tos: (b0 << 4) | (b1 >> 4),
        frag: 0,
    })
}

/// Most IPv6 extension headers followed before the upper-layer header.
pub const MAX_EXT_HEADERS: usize = 4;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTIONS: u8 = 60;

/// The upper-layer protocol behind IPv6 header `next` and its offset,
/// past the extension headers the balancer follows.
#[inline(always)]
fn skip_extension_headers(ctx: &XdpContext, mut next: u8) -> Result<(u8, usize), Verdict> {
    let mut off = ETH_LEN + IPV6_LEN;
    let mut i = 0;
    // The common case, no extension header, leaves at the first test; a
    // followed header past the last one followed ends the parse.
    while i <= MAX_EXT_HEADERS {
        if next == IPV6_FRAGMENT {
            return Err(Verdict::drop(GlobalCounter::DropClosedFragment));
        }
        if next != IPV6_HOP_BY_HOP && next != IPV6_DEST_OPTIONS && next != IPV6_ROUTING {
            return Ok((next, off));
        }
        if i == MAX_EXT_HEADERS {
            break;
        }
        // Every extension header is a multiple of 8 bytes, at least 8.
        let ext = bytes_at(ctx, off, 8).ok_or(Verdict::pass(GlobalCounter::PassTruncated))?;
        // Segments left: the VIP is not the final destination.
        if next == IPV6_ROUTING && load::<u8>(ext, 3) != 0 {
            return Err(Verdict::drop(GlobalCounter::DropClosedExtHeader));
        }
        next = load(ext, 0);
        off += (usize::from(load::<u8>(ext, 1)) + 1) * 8;
        i += 1;
    }
    Err(Verdict::drop(GlobalCounter::DropClosedExtHeader))
}

/// The packet's destination address, wire layout (`v6`: of an IPv6
/// header, else of an IPv4 one).
#[inline(always)]
pub fn destination(ctx: &XdpContext, v6: bool) -> Option<[u32; 4]> {
    if v6 {
        let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN)?;
        Some([load(ip, 24), load(ip, 28), load(ip, 32), load(ip, 36)])
    } else {
        let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN)?;
        Some([load(ip, 16), 0, 0, 0])
    }
}

/// The VIP key of the packet's destination.
#[inline(always)]
pub fn vip_key(ctx: &XdpContext, h: &Headers) -> Result<VipKey, Verdict> {
    let truncated = Verdict::pass(GlobalCounter::PassTruncated);
    let l4 = bytes_at(ctx, h.l4, UDP_LEN).ok_or(truncated)?;
    let port = load(l4, 2);
    if h.family == FAMILY_V4 {
        let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(truncated)?;
        Ok(VipKey {
            addr: [load(ip, 16), 0, 0, 0],
            port,
            proto: h.proto,
            family: FAMILY_V4,
        })
    } else {
        let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(truncated)?;
        Ok(VipKey {
            addr: [load(ip, 24), load(ip, 28), load(ip, 32), load(ip, 36)],
            port,
            proto: h.proto,
            family: FAMILY_V6,
        })
    }
}

/// The packet's 5-tuple, and whether it is a TCP SYN.
#[inline(always)]
pub fn flow_key(ctx: &XdpContext, h: &Headers, vip: &VipKey) -> Result<(FlowKey, bool), Verdict> {
    let truncated = Verdict::pass(GlobalCounter::PassTruncated);
    let l4 = bytes_at(ctx, h.l4, UDP_LEN).ok_or(truncated)?;
    let src = if h.family == FAMILY_V4 {
        let ip = bytes_at(ctx, ETH_LEN, IPV4_LEN).ok_or(truncated)?;
        [load(ip, 12), 0, 0, 0]
    } else {
        let ip = bytes_at(ctx, ETH_LEN, IPV6_LEN).ok_or(truncated)?;
        [load(ip, 8), load(ip, 12), load(ip, 16), load(ip, 20)]
    };
    let syn = if h.proto == PROTO_TCP {
        let tcp = bytes_at(ctx, h.l4, TCP_LEN).ok_or(truncated)?;
        load::<u8>(tcp, 13) & TCP_SYN != 0
    } else {
        false
    };
    let key = FlowKey {
        src,
        dst: vip.addr,
        src_port: load(l4, 0),
        dst_port: vip.port,
        proto: h.proto,
        family: h.family,
        _pad: [0; 2],
    };
    Ok((key, syn))
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
