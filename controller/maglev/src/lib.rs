//! Maglev lookup tables: which backend owns each of M slots.
//!
//! This is the algorithm of the Maglev paper (Eisenbud et al., NSDI 2016,
//! §3.4). Each backend gets an `offset` and a `skip` from two hashes of its
//! identity; its preference list is `offset, offset + skip, offset + 2·skip, …`
//! modulo M. Backends take turns claiming their next preferred slot that is
//! still free until all M slots are owned. Preference entries are computed
//! as the fill goes, so memory is O(N) beside the table itself.
//!
//! # Determinism
//! The table is a pure function of the set of (identity, weight) pairs, M
//! and the [`Seeds`]. Identities are hashed with MurmurHash3 x86_32 (bytes
//! read little-endian, as the reference does) under two seeds,
//! `offset = h(offset_seed) mod M` and `skip = h(skip_seed) mod (M − 1) + 1`;
//! backends take turns in the byte order of their identities, not in input
//! order. Nothing depends on platform, endianness or hash-map iteration, so
//! every node builds byte-identical tables; the golden vectors in the tests
//! pin that. A fleet that wants tables unlike other fleets' sets its own
//! seeds, the same on every node.
//!
//! # Weights
//! Each backend keeps a credit. In every round of turns, a backend adds its
//! weight to its credit and, if the credit reaches the largest weight `W`,
//! spends `W` of it to claim one slot. After `R` rounds a backend of weight
//! `w` has claimed `⌊R·w/W⌋` slots (the last round may stop part way), so
//! its slot count is within `1 + w/w̄` slots of its exact weighted share
//! `M·w/Σw` (`w̄` the mean weight): within one or two slots for weights of
//! one order. With equal weights every backend
//! claims once per round: the paper's algorithm exactly. Weight 0 owns no
//! slot (drain). Weights above [`MAX_WEIGHT`] are rejected; weights are
//! divided by their greatest common divisor first, which only shortens the
//! fill. (This is the scheme of Katran's Maglev V2.)
//!
//! # Example
//! ```
//! use lb_maglev::{Member, build};
//!
//! let members = [Member::new(b"10.0.0.1", 1), Member::new(b"10.0.0.2", 1)];
//! let table = build(&members, 13).unwrap();
//! assert_eq!(table.len(), 13);
//! assert!(table.iter().all(|&m| m < 2));
//! ```

mod prime;

use std::collections::HashMap;

pub use prime::is_prime;

use lb_abi::hash::Murmur3;
use thiserror::Error;

/// Default seed of the hash that gives a backend its first preferred slot.
pub const OFFSET_SEED: u32 = 0x6d61_676c;
/// Default seed of the hash that gives a backend its stride.
pub const SKIP_SEED: u32 = 0x736b_6970;

/// The two hash seeds of a table. Every node of a fleet must use the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seeds {
    /// Seed of the first-preferred-slot hash.
    pub offset: u32,
    /// Seed of the stride hash.
    pub skip: u32,
}

impl Default for Seeds {
    /// [`OFFSET_SEED`] and [`SKIP_SEED`].
    fn default() -> Self {
        Self {
            offset: OFFSET_SEED,
            skip: SKIP_SEED,
        }
    }
}
/// Largest accepted weight.
pub const MAX_WEIGHT: u32 = 65_535;
/// Smallest accepted table size.
pub const MIN_TABLE_SIZE: u32 = 3;
/// Largest accepted table size.
pub const MAX_TABLE_SIZE: u32 = 16_777_213;
/// The table size used when none is configured.
pub const DEFAULT_TABLE_SIZE: u32 = lb_abi::limits::DEFAULT_RING_SIZE;

/// A backend as the table builder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Canonical, stable encoding of the backend (for example its address
    /// family and address bytes). Two members must never share one.
    pub identity: &'a [u8],
    /// Relative share of slots; 0 = no slots.
    pub weight: u32,
}

impl<'a> Member<'a> {
    /// A member with `identity` and `weight`.
    pub const fn new(identity: &'a [u8], weight: u32) -> Self {
        Self { identity, weight }
    }
}

