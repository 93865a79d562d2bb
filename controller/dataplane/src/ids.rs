//! Allocation of map indices: VIP stats indices, ring slots, backend ids.
//!
//! Freed indices are reused oldest first, so an index rests as long as
//! possible before it means something else.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use lb_abi::vip::VipKey;

/// Indices `first..limit`, handed out and taken back.
#[derive(Debug)]
pub(crate) struct IndexPool {
    free: VecDeque<u32>,
    next: u32,
    limit: u32,
}

impl IndexPool {
    pub(crate) fn new(first: u32, limit: u32) -> Self {
        Self {
            free: VecDeque::new(),
            next: first,
            limit,
        }
    }

    pub(crate) fn acquire(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop_front() {
            return Some(i);
        }
        (self.next < self.limit).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub(crate) fn release(&mut self, index: u32) {
        self.free.push_back(index);
    }

    /// Whether [`Self::acquire`] would find nothing.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.free.is_empty() && self.next >= self.limit
    }

    /// One past the largest index handed out.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

/// A backend id and the generation it holds the address under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BackendId {
    pub(crate) id: u32,
    pub(crate) generation: u32,
}

/// A backend of one VIP: each VIP's backends have ids of their own, so
/// that a backend leaving one VIP ends that VIP's flows to it and no other
/// VIP's.
pub(crate) type Member = (VipKey, IpAddr);

/// Backend ids by member, counted by references (a VIP being replaced
/// holds its kept backends twice for a moment).
#[derive(Debug)]
pub(crate) struct BackendIds {
    by_addr: HashMap<Member, (BackendId, u32)>,
    pool: IndexPool,
    /// Last generation given out, to any id: generations only grow, so an
    /// (id, generation) pair names one holder for the life of the maps.
    last_generation: u32,
}

impl BackendIds {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            by_addr: HashMap::new(),
            pool: IndexPool::new(0, limit),
            last_generation: lb_abi::backend::EMPTY_GENERATION,
        }
    }

    /// Takes a reference on `addr`'s id; `true` when the id is new and its
    /// map entry must be written.
    pub(crate) fn acquire(&mut self, addr: Member) -> Option<(BackendId, bool)> {
        if let Some((id, refs)) = self.by_addr.get_mut(&addr) {
            *refs += 1;
            return Some((*id, false));
        }
        let id = self.pool.acquire()?;
        // Below the retired bit; after 2^31 - 1 holders it wraps to 1.
        self.last_generation = ((self.last_generation + 1) & !lb_abi::backend::RETIRED).max(1);
        let id = BackendId {
            id,
            generation: self.last_generation,
        };
        self.by_addr.insert(addr, (id, 1));
        Some((id, true))
    }

    /// The id `addr` holds, if any.
    pub(crate) fn get(&self, addr: Member) -> Option<BackendId> {
        self.by_addr.get(&addr).map(|(id, _)| *id)
    }

    /// Drops a reference on `addr`; returns the id once nothing refers to it.
    /// The id is not free yet: see [`Self::recycle`].
    pub(crate) fn release(&mut self, addr: Member) -> Option<u32> {
        let (id, refs) = self.by_addr.get_mut(&addr)?;
        *refs -= 1;
        if *refs > 0 {
            return None;
        }
        let id = id.id;
        self.by_addr.remove(&addr);
        Some(id)
    }

    /// Makes a released id available again, once no program can still read
    /// a ring that names it.
    pub(crate) fn recycle(&mut self, id: u32) {
        self.pool.release(id);
    }

    /// Whether a new address would find no free id.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.pool.is_exhausted()
    }

    /// Members with live ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Member, BackendId)> + '_ {
        self.by_addr.iter().map(|(a, (id, _))| (*a, *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_oldest_first_and_stops_at_limit() {
        let mut p = IndexPool::new(1, 4);
        assert_eq!(
            [p.acquire(), p.acquire(), p.acquire(), p.acquire()],
            [Some(1), Some(2), Some(3), None]
        );
        p.release(2);
        p.release(1);
        assert_eq!(p.acquire(), Some(2));
        assert_eq!(p.acquire(), Some(1));
    }

    #[test]
    fn backend_ids_are_shared_counted_and_bump_generation_on_reuse() {
        let vip = VipKey::default();
        let a: Member = (vip, "10.0.0.1".parse().unwrap());
        let b: Member = (vip, "10.0.0.2".parse().unwrap());
        let mut ids = BackendIds::new(1);
        let (first, new) = ids.acquire(a).unwrap();
        assert!(new);
        assert_eq!(ids.acquire(a), Some((first, false)));
        assert_eq!(ids.acquire(b), None, "table full");
        assert_eq!(ids.release(a), None);
        assert_eq!(ids.release(a), Some(first.id));
        assert_eq!(ids.acquire(b), None, "released but not recycled");
        ids.recycle(first.id);
        let (second, new) = ids.acquire(b).unwrap();
        assert!(new);
        assert_eq!(second.id, first.id);
        assert_ne!(second.generation, first.generation);
    }

    #[test]
    fn each_vip_has_its_own_id_for_a_shared_address() {
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        let one = VipKey::new("10.9.0.1".parse().unwrap(), 80, 6);
        let two = VipKey::new("10.9.0.2".parse().unwrap(), 80, 6);
        let mut ids = BackendIds::new(2);
        let (first, _) = ids.acquire((one, address)).unwrap();
        let (second, new) = ids.acquire((two, address)).unwrap();
        assert!(new);
        assert_ne!(first.id, second.id);
        assert_eq!(ids.release((one, address)), Some(first.id));
        assert_eq!(ids.get((two, address)), Some(second));
    }
}
