//! Third stage of the control path: what the store holds against what the
//! maps hold, into the smallest change. Pure: no store, no maps, no clock,
//! so every node given the same store contents makes the same choices.
//!
//! - [`desired`]: the store's keys, decoded (or refused) by `lb-config`,
//!   into the VIPs this node programs. Keyed by what the dataplane keys
//!   on ([`lb_config::VipId`]: address, port, protocol), so a rename is no
//!   change. Where a choice is made it is by age (`create_revision`, then
//!   key): of two keys claiming one VIP the older wins; past the node's
//!   sizes the oldest are admitted. A key whose new value is invalid keeps
//!   its last good version, reported stale.
//! - [`plan`]: desired against programmed into upserts and removals, none
//!   for a VIP whose programmed form is unchanged.

mod desired;
mod plan;

pub use desired::{Admitted, Desired, Limits, Refusal, Refused, StoredKey, desired};
pub use plan::{InMaps, Plan, ProgrammedVip, plan};
