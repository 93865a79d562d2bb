//! The backend table: where a backend id sends packets.
//!
//! Map [`BACKENDS`]: array indexed by backend id → [`Backend`]. Written by
//! userspace, read by the balancer. An id's entry is only rewritten after no
//! ring names it any more; its [`Backend::generation`] then changes, so flow
//! entries that still carry the old generation stop matching and re-hash.

/// Name of the backend map in the eBPF object.
pub const BACKENDS: &str = "BACKENDS";

/// Generation of a backend slot that holds no backend.
pub const EMPTY_GENERATION: u32 = 0;

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
    /// Changes every time the slot is given to a new backend; never
    /// [`EMPTY_GENERATION`] for a live backend.
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
