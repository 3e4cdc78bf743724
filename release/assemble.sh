#!/usr/bin/env bash
# The files of a GitHub release, from the static binaries of both architectures:
#
#   release/assemble.sh TAG OUT      e.g. release/assemble.sh v0.1.0 dist
#
# OUT/testpage-VERSION-linux-amd64, probe-VERSION-linux-amd64, the same for arm64, the CycloneDX
# SBOM testpage-VERSION.cdx.json, and SHA256SUMS over all of them (`sha256sum -c SHA256SUMS`).
# The binaries come from DIST (default target/dist) /x86_64 and /aarch64, as `make build` leaves them.
set -euo pipefail
tag=${1:?usage: release/assemble.sh TAG OUT}
out=${2:?usage: release/assemble.sh TAG OUT}
cd "$(dirname "$0")/.."
dist=${DIST:-target/dist}
version=${tag#v}
mkdir -p "$out"
for pair in x86_64:amd64 aarch64:arm64; do
  arch=${pair%%:*}
  platform=${pair##*:}
  for bin in testpage probe; do
    src=$dist/$arch/$bin
    [ -s "$src" ] || { echo "assemble: $src missing" >&2; exit 1; }
    install -m 0755 "$src" "$out/$bin-$version-linux-$platform"
  done
done
python3 -m release.sbom --out "$out/testpage-$version.cdx.json"
(cd "$out" && sha256sum -- testpage-* probe-* > SHA256SUMS)
echo "assemble: $(wc -l < "$out/SHA256SUMS") files in $out"
