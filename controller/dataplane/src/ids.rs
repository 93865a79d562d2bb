//! Allocation of map indices: VIP indices, ring slots, backend ids.
//!
//! Freed indices are reused oldest first, so an index rests as long as
//! possible before it means something else. A plan looks at what the pool
//! would hand out ([`IndexPool::peek`]) without taking it; the plan's
//! commit takes exactly that ([`IndexPool::take`]).

use std::collections::VecDeque;

/// Indices `0..limit`, handed out and taken back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexPool {
    free: VecDeque<u32>,
    /// One past the highest index ever handed out.
    mark: u32,
    limit: u32,
}

impl IndexPool {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            free: VecDeque::new(),
            mark: 0,
            limit,
        }
    }

    /// A pool continuing from `mark` (one past the highest index handed out
    /// before) with nothing free: every index below it is in use or waits
    /// for a reader barrier, as its owner knows.
    pub(crate) fn resumed(limit: u32, mark: u32) -> Self {
        Self {
            free: VecDeque::new(),
            mark: mark.min(limit),
            limit,
        }
    }

    /// The next `n` indices [`Self::take`] would hand out, or `None` when
    /// there are fewer.
    pub(crate) fn peek(&self, n: usize) -> Option<Vec<u32>> {
        if n > self.available() as usize {
            return None;
        }
        let fresh = n.saturating_sub(self.free.len()) as u32;
        Some(
            self.free
                .iter()
                .copied()
                .take(n)
                .chain(self.mark..self.mark + fresh)
                .collect(),
        )
    }

    /// Takes `indices`, which [`Self::peek`] returned.
    pub(crate) fn take(&mut self, indices: &[u32]) {
        for &index in indices {
            if self.free.front() == Some(&index) {
                self.free.pop_front();
            } else {
                debug_assert_eq!(index, self.mark, "taken out of order");
                self.mark = self.mark.max(index + 1);
            }
        }
    }

    /// The mark after `indices` were taken.
    pub(crate) fn mark_after(&self, indices: &[u32]) -> u32 {
        indices.iter().map(|i| i + 1).fold(self.mark, u32::max)
    }

    pub(crate) fn release(&mut self, index: u32) {
        self.free.push_back(index);
    }

    /// How many indices [`Self::peek`] could hand out.
    pub(crate) fn available(&self) -> u32 {
        self.free.len() as u32 + (self.limit - self.mark)
    }

    pub(crate) fn mark(&self) -> u32 {
        self.mark
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_oldest_first_and_stops_at_limit() {
        let mut p = IndexPool::new(3);
        assert_eq!(p.peek(4), None);
        let first = p.peek(3).unwrap();
        assert_eq!(first, [0, 1, 2]);
        assert_eq!(p.mark_after(&first), 3);
        p.take(&first);
        assert_eq!(p.available(), 0);
        p.release(2);
        p.release(0);
        assert_eq!(p.peek(2).unwrap(), [2, 0]);
        p.take(&[2]);
        assert_eq!(p.peek(1).unwrap(), [0]);
    }

    #[test]
    fn a_resumed_pool_hands_out_only_past_its_mark() {
        let p = IndexPool::resumed(10, 4);
        assert_eq!(p.peek(2).unwrap(), [4, 5]);
        assert_eq!(p.available(), 6);
    }
}