/// Why a table cannot be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaglevError {
    /// M is not prime, so some strides would not visit every slot.
    #[error("table size {size} is not prime")]
    NotPrime { size: u32 },
    /// M is outside the supported range.
    #[error("table size {size} is outside {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}")]
    SizeOutOfRange { size: u32 },
    /// More members than slots.
    #[error("{members} members do not fit in a table of {size} slots")]
    TooManyMembers { members: usize, size: u32 },
    /// Two members share an identity.
    #[error("members {first} and {second} have the same identity")]
    DuplicateMember { first: usize, second: usize },
    /// A weight above [`MAX_WEIGHT`].
    #[error("member {index} has weight {weight}, above the maximum {MAX_WEIGHT}")]
    WeightTooLarge { index: usize, weight: u32 },
    /// Every weight is zero (or there are no members): no slot has an owner.
    #[error("no member has a weight above zero")]
    ZeroTotalWeight,
}

/// Checks that `size` can be a table size.
pub fn check_table_size(size: u32) -> Result<(), MaglevError> {
    if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size) {
        return Err(MaglevError::SizeOutOfRange { size });
    }
    if !is_prime(size) {
        return Err(MaglevError::NotPrime { size });
    }
    Ok(())
}

/// Builds the table with the default [`Seeds`]: entry `s` is the index in
/// `members` of slot `s`'s owner.
pub fn build(members: &[Member<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    build_seeded(members, size, Seeds::default())
}

/// [`build`] with chosen seeds.
pub fn build_seeded(
    members: &[Member<'_>],
    size: u32,
    seeds: Seeds,
) -> Result<Vec<u32>, MaglevError> {
    check_table_size(size)?;
    if members.len() > size as usize {
        return Err(MaglevError::TooManyMembers {
            members: members.len(),
            size,
        });
    }
    let mut turns = turn_order(members, size, seeds)?;
    Ok(fill(&mut turns, size))
}

/// A member's first preferred slot and stride in a table of `size` slots.
pub fn preference(identity: &[u8], size: u32, seeds: Seeds) -> (u32, u32) {
    let offset = Murmur3::new(seeds.offset).bytes(identity).finish() % size;
    let skip = Murmur3::new(seeds.skip).bytes(identity).finish() % (size - 1) + 1;
    (offset, skip)
}

/// One member's state while the table fills.
struct Turn {
    /// Index in the caller's slice, the value written to the table.
    member: u32,
    /// Weight after dividing by the common divisor.
    weight: u32,
    /// Weight accumulated towards the next claim.
    credit: u32,
    /// Next preferred slot.
    next: u32,
    skip: u32,
}

/// Validates members and lays out their turns in identity order.
fn turn_order(members: &[Member<'_>], size: u32, seeds: Seeds) -> Result<Vec<Turn>, MaglevError> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_unstable_by(|&a, &b| members[a].identity.cmp(members[b].identity));
    for pair in order.windows(2) {
        if members[pair[0]].identity == members[pair[1]].identity {
            let (first, second) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            return Err(MaglevError::DuplicateMember { first, second });
        }
    }
    let mut divisor = 0;
    for (index, m) in members.iter().enumerate() {
        if m.weight > MAX_WEIGHT {
            return Err(MaglevError::WeightTooLarge {
                index,
                weight: m.weight,
            });
        }
        divisor = gcd(divisor, m.weight);
    }
    if divisor == 0 {
        return Err(MaglevError::ZeroTotalWeight);
    }
    Ok(order
        .into_iter()
        .filter(|&i| members[i].weight > 0)
        .map(|i| {
            let (offset, skip) = preference(members[i].identity, size, seeds);
            Turn {
                member: i as u32,
                weight: members[i].weight / divisor,
                credit: 0,
                next: offset,
                skip,
            }
        })
        .collect())
}

/// Free slots left when [`fill`] stops walking preference lists and starts
/// computing where each list next meets a free slot. Walking costs about
/// M/F probes per claim when F slots are free; computing costs F modular
/// products. Below this many the latter wins; the table is the same either
/// way.
const END_GAME: u32 = 128;

fn fill(turns: &mut [Turn], size: u32) -> Vec<u32> {
    let mut table = vec![u32::MAX; size as usize];
    // Occupancy as bits: 8 KiB for M = 65537 stays in L1 while probing.
    let mut taken = vec![0u64; size.div_ceil(64) as usize];
    let mut end_game: Option<EndGame> = None;
    let mut left = size;
    let full = turns.iter().map(|t| t.weight).max().unwrap_or(1);
    let (mut at, n) = (0, turns.len());
    loop {
        if left <= END_GAME && end_game.is_none() {
            end_game = Some(EndGame::new(&table, turns, size));
        }
        let turn = &mut turns[at];
        at = if at + 1 == n { 0 } else { at + 1 };
        turn.credit += turn.weight;
        if turn.credit < full {
            continue;
        }
        turn.credit -= full;
        let slot = match &mut end_game {
            Some(end) => end.claim(turn, size),
            None => walk(turn, &mut taken, size),
        };
        table[slot as usize] = turn.member;
        left -= 1;
        if left == 0 {
            return table;
        }
    }
}

/// Walks `turn`'s preference list to its first free slot and takes it. M is
/// prime and skip < M, so the walk visits every slot.
#[inline]
fn walk(turn: &mut Turn, taken: &mut [u64], size: u32) -> u32 {
    loop {
        let slot = turn.next;
        turn.next += turn.skip;
        if turn.next >= size {
            turn.next -= size;
        }
        let (word, bit) = ((slot >> 6) as usize, 1u64 << (slot & 63));
        if taken[word] & bit == 0 {
            taken[word] |= bit;
            return slot;
        }
    }
}

/// The last free slots. A turn's next slot is the free slot `s` its list
/// reaches first from `next`: the one with the least
/// `(s − next)·skip⁻¹ mod M`, which is what walking would find.
struct EndGame {
    free: Vec<u32>,
    /// `skip⁻¹ mod M` by member index.
    inverses: HashMap<u32, u64>,
}

impl EndGame {
    fn new(table: &[u32], turns: &[Turn], size: u32) -> Self {
        Self {
            free: (0..size)
                .filter(|&s| table[s as usize] == u32::MAX)
                .collect(),
            inverses: turns
                .iter()
                .map(|t| (t.member, mod_inverse(t.skip, size)))
                .collect(),
        }
    }

    fn claim(&mut self, turn: &mut Turn, size: u32) -> u32 {
        let inverse = self.inverses[&turn.member];
        let reduce = Barrett::new(size);
        let (at, _) = self
            .free
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let ahead = if s >= turn.next {
                    s - turn.next
                } else {
                    s + size - turn.next
                };
                (i, reduce.rem(u64::from(ahead) * inverse))
            })
            .min_by_key(|&(_, steps)| steps)
            .expect("claims stop when no slot is free");
        let slot = self.free.swap_remove(at);
        let next = slot + turn.skip;
        turn.next = if next >= size { next - size } else { next };
        slot
    }
}

/// `x mod m` by multiplication: a hardware 64-bit divide costs tens of
/// cycles, and the end game does one per free slot per claim.
struct Barrett {
    m: u64,
    /// ⌊2⁶⁴ / m⌋
    factor: u64,
}

impl Barrett {
    fn new(m: u32) -> Self {
        Self {
            m: u64::from(m),
            factor: u64::MAX / u64::from(m),
        }
    }

    #[inline]
    fn rem(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.factor)) >> 64) as u64;
        // q undershoots the true quotient by at most two.
        let mut r = x - q * self.m;
        while r >= self.m {
            r -= self.m;
        }
        r
    }
}

/// `a⁻¹ mod m` for prime `m` and `0 < a < m` (extended Euclid).
fn mod_inverse(a: u32, m: u32) -> u64 {
    let (mut old_r, mut r) = (i64::from(a), i64::from(m));
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(i64::from(m)) as u64
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests;
