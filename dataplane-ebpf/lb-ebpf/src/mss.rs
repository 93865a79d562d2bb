//! The per-VIP MSS clamp (`lb_abi::vip::flags::CLAMP_MSS`): a SYN's TCP
//! MSS option lowered to what fits the tunnel, the TCP checksum updated.
//!
//! The options are walked as TCP defines them (end, no-op, kind-length-
//! value), at most [`MAX_OPTION_STEPS`] of them; a malformed list is left
//! as it is. Only a 4-byte MSS option larger than the limit is rewritten.

use aya_ebpf::programs::XdpContext;
use lb_ebpf::{
    csum,
    packet::{bytes_at, load, store},
};

use crate::parse::Headers;

/// Options looked at before giving up: Linux sends MSS first, and a SYN
/// carries at most a handful.
const MAX_OPTION_STEPS: usize = 8;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// Lowers the MSS option of the TCP SYN described by `h` to `max`.
#[inline(always)]
pub fn clamp(ctx: &XdpContext, h: &Headers, max: u16) {
    let Some(tcp) = bytes_at(ctx, h.l4, 20) else {
        return;
    };
    let end = h.l4 + usize::from(load::<u8>(tcp, 12) >> 4) * 4;
    let mut off = h.l4 + 20;
    let mut i = 0;
    while i < MAX_OPTION_STEPS && off < end {
        // Four bytes at once, an MSS option's length: fewer left in the
        // packet means no MSS option follows. (A one-byte check here also
        // compiles to a form the verifier cannot follow.)
        let Some(opt) = bytes_at(ctx, off, 4) else {
            return;
        };
        let kind: u8 = load(opt, 0);
        if kind == OPT_END {
            return;
        }
        if kind == OPT_NOP {
            off += 1;
            i += 1;
            continue;
        }
        let len = usize::from(load::<u8>(opt, 1));
        if len < 2 || off + len > end {
            return;
        }
        if kind == OPT_MSS {
            if len == 4 {
                rewrite(tcp, opt, (off - h.l4) % 2 == 1, max);
            }
            return;
        }
        off += len;
        i += 1;
    }
}

/// Writes `max` over the value of the MSS option at `opt` if it is
/// larger, and updates the checksum of the TCP header at `tcp`. Both
/// pointers come from checks already made: deriving them again would lose
/// the verifier's knowledge of the range.
#[inline(always)]
fn rewrite(tcp: *mut u8, opt: *mut u8, odd: bool, max: u16) {
    let old: u16 = load(opt, 2);
    if u16::from_be(old) <= max {
        return;
    }
    let new = max.to_be();
    store(opt, 2, new);
    // The checksum sums 16-bit words from the TCP header's start; a value
    // at an odd offset straddles two of them, its bytes swapped in the sum.
    let (old, new) = if odd {
        (old.swap_bytes(), new.swap_bytes())
    } else {
        (old, new)
    };
    store(tcp, 16, csum::replace16(load(tcp, 16), old, new));
}
