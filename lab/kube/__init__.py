"""A one-machine stand-in for Kubernetes that runs an experiment's own manifests.

It plays the parts that decide a rollout's outcome, from the objects as written:

- the kubelet: pods as containers of our images on a private Docker network (one IP each), with
  env (the Downward API too), command/args, ports, securityContext, emptyDir, resource limits;
  readiness and liveness probes (httpGet, tcpSocket, grpc, exec) with their timings; termination as
  the kubelet does it: preStop (exec or sleep), SIGTERM, SIGKILL when the grace period, counted
  from the start of preStop, runs out; restarts after a failed liveness probe or an exit;
- the Deployment controller: ReplicaSets per pod template, RollingUpdate (maxSurge rounded up,
  maxUnavailable rounded down, numbers or percentages), Recreate, minReadySeconds, paused,
  revision history for undo, scaling;
- the Service: selector -> endpoints (ready; serving terminating ones when no pod is ready) ->
  one haproxy per Service standing in for kube-proxy on several nodes: a connection reaches one
  node at random, and each node's server set changes through haproxy's runtime API after its
  own propagation lag, drawn per node and per change (`Lag`); a uniform pick among the node's
  endpoints per connection (no retries); targetPort by number or name; a NodePort as a haproxy
  frontend on 127.0.0.1:nodePort.

What it does not simulate is refused with the field's name (ManifestError), never ignored.
It is not a cluster: no scheduler, no kube-proxy iptables, no API server; the nodes exist only
as the Services' server sets (every pod runs on this machine).
"""

from lab.kube.admission import (
    SKIPPED,
    ManifestError,
    StepError,
    bytes_of,
    check_supported,
    cpus,
    pod_template_hash,
    render,
    resolve_surge,
)
from lab.kube.cluster import Cluster
from lab.kube.deployments import Deployment, ReplicaSet
from lab.kube.kubelet import LABEL, Network, Pod, docker
from lab.kube.records import Records
from lab.kube.services import Lag, Service

__all__ = [
    "LABEL",
    "SKIPPED",
    "Cluster",
    "Deployment",
    "Lag",
    "ManifestError",
    "Network",
    "Pod",
    "Records",
    "ReplicaSet",
    "Service",
    "StepError",
    "bytes_of",
    "check_supported",
    "cpus",
    "docker",
    "pod_template_hash",
    "render",
    "resolve_surge",
]
