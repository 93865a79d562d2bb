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
//! The table is a pure function of the set of (identity, weight) pairs and
//! M. Identities are hashed with MurmurHash3 x86_32 under two fixed seeds
//! ([`OFFSET_SEED`], [`SKIP_SEED`]); backends take turns in the byte order of
//! their identities, not in input order. Nothing depends on platform,
//! endianness or hash-map iteration, so every node builds byte-identical
//! tables; the golden vectors in the tests pin that.
//!
//! # Weights
//! Weights are divided by their greatest common divisor; then, in each round
//! of turns, a backend of weight `w` claims `w` slots in a row. A backend of
//! weight 2 thus owns twice the slots of one of weight 1, up to the one
//! partial round at the end. Weight 0 owns no slot (drain). Weights above
//! [`MAX_WEIGHT`] are rejected, which bounds a round's length.
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

pub use prime::is_prime;

use lb_abi::hash::Murmur3;
use thiserror::Error;

/// Seed of the hash that gives a backend its first preferred slot.
pub const OFFSET_SEED: u32 = 0x6d61_676c;
/// Seed of the hash that gives a backend its stride.
pub const SKIP_SEED: u32 = 0x736b_6970;
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

/// Builds the table: entry `s` is the index in `members` of slot `s`'s owner.
pub fn build(members: &[Member<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    check_table_size(size)?;
    if members.len() > size as usize {
        return Err(MaglevError::TooManyMembers {
            members: members.len(),
            size,
        });
    }
    let mut turns = turn_order(members, size)?;
    Ok(fill(&mut turns, size))
}

/// A member's first preferred slot and stride in a table of `size` slots.
pub fn preference(identity: &[u8], size: u32) -> (u32, u32) {
    let offset = Murmur3::new(OFFSET_SEED).bytes(identity).finish() % size;
    let skip = Murmur3::new(SKIP_SEED).bytes(identity).finish() % (size - 1) + 1;
    (offset, skip)
}

/// One member's state while the table fills.
struct Turn {
    /// Index in the caller's slice, the value written to the table.
    member: u32,
    /// Slots claimed per round.
    claims: u32,
    /// Next preferred slot.
    next: u32,
    skip: u32,
}

/// Validates members and lays out their turns in identity order.
fn turn_order(members: &[Member<'_>], size: u32) -> Result<Vec<Turn>, MaglevError> {
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
            let (offset, skip) = preference(members[i].identity, size);
            Turn {
                member: i as u32,
                claims: members[i].weight / divisor,
                next: offset,
                skip,
            }
        })
        .collect())
}

fn fill(turns: &mut [Turn], size: u32) -> Vec<u32> {
    const FREE: u32 = u32::MAX;
    let mut table = vec![FREE; size as usize];
    let mut left = size;
    loop {
        for turn in turns.iter_mut() {
            for _ in 0..turn.claims {
                // Walk the preference list to the first free slot. M is
                // prime and skip < M, so the walk visits every slot and
                // ends while any slot is free.
                loop {
                    let slot = turn.next;
                    turn.next += turn.skip;
                    if turn.next >= size {
                        turn.next -= size;
                    }
                    let owner = &mut table[slot as usize];
                    if *owner == FREE {
                        *owner = turn.member;
                        break;
                    }
                }
                left -= 1;
                if left == 0 {
                    return table;
                }
            }
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests;
