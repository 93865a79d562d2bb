//! An `AF_PACKET` socket: send and receive whole Ethernet frames on one
//! interface.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use crate::{TestbedError, sys};

/// A raw packet socket bound to one interface, seeing every frame on it.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Binds to `interface` in the calling thread's namespace.
    pub fn bind(interface: &str) -> Result<Self, TestbedError> {
        let name = CString::new(interface).map_err(|e| TestbedError::Sys {
            call: "interface name",
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        // SAFETY: plain libc calls with valid arguments; the fd is owned
        // right after creation.
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            if index == 0 {
                return Err(sys("if_nametoindex"));
            }
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let raw = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            );
            if raw < 0 {
                return Err(sys("socket(AF_PACKET)"));
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = index as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if rc != 0 {
                return Err(sys("bind(AF_PACKET)"));
            }
            Ok(Self { fd })
        }
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), TestbedError> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(sys("send"));
        }
        Ok(())
    }

    /// Receives one frame, or `None` after `timeout` without one.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, TestbedError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if ready < 0 {
            return Err(sys("poll"));
        }
        if ready == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65_536];
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(sys("recv"));
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }

    /// Receives frames until one that `wanted` accepts arrives (returned) or
    /// `timeout` passes with none at all (`None`). Frames it rejects are
    /// discarded.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        mut wanted: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<Vec<u8>>, TestbedError> {
        while let Some(f) = self.recv(timeout)? {
            if wanted(&f) {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// Receives frames until `timeout` passes with none, keeping those
    /// `keep` accepts.
    pub fn drain(
        &self,
        timeout: Duration,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>, TestbedError> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv(timeout)? {
            if keep(&f) {
                frames.push(f);
            }
        }
        Ok(frames)
    }
}
