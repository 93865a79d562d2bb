//! The flow hash, shared bit for bit by the XDP program and userspace.
//!
//! # Flow hash, version 1
//! MurmurHash3 (x86, 32-bit) with seed [`FLOW_HASH_SEED`] over a sequence of
//! 32-bit words, each word being four wire bytes read little-endian:
//!
//! | family | words, in order |
//! |--------|-----------------|
//! | IPv4   | src, dst, ports, proto |
//! | IPv6   | src\[0..4\], dst\[0..4\], ports, proto |
//!
//! where `ports` is the source port's two wire bytes followed by the
//! destination port's, and `proto` is the protocol number. With the VIP flag
//! [`crate::vip::flags::HASH_SRC_ONLY`] only the source words are hashed.
//! The length mixed into the finaliser is the number of bytes hashed. The
//! ring index is [`ring_index`]: `⌊hash · M / 2³²⌋`.
//!
//! Every load-balancer node computes the same hash for the same packet, so a
//! flow that ECMP moves between nodes keeps its backend.

use crate::{FAMILY_V4, flow::FlowKey};

/// Seed of flow hash version 1.
pub const FLOW_HASH_SEED: u32 = 0x4c42_0001;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Incremental MurmurHash3 x86_32 over whole 32-bit words.
#[derive(Clone, Copy, Debug)]
pub struct Murmur3 {
    h: u32,
    len: u32,
}

impl Murmur3 {
    /// Starts a hash with `seed`.
    #[inline(always)]
    pub const fn new(seed: u32) -> Self {
        Self { h: seed, len: 0 }
    }

    /// Mixes in one word.
    #[inline(always)]
    pub const fn word(mut self, k: u32) -> Self {
        let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        self.h = (self.h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
        self.len += 4;
        self
    }

    /// Mixes in a byte string; a trailing partial word is handled as in the
    /// reference implementation.
    pub fn bytes(mut self, data: &[u8]) -> Self {
        let (words, tail) = data.as_chunks::<4>();
        for w in words {
            self = self.word(u32::from_le_bytes(*w));
        }
        if !tail.is_empty() {
            let mut k = 0u32;
            for (i, b) in tail.iter().enumerate() {
                k |= u32::from(*b) << (8 * i);
            }
            let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
            self.h ^= k;
            self.len += tail.len() as u32;
        }
        self
    }

    /// Finalises the hash.
    #[inline(always)]
    pub const fn finish(self) -> u32 {
        let mut h = self.h ^ self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// Flow hash version 1 of `key`; see the module docs.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, src_only: bool) -> u32 {
    // Words are loaded natively; on the little-endian targets we support this
    // is the documented little-endian reading of the wire bytes.
    let mut h = Murmur3::new(FLOW_HASH_SEED);
    if key.family == FAMILY_V4 {
        h = h.word(key.src[0]);
        if !src_only {
            h = h.word(key.dst[0]);
        }
    } else {
        h = h
            .word(key.src[0])
            .word(key.src[1])
            .word(key.src[2])
            .word(key.src[3]);
        if !src_only {
            h = h
                .word(key.dst[0])
                .word(key.dst[1])
                .word(key.dst[2])
                .word(key.dst[3]);
        }
    }
    if !src_only {
        h = h
            .word(u32::from(key.src_port) | (u32::from(key.dst_port) << 16))
            .word(u32::from(key.proto));
    }
    h.finish()
}

/// The slot of a ring of `ring_size` entries that `hash` picks:
/// `⌊hash · M / 2³²⌋`, which spreads a uniform hash as evenly as `hash % M`
/// does (slot counts differ by at most one) with a multiply instead of a
/// divide: M is only known at load time, so `%` would stay a division in
/// the program.
#[inline(always)]
pub const fn ring_index(hash: u32, ring_size: u32) -> u32 {
    ((hash as u64 * ring_size as u64) >> 32) as u32
}

/// The per-flow bits blended into the outer source address: the source
/// address words folded by XOR, XOR the source port spread over the word by
/// a multiply (so port changes move high bits too). Cheap enough to recompute
/// on every packet, stable for the life of a flow.
#[inline(always)]
pub const fn outer_source_mix(key: &FlowKey) -> u32 {
    let fold = key.src[0] ^ key.src[1] ^ key.src[2] ^ key.src[3];
    fold ^ (key.src_port as u32).wrapping_mul(0x9e37_79b1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FAMILY_V6, PROTO_TCP};

    // Reference vectors of MurmurHash3 x86_32 (SMHasher).
    #[test]
    fn murmur3_matches_reference_vectors() {
        assert_eq!(Murmur3::new(0).bytes(b"").finish(), 0);
        assert_eq!(Murmur3::new(1).bytes(b"").finish(), 0x514e_28b7);
        assert_eq!(Murmur3::new(0).bytes(b"test").finish(), 0xba6b_d213);
        assert_eq!(
            Murmur3::new(0).bytes(b"Hello, world!").finish(),
            0xc036_3e43
        );
        assert_eq!(
            Murmur3::new(0x9747_b28c)
                .bytes(b"The quick brown fox jumps over the lazy dog")
                .finish(),
            0x2fa8_26cd
        );
    }

    fn key(family: u8) -> FlowKey {
        FlowKey {
            src: [0x0a00_0001, 2, 3, 4],
            dst: [0x0a00_0002, 5, 6, 7],
            src_port: 0x3930,
            dst_port: 0x5000,
            proto: PROTO_TCP,
            family,
            _pad: [0; 2],
        }
    }

    #[test]
    fn flow_hash_is_the_documented_word_sequence() {
        let k = key(FAMILY_V4);
        let mut bytes = [0u8; 16];
        for (i, w) in [k.src[0], k.dst[0], 0x5000_3930, 6].iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let expect = Murmur3::new(FLOW_HASH_SEED).bytes(&bytes).finish();
        assert_eq!(flow_hash(&k, false), expect);
        // Golden value: changing it changes every node's flow placement.
        assert_eq!(flow_hash(&k, false), 0x0cf5_4ff3);
    }

    #[test]
    fn ring_index_stays_in_the_ring_and_covers_it() {
        assert_eq!(ring_index(0, 65_537), 0);
        assert_eq!(ring_index(u32::MAX, 65_537), 65_536);
        assert_eq!(ring_index(u32::MAX, 1), 0);
        let m = 13;
        let mut seen = [0u32; 13];
        for h in (0..u32::MAX).step_by(65_537) {
            seen[ring_index(h, m) as usize] += 1;
        }
        let (lo, hi) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
        assert!(hi - lo <= 1, "{seen:?}");
    }

    #[test]
    fn src_only_ignores_destination_and_ports() {
        let a = key(FAMILY_V6);
        let mut b = a;
        b.dst = [9, 9, 9, 9];
        b.src_port = 1;
        b.dst_port = 2;
        assert_ne!(flow_hash(&a, false), flow_hash(&b, false));
        assert_eq!(flow_hash(&a, true), flow_hash(&b, true));
    }
}
