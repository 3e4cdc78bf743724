#!/usr/bin/env bash
# The steps behind the Kubernetes make targets, against the current kubectl context. The
# experiment steps read the experiment's objects from `kubectl kustomize k8s/EXP`.
#
#   scripts/k8s.sh upgrade EXP TO    apply deployment-TO.yaml when the folder has one (the
#                                    article's "edit and apply"), else set the image tag to TO and
#                                    VERSION to the version that tag reports, in one rollout
#   scripts/k8s.sh rollback EXP      kubectl rollout undo, for each Deployment
#   scripts/k8s.sh status EXP        pods and rollout status
#   scripts/k8s.sh watch EXP [URL]   probe watch the first NodePort
#   scripts/k8s.sh cluster TOOL [NAME]         a kind, k3d or minikube cluster with every port
#   scripts/k8s.sh cluster-delete TOOL [NAME]  of k8s/kind-cluster.yaml published on localhost
#   scripts/k8s.sh client-watch URL [ARGS]     probe watch / probe load from the in-cluster
#   scripts/k8s.sh client-load URL [ARGS]      client (k8s/tools)
#   scripts/k8s.sh context TARGET              exit 1 with one line when kubectl has no current
#                                              context (the make targets that call kubectl)
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: k8s.sh upgrade|rollback|status|watch EXP [ARG] | cluster|cluster-delete TOOL [NAME] | client-watch|client-load URL [ARGS] | context TARGET"
action=${1:?$usage}
shift
KIND_CONFIG=k8s/kind-cluster.yaml
CLIENT_NS=testpage-tools

# Without a kubeconfig, kubectl falls back to localhost:8080, where `make run` listens, and
# answers "the server could not find the requested resource": say what is missing instead.
require_context() { # what
  command -v kubectl >/dev/null || { echo "$1: kubectl not found: install it, then make cluster" >&2; exit 1; }
  [ -n "$(kubectl config current-context 2>/dev/null)" ] ||
    { echo "$1: kubectl has no current context: make cluster, or kubectl config use-context NAME" >&2; exit 1; }
}

experiment() {
  exp=${1:?which experiment? e.g. EXP=000-rolling-update}
  dir=k8s/$exp
  [ -d "$dir" ] || { echo "no experiment $dir" >&2; exit 2; }
}

# "namespace name container image" of every Deployment in the experiment.
deployments() {
  kubectl kustomize "$dir" | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d.get("kind") == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        print(d["metadata"].get("namespace") or "default", d["metadata"]["name"], c["name"], c["image"])'
}

# The version an image reports: its VERSION column in images/variants.tsv (hello:v2 says "2"),
# else the tag itself (what `make image NAME=... VERSION=tag` bakes in).
reported_version() { # name tag
  awk -F '\t' -v n="$1" -v t="$2" '$1 == n && $2 == t { v = $3 } END { print (v == "" ? t : v) }' \
    images/variants.tsv
}

# The host ports published by `make cluster`, one per line.
mapped_ports() {
  python3 -c '
import sys, yaml
for node in yaml.safe_load(open(sys.argv[1]))["nodes"]:
    for m in node.get("extraPortMappings", []):
        print(m["hostPort"])' "$KIND_CONFIG"
}

# -it when a person is at the terminal: Ctrl-C then reaches the probe, which prints its summary.
tty_flags() { [ -t 0 ] && [ -t 1 ] && echo "-it" || echo "-i"; }

case "$action" in
  upgrade | rollback | status | client-watch | client-load) require_context "make $action" ;;
  watch) [ -n "${2:-}" ] || require_context "make watch" ;;
esac

