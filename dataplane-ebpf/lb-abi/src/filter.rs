//! A bitmap of VIP addresses, so traffic to other addresses passes without
//! a hash lookup.
//!
//! Map [`VIP_FILTER`]: array of [`FILTER_WORDS`] `u64`; bit
//! [`filter_bit`]`(family, addr)` is set for every address that has a VIP.
//! A clear bit proves the address has no VIP; a set bit sends the packet on
//! to the VIP table. Written by userspace (bits set before a VIP is added,
//! cleared after the last VIP of an address is removed), read by the
//! balancer.

/// Name of the filter map in the eBPF object.
pub const VIP_FILTER: &str = "VIP_FILTER";

/// Name of the exact VIP-address map: hash map [`crate::AddrKey`] → `u32`
/// [`address`] bits, holding every address that has a VIP. Consulted only
/// off the balanced paths, where a verdict must not rest on the filter's
/// false positives: traffic to the address that no VIP balances is dropped
/// when the address is closed (see [`address`]), and an ICMP error whose
/// quoted packet cannot be read is dropped. Written by userspace with the
/// filter.
pub const VIP_ADDRS: &str = "VIP_ADDRS";

/// Bits of a [`VIP_ADDRS`] value: what the address's VIPs ask, OR-ed over
/// them (`crate::vip::flags`). 0, the default, is a closed address.
pub mod address {
    /// Some VIP of the address has `OPEN_ADDRESS`: unbalanced traffic to
    /// it goes to the host's stack.
    pub const OPEN: u32 = 1 << 0;
    /// Some VIP of the address has `PASS_ECHO`: echo requests go to the
    /// host's stack.
    pub const PASS_ECHO: u32 = 1 << 1;

    /// The address bits one VIP's flags ask for.
    pub const fn from_vip_flags(flags: u32) -> u32 {
        let mut bits = 0;
        if flags & crate::vip::flags::OPEN_ADDRESS != 0 {
            bits |= OPEN;
        }
        if flags & crate::vip::flags::PASS_ECHO != 0 {
            bits |= PASS_ECHO;
        }
        bits
    }
}

/// Words in the filter: 65,536 bits.
pub const FILTER_WORDS: u32 = 1 << 10;

/// The filter bit of an address: the words folded by XOR, high half folded
/// onto the low half (the last address byte sits in the top bits), spread
/// by a multiply, top 16 bits. Returns (word index, bit mask).
#[inline(always)]
pub const fn filter_bit(addr: &[u32; 4]) -> (u32, u64) {
    let fold = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
    let bit = (fold ^ (fold >> 16)).wrapping_mul(0x9e37_79b1) >> 16;
    (bit >> 6, 1u64 << (bit & 63))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_is_in_range_and_spreads() {
        let mut bits = std::collections::HashSet::new();
        for i in 0..=255u8 {
            for addr in [
                [u32::from_ne_bytes([10, 0, 0, i]), 0, 0, 0],
                [
                    u32::from_ne_bytes([0x20, 1, 0x0d, 0xb8]),
                    0,
                    0,
                    u32::from_ne_bytes([0, 0, 0, i]),
                ],
            ] {
                let (word, mask) = filter_bit(&addr);
                assert!(word < FILTER_WORDS);
                assert_eq!(mask.count_ones(), 1);
                bits.insert((word, mask));
            }
        }
        // 512 neighbouring addresses land on nearly as many bits.
        assert!(bits.len() > 490, "{}", bits.len());
    }
}
