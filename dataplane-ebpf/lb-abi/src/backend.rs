//! The backend table: where a backend id sends packets.
//!
//! Map [`BACKENDS`]: array indexed by backend id → [`Backend`]. Written by
//! userspace, read by the balancer. An id names one backend of one VIP:
//! an address that several VIPs share has an id in each, so a flow entry
//! (which records the id) stops matching when its own VIP drops the
//! backend, whatever the other VIPs do.
//!
//! An id's life: userspace writes its entry with a generation no id has
//! held before (generations come from one counter that only grows), then
//! rings name it. When the backend leaves, userspace first sets
//! [`RETIRED`] in its generation: flow entries, which never record that
//! bit, stop matching at once and their flows are placed anew, while a
//! packet still reading a ring from before the change reaches the old
//! address (that ring is the VIP's old state). Only after a reader barrier
//! is the entry cleared and the id given out again.

/// Name of the backend map in the eBPF object.
pub const BACKENDS: &str = "BACKENDS";

/// Generation of a backend slot that holds no backend.
pub const EMPTY_GENERATION: u32 = 0;

/// Bit of [`Backend::generation`] that marks a backend being removed: rings
/// read before the removal may still send to it, flow entries do not.
pub const RETIRED: u32 = 1 << 31;

/// The generation a flow entry records for `generation`: without
/// [`RETIRED`], so an entry placed through a stale ring never matches a
/// retired backend.
#[inline(always)]
pub const fn recorded_generation(generation: u32) -> u32 {
    generation & !RETIRED
}

/// A backend: the tunnel destination of its packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Backend address, network order in memory.
    pub addr: [u32; 4],
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`].
    pub family: u8,
    /// Reserved, zero.
    pub _pad: [u8; 3],
    /// Unique to this holder of the id; never [`EMPTY_GENERATION`] for a
    /// live backend; [`RETIRED`] set while it is being removed.
    pub generation: u32,
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<Backend>(), 24);
        assert_eq!(offset_of!(Backend, family), 16);
        assert_eq!(offset_of!(Backend, generation), 20);
    }
}
