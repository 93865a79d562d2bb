//! Compiles the XDP programs (`dataplane-ebpf/lb-ebpf`) with the pinned
//! nightly and bpf-linker, so a plain `cargo build` embeds a fresh object.

use std::path::Path;

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

/// Keep in step with `scripts/setup.sh`.
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-29";

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let dataplane = Path::new(&manifest).join("../../dataplane-ebpf");
    let ebpf = dataplane.join("lb-ebpf");
    let abi = dataplane.join("lb-abi");
    // aya-build watches the eBPF crate; the ABI crate it uses must trigger a
    // rebuild too.
    println!("cargo::rerun-if-changed={}", abi.display());
    let ebpf = ebpf.to_str().context("eBPF crate path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "lb-ebpf",
            root_dir: ebpf,
            ..Package::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
