//! Maglev rings: per-VIP lookup tables of backend ids.
//!
//! Map [`RINGS`]: array of maps; each inner map is an array of `u32` backend
//! ids with exactly [`RING_SIZE`] entries. A VIP names its ring by slot in
//! [`crate::vip::VipValue::ring_slot`]. Userspace fills a new inner map
//! completely, stores it in a free slot, and only then points the VIP at it;
//! the old slot is emptied after the kernel has waited out every program that
//! could still hold it (map-of-maps updates from the syscall side wait for
//! running programs, which is what makes slot reuse safe).

/// Name of the ring map-of-maps in the eBPF object.
pub const RINGS: &str = "RINGS";

/// Name of the global (read-only data) that holds the ring size M.
pub const RING_SIZE: &str = "RING_SIZE";

/// `ring_slot` of a VIP that has no ring (no backend takes new flows).
pub const NO_RING: u32 = u32::MAX;

/// `BPF_F_INNER_MAP`: lets the inner maps' size differ from the template's,
/// so M is chosen at load time. Inner maps must be created with it too.
pub const INNER_MAP_FLAGS: u32 = 1 << 12;
