#!/usr/bin/env bash
# The experiment steps behind `make upgrade|rollback|status|watch EXP=...`, against the current
# kubectl context. Each reads the experiment's objects from `kubectl kustomize k8s/EXP`.
#
#   scripts/k8s.sh upgrade EXP TO    apply deployment-TO.yaml when the folder has one (the
#                                    article's "edit and apply"), else set the image tag to TO
#   scripts/k8s.sh rollback EXP      kubectl rollout undo, for each Deployment
#   scripts/k8s.sh status EXP        pods and rollout status
#   scripts/k8s.sh watch EXP [URL]   probe watch the first NodePort (on minikube/kind's node IP)
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: k8s.sh upgrade|rollback|status|watch EXP [ARG]}
exp=${2:?which experiment? e.g. EXP=000-rolling-update}
dir=k8s/$exp
[ -d "$dir" ] || { echo "no experiment $dir" >&2; exit 2; }

# "namespace name container image" of every Deployment in the experiment.
deployments() {
  kubectl kustomize "$dir" | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d.get("kind") == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        print(d["metadata"].get("namespace", ""), d["metadata"]["name"], c["name"], c["image"])'
}
ns_flag() { [ -n "$1" ] && echo "-n $1" || true; }

case "$action" in
  upgrade)
    to=${3:?usage: make upgrade EXP=... TO=version}
    if [ -f "$dir/deployment-$to.yaml" ]; then
      kubectl apply -f "$dir/deployment-$to.yaml"
    else
      deployments | while read -r ns name container image; do
        # shellcheck disable=SC2046
        kubectl $(ns_flag "$ns") set image "deployment/$name" "$container=${image%:*}:$to"
      done
    fi
    ;;
  rollback)
    deployments | while read -r ns name _ _; do
      # shellcheck disable=SC2046
      kubectl $(ns_flag "$ns") rollout undo "deployment/$name"
    done
    ;;
  status)
    deployments | while read -r ns name _ _; do
      # shellcheck disable=SC2046
      kubectl $(ns_flag "$ns") get pods -o wide
      # shellcheck disable=SC2046
      kubectl $(ns_flag "$ns") rollout status "deployment/$name" --timeout=5s || true
    done
    ;;
  watch)
    url=${3:-}
    if [ -z "$url" ]; then
      port=$(kubectl kustomize "$dir" | grep -m1 -E '^\s+nodePort:' | awk '{print $2}')
      [ -n "$port" ] || { echo "no NodePort in $dir: pass URL=" >&2; exit 2; }
      node=$(minikube ip 2>/dev/null ||
             kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
      url="http://$node:$port/"
    fi
    probe=target/release/probe
    [ -x "$probe" ] || cargo build --release --locked -p probes
    exec "$probe" watch "$url"
    ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
