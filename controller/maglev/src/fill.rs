//! Claiming every slot: turns walk their preference lists, several entries
//! a step, until few slots are free; the [`EndGame`] claims the rest.

use crate::end_game::EndGame;
use crate::turn::Turn;

/// Free slots left when the walk stops and the [`EndGame`] starts
/// computing where each list next meets a free slot. Walking costs about
/// M/F probes per claim when F slots are free; computing costs F modular
/// products. Below this many the latter wins; the table is the same either
/// way.
const END_GAME: u32 = 128;

/// Largest table whose occupancy is kept a byte per slot. A byte is probed
/// with fewer instructions than a bit, which pays while the map stays in
/// L2; beyond this bits (M/8 bytes) win. Measured on the project's host
/// (Zen 4, 1 MiB L2): bytes are ~8% faster at M = 65537, bits ~15% faster
/// at M = 655373.
const BYTE_MAP_MAX: u32 = 1 << 18;

/// Builds the table: entry `s` is the member owning slot `s`.
pub(crate) fn fill(turns: &mut [Turn], size: u32) -> Vec<u32> {
    if size <= BYTE_MAP_MAX {
        fill_with(turns, size, ByteMap(vec![false; size as usize]))
    } else {
        fill_with(turns, size, BitMap(vec![0; size.div_ceil(64) as usize]))
    }
}

/// The walk probes more preference entries at once as the table fills (a
/// claim takes about M/F probes when F slots are free): the probes of one
/// step are independent loads, where probing one at a time chains each
/// probe's address on the last and mispredicts the loop's exit about once
/// a claim.
pub(crate) fn fill_with<O: Occupancy>(turns: &mut [Turn], size: u32, taken: O) -> Vec<u32> {
    let mut fill = Fill {
        table: vec![u32::MAX; size as usize],
        taken,
        left: size,
        size,
        at: 0,
        full: turns.iter().map(|t| t.weight).max().unwrap_or(1),
    };
    fill.walk_until::<1>(turns, size / 4 * 3);
    fill.walk_until::<2>(turns, size / 2);
    fill.walk_until::<4>(turns, size / 4);
    fill.walk_until::<8>(turns, size / 10);
    fill.walk_until::<16>(turns, END_GAME);
    let mut end_game = EndGame::new(fill.taken.free_slots(size), size);
    while fill.left > 0 {
        let turn = fill.claimant(turns);
        let slot = end_game.claim(turn, size);
        fill.claim(turn.member, slot);
    }
    fill.table
}

/// Which slots are owned, as the walk probes them.
pub(crate) trait Occupancy {
    /// 1 if `slot` is taken, else 0.
    fn probe(&self, slot: u32) -> u32;
    fn take(&mut self, slot: u32);
    /// The slots below `size` not taken, in order.
    fn free_slots(&self, size: u32) -> Vec<u32>;
}

/// A byte a slot: one load a probe.
pub(crate) struct ByteMap(pub(crate) Vec<bool>);

impl Occupancy for ByteMap {
    #[inline(always)]
    fn probe(&self, slot: u32) -> u32 {
        u32::from(self.0[slot as usize])
    }

    #[inline(always)]
    fn take(&mut self, slot: u32) {
        self.0[slot as usize] = true;
    }

    fn free_slots(&self, size: u32) -> Vec<u32> {
        let mut free = Vec::with_capacity(END_GAME as usize);
        // Few slots are free by now: skip eight taken ones at a time.
        for (at, chunk) in self.0.chunks(8).enumerate() {
            if chunk.iter().all(|&taken| taken) {
                continue;
            }
            let base = at as u32 * 8;
            free.extend((base..base + chunk.len() as u32).filter(|&s| !self.0[s as usize]));
        }
        free.retain(|&s| s < size);
        free
    }
}

/// A bit a slot: an eighth of the cache a byte map needs.
pub(crate) struct BitMap(pub(crate) Vec<u64>);

