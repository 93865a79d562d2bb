//! The balancer's clock: kernel ticks times the tick length.
//!
//! Every time the balancer keeps (flood-guard windows, UDP last-seen times)
//! is `bpf_jiffies64() * tick`, in ns. The verifier inlines `bpf_jiffies64`
//! to one load of the kernel's tick counter, where a clock helper is a
//! call: on a SYN that call was the largest single cost after the two
//! `bpf_xdp_adjust_head`s. A tick is 1–10 ms, far finer than the
//! one-second flood window and the seconds of a UDP timeout. The origin is
//! the kernel's tick counter's, so only differences of these times mean
//! anything.
//!
//! The tick length is set by the loader in global [`TICK_NS`], from the
//! resolution the kernel reports for `CLOCK_MONOTONIC_COARSE`: that clock
//! advances once a tick, and its resolution is the kernel's `TICK_NSEC`,
//! the very length the kernel converts ticks to time with.

/// Name of the global that holds the tick length, ns.
pub const TICK_NS: &str = "TICK_NS";
