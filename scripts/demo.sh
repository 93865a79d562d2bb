#!/usr/bin/env bash
# The demo, from a fresh machine: installs what is missing, builds, and runs
# lb-controller on a veth between two throwaway network namespaces (root),
# configured with `lbctl apply -f deploy/vips/demo.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [[ $EUID -ne 0 ]]; then
    echo "demo: loading XDP programs and making network namespaces needs root" >&2
    exit 1
fi
export RUSTUP_AUTO_INSTALL=0
# The demo runs lb-controller and lbctl as an operator would: build all three.
cargo build --release --locked -p lb-controller -p lbctl -p lb-demo
exec target/release/lb-demo "$@"
