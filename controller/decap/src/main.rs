//! `lb-decap`: run on a backend. Attaches the decap XDP program to an
//! interface and decapsulates the balancer's tunnel packets addressed to the
//! given tunnel addresses, so the kernel stack sees the clients' packets and
//! answers them directly. Needs no ipip/ip6_tunnel kernel module.
//!
//! Runs until SIGINT or SIGTERM, then detaches and prints its counters.
//! The VIPs must be configured on the backend (for example on `lo`).

use std::{net::IpAddr, process::ExitCode};

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::Parser;
use lb_dataplane::{AttachMode, Decap};

/// Exit codes: 0 after a clean stop on a signal, 1 on any error.
#[derive(Parser)]
#[command(about, after_help = "Exit status: 0 after SIGINT/SIGTERM, 1 on error.")]
struct Args {
    /// Interface to attach to.
    #[arg(long)]
    interface: String,
    /// A tunnel address of this host: the outer destination the balancer
    /// sends to (repeat for several).
    #[arg(long = "address", required = true)]
    addresses: Vec<IpAddr>,
    /// XDP mode: `driver` (native) or `generic`.
    #[arg(long, default_value = "driver")]
    mode: AttachMode,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-decap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    // Blocked before any thread exists, so every thread inherits the mask
    // and the signals wait for `sigwait` below.
    let signals = block_termination_signals()?;
    let mut decap = Decap::load().context("loading the decap program (run as root)")?;
    for a in &args.addresses {
        decap
            .add_address(*a)
            .with_context(|| format!("adding tunnel address {a}"))?;
    }
    let mode = XdpMode::from(args.mode);
    decap
        .attach(&args.interface, mode)
        .with_context(|| format!("attaching to {}", args.interface))?;
    println!("attached to {}", args.interface);
    wait_for(&signals)?;
    for (counter, n) in decap.stats()? {
        println!("{} {n}", counter.label());
    }
    Ok(())
}

fn block_termination_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        anyhow::ensure!(
            rc == 0,
            "pthread_sigmask: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        Ok(set)
    }
}

fn wait_for(signals: &libc::sigset_t) -> anyhow::Result<()> {
    let mut signal = 0;
    // SAFETY: `signals` is initialised; `signal` is a valid out pointer.
    let rc = unsafe { libc::sigwait(signals, &raw mut signal) };
    anyhow::ensure!(
        rc == 0,
        "sigwait: {}",
        std::io::Error::from_raw_os_error(rc)
    );
    Ok(())
}
