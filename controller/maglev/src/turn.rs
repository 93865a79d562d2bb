//! Each member's place in the fill: its turn, its credit and where its
//! preference list stands.

use std::num::NonZeroU32;

use crate::{MAX_WEIGHT, MaglevError, Member, Seeds, preference};

/// One member's state while the table fills.
pub(crate) struct Turn {
    /// Index in the caller's slice, the value written to the table.
    pub(crate) member: u32,
    /// Weight after dividing by the common divisor.
    pub(crate) weight: u32,
    /// Weight accumulated towards the next claim.
    pub(crate) credit: u32,
    /// Next preferred slot.
    pub(crate) next: u32,
    /// `(k + 1)·skip mod M` for `k < 8`: where the next few preference
    /// entries lie relative to `next`, so they can be probed at once.
    pub(crate) strides: [u32; 8],
    /// `skip⁻¹ mod M`, computed on the first claim in the end game (never
    /// 0: M is prime and skip is not a multiple of it).
    pub(crate) inverse: Option<NonZeroU32>,
}

impl Turn {
    pub(crate) fn skip(&self) -> u32 {
        self.strides[0]
    }
}

/// Validates members and lays out their turns in identity order.
pub(crate) fn turn_order(
    members: &[Member<'_>],
    size: u32,
    seeds: Seeds,
) -> Result<Vec<Turn>, MaglevError> {
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
                strides: std::array::from_fn(|k| {
                    (u64::from(skip) * (k as u64 + 1) % u64::from(size)) as u32
                }),
                inverse: None,
            }
        })
        .collect())
}

pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
