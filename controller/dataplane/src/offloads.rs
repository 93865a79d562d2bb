//! What an interface's offloads do to what XDP sees.
//!
//! Generic (skb) XDP runs after GRO, so with GRO on it is handed packets
//! coalesced up to 64 KB whose segment size it cannot read: the balancer
//! would answer them as too big and drop them, and bulk TCP through the
//! VIP would crawl. Native XDP runs before GRO and sees the wire's frames.
//! So generic mode is refused while GRO is on; the error says how to turn
//! it off.

use std::{ffi::CString, io};

/// `ETHTOOL_GGRO` from `linux/ethtool.h`: read the GRO setting.
const ETHTOOL_GGRO: u32 = 0x0000_002b;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` as `SIOCETHTOOL` reads it: the name, then a pointer.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    /// The rest of the kernel's 40-byte union.
    _pad: [u8; 16],
}

/// Whether GRO is on for `interface` (in the calling thread's network
/// namespace).
pub(crate) fn gro_enabled(interface: &str) -> io::Result<bool> {
    let c_name =
        CString::new(interface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let bytes = c_name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    let mut request = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&raw mut value).cast(),
        _pad: [0; 16],
    };
    for (dst, src) in request.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a datagram socket only to carry the ioctl; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `request` is a valid ifreq whose data points at `value`, both
    // alive for the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &raw mut request) };
    let error = io::Error::last_os_error();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(error);
    }
    Ok(value.data != 0)
}
