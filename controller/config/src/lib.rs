//! First stage of the control path: what the store holds, read into
//! validated domain types.
//!
//! Input: a key and its value as the store has them, canonical proto3 JSON
//! of the `lb.v1` schema (`proto/lb/v1/config.proto`). Output: a [`Vip`]
//! whose every field is checked, or a [`ConfigError`] naming the key, the
//! field (as the JSON document spells it, such as `backends[2].weight`) and
//! what is wrong. Nothing here knows the dataplane's maps or the store;
//! both sides of the pipeline meet these types.
//!
//! Invariants of a [`Vip`]: its name is its key's last segment; addresses
//! are unicast; backends share the VIP's family or carry an IPv4 VIP over
//! IPv6; no backend appears twice; weights are 1 to
//! [`lb_maglev::MAX_WEIGHT`]; `port` is 0 exactly when `all_ports` is set.

mod error;
mod keys;
pub mod node;
mod vip;

pub use error::{ConfigError, Rejection};
pub use keys::{Keys, MAX_NAME_LEN};
pub use node::NodeSettings;
pub use vip::{Backend, BackendState, Protocol, Vip, VipId, VipOptions};
