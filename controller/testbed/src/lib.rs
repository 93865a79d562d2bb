//! A small network lab: namespaces, veth pairs and raw packet sockets, and
//! pinning a thread to a CPU.
//!
//! Everything it creates is removed on drop, so a test or demo that panics
//! halfway still leaves the machine clean. Names carry the process id, so
//! parallel tests do not collide. Root is required.
//!
//! ```no_run
//! use lb_testbed::{Netns, VethPair};
//!
//! let lb = Netns::new("lb")?;
//! let client = Netns::new("client")?;
//! let link = VethPair::new(&lb, &client)?;
//! let socket = client.run(|| lb_testbed::PacketSocket::bind(&link.peer))?;
//! # Ok::<(), lb_testbed::TestbedError>(())
//! ```

mod cpu;
mod netns;
mod socket;

pub use cpu::pin_to_cpu;
pub use netns::{Netns, VethPair};
pub use socket::PacketSocket;

use thiserror::Error;

/// Why a lab operation failed.
#[derive(Debug, Error)]
pub enum TestbedError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    /// A system call failed.
    #[error("{call}")]
    Sys {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn sys(call: &'static str) -> TestbedError {
    TestbedError::Sys {
        call,
        source: std::io::Error::last_os_error(),
    }
}