case "$action" in
  context) require_context "make ${1:-kubectl}" ;;
  upgrade)
    experiment "${1:-}"
    to=${2:?usage: make upgrade EXP=... TO=version}
    if [ -f "$dir/deployment-$to.yaml" ]; then
      kubectl apply -f "$dir/deployment-$to.yaml"
    else
      deployments | while read -r ns name container image; do
        repo=${image%:*}
        version=$(reported_version "${repo##*/}" "$to")
        # One patch, so one rollout: the image and the VERSION the page reports change together
        # (a Deployment that sets VERSION in its env would otherwise keep reporting the old one).
        patch=$(python3 -c 'import json, sys; c, i, v = sys.argv[1:]; print(json.dumps({"spec": {"template": {"spec": {"containers": [{"name": c, "image": i, "env": [{"name": "VERSION", "value": v}]}]}}}}))' \
          "$container" "$repo:$to" "$version")
        kubectl -n "$ns" patch "deployment/$name" --type=strategic -p "$patch"
      done
    fi
    ;;
  rollback)
    experiment "${1:-}"
    deployments | while read -r ns name _ _; do
      kubectl -n "$ns" rollout undo "deployment/$name"
    done
    ;;
  status)
    experiment "${1:-}"
    deployments | while read -r ns name _ _; do
      kubectl -n "$ns" get pods -o wide
      kubectl -n "$ns" rollout status "deployment/$name" --timeout=5s || true
    done
    ;;
  watch)
    experiment "${1:-}"
    url=${2:-}
    if [ -z "$url" ]; then
      port=$(kubectl kustomize "$dir" | grep -m1 -E '^\s+nodePort:' | awk '{print $2}')
      [ -n "$port" ] || { echo "no NodePort in $dir: pass URL= (or use make client-watch)" >&2; exit 2; }
      case "$(kubectl config current-context 2>/dev/null)" in
        # `make cluster` publishes every NodePort on localhost.
        kind-* | k3d-*) node=127.0.0.1 ;;
        minikube) node=$(minikube ip) ;;
        *) node=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}') ;;
      esac
      url="http://$node:$port/"
    fi
    probe=$(command -v probe || echo target/release/probe)
    [ -x "$probe" ] || cargo build --release --locked -p probes
    exec "$probe" watch "$url"
    ;;
  cluster)
    tool=${1:-kind}
    case "$tool" in
      kind)
        command -v kind >/dev/null || { echo "cluster: install kind (https://kind.sigs.k8s.io/)" >&2; exit 1; }
        exec kind create cluster --name "${2:-kind}" --config "$KIND_CONFIG"
        ;;
      k3d)
        command -v k3d >/dev/null || { echo "cluster: install k3d (https://k3d.io/)" >&2; exit 1; }
        flags=()
        for port in $(mapped_ports); do flags+=(-p "127.0.0.1:$port:$port@server:0"); done
        exec k3d cluster create "${2:-k3s-default}" "${flags[@]}"
        ;;
      minikube)
        command -v minikube >/dev/null || { echo "cluster: install minikube (https://minikube.sigs.k8s.io/)" >&2; exit 1; }
        # --ports publishes through the docker driver; other drivers reach `minikube ip` directly.
        exec minikube start --driver=docker --ports="$(mapped_ports | sed 's/.*/127.0.0.1:&:&/' | paste -sd, -)"
        ;;
      *) echo "cluster: TOOL is kind, k3d or minikube, not $tool" >&2; exit 2 ;;
    esac
    ;;
  cluster-delete)
    tool=${1:-kind}
    case "$tool" in
      kind) exec kind delete cluster --name "${2:-kind}" ;;
      k3d) exec k3d cluster delete "${2:-k3s-default}" ;;
      minikube) exec minikube delete ;;
      *) echo "cluster-delete: TOOL is kind, k3d or minikube, not $tool" >&2; exit 2 ;;
    esac
    ;;
  client-watch | client-load)
    url=${1:?usage: make $action URL=http://SERVICE.NAMESPACE:PORT/}
    shift
    # shellcheck disable=SC2046
    exec kubectl -n "$CLIENT_NS" exec $(tty_flags) deployment/client -- /probe "${action#client-}" "$@" "$url"
    ;;
  *) echo "unknown action $action; $usage" >&2; exit 2 ;;
esac
