#!/usr/bin/env bash
# Builds static `testpage` and `probe` release binaries for one architecture and copies them to
# target/dist/<arch>/. Static musl is preferred: the binaries then run in a FROM scratch image and
# on any Linux. Without the musl target (no rustup, or it cannot download), a glibc build with
# +crt-static is the fallback for the host architecture.
set -euo pipefail
arch=${1:-$(uname -m)}
arch=${arch/arm64/aarch64}
cd "$(dirname "$0")/.."
out=target/dist/$arch
musl=$arch-unknown-linux-musl

have_target() { rustc --print sysroot >/dev/null && [ -d "$(rustc --print sysroot)/lib/rustlib/$1" ]; }

if ! have_target "$musl" && command -v rustup >/dev/null; then
  echo "build: adding rust target $musl"
  rustup target add "$musl" || echo "build: could not add $musl"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-aarch64-linux-gnu-gcc}
if have_target "$musl"; then
  if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ] && ! command -v "$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER" >/dev/null; then
    echo "build: cross-linking for aarch64 needs $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER (Debian: apt-get install gcc-aarch64-linux-gnu)" >&2
    exit 1
  fi
  target=$musl
  # Non-PIE static binaries: no dynamic relocations to carry (about 110 KB each), which keeps
  # the two binaries inside the 3 MB image budget.
  RUSTFLAGS="${RUSTFLAGS:--C relocation-model=static}" \
    cargo build --release --locked --target "$target" -p testpage -p probes
else
  if [ "$arch" != "$(uname -m)" ]; then
    echo "build: no $musl target and no cross fallback for $arch" >&2
    exit 1
  fi
  target=$arch-unknown-linux-gnu
  echo "build: $musl unavailable; building glibc with +crt-static"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p testpage -p probes
fi

mkdir -p "$out"
# Copied beside, then renamed over: a binary still running from $out (a test, the lab) keeps its
# old file, and cp over a running executable would fail with "Text file busy".
for bin in testpage probe; do
  cp "target/$target/release/$bin" "$out/.$bin.new"
  mv -f "$out/.$bin.new" "$out/$bin"
done
for bin in "$out"/testpage "$out"/probe; do
  printf 'build: %s %d bytes\n' "$bin" "$(wc -c < "$bin")"
done
