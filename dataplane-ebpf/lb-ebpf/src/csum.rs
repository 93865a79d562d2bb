//! Internet checksum (RFC 1071) over values already in registers.

/// Checksum of a 20-byte IPv4 header given its first ten bytes as five
/// words (checksum word excluded) and the two addresses.
#[inline(always)]
pub fn ipv4_header(words: &[u16; 5], src: u32, dst: u32) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < 5 {
        sum += u32::from(words[i]);
        i += 1;
    }
    sum += (src & 0xffff) + (src >> 16) + (dst & 0xffff) + (dst >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// A header checksum after one 16-bit word of what it covers changed from
/// `old` to `new` (RFC 1624, eqn. 3). All three as loaded from the packet:
/// the one's-complement sum does not depend on byte order.
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
