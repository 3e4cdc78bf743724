#!/usr/bin/env bash
# Builds image variants from the static binaries in target/dist/<arch>/ (see `make build`).
#
#   images/build-images.sh [--list] [--buildx] [--arch x86_64|aarch64] [NAME [VERSION]]
#
# --buildx compiles inside images/Dockerfile.build (docker buildx --load) instead of using
# target/dist/ (see images/build-plan.sh: macOS, or Linux without Rust).
#
# Without NAME, every row of images/variants.tsv, then its misbehaving tags (rows "#!": a base
# tag's image with more ENV). With NAME alone, that name's rows. With NAME and VERSION, that name's defaults
# (port, message, colour) with that version, tagged NAME:VERSION, whether or not the table lists
# it. REGISTRY (e.g. `dean/`) prefixes every name. arm64 images get a `-arm64` tag suffix locally
# (a local image store holds one platform per tag); `make images-multiarch` publishes a manifest
# list under the plain tag.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(uname -m)
host=${host/arm64/aarch64} # macOS says arm64, Linux aarch64: one name for both
arch=$host
list=0
buildx=0
if [ "${1:-}" = --list ]; then list=1; shift; fi
if [ "${1:-}" = --buildx ]; then buildx=1; shift; fi
if [ "${1:-}" = --arch ]; then arch=$2; shift 2; fi
arch=${arch/arm64/aarch64}
want_name=${1:-}
want_version=${2:-}
registry=${REGISTRY:-}
case "$arch" in
  x86_64) platform=linux/amd64; suffix= ;;
  aarch64) platform=linux/arm64; suffix=-arm64 ;;
  *) echo "images: unsupported arch $arch" >&2; exit 2 ;;
esac
[ "$arch" = "$host" ] && suffix=

if [ "$list" = 1 ]; then # print the references `make images` builds, one per line
  awk -F '\t' -v r="$registry" -v s="$suffix" '
    /^#!/ && $2 != "NAME" && NF >= 5 { print r $2 ":" $3 s; next }
    /^#/ || !NF { next }
    { print r $1 ":" $2 s }' images/variants.tsv
  exit 0
fi

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

if [ "$buildx" = 1 ]; then # compile inside images/Dockerfile.build; no toolchain on the host
  build() { # name tag version port message color newline content-type
    # The build stage takes no variant argument: buildx compiles once and reuses it for each tag.
    docker buildx build --load --platform "$platform" -f images/Dockerfile.build \
      --build-arg "VERSION=$3" --build-arg "PORT=$4" --build-arg "MESSAGE=$5" \
      --build-arg "COLOR=$6" --build-arg "NEWLINE=$7" --build-arg "CONTENT_TYPE=$8" \
      --build-arg "TITLE=$1" --build-arg "REVISION=$revision" \
      -t "$registry$1:$2$suffix" .
  }
else
  dist=target/dist/$arch
  for bin in testpage probe; do
    [ -x "$dist/$bin" ] || { echo "images: $dist/$bin missing: run 'make build ARCH=$arch'" >&2; exit 1; }
  done
  command -v docker >/dev/null || { echo "images: docker not found" >&2; exit 1; }

  # A minimal build context: the two binaries and an empty tmp/ for the ready file.
  context=target/image-context/$arch
  rm -rf "$context"
  mkdir -p "$context/tmp"
  cp "$dist/testpage" "$dist/probe" "$context/"

  # The classic builder caches metadata-only steps without their platform; a foreign-arch build
  # must not reuse the native ones.
  cache=()
  [ -n "$suffix" ] && cache=(--no-cache)
  log=$context.log

  build() { # name tag version port message color newline content-type
    local ref="$registry$1:$2$suffix"
    if ! docker build --quiet "${cache[@]}" --platform "$platform" -f images/Dockerfile \
        --build-arg "VERSION=$3" --build-arg "PORT=$4" --build-arg "MESSAGE=$5" \
        --build-arg "COLOR=$6" --build-arg "NEWLINE=$7" --build-arg "CONTENT_TYPE=$8" \
        --build-arg "TITLE=$1" --build-arg "REVISION=$revision" \
        -t "$ref" "$context" >"$log" 2>&1; then
      cat "$log" >&2
      exit 1
    fi
    printf 'images: %-32s %s\n' "$ref" "$(docker image inspect -f '{{.Size}}' "$ref") bytes"
  }
fi

built=0
while IFS=$'\t' read -r name tag version port message color newline content_type _; do
  case "$name" in ''|'#'*) continue ;; esac
  [ -n "$want_name" ] && [ "$name" != "$want_name" ] && continue
  if [ -n "$want_version" ]; then
    [ "$built" -gt 0 ] && break
    tag=$want_version version=$want_version
  fi
  [ "$message" = - ] && message='I am: {ip}, the version is: {version}'
  [ "$color" = - ] && color=
  [ "$content_type" = - ] && content_type='text/plain; charset=utf-8'
  build "$name" "$tag" "$version" "$port" "$message" "$color" "$newline" "$content_type"
  built=$((built + 1))
done < images/variants.tsv
[ "$built" -gt 0 ] || { echo "images: no variant named '$want_name' in images/variants.tsv" >&2; exit 2; }

# The misbehaving tags (rows starting with "#!"): BASE's image plus ENV, no new layer. Skipped
# when one VERSION was asked for.
[ -n "$want_version" ] && exit 0
while IFS=$'\t' read -r mark name tag base env _; do
  [ "$mark" = '#!' ] && [ "$name" != NAME ] || continue
  [ -n "$want_name" ] && [ "$name" != "$want_name" ] && continue
  from="$registry$name:$base$suffix"
  ref="$registry$name:$tag$suffix"
  docker image inspect "$from" >/dev/null 2>&1 ||
    { echo "images: $ref: its base $from is not built" >&2; exit 1; }
  # ENV takes KEY=VALUE words; the version label follows the tag, like VERSION.
  # shellcheck disable=SC2086 # ENV's words are meant to split
  printf 'FROM %s\nENV VERSION=%s %s\nLABEL org.opencontainers.image.version=%s\n' \
    "$from" "$tag" "$env" "$tag" |
    docker build --quiet --platform "$platform" -t "$ref" - >"${log:-/dev/null}" 2>&1 ||
    { [ -n "${log:-}" ] && cat "$log" >&2; echo "images: $ref failed" >&2; exit 1; }
  printf 'images: %-32s %s\n' "$ref" "from $from with $env"
done < images/variants.tsv
