//! Network namespaces and veth pairs, made with iproute2.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{TestbedError, sys};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip` with `args`.
pub(crate) fn ip(args: &[&str]) -> Result<(), TestbedError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| TestbedError::Sys {
            call: "spawn ip",
            source,
        })?;
    if !out.status.success() {
        return Err(TestbedError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named after `prefix`, with loopback up.
    pub fn new(prefix: &str) -> Result<Self, TestbedError> {
        let name = unique(&format!("lbt-{prefix}-"));
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args…`.
    pub fn ip(&self, args: &[&str]) -> Result<(), TestbedError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `ethtool args…` inside the namespace (Debian's `ethtool`).
    pub fn ethtool(&self, args: &[&str]) -> Result<(), TestbedError> {
        let mut all = vec!["netns", "exec", self.name.as_str(), "ethtool"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace (`key` as in `sysctl -w`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), TestbedError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| TestbedError::Sys {
                call: "write sysctl",
                source,
            })
    }

    /// Runs `f` on a thread that has entered the namespace. Sockets it opens
    /// and interface names it resolves belong to the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        let file = self.open()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&file)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Like [`Self::run`], on a thread of its own that the caller joins.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T, TestbedError>>, TestbedError> {
        let file = self.open()?;
        Ok(std::thread::spawn(move || {
            enter(&file)?;
            Ok(f())
        }))
    }

    fn open(&self) -> Result<File, TestbedError> {
        File::open(format!("/var/run/netns/{}", self.name)).map_err(|source| TestbedError::Sys {
            call: "open netns",
            source,
        })
    }
}

/// Moves the calling thread into the namespace of `file`.
fn enter(file: &File) -> Result<(), TestbedError> {
    // SAFETY: setns on a namespace fd; it affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(sys("setns"));
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A veth pair between two namespaces, both ends up. Removed with either
/// namespace.
#[derive(Debug)]
pub struct VethPair {
    /// Interface name in the first namespace.
    pub local: String,
    /// Interface name in the second namespace.
    pub peer: String,
    /// MAC of `local`.
    pub local_mac: [u8; 6],
    /// MAC of `peer`.
    pub peer_mac: [u8; 6],
}

impl VethPair {
    /// Creates `local` in `a` and `peer` in `b`, with fixed, distinct MACs.
    pub fn new(a: &Netns, b: &Netns) -> Result<Self, TestbedError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let local = format!("va{n}");
        let peer = format!("vb{n}");
        let local_mac = [0x02, 0x4c, 0x42, 0x00, (n >> 8) as u8, n as u8];
        let peer_mac = [0x02, 0x4c, 0x42, 0x01, (n >> 8) as u8, n as u8];
        let fmt = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        ip(&[
            "link",
            "add",
            &local,
            "netns",
            a.name(),
            "address",
            &fmt(local_mac),
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            b.name(),
            "address",
            &fmt(peer_mac),
        ])?;
        a.ip(&["link", "set", &local, "up"])?;
        b.ip(&["link", "set", &peer, "up"])?;
        Ok(Self {
            local,
            peer,
            local_mac,
            peer_mac,
        })
    }
}
