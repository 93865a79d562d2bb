//! What the writer keeps in the maps for itself, so that the programmed
//! state can be read back from the maps alone (a restarted controller
//! adopts them without any file beside them).
//!
//! Maps, written and read by userspace only (the balancer never looks):
//! - [`WRITER_STATE`]: array of one [`WriterState`]: the load-time sizes the
//!   maps were made for, and high-water marks, so generations and pools
//!   continue past everything ever handed out.
//! - [`MEMBERS`]: array indexed by backend id → [`Member`]: the VIP an id
//!   belongs to, its place in the VIP's backend list and its weight — what
//!   a ring cannot tell (a weight-0 member appears in no ring).

/// Name of the writer-state array in the eBPF object.
pub const WRITER_STATE: &str = "WRITER_STATE";

/// Name of the member array in the eBPF object.
pub const MEMBERS: &str = "MEMBERS";

/// [`WriterState::format`] of this layout; a reader refuses others.
pub const FORMAT: u32 = 1;

/// The writer's own record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WriterState {
    /// [`FORMAT`] once a writer has written; 0 in fresh maps.
    pub format: u32,
    /// Maglev ring size M the rings were built for.
    pub ring_size: u32,
    /// Non-zero once node settings have been written.
    pub node_set: u32,
    /// Last VIP generation handed out.
    pub last_vip_generation: u32,
    /// Last backend generation handed out.
    pub last_backend_generation: u32,
    /// One past the highest VIP index, ring slot and backend id ever
    /// handed out.
    pub vip_index_mark: u32,
    pub ring_slot_mark: u32,
    pub backend_id_mark: u32,
}

/// A backend id's place in its VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Member {
    /// The VIP's index (`crate::vip::VIP_STATE`).
    pub vip_index: u32,
    /// Position in the VIP's backend list.
    pub position: u32,
    /// Maglev weight; 0 takes no new flows.
    pub weight: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<WriterState>(), 32);
        assert_eq!(size_of::<Member>(), 16);
    }
}
