#!/usr/bin/env bash
# Installs what building and testing Omni need on a clean machine: the wasm32-wasip2 Rust target
# (plus rustfmt and clippy). Idempotent; later tiers add their testbeds here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=wasm32-wasip2
shared="$here/../../shared/toolchain/ensure-wasm-target"
if [ -x "$shared" ]; then
  # Tries rustup, then unpacks a copy kept beside the repository where rustup cannot reach its
  # servers (this project's CI machines).
  "$shared"
elif [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
  echo "$target: already installed"
else
  rustup target add "$target"
fi
for tool in rustfmt clippy; do
  command -v "cargo-${tool/rustfmt/fmt}" >/dev/null 2>&1 || rustup component add "$tool"
done
