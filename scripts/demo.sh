#!/usr/bin/env bash
# The demo, from a fresh machine: installs what is missing, builds, and runs
# the balancer on a veth between two throwaway network namespaces (root).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [[ $EUID -ne 0 ]]; then
    echo "demo: loading XDP programs and making network namespaces needs root" >&2
    exit 1
fi
export RUSTUP_AUTO_INSTALL=0
cargo run --release --locked -p lb-demo -- "$@"
