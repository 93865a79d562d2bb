//! The last free slots, claimed by arithmetic instead of walking.

use std::num::NonZeroU32;

use crate::fill::advance;
use crate::turn::Turn;

/// The last free slots. A turn's next slot is the free slot `s` its list
/// reaches first from `next`: the one with the least
/// `(s − next)·skip⁻¹ mod M`, which is what walking would find.
pub(crate) struct EndGame {
    free: Vec<u32>,
    reduce: Barrett,
}

impl EndGame {
    pub(crate) fn new(free: Vec<u32>, size: u32) -> Self {
        Self {
            free,
            reduce: Barrett::new(size),
        }
    }

    pub(crate) fn claim(&mut self, turn: &mut Turn, size: u32) -> u32 {
        let inverse = turn.inverse.get_or_insert_with(|| {
            NonZeroU32::new(mod_inverse(turn.strides[0], size) as u32)
                .expect("skip is invertible modulo a prime")
        });
        let inverse = u64::from(inverse.get());
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
                (i, self.reduce.rem(u64::from(ahead) * inverse))
            })
            .min_by_key(|&(_, steps)| steps)
            .expect("claims stop when no slot is free");
        let slot = self.free.swap_remove(at);
        turn.next = advance(slot, turn.skip(), size);
        slot
    }
}

/// `x mod m` by multiplication: a hardware 64-bit divide costs tens of
/// cycles, and the end game does one per free slot per claim.
pub(crate) struct Barrett {
    m: u64,
    /// ⌊2⁶⁴ / m⌋
    factor: u64,
}

impl Barrett {
    pub(crate) fn new(m: u32) -> Self {
        Self {
            m: u64::from(m),
            factor: u64::MAX / u64::from(m),
        }
    }

    #[inline]
    pub(crate) fn rem(&self, x: u64) -> u64 {
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
pub(crate) fn mod_inverse(a: u32, m: u32) -> u64 {
    let (mut old_r, mut r) = (i64::from(a), i64::from(m));
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(i64::from(m)) as u64
}
