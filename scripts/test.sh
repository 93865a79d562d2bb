#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then
# checks formatting and lints and runs every test (kernel tests included, so
# run it as root).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [[ $EUID -ne 0 ]]; then
    echo "test: the kernel tests load XDP programs and make network namespaces; run as root" >&2
    exit 1
fi
export RUSTUP_AUTO_INSTALL=0
NIGHTLY=$(sed -n 's/^const EBPF_TOOLCHAIN: &str = "\(.*\)";/\1/p' controller/dataplane/build.rs)

cargo fmt --all --check
# The eBPF crate only builds for the BPF target, with the pinned nightly.
(cd dataplane-ebpf/lb-ebpf &&
    cargo "+$NIGHTLY" clippy --locked --target bpfel-unknown-none -Z build-std=core -- -D warnings)
cargo clippy --workspace --exclude lb-ebpf --all-targets --locked -- -D warnings
cargo test --workspace --exclude lb-ebpf --locked
