#!/usr/bin/env bash
# How `make images` builds on this machine, for ARCH (x86_64 or aarch64; arm64 is aarch64):
#   host            Linux with cargo: static binaries here, then images/Dockerfile (the usual path)
#   buildx PLATFORM no Linux toolchain here (macOS, or Linux without Rust): compile inside
#                   images/Dockerfile.build with docker buildx and --load the result
# Exits 1 with one line saying what to install when neither is possible.
set -euo pipefail
os=$(uname -s)
host=$(uname -m)
host=${host/arm64/aarch64}
arch=${1:-$host}
arch=${arch/arm64/aarch64}
case "$arch" in
  x86_64) platform=linux/amd64 ;;
  aarch64) platform=linux/arm64 ;;
  *) echo "images: unsupported architecture $arch (x86_64 or aarch64)" >&2; exit 2 ;;
esac
if [ "$os" = Linux ] && command -v cargo >/dev/null; then
  echo host
elif command -v docker >/dev/null && docker buildx version >/dev/null 2>&1; then
  echo "buildx $platform"
elif [ "$os" = Darwin ]; then
  echo "images: on macOS, install Docker Desktop (it includes buildx); the binaries are compiled inside it" >&2
  exit 1
else
  echo "images: install Rust (rustup) or Docker with the buildx plugin (Debian: docker-buildx)" >&2
  exit 1
fi
