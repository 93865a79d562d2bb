#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# the pinned Rust toolchains, bpf-linker built against the eBPF nightly's LLVM,
# the apt packages, and a mounted bpffs. A second run changes nothing.
set -euo pipefail

# Keep in step with rust-toolchain.toml (userspace) and controller/build.rs (eBPF).
STABLE=1.99.1
NIGHTLY=nightly-2026-10-29
BPF_LINKER_VERSION=0.13.0
LLVM_MAJOR=23

log() { printf 'setup: %s\n' "$*" >&2; }

install_apt_packages() {
    # iproute2 and iputils-ping: the network tests build namespaces and ping
    # through them; util-linux: the controller's tests run it with nsenter
    # and drop capabilities with setpriv. protoc and etcd: the control plane.
    local wanted=(iproute2 iputils-ping ethtool util-linux protobuf-compiler libprotobuf-dev etcd-server etcd-client)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "apt: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# `rustup toolchain install` of an installed toolchain still asks the network,
# so look first.
install_toolchain() {
    local toolchain=$1
    shift
    local components=("$@")
    local have
    if have=$(rustup component list --installed --toolchain "$toolchain" 2>/dev/null); then
        local need_install=0
        for c in "${components[@]}"; do
            grep -q "^$c" <<<"$have" || need_install=1
        done
        ((need_install)) || return 0
    fi
    log "rustup: installing $toolchain (${components[*]})"
    local args=()
    for c in "${components[@]}"; do args+=(--component "$c"); done
    rustup toolchain install "$toolchain" --profile minimal "${args[@]}"
}

# bpf-linker must link the same LLVM major as the nightly's rustc, or linking
# fails with "Invalid record". The nightly ships libLLVM; point bpf-linker's
# build at it through a prefix of symlinks.
install_bpf_linker() {
    if command -v bpf-linker >/dev/null \
        && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
        return 0
    fi
    local sysroot lib prefix
    sysroot=$(rustup run "$NIGHTLY" rustc --print sysroot)
    lib=$(find "$sysroot/lib" -maxdepth 1 -name "libLLVM.so.${LLVM_MAJOR}*" | head -n1)
    [[ -n "$lib" ]] || { log "no libLLVM.so.$LLVM_MAJOR in $sysroot/lib"; exit 1; }
    prefix="${XDG_CACHE_HOME:-$HOME/.cache}/lb/llvm-$LLVM_MAJOR"
    mkdir -p "$prefix/lib"
    ln -sf "$lib" "$prefix/lib/libLLVM.so"
    ln -sf "$lib" "$prefix/lib/$(basename "$lib")"
    log "cargo: installing bpf-linker $BPF_LINKER_VERSION against $(basename "$lib")"
    LLVM_PREFIX="$prefix" RUSTFLAGS="-C link-arg=-Wl,-rpath,$sysroot/lib" \
        cargo "+$STABLE" install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
        --no-default-features --features "llvm-$LLVM_MAJOR"
}

mount_bpffs() {
    if ! mountpoint -q /sys/fs/bpf; then
        log "mounting bpffs at /sys/fs/bpf"
        mkdir -p /sys/fs/bpf
        mount -t bpf bpffs /sys/fs/bpf
    fi
}

command -v rustup >/dev/null || { log "rustup is required"; exit 1; }
export RUSTUP_AUTO_INSTALL=0
install_apt_packages
install_toolchain "$STABLE" rustc cargo rust-std clippy rustfmt
install_toolchain "$NIGHTLY" rustc cargo rust-std rust-src clippy
install_bpf_linker
mount_bpffs
