//! Pushing the outer Ethernet + IP header: IPIP, IP6IP6, or 4in6.
//!
//! The inner packet is left byte for byte as received, less any Ethernet
//! trailer after it (padding a short frame to 60 bytes, or junk): the
//! frame that leaves is outer header + IP packet, so it never exceeds the
//! MTU the packet was checked against. The outer header:
//! - IPv4: version 4, IHL 5, TOS copied from the inner packet, total length
//!   = inner IP length + 20, id 0, DF set, TTL from control, protocol 4.
//! - IPv6: version 6, traffic class copied, flow label = low 20 bits of the
//!   outer source mix, payload length = inner IP length, next header 4
//!   (IPv4 inner) or 41 (IPv6 inner), hop limit from control.
//! - Source: the control prefix with the host-mask bits taken from
//!   `lb_abi::hash::outer_source_mix`; destination: the backend.
//! - Ethernet: destination = gateway MAC, source = the interface's MAC, both
//!   from control.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_abi::{
    FAMILY_V4, FAMILY_V6,
    backend::Backend,
    control::{Control, blend},
    flow::FlowKey,
    hash::outer_source_mix,
    stats::GlobalCounter,
};

use lb_ebpf::packet::{ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, store};

use crate::{
    maps::{CONTROL, CONTROL_ACTIVE, bench_restore},
    parse::{ETH_LEN, Headers, IPV4_LEN, IPV6_LEN, bytes_at, load},
    verdict::Verdict,
};

const IP_DF: u16 = 0x4000u16.to_be();

/// Bytes of outer IP header towards `backend`.
#[inline(always)]
fn outer_len(backend: &Backend) -> usize {
    if backend.family == FAMILY_V6 {
        IPV6_LEN
    } else {
        IPV4_LEN
    }
}

/// The node settings, and the largest inner IP packet that still fits the
/// MTU once encapsulated towards `backend`.
#[inline(always)]
pub fn room(backend: &Backend) -> Result<(&'static Control, u32), Verdict> {
    let active = CONTROL_ACTIVE
        .get_ptr(0)
        .ok_or(Verdict::drop(GlobalCounter::DropNoHeadroom))?;
    // SAFETY: an aligned u64 that userspace replaces with one store; the
    // entry it names is not rewritten while a program may read it
    // (`lb_abi::control`).
    let active = unsafe { core::ptr::read_volatile(active) };
    let control = CONTROL
        .get((active & 1) as u32)
        .ok_or(Verdict::drop(GlobalCounter::DropNoHeadroom))?;
    Ok((
        control,
        u32::from(control.mtu).saturating_sub(outer_len(backend) as u32),
    ))
}

/// Makes room for and writes the outer headers towards `backend`.
#[inline(always)]
pub fn encapsulate(
    ctx: &XdpContext,
    h: &Headers,
    key: &FlowKey,
    backend: &Backend,
    control: &Control,
) -> Result<(), Verdict> {
    let no_room = Verdict::drop(GlobalCounter::DropNoHeadroom);
    // `vip::check` made sure the frame holds the whole IP packet.
    let trailer = h.frame_len - (ETH_LEN as u32 + h.ip_len);
    // SAFETY: shrinks the frame's end by bytes past the IP packet; every
    // pointer is derived from ctx afterwards.
    if trailer != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(trailer as i32)) } != 0 {
        return Err(no_room);
    }
    let mix = outer_source_mix(key);
    let saved = if bench_restore() {
        let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(no_room)?;
        Some((
            load::<u64>(eth, 0),
            load::<u32>(eth, 8),
            load::<u16>(eth, 12),
        ))
    } else {
        None
    };
    let outer_len = outer_len(backend);
    // SAFETY: the helper only moves ctx->data; we re-derive every pointer
    // from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        return Err(no_room);
    }
    if backend.family == FAMILY_V6 {
        let frame = bytes_at(ctx, 0, ETH_LEN + IPV6_LEN).ok_or(no_room)?;
        write_eth(frame, control, ETH_P_IPV6);
        write_ipv6(frame, control, h, key.family, backend, mix);
    } else {
        let frame = bytes_at(ctx, 0, ETH_LEN + IPV4_LEN).ok_or(no_room)?;
        write_eth(frame, control, ETH_P_IP);
        write_ipv4(frame, control, h, backend, mix);
    }
    if let Some((w0, w8, ethertype)) = saved {
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
            return Err(no_room);
        }
        let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(no_room)?;
        store(eth, 0, w0);
        store(eth, 8, w8);
        store(eth, 12, ethertype);
    }
    Ok(())
}

// MACs go out as word stores: copying `[u8; 6]` would become a byte loop.
#[inline(always)]
fn write_eth(frame: *mut u8, control: &Control, ethertype: u16) {
    let g = control.gateway_mac;
    let s = control.src_mac;
    store(frame, 0, u32::from_ne_bytes([g[0], g[1], g[2], g[3]]));
    store(frame, 4, u16::from_ne_bytes([g[4], g[5]]));
    store(frame, 6, u16::from_ne_bytes([s[0], s[1]]));
    store(frame, 8, u32::from_ne_bytes([s[2], s[3], s[4], s[5]]));
    store(frame, 12, ethertype);
}

#[inline(always)]
fn write_ipv4(frame: *mut u8, control: &Control, h: &Headers, backend: &Backend, mix: u32) {
    let ip = unsafe { frame.add(ETH_LEN) };
    let src = blend(control.outer_src_v4, control.outer_src_v4_host_mask, mix);
    let dst = backend.addr[0];
    // Words as a native load of the wire bytes reads them; the one's
    // complement sum is the same in either byte order (RFC 1071).
    let w0 = u16::from_ne_bytes([0x45, h.tos]);
    let w1 = ((h.ip_len + IPV4_LEN as u32) as u16).to_be();
    let w4 = u16::from_ne_bytes([control.outer_ttl, IPPROTO_IPIP]);
    let csum = lb_ebpf::csum::ipv4_header(&[w0, w1, 0, IP_DF, w4], src, dst);
    store(ip, 0, w0);
    store(ip, 2, w1);
    store(ip, 4, 0u16);
    store(ip, 6, IP_DF);
    store(ip, 8, w4);
    store(ip, 10, csum);
    store(ip, 12, src);
    store(ip, 16, dst);
}

#[inline(always)]
fn write_ipv6(
    frame: *mut u8,
    control: &Control,
    h: &Headers,
    inner_family: u8,
    backend: &Backend,
    mix: u32,
) {
    let ip = unsafe { frame.add(ETH_LEN) };
    let label = mix & 0x000f_ffff;
    let head = [
        0x60 | (h.tos >> 4),
        (h.tos << 4) | (label >> 16) as u8,
        (label >> 8) as u8,
        label as u8,
    ];
    let next = if inner_family == FAMILY_V4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    };
    store(ip, 0, u32::from_ne_bytes(head));
    store(ip, 4, (h.ip_len as u16).to_be());
    store(ip, 6, u16::from_ne_bytes([next, control.outer_ttl]));
    let s = control.outer_src_v6;
    store(
        ip,
        8,
        [
            s[0],
            s[1],
            s[2],
            blend(s[3], control.outer_src_v6_host_mask, mix),
        ],
    );
    store(ip, 24, backend.addr);
}
