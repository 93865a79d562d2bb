//! Parsing a frame the way the balancer does, with its pass policy for what
//! cannot be parsed and its provisional closed-address drops for what
//! parses but cannot be balanced.

use lb_abi::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, flow::FlowKey, stats::GlobalCounter};

/// What the balancer learns from a frame's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// For TCP and UDP the 5-tuple; for ICMP the addresses and protocol
    /// (ports zero).
    pub key: FlowKey,
    /// Offset of the L4 header in the frame.
    pub l4: usize,
    pub ip_len: u32,
    pub l3_len: u32,
    pub tos: u8,
    pub syn: bool,
    pub has_options: bool,
    pub is_fragment: bool,
    pub dont_fragment: bool,
}

pub(crate) fn word(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn wire16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// Parses `frame`, or names the pass counter of a frame that is not a VIP
/// candidate.
pub fn parse(frame: &[u8]) -> Result<Parsed, GlobalCounter> {
    if frame.len() < 14 {
        return Err(GlobalCounter::PassTruncated);
    }
    let ip = &frame[14..];
    match (frame[12], frame[13]) {
        (0x08, 0x00) => parse_v4(ip),
        (0x86, 0xdd) => parse_v6(ip),
        (0x81, 0x00) | (0x88, 0xa8) => Err(GlobalCounter::PassVlanTagged),
        _ => Err(GlobalCounter::PassNotIp),
    }
}

fn parse_v4(ip: &[u8]) -> Result<Parsed, GlobalCounter> {
    if ip.len() < 20 {
        return Err(GlobalCounter::PassTruncated);
    }
    let ihl = usize::from(ip[0] & 0x0f);
    if ip[0] >> 4 != 4 || ihl < 5 {
        return Err(GlobalCounter::PassBadIpHeader);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x1fff != 0 {
        return Err(GlobalCounter::DropClosedFragment);
    }
    let mut key = FlowKey {
        src: [word(ip, 12), 0, 0, 0],
        dst: [word(ip, 16), 0, 0, 0],
        proto: ip[9],
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    let l3_len = ihl * 4;
    let syn = ports(&ip[l3_len.min(ip.len())..], &mut key, PROTO_ICMP)?;
    Ok(Parsed {
        key,
        l4: 14 + l3_len,
        ip_len: u32::from(u16::from_be_bytes([ip[2], ip[3]])),
        l3_len: l3_len as u32,
        tos: ip[1],
        syn,
        has_options: ihl != 5,
        is_fragment: frag & 0x2000 != 0,
        dont_fragment: frag & 0x4000 != 0,
    })
}

fn parse_v6(ip: &[u8]) -> Result<Parsed, GlobalCounter> {
    if ip.len() < 40 {
        return Err(GlobalCounter::PassTruncated);
    }
    if ip[0] >> 4 != 6 {
        return Err(GlobalCounter::PassBadIpHeader);
    }
    let (proto, l3_len) = extension_headers(ip)?;
    let mut key = FlowKey {
        src: [word(ip, 8), word(ip, 12), word(ip, 16), word(ip, 20)],
        dst: [word(ip, 24), word(ip, 28), word(ip, 32), word(ip, 36)],
        proto,
        family: FAMILY_V6,
        ..FlowKey::default()
    };
    let syn = ports(ip.get(l3_len..).unwrap_or(&[]), &mut key, PROTO_ICMPV6)?;
    Ok(Parsed {
        key,
        l4: 14 + l3_len,
        ip_len: u32::from(u16::from_be_bytes([ip[4], ip[5]])) + 40,
        l3_len: l3_len as u32,
        tos: (ip[0] << 4) | (ip[1] >> 4),
        syn,
        has_options: false,
        is_fragment: false,
        dont_fragment: false,
    })
}

/// Most IPv6 extension headers the balancer follows.
pub const MAX_EXT_HEADERS: usize = 4;

/// The upper-layer protocol of an IPv6 packet and the length of its
/// headers before it: up to [`MAX_EXT_HEADERS`] hop-by-hop, routing (no
/// segments left) and destination-options headers are skipped; fragments
/// and other chains are closed-address drops (`crate::settle`).
fn extension_headers(ip: &[u8]) -> Result<(u8, usize), GlobalCounter> {
    let followed = |h: u8| h == 0 || h == 43 || h == 60;
    let mut next = ip[6];
    let mut off = 40;
    for followed_so_far in 0..=MAX_EXT_HEADERS {
        if next == 44 {
            return Err(GlobalCounter::DropClosedFragment);
        }
        if !followed(next) {
            return Ok((next, off));
        }
        if followed_so_far == MAX_EXT_HEADERS {
            break;
        }
        if ip.len() < off + 8 {
            return Err(GlobalCounter::PassTruncated);
        }
        if next == 43 && ip[off + 3] != 0 {
            return Err(GlobalCounter::DropClosedExtHeader);
        }
        next = ip[off];
        off += (usize::from(ip[off + 1]) + 1) * 8;
    }
    Err(GlobalCounter::DropClosedExtHeader)
}

/// ICMP protocol numbers of IPv4 and IPv6.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

fn ports(l4: &[u8], key: &mut FlowKey, icmp: u8) -> Result<bool, GlobalCounter> {
    let need = match key.proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        p if p == icmp => 8,
        _ => return Err(GlobalCounter::DropClosedProtocol),
    };
    if l4.len() < need {
        return Err(GlobalCounter::PassTruncated);
    }
    if key.proto == icmp {
        return Ok(false);
    }
    key.src_port = wire16(l4, 0);
    key.dst_port = wire16(l4, 2);
    Ok(key.proto == PROTO_TCP && l4[13] & 0x02 != 0)
}
