//! A model of the XDP balancer, in plain Rust.
//!
//! Given the state userspace programmed into the maps ([`DataplaneState`])
//! and a frame, [`Model::process`] returns what the `balancer` program does
//! with it: the action, the bytes it sends, and the counter it bumps. It is
//! written from the specification in `lb_abi` and the program's module docs,
//! not from the program's code, so the differential tests comparing the two
//! catch a mistake in either. The control plane uses it to answer "which
//! backend gets this flow" without touching the kernel.
//!
//! Two time-dependent behaviours are outside the model: UDP flow entries
//! expiring after their idle timeout, and the SYN-flood guard. It answers as
//! the program does when neither applies (idle times below the timeout less
//! the flow cache's refresh interval, 1/64 of it; new flows below the flood
//! threshold).
//!
//! The model's flow table never evicts, and the program's per-CPU flow
//! cache (`lb_abi::flow_cache`) is not modelled: it holds copies of table
//! entries that passed the same checks, dropped whenever a generation they
//! depend on may have changed, so it changes nothing the model answers. (It can keep a flow whose entry the kernel's LRU evicted, which
//! the model, evicting nothing, agrees with.)

pub mod frame;
mod state;

use frame::word;
pub use frame::{Parsed, parse};
pub use state::{DataplaneState, VipEntry};

use std::collections::HashMap;

use lb_abi::{
    FAMILY_V4, FAMILY_V6,
    backend::{Backend, EMPTY_GENERATION, recorded_generation},
    control::blend,
    filter::address,
    flow::{FlowKey, FlowValue},
    hash::{flow_hash, outer_source_mix, ring_index},
    ring::NO_RING,
    stats::GlobalCounter,
    vip::flags,
};

/// The provisional drops that only a VIP address that is closed makes
/// final (see `Model::settle`).
fn is_closed(c: GlobalCounter) -> bool {
    matches!(
        c,
        GlobalCounter::DropClosedFragment
            | GlobalCounter::DropClosedPort
            | GlobalCounter::DropClosedProtocol
            | GlobalCounter::DropClosedEcho
            | GlobalCounter::DropClosedExtHeader
    )
}

