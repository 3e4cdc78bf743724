"""The kubelet: pods as containers of our images on a private Docker network (one IP each, held
by a pause container), with env (the Downward API too), command/args, ports, securityContext,
emptyDir and resource limits; readiness and liveness probes (httpGet, tcpSocket, grpc, exec)
with their timings; termination as the kubelet does it (preStop, SIGTERM, SIGKILL at the grace
period counted from the start of preStop); restarts under the crash-loop back-off."""

import ipaddress
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, TYPE_CHECKING

from lab.common import DIST, TICK, log
from lab.kube.admission import Manifest, ManifestError, bytes_of, cpus
from lab.kube.records import Records

if TYPE_CHECKING:
    from http.client import HTTPMessage

LABEL = "testpage-lab"
NODE = "lab-node"


def docker(
    *args: object, check: bool = True, timeout: float | None = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


class Network:
    """A bridge network with a subnet no other network uses, so that each pod's IP is known
    before it starts (the Downward API's status.podIP)."""

    def __init__(self, run_id: str, prefix: str = LABEL) -> None:
        """`prefix` names the label that marks everything on it, for `cleanup` and leftovers."""
        self.label = f"{prefix}={run_id}"
        self.name = f"{prefix}-{run_id}"
        used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for nid in docker("network", "ls", "-q").stdout.split():
            for cfg in (
                json.loads(
                    docker(
                        "network", "inspect", "-f", "{{json .IPAM.Config}}", nid
                    ).stdout
                    or "[]"
                )
                or []
            ):
                if cfg.get("Subnet"):
                    used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
        for third in range(64, 250):
            subnet = ipaddress.ip_network(f"10.{200 + third % 50}.{third}.0/24")
            if not any(subnet.overlaps(u) for u in used):
                break
        else:
            raise RuntimeError("no free /24 for the lab's network")
        self.subnet = subnet
        self.next_host = 10
        docker(
            "network", "create", "--label", self.label, "--subnet", subnet, self.name
        )

    def allocate(self) -> str:
        self.next_host += 1
        if self.next_host > 250:
            raise RuntimeError("the lab's network has no address left")
        return str(self.subnet.network_address + self.next_host)

    def cleanup(self, rounds: int = 20) -> None:
        """Removes every container and volume with the network's label, then the network.
        A container a late thread created meanwhile keeps the network in use, so this goes
        round again (every 0.5 s, `rounds` times) until all three are gone; once the network
        is, no container of this run can start. What is still left then is logged, by id:
        the run's own result stands, the leftovers are named."""
        labelled = ("--filter", f"label={self.label}")
        said = ""
        containers, volumes = self._left(labelled)
        for _ in range(rounds):
            if containers:
                docker("rm", "-f", *containers, check=False)
            if volumes:
                docker("volume", "rm", "-f", *volumes, check=False)
            gone = docker("network", "rm", self.name, check=False)
            said = gone.stderr.strip()
            removed = gone.returncode == 0 or "not found" in said
            containers, volumes = self._left(labelled)
            if removed and not containers and not volumes:
                return
            time.sleep(0.5)
        log(
            f"network {self.name}: not everything went: containers {containers}, "
            f"volumes {volumes}, network: {said or 'removed'}"
        )

    @staticmethod
    def _left(labelled: tuple[str, str]) -> tuple[list[str], list[str]]:
        return (
            docker("ps", "-aq", *labelled, check=False).stdout.split(),
            docker("volume", "ls", "-q", *labelled, check=False).stdout.split(),
        )


# ------------------------------------------------------------------ pods and the kubelet


def http_probe(pod: "Pod", get: Manifest, timeout: float) -> tuple[bool, str]:
    """An httpGet probe as the kubelet's prober sends it (`pkg/probe/http/http.go`
    `DoHTTPProbe`, `pkg/probe/http/request.go` `NewProbeRequest`): `User-Agent: kube-probe/`,
    `Accept: */*`, no proxy whatever the environment says (its transport sets `Proxy` to
    none), redirects followed on the same host only, at most 10 (`RedirectChecker` with
    followNonLocalRedirects false); a redirect to another host ends the probe with the 3xx
    itself, a success with a warning, as any status from 200 to 399 is."""
    url = f"http://{pod.ip}:{pod.port(get['port'])}{get.get('path', '/')}"
    request = urllib.request.Request(
        url, headers={"User-Agent": "kube-probe/1.35", "Accept": "*/*"}
    )
    for header in get.get("httpHeaders", []):
        request.add_header(header["name"], header["value"])
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _SameHostRedirects()
    )
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read(10 * 1024)
            return 200 <= answer.status < 400, f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        code = error.code
        if 300 <= code < 400:
            return True, f"HTTP {code} (redirect to another host, not followed)"
        return 200 <= code < 400, f"HTTP {code} on {url}"


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 10

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: "HTTPMessage",
        newurl: str,
    ) -> urllib.request.Request | None:
        original = urllib.parse.urlsplit(req.full_url).hostname
        if urllib.parse.urlsplit(newurl).hostname != original:
            return None  # the 3xx is the answer (urllib raises it as an HTTPError)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Pod:
    """One pod: a container, and the kubelet's threads that probe and terminate it."""

    def __init__(
        self,
        records: Records,
        network: Network,
        namespace: str,
        spec: Manifest,
        labels: dict[str, str],
        name: str,
    ) -> None:
        self.records = records
        self.network = network
        self.spec = spec
        self.labels = labels
        self.name = name
        self.namespace = namespace
        self.container: Manifest = spec["containers"][0]
        self.ip = network.allocate()
        self.cid: str | None = None
        self.sandbox: list[str] = []  # the pause container's id, once it runs
        self.volumes: list[str] = []  # the emptyDir volumes' names
        # (crash-loop back-off s, last update), as the kubelet keeps
        self.backoff: tuple[float, float] | None = None
        self.ready = False
        self.ready_since: float | None = None
        self.terminating = False
        self.gone = False
        self.restarts = 0
        self.exit_code: int | None = None
        # The last readiness probe that failed, for the rollout's error message.
        self.last_failure: str | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if len(spec["containers"]) > 1:
            raise ManifestError(f"pod {name}: one container per pod is simulated")

    # --- what others read

    def _event(self, what: str) -> None:
        self.records.note(what, self.name, self.ip)

    def available(self, min_ready: float) -> bool:
        return (
            not self.terminating
            and self.ready
            and self.ready_since is not None
            and time.monotonic() - self.ready_since >= min_ready
        )

    def port(self, ref: int | str) -> int:
        """A port by number or by the container's port name."""
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        for p in self.container.get("ports", []):
            if p.get("name") == ref:
                return p["containerPort"]
        raise ManifestError(f"pod {self.name}: no container port named {ref!r}")

    # --- the container

    def _docker_run(self) -> None:
        """The pod's sandbox, then its container. The sandbox (a `pause` container: the
        image's own `/probe sleep`) holds the pod's IP, its network sysctls and its emptyDir
        volumes for the pod's whole life, as the kubelet's pod sandbox does: a container that
        exits or restarts keeps its IP (connections are refused at once, not left to time out)
        and its emptyDir contents (`pkg/kubelet/kuberuntime/kuberuntime_sandbox.go`
        `createPodSandbox`; emptyDir lives as long as the pod)."""
        c, spec = self.container, self.spec
        pod_sc = spec.get("securityContext", {})
        sc = c.get("securityContext", {})
        label = self.network.label
        base = f"{self.network.name}-{self.name}"
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if user is None and group is not None:
            raise ManifestError(
                f"pod {self.name}: runAsGroup without runAsUser is not simulated"
            )
        # emptyDir: a tmpfs volume of the pod's own, owned by fsGroup (or the pod's user).
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        gid = pod_sc.get("fsGroup", group if group is not None else user)
        mounts = []
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                raise ManifestError(f"pod {self.name}: no volume named {m['name']!r}")
            mounts.append(m)
        sandbox = ["run", "-d", "--label", label, "--no-healthcheck"]
        sandbox += ["--network", self.network.name, "--ip", self.ip]
        sandbox += ["--name", f"{base}-pause", "--hostname", self.name]
        for sysctl in pod_sc.get("sysctls", []):
            sandbox += ["--sysctl", f"{sysctl['name']}={sysctl['value']}"]
        volume_names = {}
        for name, volume in volumes.items():
            options = ["mode=1777"]
            if user:
                options += [f"uid={user}", f"gid={gid}"]
            size = volume["emptyDir"].get("sizeLimit")
            if size:
                options.append(f"size={bytes_of(size)}")
            vname = f"{base}-{name}"
            if self.stop.is_set():
                return  # deleted, or the run closed: nothing more is created
            docker(
                "volume", "create", "--label", label, "--driver", "local",
                "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                "--opt", f"o={','.join(options)}", vname,
            )  # fmt: skip
            volume_names[name] = vname
            self.volumes.append(vname)
            sandbox += ["-v", f"{vname}:/volumes/{name}"]
        sandbox += ["--entrypoint", "/probe", c["image"], "sleep", "87600h"]
        if self.stop.is_set():
            return  # deleted, or the run closed: nothing more is created
        result = docker(*sandbox, check=False)
        if result.returncode != 0:
            raise ManifestError(
                f"pod {self.name}: the sandbox did not start: {result.stderr.strip()}"
            )
        self.sandbox = [result.stdout.strip()]
        if self.stop.is_set():
            return
        args = ["run", "-d", "--label", label, "--name", base]
        # The kubelet ignores the image's HEALTHCHECK; Docker would run it inside the pod's
        # CPU limit every 5 s.
        args += ["--no-healthcheck", "--network", f"container:{self.sandbox[0]}"]
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else user}"]
        elif sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            # The kubelet refuses to start a container that would run as root.
            image_user = docker(
                "image", "inspect", "-f", "{{.Config.User}}", c["image"]
            ).stdout.strip()
            if image_user in ("", "0", "root"):
                raise ManifestError(
                    f"pod {self.name}: runAsNonRoot, but image {c['image']} runs as root"
                )
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        caps = sc.get("capabilities", {})
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        limits = c.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            args += ["--cpus", f"{cpus(limits['cpu']):g}"]
        if "memory" in limits:
            args += ["--memory", str(max(bytes_of(limits["memory"]), 6 * 2**20))]
        for m in mounts:
            mode = "ro" if m.get("readOnly") else "rw"
            args += ["-v", f"{volume_names[m['name']]}:{m['mountPath']}:{mode}"]
        for env in c.get("env", []):
            args += ["-e", f"{env['name']}={self._env_value(env)}"]
        command = c.get("command")
        if command:
            args += ["--entrypoint", command[0]]
        args.append(c["image"])
        if command:
            args += command[1:]
        args += c.get("args", [])
        result = docker(*args, check=False)
        if result.returncode != 0:
            raise ManifestError(
                f"pod {self.name}: docker run failed: {result.stderr.strip()}"
            )
        self.cid = result.stdout.strip()

    def _env_value(self, env: Manifest) -> str:
        if "value" in env:
            return env["value"]
        path = env["valueFrom"]["fieldRef"]["fieldPath"]
        return {
            "status.podIP": self.ip,
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": NODE,
        }[path]

    # --- probes

    def _probe(self, probe: Manifest) -> tuple[bool, str]:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                return http_probe(self, probe["httpGet"], timeout)
            if "tcpSocket" in probe:
                port = self.port(probe["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True, "connected"
            if "grpc" in probe:
                # The kubelet's own gRPC health client, played by probe's (same question:
                # grpc.health.v1 Check over h2c). Kubernetes takes only a port number here.
                grpc = probe["grpc"]
                if not isinstance(grpc.get("port"), int):
                    raise ManifestError(
                        f"pod {self.name}: grpc.port must be a number (got {grpc.get('port')!r})"
                    )
                result = subprocess.run(
                    [
                        DIST / "probe",
                        "grpc",
                        f"{self.ip}:{grpc['port']}",
                        "--service",
                        grpc.get("service", ""),
                        "--timeout",
                        f"{timeout}s",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=timeout + 5,
                )
                return result.returncode == 0, (result.stdout + result.stderr).strip()[
                    :200
                ]
            if "exec" in probe:
                # Held to timeoutSeconds, as the kubelet has done since 1.20
                # (`pkg/kubelet/prober/prober.go` `runProbe`: the exec's timeout is the
                # probe's; `pkg/probe/exec/exec.go` `Probe`: a timeout is a failure). The
                # docker CLI's own start-up counts against it, a few tens of ms.
                try:
                    result = docker(
                        "exec",
                        self.cid,
                        *probe["exec"]["command"],
                        check=False,
                        timeout=timeout,
                    )
                except subprocess.TimeoutExpired:
                    return False, f"command timed out after {timeout}s"
                return result.returncode == 0, (result.stdout + result.stderr).strip()[
                    :200
                ]
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, str(error)
        raise ManifestError(
            f"pod {self.name}: a probe needs httpGet, tcpSocket, grpc or exec"
        )

    def _run(self) -> None:
        """Starts the container, then probes it until it is gone. Once the pod is deleted only
        readiness is probed, until the container exits: the kubelet stops liveness (and
        startup) probes on a terminating pod and keeps readiness, which kube-proxy needs for
        its fallback to serving terminating endpoints (`pkg/kubelet/prober/worker.go`
        `doProbe`, the DeletionTimestamp check)."""
        try:
            self._docker_run()
        except ManifestError as error:
            self.records.fail(error)
            return
        if self.stop.is_set():
            return  # deleted while it was starting: `delete` removes what came up
        self._event("started")
        started = time.monotonic()
        readiness = self.container.get("readinessProbe")
        liveness = self.container.get("livenessProbe")
        if readiness is None:
            self._set_ready(True, "no readiness probe")
        due = {}
        for kind, probe in (("readiness", readiness), ("liveness", liveness)):
            if probe is not None:
                due[kind] = started + probe.get("initialDelaySeconds", 0)
        streak = {"readiness": [0, 0], "liveness": [0, 0]}  # successes, failures
        while not self.stop.is_set():
            now = time.monotonic()
            for kind, probe in (("readiness", readiness), ("liveness", liveness)):
                if probe is None or now < due[kind]:
                    continue
                if kind == "liveness" and self.terminating:
                    continue
                due[kind] = now + probe.get("periodSeconds", 10)
                ok, detail = self._probe(probe)
                if self.stop.is_set():
                    return
                counts = streak[kind]
                counts[0], counts[1] = (counts[0] + 1, 0) if ok else (0, counts[1] + 1)
                if not ok:
                    self.last_failure = f"{kind} probe failed: {detail}"
                if kind == "readiness":
                    if ok and counts[0] >= probe.get("successThreshold", 1):
                        self._set_ready(True, detail)
                    elif not ok and counts[1] >= probe.get("failureThreshold", 3):
                        self._set_ready(False, detail)
                elif not ok and counts[1] >= probe.get("failureThreshold", 3):
                    # The kubelet kills the container (preStop, SIGTERM, the grace period)
                    # and restarts it under the crash-loop back-off; the pod stays Ready
                    # until the container has exited.
                    self._event(f"liveness failed ({detail}); restarting")
                    code = self._kill_gracefully(reason="liveness")
                    if self.stop.is_set() or self.terminating:
                        return
                    self._set_ready(False, f"container exited {code}")
                    if not self._restart(code):
                        return
                    streak = {"readiness": [0, 0], "liveness": [0, 0]}
                    started = time.monotonic()
                    for k, p in (("readiness", readiness), ("liveness", liveness)):
                        if p is not None:
                            due[k] = started + p.get("initialDelaySeconds", 0)
            if not self.stop.is_set() and not self.terminating and self._exited():
                status = docker(
                    "inspect", "-f", "{{.State.ExitCode}}", self.cid, check=False
                ).stdout.strip()
                self._set_ready(False, "exited")
                if not self._restart(status):
                    return
            self.stop.wait(TICK)

    def _exited(self) -> bool:
        state = docker("inspect", "-f", "{{.State.Running}}", self.cid, check=False)
        return state.returncode != 0 or state.stdout.strip() == "false"

    # The kubelet's crash-loop back-off: `pkg/kubelet/kubelet.go` builds it with
    # `flowcontrol.NewBackOff(10 s, 300 s)`; `pkg/kubelet/kuberuntime/kuberuntime_manager.go`
    # `doBackOff` restarts at once when the container has no back-off entry, else only once
    # the back-off has passed since the container finished, then doubles it; the entry is
    # forgotten when nothing happened for twice the maximum (`flowcontrol.Backoff.Next`,
    # `hasExpired`).
    BACKOFF_INITIAL, BACKOFF_MAX = 10.0, 300.0

    def _restart(self, code: int | str | None) -> bool:
        """Restarts the exited container under the back-off; False when the pod went away
        meanwhile."""
        finished = time.monotonic()
        entry = self.backoff
        if entry is not None and finished - entry[1] > 2 * self.BACKOFF_MAX:
            entry = None
        wait = 0.0 if entry is None else entry[0]
        self.backoff = (
            self.BACKOFF_INITIAL
            if entry is None
            else min(2 * entry[0], self.BACKOFF_MAX),
            finished,
        )
        self._event(
            f"exited {code}; restart in {wait:g}s"
            + (" (CrashLoopBackOff)" if wait else "")
        )
        if self.stop.wait(wait) or self.terminating:
            return False
        docker("start", self.cid, check=False)
        self.restarts += 1
        return True

    def _set_ready(self, ready: bool, detail: str) -> None:
        with self.lock:
            if ready == self.ready:
                return
            self.ready = ready
            self.ready_since = time.monotonic() if ready else None
        self._event("ready" if ready else f"unready ({detail})")

    # --- termination

    def _kill_gracefully(self, reason: str) -> int | None:
        """preStop, then SIGTERM, then SIGKILL once the grace period (from the start of
        preStop) is over. Returns the exit code."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        start = time.monotonic()
        prestop = self.container.get("lifecycle", {}).get("preStop")
        if prestop:
            self._event("preStop")
            if "exec" in prestop:
                try:
                    result = docker(
                        "exec",
                        self.cid,
                        *prestop["exec"]["command"],
                        check=False,
                        timeout=grace,
                    )
                    if result.returncode != 0:
                        self._event(
                            "FailedPreStopHook: "
                            + (result.stdout + result.stderr).strip()[:200]
                        )
                except subprocess.TimeoutExpired:
                    self._event("preStop still running at the grace period")
            else:
                time.sleep(min(prestop["sleep"]["seconds"], grace))
        left = grace - (time.monotonic() - start)
        # The kubelet grants 2 s more when preStop used the whole grace period.
        left = max(left, 2.0)
        self._event("SIGTERM")
        docker("kill", "-s", "TERM", self.cid, check=False)
        deadline = time.monotonic() + left
        while time.monotonic() < deadline and not self._exited():
            time.sleep(0.05)
        if not self._exited():
            self._event(f"SIGKILL ({reason}: grace period over)")
            docker("kill", "-s", "KILL", self.cid, check=False)
        code = docker("wait", self.cid, check=False).stdout.strip()
        return int(code) if code.lstrip("-").isdigit() else None

    def delete(self) -> None:
        """As `kubectl delete pod`: terminating at once (out of the ready endpoints, after
        each node's lag), readiness still probed, preStop, SIGTERM, SIGKILL; the sandbox (and
        with it the pod's IP) goes once the container has exited."""
        with self.lock:
            if self.terminating:
                return
            self.terminating = True
        self._event("deleted")

        def terminate() -> None:
            if self.cid is None:
                # Deleted while its sandbox or container was being created: what came up
                # meanwhile goes at once. It was never probed, never ready, so nothing routed
                # to it.
                self.stop.set()
                self.thread.join()
                self._event(
                    "removed before it started"
                    if self.cid is None
                    else "container removed as it started"
                )
            else:
                self.exit_code = self._kill_gracefully(reason="deleted")
                self.stop.set()
                self.thread.join()
                self._set_ready(False, "container exited")
                self._event(f"exited {self.exit_code}")
            containers = [c for c in (self.cid, *self.sandbox) if c]
            if containers:
                docker("rm", "-f", *containers, check=False)
            if self.volumes:
                docker("volume", "rm", *self.volumes, check=False)
            self.gone = True

        threading.Thread(target=terminate, daemon=True).start()
