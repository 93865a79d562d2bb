//! Maglev lookup tables: which backend owns each of M slots.
//!
//! This is the algorithm of the Maglev paper (Eisenbud et al., NSDI 2016,
//! §3.4). Each backend gets an `offset` and a `skip` from two hashes of its
//! identity; its preference list is `offset, offset + skip, offset + 2·skip, …`
//! modulo M. Backends take turns claiming their next preferred slot that is
//! still free until all M slots are owned. Preference entries are computed
//! as the fill goes, so memory is O(N) beside the table itself.
//!
//! The code follows the build: `turn` validates members and lays out their
//! turns, `fill` walks preference lists (several entries a step, as the
//! table fills) and `end_game` claims the last free slots by arithmetic
//! instead of walking. Only the speed differs from the paper's plain walk;
//! a property test holds them equal.
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

mod end_game;
mod fill;
mod prime;
mod turn;

pub use prime::is_prime;

use lb_abi::hash::Murmur3;

use crate::fill::fill;
use crate::turn::turn_order;
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

#[cfg(test)]
mod tests;
