#!/usr/bin/env bash
# Builds the Debian package (target/debian/lwtkit_<version>-1_<arch>.deb):
# lwt, both systemd units, bash/zsh/fish completions and man pages made by
# the binary itself, the docs and /etc/lwtkit/lwtkit.toml as a conffile.
# Runs `scripts/setup.sh --packaging` first as root (the toolchain, and
# cargo-deb, which the default setup leaves out); without root it only
# installs cargo-deb when missing. Extra arguments go to `cargo deb`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[package-deb] %s\n' "$*"; }

if [[ $(id -u) -eq 0 ]]; then
    bash scripts/setup.sh --packaging
elif ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb"
    cargo install --locked cargo-deb
fi

log "building lwt (release)"
cargo build --release --locked -p lwt --bin lwt
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
lwt="$target_dir/release/lwt"
pkg="$target_dir/release/pkg"
rm -rf "$pkg"
mkdir -p "$pkg/completions" "$pkg/man"
"$lwt" completions bash >"$pkg/completions/lwt"
"$lwt" completions zsh >"$pkg/completions/_lwt"
"$lwt" completions fish >"$pkg/completions/lwt.fish"
"$lwt" man --dir "$pkg/man" >/dev/null
gzip -9n "$pkg"/man/*.1

log "packaging"
cargo deb -p lwt --no-build "$@"
