//! VIP addresses are closed: traffic to a VIP's address that no VIP
//! balances is dropped, not handed to this host's stack.
//!
//! The stages that find such traffic (a later fragment, another protocol,
//! a port no VIP serves, an echo request, an extension header chain the
//! parser does not follow) do not know whether its address has a VIP: they
//! return a provisional drop under one of the `DropClosed*` counters, and
//! [`settle`] decides it once, off the balanced paths. To an address with
//! no VIP (the filter bit clear, or not in `VIP_ADDRS`) it passes as
//! before, under the pass counter of its kind; to a VIP address that a VIP
//! opened (`lb_abi::filter::address`) it passes under `PassOpenAddress`;
//! otherwise the drop stands. ICMPv6 neighbour discovery never gets here
//! (`icmp`): a closed address must still resolve.

use aya_ebpf::programs::XdpContext;
use lb_abi::{
    AddrKey, FAMILY_V4, FAMILY_V6,
    filter::{address, filter_bit},
    stats::GlobalCounter,
};

use crate::{
    maps::{VIP_ADDRS, VIP_FILTER},
    parse,
    verdict::Verdict,
};

/// Makes a provisional closed-address drop final, or turns it into a pass.
/// Everything else goes through as it is.
#[inline(always)]
pub fn settle(ctx: &XdpContext, v6: bool, r: Result<Verdict, Verdict>) -> Result<Verdict, Verdict> {
    match r {
        Err(v) if is_provisional(v.counter) => Err(decide(ctx, v6, v.counter)),
        r => r,
    }
}

/// The `DropClosed*` counters are declared together: one range check.
#[inline(always)]
fn is_provisional(c: GlobalCounter) -> bool {
    (c as u32).wrapping_sub(GlobalCounter::DropClosedFragment as u32)
        <= GlobalCounter::DropClosedExtHeader as u32 - GlobalCounter::DropClosedFragment as u32
}

/// Out of line: cold, and one copy serves both families.
#[inline(never)]
fn decide(ctx: &XdpContext, v6: bool, closed: GlobalCounter) -> Verdict {
    let open = match closed {
        GlobalCounter::DropClosedPort => GlobalCounter::PassNotVip,
        GlobalCounter::DropClosedFragment => GlobalCounter::PassLaterFragment,
        _ => GlobalCounter::PassOtherProtocol,
    };
    let Some(bits) = address_bits(ctx, v6) else {
        return Verdict::pass(open);
    };
    if bits & address::OPEN != 0
        || (closed == GlobalCounter::DropClosedEcho && bits & address::PASS_ECHO != 0)
    {
        Verdict::pass(GlobalCounter::PassOpenAddress)
    } else {
        Verdict::drop(closed)
    }
}

/// The `VIP_ADDRS` bits of the packet's destination, `None` when it has
/// no VIP.
#[inline(always)]
fn address_bits(ctx: &XdpContext, v6: bool) -> Option<u32> {
    let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
    let key = AddrKey::from_wire(family, parse::destination(ctx, v6)?);
    // Most such traffic is to no VIP: the filter settles it without a hash.
    let (word, mask) = filter_bit(&key.addr);
    if VIP_FILTER.get(word).copied().unwrap_or(0) & mask == 0 {
        return None;
    }
    // SAFETY: a u32 read whole.
    unsafe { VIP_ADDRS.get(&key) }.copied()
}