/// What XDP does with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `XDP_PASS`: on to the kernel stack, unchanged.
    Pass,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_TX`: encapsulated and sent back out.
    Tx,
}

impl Action {
    /// The kernel's `xdp_action` number.
    pub const fn code(self) -> u32 {
        match self {
            Action::Drop => 1,
            Action::Pass => 2,
            Action::Tx => 3,
        }
    }
}

/// The model's verdict on one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    /// The counter the verdict is recorded under.
    pub counter: GlobalCounter,
    /// The frame as it leaves the program.
    pub frame: Vec<u8>,
    /// The VIP's stats index and the backend id, when sent.
    pub sent_to: Option<(u32, u32)>,
    /// Whether a flow-table lookup hit, missed, or did not happen.
    pub flow_lookup: Option<bool>,
}

/// The balancer's behaviour over a programmed state and a flow table.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub state: DataplaneState,
    /// The flow table, as the program would have filled it (no eviction).
    pub flows: HashMap<FlowKey, FlowValue>,
}

impl Model {
    /// A model of `state` with an empty flow table.
    pub fn new(state: DataplaneState) -> Self {
        Self {
            state,
            flows: HashMap::new(),
        }
    }

    /// What the program does with `frame`, updating the flow table as it
    /// would.
    pub fn process(&mut self, frame: &[u8]) -> Outcome {
        let mut lookup = None;
        let verdict = match self.forward(frame, &mut lookup) {
            Err(Stop::Verdict(_, closed)) if is_closed(closed) => {
                let (action, counter) = self.settle(frame, closed);
                Err(Stop::Verdict(action, counter))
            }
            v => v,
        };
        let (action, counter, out, sent_to) = match verdict {
            Ok((counter, out, vip_index, backend_id)) => {
                (Action::Tx, counter, out, Some((vip_index, backend_id)))
            }
            Err(Stop::Reply(out)) => (Action::Tx, GlobalCounter::TxIcmpTooBig, out, None),
            Err(Stop::Verdict(action, counter)) => (action, counter, frame.to_vec(), None),
        };
        Outcome {
            action,
            counter,
            frame: out,
            sent_to,
            flow_lookup: lookup,
        }
    }

    /// The backend the ring gives `key` (for a new flow) under the VIP's
    /// current state, ignoring the flow table.
    pub fn ring_choice(&self, key: &FlowKey) -> Option<(u32, Backend)> {
        let vip = self.state.vip_for(key)?;
        ring_pick(&self.state, vip, key).ok()
    }

    /// A closed-address drop stands at a VIP address none of whose VIPs
    /// opens it; to an address with no VIP the packet passes as it would
    /// have before addresses were closed.
    fn settle(&self, frame: &[u8], closed: GlobalCounter) -> (Action, GlobalCounter) {
        let dst = if frame[12..14] == [0x86, 0xdd] {
            (FAMILY_V6, [0, 1, 2, 3].map(|i| word(frame, 38 + 4 * i)))
        } else {
            (FAMILY_V4, [word(frame, 30), 0, 0, 0])
        };
        let Some(bits) = self.state.address_bits(dst.0, dst.1) else {
            let pass = match closed {
                GlobalCounter::DropClosedPort => GlobalCounter::PassNotVip,
                GlobalCounter::DropClosedFragment => GlobalCounter::PassLaterFragment,
                _ => GlobalCounter::PassOtherProtocol,
            };
            return (Action::Pass, pass);
        };
        let echo = closed == GlobalCounter::DropClosedEcho && bits & address::PASS_ECHO != 0;
        if bits & address::OPEN != 0 || echo {
            (Action::Pass, GlobalCounter::PassOpenAddress)
        } else {
            (Action::Drop, closed)
        }
    }

    #[allow(clippy::type_complexity)]
    fn forward(
        &mut self,
        frame: &[u8],
        lookup: &mut Option<bool>,
    ) -> Result<(GlobalCounter, Vec<u8>, u32, u32), Stop> {
        let pkt = parse(frame).map_err(|c| {
            let action = if is_closed(c) {
                Action::Drop
            } else {
                Action::Pass
            };
            Stop::Verdict(action, c)
        })?;
        if pkt.key.proto == frame::PROTO_ICMP || pkt.key.proto == frame::PROTO_ICMPV6 {
            return self.icmp(frame, &pkt);
        }
        // A SYN never consults the flow table; other packets do before the
        // VIP is looked up, and a hit stands for the lookup.
        let hit = if pkt.syn {
            None
        } else {
            self.flow_hit(&pkt.key)
        };
        if let Some(f) = hit {
            check(frame, &pkt)?;
            *lookup = Some(true);
            too_big(&self.state, frame, &pkt, &f.backend)?;
            let out = encapsulate(&self.state, frame, &pkt, &f.backend);
            return Ok((GlobalCounter::TxFlowHit, out, f.vip_index, f.backend_id));
        }
        let vip = self
            .state
            .vip_for(&pkt.key)
            .ok_or(Stop::Verdict(Action::Drop, GlobalCounter::DropClosedPort))?
            .clone();
        check(frame, &pkt)?;
        let use_flows = vip.flags & flags::NO_FLOW_TABLE == 0;
        if use_flows && !pkt.syn {
            *lookup = Some(false);
        }
        let (id, backend) =
            ring_pick(&self.state, &vip, &pkt.key).map_err(|c| Stop::Verdict(Action::Drop, c))?;
        if use_flows {
            // Never the retired bit: see `lb_abi::backend`.
            let recorded = Backend {
                generation: recorded_generation(backend.generation),
                ..backend
            };
            self.flows.insert(
                pkt.key,
                FlowValue::tagged(&pkt.key, recorded, id, vip.vip_index, vip.generation, 0),
            );
        }
        too_big(&self.state, frame, &pkt, &backend)?;
        let out = if pkt.syn && vip.flags & flags::CLAMP_MSS != 0 {
            let max = lb_abi::vip::max_mss(fits(&self.state, &backend), pkt.l3_len);
            encapsulate(&self.state, &clamp_mss(frame, &pkt, max), &pkt, &backend)
        } else {
            encapsulate(&self.state, frame, &pkt, &backend)
        };
        Ok((GlobalCounter::TxRing, out, vip.vip_index, id))
    }

    /// An ICMP error about a VIP flow goes to the flow's backend, chosen by
    /// the quoted packet's reversed 5-tuple (see the program's `icmp`).
    #[allow(clippy::type_complexity)]
    fn icmp(&self, frame: &[u8], pkt: &Parsed) -> Result<(GlobalCounter, Vec<u8>, u32, u32), Stop> {
        let other = Stop::Verdict(Action::Drop, GlobalCounter::DropClosedProtocol);
        let kind = frame[pkt.l4];
        let v4 = pkt.key.family == FAMILY_V4;
        // Neighbour discovery must reach the stack, whatever the address.
        if !v4 && (133..=137).contains(&kind) {
            return Err(Stop::Verdict(
                Action::Pass,
                GlobalCounter::PassOtherProtocol,
            ));
        }
        if kind == if v4 { 8 } else { 128 } {
            return Err(Stop::Verdict(Action::Drop, GlobalCounter::DropClosedEcho));
        }
        let steered = if v4 {
            kind == 3
        } else {
            kind == 1 || kind == 2
        };
        if !steered {
            return Err(other);
        }
        let Some(flow) = quoted_flow(frame, pkt) else {
            let has_vip = self
                .state
                .vips
                .keys()
                .any(|k| k.family == pkt.key.family && k.addr == pkt.key.dst);
            return Err(if has_vip {
                Stop::Verdict(Action::Drop, GlobalCounter::DropBadIcmp)
            } else {
                other
            });
        };
        if flow.dst != pkt.key.dst {
            return Err(other);
        }
        let vip = self
            .state
            .vip_for(&flow)
            .ok_or(Stop::Verdict(Action::Drop, GlobalCounter::DropClosedPort))?;
        check(frame, pkt)?;
        let (id, backend) = match self.flow_hit(&flow) {
            Some(f) => (f.backend_id, f.backend),
            None => {
                ring_pick(&self.state, vip, &flow).map_err(|c| Stop::Verdict(Action::Drop, c))?
            }
        };
        if pkt.ip_len > fits(&self.state, &backend) {
            return Err(Stop::Verdict(Action::Drop, GlobalCounter::DropTooBig));
        }
        let steered = Parsed { key: flow, ..*pkt };
        let out = encapsulate(&self.state, frame, &steered, &backend);
        Ok((GlobalCounter::TxIcmpToBackend, out, vip.vip_index, id))
    }

    /// The flow entry of `key` if it is live: its VIP is in the generation
    /// that placed it and its backend still holds its id.
    fn flow_hit(&self, key: &FlowKey) -> Option<FlowValue> {
        let f = self.flows.get(key)?;
        let vip_live = f.vip_generation != 0
            && self.state.vip_generations.get(&f.vip_index) == Some(&f.vip_generation);
        let backend_live = self
            .state
            .backends
            .get(&f.backend_id)
            .is_some_and(|b| b.generation == f.backend.generation);
        (vip_live && backend_live).then_some(*f)
    }
}

/// `frame` with its TCP MSS option lowered to `max` if larger, and the TCP
/// checksum updated incrementally (RFC 1624), as `flags::CLAMP_MSS` asks.
/// The options are walked by kind; at most eight are looked at, and a
/// malformed list is left alone.
fn clamp_mss(frame: &[u8], pkt: &Parsed, max: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    let l4 = pkt.l4;
    let end = (l4 + usize::from(f[l4 + 12] >> 4) * 4).min(f.len());
    let mut off = l4 + 20;
    for _ in 0..8 {
        if off >= end {
            break;
        }
        match f[off] {
            0 => break,
            1 => off += 1,
            kind => {
                let Some(&len) = f.get(off + 1) else { break };
                let len = usize::from(len);
                if len < 2 || off + len > end {
                    break;
                }
                if kind == 2 {
                    let old = if len == 4 {
                        u16::from_be_bytes([f[off + 2], f[off + 3]])
                    } else {
                        0
                    };
                    if old > max {
                        f[off + 2..off + 4].copy_from_slice(&max.to_be_bytes());
                        // Big-endian words from the TCP header's start; a
                        // value at an odd offset counts byte-swapped.
                        let (o, n) = if (off + 2 - l4).is_multiple_of(2) {
                            (old, max)
                        } else {
                            (old.swap_bytes(), max.swap_bytes())
                        };
                        let check = u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]);
                        let mut sum = u32::from(!check) + u32::from(!o) + u32::from(n);
                        sum = (sum & 0xffff) + (sum >> 16);
                        sum = (sum & 0xffff) + (sum >> 16);
                        f[l4 + 16..l4 + 18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                    }
                    break;
                }
                off += len;
            }
        }
    }
    f
}

/// The client's 5-tuple from the packet an ICMP error quotes (which went
/// VIP → client), or `None` if it is cut short or not TCP/UDP over IP.
fn quoted_flow(frame: &[u8], pkt: &Parsed) -> Option<FlowKey> {
    let q = frame.get(pkt.l4 + 8..)?;
    let word = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let (src, dst, proto, l4) = if pkt.key.family == FAMILY_V4 {
        if q.len() < 20 || q[0] >> 4 != 4 || q[0] & 0x0f < 5 {
            return None;
        }
        (
            [word(q, 16), 0, 0, 0],
            [word(q, 12), 0, 0, 0],
            q[9],
            usize::from(q[0] & 0x0f) * 4,
        )
    } else {
        if q.len() < 40 || q[0] >> 4 != 6 {
            return None;
        }
        (
            [word(q, 24), word(q, 28), word(q, 32), word(q, 36)],
            [word(q, 8), word(q, 12), word(q, 16), word(q, 20)],
            q[6],
            40,
        )
    };
    if proto != lb_abi::PROTO_TCP && proto != lb_abi::PROTO_UDP {
        return None;
    }
    let ports = q.get(l4..l4 + 4)?;
    Some(FlowKey {
        src,
        dst,
        src_port: u16::from_ne_bytes([ports[2], ports[3]]),
        dst_port: u16::from_ne_bytes([ports[0], ports[1]]),
        proto,
        family: pkt.key.family,
        _pad: [0; 2],
    })
}

/// Why [`Model::forward`] stopped short of forwarding.
enum Stop {
    /// Passed or dropped, frame unchanged.
    Verdict(Action, GlobalCounter),
    /// Answered with this frame (ICMP too-big).
    Reply(Vec<u8>),
}

impl From<(Action, GlobalCounter)> for Stop {
    fn from((action, counter): (Action, GlobalCounter)) -> Self {
        Stop::Verdict(action, counter)
    }
}

/// The largest inner IP packet that fits the MTU once encapsulated towards
/// `backend`.
fn fits(state: &DataplaneState, backend: &Backend) -> u32 {
    let outer_len = if backend.family == FAMILY_V6 { 40 } else { 20 };
    u32::from(state.control.mtu).saturating_sub(outer_len)
}

/// Whether a too-big reply may go to the packet's sender: a frame sent to
/// a unicast MAC, from an IPv4 source outside 0/8, 127/8 and 224/3, or an
/// IPv6 source other than ::, ::1 and ff00::/8.
fn answerable(frame: &[u8], pkt: &Parsed) -> bool {
    if frame[0] & 1 != 0 {
        return false;
    }
    match lb_abi::ip_from_wire(pkt.key.family, pkt.key.src) {
        Some(std::net::IpAddr::V4(a)) => !matches!(a.octets()[0], 0 | 127 | 224..),
        Some(std::net::IpAddr::V6(a)) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast())
        }
        None => false,
    }
}

/// What the program does with a packet that would exceed the MTU once
/// encapsulated towards `backend`: an ICMP too-big reply (IPv4 with DF,
/// IPv6) or a drop (IPv4 without DF). `Ok` when it fits.
fn too_big(
    state: &DataplaneState,
    frame: &[u8],
    pkt: &Parsed,
    backend: &Backend,
) -> Result<(), Stop> {
    let client_mtu = fits(state, backend);
    if pkt.ip_len <= client_mtu {
        return Ok(());
    }
    if pkt.key.family == lb_abi::FAMILY_V4 && !pkt.dont_fragment {
        return Err(Stop::Verdict(Action::Drop, GlobalCounter::DropTooBig));
    }
    if !answerable(frame, pkt) {
        return Err(Stop::Verdict(
            Action::Drop,
            GlobalCounter::DropTooBigUnanswerable,
        ));
    }
    let mut out = Vec::with_capacity(110);
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    let ip = &frame[14..];
    if pkt.key.family == lb_abi::FAMILY_V4 {
        out.extend_from_slice(&[0x08, 0x00]);
        let mut hdr = [0u8; 20];
        hdr[0] = 0x45;
        hdr[2..4].copy_from_slice(&56u16.to_be_bytes());
        hdr[8] = 64;
        hdr[9] = 1;
        hdr[12..16].copy_from_slice(&ip[16..20]);
        hdr[16..20].copy_from_slice(&ip[12..16]);
        let csum = internet_checksum(&hdr);
        hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        out.extend_from_slice(&hdr);
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&(client_mtu as u16).to_be_bytes());
        icmp.extend_from_slice(&ip[..28]);
        let csum = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&csum.to_be_bytes());
        out.extend_from_slice(&icmp);
    } else {
        out.extend_from_slice(&[0x86, 0xdd]);
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&56u16.to_be_bytes());
        out.extend_from_slice(&[58, 64]);
        out.extend_from_slice(&ip[24..40]);
        out.extend_from_slice(&ip[8..24]);
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&client_mtu.to_be_bytes());
        icmp.extend_from_slice(&ip[..48]);
        let mut pseudo = Vec::with_capacity(96);
        pseudo.extend_from_slice(&ip[24..40]);
        pseudo.extend_from_slice(&ip[8..24]);
        pseudo.extend_from_slice(&56u32.to_be_bytes());
        pseudo.extend_from_slice(&58u32.to_be_bytes());
        pseudo.extend_from_slice(&icmp);
        let csum = internet_checksum(&pseudo);
        icmp[2..4].copy_from_slice(&csum.to_be_bytes());
        out.extend_from_slice(&icmp);
    }
    Err(Stop::Reply(out))
}

/// The drops only VIP traffic is held to: IPv4 options, fragments, and IP
/// lengths that disagree with the frame.
fn check(frame: &[u8], pkt: &Parsed) -> Result<(), (Action, GlobalCounter)> {
    let drop = |c| Err((Action::Drop, c));
    if pkt.has_options {
        return drop(GlobalCounter::DropIpv4Options);
    }
    if pkt.is_fragment {
        return drop(GlobalCounter::DropFragment);
    }
    let l4_min = if pkt.key.proto == lb_abi::PROTO_TCP {
        20
    } else {
        8
    };
    if pkt.ip_len < pkt.l3_len + l4_min || pkt.ip_len as usize + 14 > frame.len() {
        return drop(GlobalCounter::DropBadLength);
    }
    Ok(())
}

fn ring_pick(
    state: &DataplaneState,
    vip: &VipEntry,
    key: &FlowKey,
) -> Result<(u32, Backend), GlobalCounter> {
    let ring = match &vip.ring {
        Some(ring) if vip.ring_slot != NO_RING => ring,
        _ => return Err(GlobalCounter::DropNoBackend),
    };
    if state.ring_size == 0 {
        return Err(GlobalCounter::DropNoBackend);
    }
    let hash = flow_hash(key, vip.flags & flags::HASH_SRC_ONLY != 0);
    let id = *ring
        .get(ring_index(hash, state.ring_size) as usize)
        .ok_or(GlobalCounter::DropNoBackend)?;
    let backend = *state
        .backends
        .get(&id)
        .ok_or(GlobalCounter::DropBadBackend)?;
    if backend.generation == EMPTY_GENERATION
        || (key.family == FAMILY_V6 && backend.family != FAMILY_V6)
    {
        return Err(GlobalCounter::DropBadBackend);
    }
    Ok((id, backend))
}

/// The frame with the outer headers pushed, as the program builds it.
fn encapsulate(state: &DataplaneState, frame: &[u8], pkt: &Parsed, backend: &Backend) -> Vec<u8> {
    let c = &state.control;
    let mix = outer_source_mix(&pkt.key);
    let mut out = Vec::with_capacity(frame.len() + 40);
    out.extend_from_slice(&c.gateway_mac);
    out.extend_from_slice(&c.src_mac);
    if backend.family == FAMILY_V4 {
        out.extend_from_slice(&[0x08, 0x00]);
        let src = blend(c.outer_src_v4, c.outer_src_v4_host_mask, mix).to_ne_bytes();
        let dst = backend.addr[0].to_ne_bytes();
        let total = (pkt.ip_len + 20) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[1] = pkt.tos;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = c.outer_ttl;
        ip[9] = 4;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let csum = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        out.extend_from_slice(&ip);
    } else {
        out.extend_from_slice(&[0x86, 0xdd]);
        let label = mix & 0x000f_ffff;
        let first = (6u32 << 28) | (u32::from(pkt.tos) << 20) | label;
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&(pkt.ip_len as u16).to_be_bytes());
        out.push(if pkt.key.family == FAMILY_V4 { 4 } else { 41 });
        out.push(c.outer_ttl);
        let s = c.outer_src_v6;
        let src = [s[0], s[1], s[2], blend(s[3], c.outer_src_v6_host_mask, mix)];
        for w in src.iter().chain(&backend.addr) {
            out.extend_from_slice(&w.to_ne_bytes());
        }
    }
    // The IP packet only: an Ethernet trailer after it is not carried.
    out.extend_from_slice(&frame[14..14 + pkt.ip_len as usize]);
    out
}

/// RFC 1071 checksum of `bytes` (even length).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
