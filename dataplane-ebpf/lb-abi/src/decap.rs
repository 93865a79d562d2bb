//! The decap program run on backends: strips the balancer's outer header.
//!
//! - [`DECAP_ADDRS`]: array of [`MAX_TUNNEL_ADDRS`] [`crate::AddrKey`]: the
//!   host's tunnel addresses (family 0 = empty slot). Only packets whose
//!   outer destination is one of them are decapsulated. A host has one or
//!   two; comparing a few inlined array entries is several times cheaper
//!   than a hash lookup. Written by userspace, read by the program.
//! - [`DECAP_STATS`]: per-CPU array indexed by [`DecapCounter`] → `u64`.
//!
//! Every packet is passed to the kernel stack (`XDP_PASS`): decapsulated
//! when it is IPIP, IP6IP6 or 4in6 to a tunnel address, untouched otherwise.

use crate::stats::counters;

/// Name of the tunnel-address map in the decap object.
pub const DECAP_ADDRS: &str = "DECAP_ADDRS";
/// Most tunnel addresses one host can have.
pub const MAX_TUNNEL_ADDRS: u32 = 8;
/// Name of the counter map in the decap object.
pub const DECAP_STATS: &str = "DECAP_STATS";

counters! {
    /// What the decap program did with a packet; each packet is counted
    /// under exactly one.
    DecapCounter {
        /// IPv4 in IPv4 stripped.
        DecapIpip = "decap_ipip",
        /// IPv6 in IPv6 stripped.
        DecapIp6ip6 = "decap_ip6ip6",
        /// IPv4 in IPv6 stripped.
        Decap4in6 = "decap_4in6",
        /// Passed untouched: not an IP-in-IP packet.
        PassNotTunnel = "pass_not_tunnel",
        /// Passed untouched: IP-in-IP, but not to a tunnel address of this
        /// host.
        PassNotLocal = "pass_not_local",
        /// Passed untouched: an outer IPv4 fragment (the stack reassembles).
        PassFragment = "pass_fragment",
        /// Passed untouched: outer header with options, or an inner packet
        /// cut short or of the wrong version.
        PassMalformed = "pass_malformed",
    }
}

/// Number of [`DecapCounter`]s; the size of [`DECAP_STATS`].
pub const DECAP_COUNTERS: u32 = DecapCounter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_indices() {
        for (i, c) in DecapCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
