#!/usr/bin/env bash
# Installs what lwtkit needs to build and run, idempotently: Debian packages,
# the pinned nightly with rust-src, bpf-linker against LLVM 22, and bpffs.
# `--packaging` also installs cargo-deb (scripts/package-deb.sh asks for it;
# the default setup does not spend the build).
set -euo pipefail

PACKAGING=0
for arg in "$@"; do
    case "$arg" in
        --packaging) PACKAGING=1 ;;
        *) echo "setup: unknown argument $arg (known: --packaging)" >&2; exit 2 ;;
    esac
done

NIGHTLY="nightly-2026-05-19"
LLVM_MAJOR=22
DEBS=(llvm-${LLVM_MAJOR}-dev libpolly-${LLVM_MAJOR}-dev clang libelf-dev linux-libc-dev zlib1g-dev pkg-config make gcc iproute2 util-linux nftables python3 curl)

log() { printf '[setup] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "setup: must run as root (installs packages, mounts bpffs)" >&2
    exit 1
fi

missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
    # A machine without Rust: rustup's own installer, stable with rustfmt
    # and clippy (the test command runs both).
    log "installing rustup and stable Rust"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile default --default-toolchain stable
fi
if ! rustup toolchain list | grep -q "^${NIGHTLY}"; then
    log "installing Rust ${NIGHTLY} with rust-src"
    rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
elif ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
    rustup component add rust-src --toolchain "$NIGHTLY"
fi

if ! command -v bpf-linker >/dev/null || ! bpf-linker --version 2>/dev/null | grep -q .; then
    log "building bpf-linker against LLVM ${LLVM_MAJOR} (about 2 minutes)"
    env "LLVM_SYS_${LLVM_MAJOR}1_PREFIX=/usr/lib/llvm-${LLVM_MAJOR}" "LLVM_PREFIX=/usr/lib/llvm-${LLVM_MAJOR}" \
        cargo install --locked bpf-linker --version '^0.13' --no-default-features --features "llvm-${LLVM_MAJOR}"
fi

if ((PACKAGING)) && ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (about 2 minutes)"
    cargo install --locked cargo-deb
fi

# LWTKIT_SETUP_NO_BPFFS=1: a container image build, where nothing can be
# mounted and the build needs no bpffs.
if [[ -z ${LWTKIT_SETUP_NO_BPFFS:-} ]] && ! mount | grep -q ' /sys/fs/bpf type bpf'; then
    log "mounting bpffs on /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
