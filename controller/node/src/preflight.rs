//! What the controller needs from the host, checked before it touches
//! anything, each failure saying what is missing and how to provide it.

use std::{ffi::CString, path::Path};

use thiserror::Error;

/// Capabilities by number (`linux/capability.h`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
/// The verifier lets a program without it do no pointer arithmetic
/// between packet pointers, which the parsers do.
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// `BPF_FS_MAGIC` (`linux/magic.h`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "missing capability {0}: run lb-controller with CAP_BPF, CAP_PERFMON and \
         CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN; \
         Kubernetes: securityContext.capabilities.add: [BPF, PERFMON, NET_ADMIN])"
    )]
    Capability(&'static str),
    #[error(
        "{BPFFS} is not a mounted bpffs: mount it (`mount -t bpf bpf {BPFFS}`, or \
         systemd's sys-fs-bpf.mount; in a container, mount the host's)"
    )]
    Bpffs,
    #[error(
        "no interface {0:?} in this network namespace (see `ip link show`; in a \
         container, run in the host's network namespace)"
    )]
    Interface(String),
    #[error("reading {what}: {reason}")]
    Read { what: &'static str, reason: String },
}

/// Checks, in order: capabilities, bpffs, the interface.
pub fn check(interface: &str) -> Result<(), PreflightError> {
    capabilities(effective_capabilities()?)?;
    bpffs(Path::new(BPFFS))?;
    interface_exists(interface)
}

/// What is missing of CAP_BPF and CAP_PERFMON (or, before kernel 5.8
/// introduced them, the CAP_SYS_ADMIN that covered both) and CAP_NET_ADMIN
/// in `effective`.
pub fn capabilities(effective: u64) -> Result<(), PreflightError> {
    let has = |cap: u32| effective & (1 << cap) != 0;
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        return Err(PreflightError::Capability("CAP_BPF"));
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        return Err(PreflightError::Capability("CAP_PERFMON"));
    }
    if !has(CAP_NET_ADMIN) {
        return Err(PreflightError::Capability("CAP_NET_ADMIN"));
    }
    Ok(())
}

/// The effective set of this process (`CapEff` of `/proc/self/status`).
fn effective_capabilities() -> Result<u64, PreflightError> {
    let read = |reason: String| PreflightError::Read {
        what: "/proc/self/status",
        reason,
    };
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| read(e.to_string()))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| read("no CapEff line".into()))?;
    u64::from_str_radix(hex.trim(), 16).map_err(|e| read(e.to_string()))
}

fn bpffs(path: &Path) -> Result<(), PreflightError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| PreflightError::Bpffs)?;
    // SAFETY: `c` is NUL-terminated; `stat` is written by the call.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(PreflightError::Bpffs);
    }
    if stat.f_type as i64 != BPF_FS_MAGIC {
        return Err(PreflightError::Bpffs);
    }
    Ok(())
}

fn interface_exists(name: &str) -> Result<(), PreflightError> {
    let missing = || PreflightError::Interface(name.to_owned());
    let c = CString::new(name).map_err(|_| missing())?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::if_nametoindex(c.as_ptr()) } == 0 {
        return Err(missing());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_capability_is_named() {
        let bit = |c: u32| 1u64 << c;
        let bpf = bit(CAP_BPF) | bit(CAP_PERFMON);
        assert_eq!(capabilities(bpf | bit(CAP_NET_ADMIN)), Ok(()));
        assert_eq!(
            capabilities(bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN)),
            Ok(())
        );
        assert_eq!(
            capabilities(bit(CAP_PERFMON) | bit(CAP_NET_ADMIN)),
            Err(PreflightError::Capability("CAP_BPF"))
        );
        assert_eq!(
            capabilities(bit(CAP_BPF) | bit(CAP_NET_ADMIN)),
            Err(PreflightError::Capability("CAP_PERFMON"))
        );
        assert_eq!(
            capabilities(bpf),
            Err(PreflightError::Capability("CAP_NET_ADMIN"))
        );
    }

    #[test]
    fn a_plain_directory_is_no_bpffs() {
        let dir = std::env::temp_dir();
        assert_eq!(bpffs(&dir), Err(PreflightError::Bpffs));
    }
}
