//! `lb-decap`: run on a backend. Attaches the decap XDP program to an
//! interface and decapsulates the balancer's tunnel packets addressed to the
//! given tunnel addresses, so the kernel stack sees the clients' packets and
//! answers them directly. Needs no ipip/ip6_tunnel kernel module.
//!
//! Runs until SIGINT or SIGTERM, then detaches and prints its counters;
//! SIGHUP re-reads the VIP file. The VIPs must be configured on the backend
//! (for example on `lo`).

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use lb_dataplane::{AttachMode, Decap, RefusedPolicy};

const AFTER_HELP: &str = "\
Policy: a tunnel packet (IPIP, IP6IP6, 4in6) to a tunnel address of this
host is stripped only when its inner destination is one of the VIPs given
by --vip or --vips-file and, when --lb-source is given, its outer source is
in one of those prefixes. Other tunnel packets are refused: counted under
refused_inner_not_vip or refused_outer_source and, by --refused, dropped
(the default, so the backend relays nothing) or passed to the kernel stack
untouched. An outer CE mark is copied to an ECN-capable inner packet; with
a packet that is not ECN-capable it is dropped (drop_ce_not_ect, RFC 6040).
Everything that is not a tunnel packet to this host passes untouched.

Signals: SIGHUP re-reads --vips-file (a bad file is reported and the VIPs in
force are kept); SIGINT or SIGTERM detaches and prints the counters.

Exit status: 0 after SIGINT/SIGTERM, 1 on error.";

/// Exit codes: 0 after a clean stop on a signal, 1 on any error.
#[derive(Parser)]
#[command(about, after_help = AFTER_HELP)]
#[command(group = clap::ArgGroup::new("vip_sources").required(true).multiple(true))]
struct Args {
    /// Interface to attach to.
    #[arg(long)]
    interface: String,
    /// A tunnel address of this host: the outer destination the balancer
    /// sends to (repeat for several).
    #[arg(long = "address", required = true)]
    addresses: Vec<IpAddr>,
    /// A VIP address this host serves: tunnel packets are stripped only
    /// when the inner destination is one (repeat for several).
    #[arg(long = "vip", group = "vip_sources")]
    vips: Vec<IpAddr>,
    /// A file of VIP addresses, one per line (`#` starts a comment), read
    /// at start and again on SIGHUP; adds to --vip.
    #[arg(long, group = "vip_sources")]
    vips_file: Option<PathBuf>,
    /// A prefix the balancers send from (repeat for several); when given,
    /// tunnel packets from other outer sources are refused.
    #[arg(long = "lb-source")]
    lb_sources: Vec<IpNet>,
    /// What refused tunnel packets get.
    #[arg(long, value_enum, default_value = "drop")]
    refused: Refused,
    /// XDP mode: `driver` (native) or `generic`.
    #[arg(long, default_value = "driver")]
    mode: AttachMode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Refused {
    /// Drop them.
    Drop,
    /// Hand them to the kernel stack untouched.
    Pass,
}

impl From<Refused> for RefusedPolicy {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Drop => Self::Drop,
            Refused::Pass => Self::Pass,
        }
    }
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
    decap
        .set_vips(&vips(args)?)
        .context("programming the VIPs")?;
    decap
        .set_lb_sources(&args.lb_sources)
        .context("programming --lb-source")?;
    decap.set_refused(args.refused.into())?;
    let mode = XdpMode::from(args.mode);
    decap
        .attach(&args.interface, mode)
        .with_context(|| format!("attaching to {}", args.interface))?;
    println!(
        "attached to {} serving {} VIPs",
        args.interface,
        decap.vips().len()
    );
    while wait_for(&signals)? == libc::SIGHUP {
        match vips(args).and_then(|v| Ok(decap.set_vips(&v)?)) {
            Ok(()) => println!("reloaded: serving {} VIPs", decap.vips().len()),
            Err(e) => eprintln!("lb-decap: reload failed, VIPs in force kept: {e:#}"),
        }
    }
    for (counter, n) in decap.stats()? {
        println!("{} {n}", counter.label());
    }
    Ok(())
}

/// The VIPs of --vip and --vips-file.
fn vips(args: &Args) -> anyhow::Result<BTreeSet<IpAddr>> {
    let mut vips: BTreeSet<IpAddr> = args.vips.iter().copied().collect();
    if let Some(path) = &args.vips_file {
        vips.extend(read_vips_file(path)?);
    }
    Ok(vips)
}

fn read_vips_file(path: &Path) -> anyhow::Result<Vec<IpAddr>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let entry = line.split('#').next().unwrap_or("").trim();
            (!entry.is_empty()).then_some((i + 1, entry))
        })
        .map(|(n, entry)| {
            entry
                .parse()
                .with_context(|| format!("{}:{n}: `{entry}` is not an IP address", path.display()))
        })
        .collect()
}

fn block_termination_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        anyhow::ensure!(
            rc == 0,
            "pthread_sigmask: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        Ok(set)
    }
}

/// Waits for one of `signals` and returns it.
fn wait_for(signals: &libc::sigset_t) -> anyhow::Result<i32> {
    let mut signal = 0;
    // SAFETY: `signals` is initialised; `signal` is a valid out pointer.
    let rc = unsafe { libc::sigwait(signals, &raw mut signal) };
    anyhow::ensure!(
        rc == 0,
        "sigwait: {}",
        std::io::Error::from_raw_os_error(rc)
    );
    Ok(signal)
}
