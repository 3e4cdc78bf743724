#!/usr/bin/env bash
# Builds every variant for linux/amd64 and linux/arm64 with buildx and pushes a manifest list per
# tag to REGISTRY, then the misbehaving tags on top of their base tags. Compiles inside
# images/Dockerfile.build, so it needs no Rust on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REGISTRY:?set REGISTRY, e.g. docker.io/you/}"
platforms=${PLATFORMS:-linux/amd64,linux/arm64}
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
while IFS=$'\t' read -r name tag version port message color newline content_type _; do
  case "$name" in ''|'#'*) continue ;; esac
  [ "$message" = - ] && message='I am: {ip}, the version is: {version}'
  [ "$color" = - ] && color=
  [ "$content_type" = - ] && content_type='text/plain; charset=utf-8'
  docker buildx build --platform "$platforms" -f images/Dockerfile.build \
    --build-arg "VERSION=$version" --build-arg "PORT=$port" --build-arg "MESSAGE=$message" \
    --build-arg "COLOR=$color" --build-arg "NEWLINE=$newline" \
    --build-arg "CONTENT_TYPE=$content_type" --build-arg "TITLE=$name" \
    --build-arg "REVISION=$revision" -t "$REGISTRY$name:$tag" --push .
done < images/variants.tsv

# The misbehaving tags (rows "#!"): the base tag just pushed, for every platform, with more ENV.
while IFS=$'\t' read -r mark name tag base env _; do
  [ "$mark" = '#!' ] && [ "$name" != NAME ] || continue
  printf 'FROM %s\nENV VERSION=%s %s\nLABEL org.opencontainers.image.version=%s\n' \
    "$REGISTRY$name:$base" "$tag" "$env" "$tag" |
    docker buildx build --platform "$platforms" -t "$REGISTRY$name:$tag" --push -
done < images/variants.tsv
