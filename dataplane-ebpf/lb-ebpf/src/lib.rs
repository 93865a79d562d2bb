//! Code shared by the XDP programs of this crate, each built as a binary
//! of its own: `balancer` (src/main.rs) for load-balancer nodes and `decap`
//! (src/bin/decap.rs) for backends.
#![no_std]

pub mod csum;
pub mod packet;
