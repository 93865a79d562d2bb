//! The map ABI of the load balancer's dataplane.
//!
//! Every type that crosses the boundary between the XDP programs and
//! userspace is defined here, once: map names, `#[repr(C)]` keys and values,
//! flag bits, default limits, and the pure functions both sides must compute
//! identically (the flow hash and the outer source address).
//!
//! # Byte order
//! Addresses and ports are stored exactly as they appear on the wire: an
//! address is `[u32; 4]` whose memory holds the address bytes in network
//! order (an IPv4 address uses the first word, the other three are zero), and
//! a port is a `u16` whose memory holds the two wire bytes. Userspace builds
//! them from `core::net` types with the constructors here; the XDP program
//! copies them straight out of the packet. The hashes read those words as
//! loaded on a little-endian machine, which is what the `bpfel` target and
//! every supported host are.
//!
//! # Who writes what
//! Userspace writes [`vip`], [`backend`], [`ring`], [`control`] and
//! [`filter`] maps; the balancer only reads them. The balancer writes
//! [`flow`], [`flood`] and [`stats`]; userspace reads them (and may clear
//! flows). The per-CPU caches [`flow_cache`] and [`vip_cache`] are the
//! balancer's, kept honest by epochs that both sides bump. [`writer`] maps
//! are userspace's alone: what reading the state back needs. [`decap`] is
//! the backends' program, with maps of its own.
#![cfg_attr(not(test), no_std)]

pub mod backend;
pub mod clock;
pub mod control;
pub mod decap;
pub mod filter;
pub mod flood;
pub mod flow;
pub mod flow_cache;
pub mod hash;
pub mod limits;
pub mod reply_limit;
pub mod ring;
pub mod stats;
pub mod vip;
pub mod vip_cache;
pub mod writer;

use core::net::IpAddr;

/// Address family tag stored in keys and values: IPv4.
pub const FAMILY_V4: u8 = 4;
/// Address family tag stored in keys and values: IPv6.
pub const FAMILY_V6: u8 = 6;

/// `BPF_F_MMAPABLE`: the map flag of the arrays userspace writes through a
/// memory mapping ([`ring::RINGS`] and the caches' epochs), so a write is a
/// store, atomic where it must be, with no syscall.
pub const MMAPABLE: u32 = 1 << 10;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// An address in wire layout: its family tag and four words whose memory
/// holds the network-order bytes (IPv4 fills only the first word).
#[inline]
pub fn wire_addr(ip: IpAddr) -> (u8, [u32; 4]) {
    match ip {
        IpAddr::V4(v4) => (FAMILY_V4, [u32::from_ne_bytes(v4.octets()), 0, 0, 0]),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            (FAMILY_V6, [word(0), word(4), word(8), word(12)])
        }
    }
}

/// The inverse of [`wire_addr`]; `None` for an unknown family tag.
#[inline]
pub fn ip_from_wire(family: u8, addr: [u32; 4]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::from(addr[0].to_ne_bytes())),
        FAMILY_V6 => {
            let mut o = [0u8; 16];
            for (chunk, word) in o.as_chunks_mut::<4>().0.iter_mut().zip(addr) {
                *chunk = word.to_ne_bytes();
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

/// An address as a map key, wire layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// Address, network order in memory.
    pub addr: [u32; 4],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Reserved, zero.
    pub _pad: [u8; 3],
}

impl AddrKey {
    /// The key for `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let (family, addr) = wire_addr(ip);
        Self::from_wire(family, addr)
    }

    /// The key for an address in wire layout.
    #[inline(always)]
    pub const fn from_wire(family: u8, addr: [u32; 4]) -> Self {
        Self {
            addr,
            family,
            _pad: [0; 3],
        }
    }
}

/// A port in wire layout (memory holds the big-endian bytes).
#[inline]
pub const fn wire_port(port: u16) -> u16 {
    port.to_be()
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is `#[repr(C)]`, `Copy`, made only of integers
    // and integer arrays, with all padding spelled out as named fields.
    unsafe impl aya::Pod for crate::vip::VipKey {}
    unsafe impl aya::Pod for crate::vip::VipState {}
    unsafe impl aya::Pod for crate::backend::Backend {}
    unsafe impl aya::Pod for crate::flow::FlowKey {}
    unsafe impl aya::Pod for crate::flow::FlowValue {}
    unsafe impl aya::Pod for crate::control::Control {}
    unsafe impl aya::Pod for crate::stats::TrafficCounters {}
    unsafe impl aya::Pod for crate::flood::FloodWindow {}
    unsafe impl aya::Pod for crate::reply_limit::ReplyBucket {}
    unsafe impl aya::Pod for crate::AddrKey {}
    unsafe impl aya::Pod for crate::decap::SourcePrefix {}
    unsafe impl aya::Pod for crate::decap::DecapPolicy {}
    unsafe impl aya::Pod for crate::writer::WriterState {}
    unsafe impl aya::Pod for crate::writer::Member {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn wire_addr_round_trips_and_keeps_network_order_in_memory() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let (fam, words) = wire_addr(v4);
        assert_eq!(fam, FAMILY_V4);
        assert_eq!(words[0].to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(&words[1..], &[0, 0, 0]);
        assert_eq!(ip_from_wire(fam, words), Some(v4));

        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42));
        let (fam, words) = wire_addr(v6);
        assert_eq!(fam, FAMILY_V6);
        assert_eq!(words[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(ip_from_wire(fam, words), Some(v6));
        assert_eq!(ip_from_wire(9, words), None);
        assert_eq!(core::mem::size_of::<AddrKey>(), 20);
        assert_eq!(AddrKey::new(v6), AddrKey::from_wire(FAMILY_V6, words));
    }

    #[test]
    fn wire_port_is_big_endian_in_memory() {
        assert_eq!(wire_port(0x1234).to_ne_bytes(), [0x12, 0x34]);
    }
}
