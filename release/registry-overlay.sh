#!/usr/bin/env bash
# A kustomize overlay that deploys an experiment from published images, and its path:
#
#   release/registry-overlay.sh EXP REGISTRY     e.g. 000-rolling-update ghcr.io/you/
#
# target/deploy/EXP/kustomization.yaml takes k8s/EXP as it is and sets, for every image name of
# images/variants.tsv, `newName: REGISTRY<name>`: testpage:0.8 becomes ghcr.io/you/testpage:0.8,
# the tag unchanged. No file under k8s/ is edited; `make deploy EXP=... REGISTRY=...` applies it.
set -euo pipefail
exp=${1:?usage: release/registry-overlay.sh EXP REGISTRY}
registry=${2:?usage: release/registry-overlay.sh EXP REGISTRY}
cd "$(dirname "$0")/.."
[ -f "k8s/$exp/kustomization.yaml" ] || { echo "registry-overlay: no k8s/$exp/kustomization.yaml" >&2; exit 2; }
case "$registry" in
  */) ;;
  *) echo "registry-overlay: REGISTRY must end in / (ghcr.io/you/), got $registry" >&2; exit 2 ;;
esac
out=target/deploy/$exp
mkdir -p "$out"
{
  echo "# Made by release/registry-overlay.sh: k8s/$exp with its images from $registry"
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "- ../../../k8s/$exp"
  echo "images:"
  awk -F '\t' '/^#!/ { next } /^#/ || !NF { next } { print $1 }' images/variants.tsv | sort -u |
    while read -r name; do
      printf -- '- name: %s\n  newName: %s%s\n' "$name" "$registry" "$name"
    done
} > "$out/kustomization.yaml"
echo "$out"