impl Occupancy for BitMap {
    #[inline(always)]
    fn probe(&self, slot: u32) -> u32 {
        ((self.0[(slot >> 6) as usize] >> (slot & 63)) & 1) as u32
    }

    #[inline(always)]
    fn take(&mut self, slot: u32) {
        self.0[(slot >> 6) as usize] |= 1 << (slot & 63);
    }

    fn free_slots(&self, size: u32) -> Vec<u32> {
        let mut free = Vec::with_capacity(END_GAME as usize);
        for (at, &word) in self.0.iter().enumerate() {
            let mut open = !word;
            while open != 0 {
                free.push(at as u32 * 64 + open.trailing_zeros());
                open &= open - 1;
            }
        }
        // The last word's bits past the table read as free.
        free.retain(|&s| s < size);
        free
    }
}

/// The table being filled.
struct Fill<O> {
    table: Vec<u32>,
    taken: O,
    /// Free slots.
    left: u32,
    size: u32,
    /// Whose turn is next.
    at: usize,
    /// The largest weight: the credit a claim costs.
    full: u32,
}

impl<O: Occupancy> Fill<O> {
    /// The next turn with credit for a claim.
    #[inline(always)]
    fn claimant<'t>(&mut self, turns: &'t mut [Turn]) -> &'t mut Turn {
        loop {
            let at = self.at;
            self.at = if at + 1 == turns.len() { 0 } else { at + 1 };
            let turn = &mut turns[at];
            turn.credit += turn.weight;
            if turn.credit >= self.full {
                turn.credit -= self.full;
                return &mut turns[at];
            }
        }
    }

    #[inline(always)]
    fn claim(&mut self, member: u32, slot: u32) {
        self.table[slot as usize] = member;
        self.left -= 1;
    }

    /// Claims by walking `WIDTH` preference entries a step until at most
    /// `stop` (or [`END_GAME`]) slots are free.
    fn walk_until<const WIDTH: usize>(&mut self, turns: &mut [Turn], stop: u32) {
        let stop = stop.max(END_GAME);
        while self.left > stop {
            let turn = self.claimant(turns);
            let slot = walk::<WIDTH, O>(turn, &mut self.taken, self.size);
            self.claim(turn.member, slot);
        }
    }
}

/// `(at + by) mod size` for `at, by < size`.
#[inline(always)]
pub(crate) fn advance(at: u32, by: u32, size: u32) -> u32 {
    let next = at + by;
    if next >= size { next - size } else { next }
}

/// Walks `turn`'s preference list to its first free slot and takes it,
/// probing `WIDTH` (at most 16) consecutive entries per step. M is prime
/// and skip < M, so the walk visits every slot.
#[inline(always)]
fn walk<const WIDTH: usize, O: Occupancy>(turn: &mut Turn, taken: &mut O, size: u32) -> u32 {
    let mut lanes = [turn.next; WIDTH];
    for (lane, &stride) in lanes[1..].iter_mut().zip(&turn.strides) {
        *lane = advance(turn.next, stride, size);
    }
    for k in 9..WIDTH {
        lanes[k] = advance(lanes[k - 8], turn.strides[7], size);
    }
    let step = match WIDTH {
        1..=8 => turn.strides[WIDTH - 1],
        _ => advance(turn.strides[7], turn.strides[7], size),
    };
    let all = (1u32 << (WIDTH - 1) << 1).wrapping_sub(1);
    loop {
        let mut held = 0u32;
        for (k, &slot) in lanes.iter().enumerate() {
            held |= taken.probe(slot) << k;
        }
        let open = !held & all;
        if open != 0 {
            // The lowest open lane is the earliest free entry of the list.
            let slot = lanes[open.trailing_zeros() as usize];
            taken.take(slot);
            turn.next = advance(slot, turn.skip(), size);
            return slot;
        }
        for slot in &mut lanes {
            *slot = advance(*slot, step, size);
        }
    }
}
