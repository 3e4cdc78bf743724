#!/usr/bin/env python3
"""The zero-downtime experiment (seed 003) on one machine, with a real load balancer.

"Pods" are containers of our images on a private Docker network (or, without Docker, testpage
processes on 127.0.0.x addresses, each on a port the kernel chose). The "Service" is haproxy on the host, with no retries and no
health checks of its own: its endpoints change only through its runtime API, as kube-proxy's
rules change only when the control plane says so. A rolling update with Deployment semantics
replaces the pods while `probe load` sends traffic through haproxy:

    start a new pod -> poll its readiness like a readinessProbe -> add it to the endpoints ->
    terminate an old pod: SIGTERM (or the preStop hook) at t0, endpoint removal at t0 + LAG

LAG is the propagation delay of the endpoint removal: the race the tutorial explains.

    drain      testpage's own DRAIN (longer than LAG) keeps serving until the endpoint is gone
    no-drain   DRAIN=0, an app that quits on SIGTERM: requests routed to it in the gap fail
    prestop    the preStop hook `probe drain` withdraws readiness and waits; then SIGTERM

    python lab/lab.py [--duration 60] [--scenario drain ...] [--lag 1] [--replicas 3]

Results: a table per scenario on stdout, target/lab/<scenario>.json, target/lab/timeline.svg.
"""

import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import testlib

OUT = ROOT / "target" / "lab"
# The static binaries `make build` puts in the images, run on the host.
BIN = testlib.DIST
LABEL = "testpage-lab"
# The port testpage listens on in the zero-downtime images (each container has its own IP).
IMAGE_PORT = 8080

SCENARIOS = {
    # name: (testpage env, preStop sleep in seconds or None, what it shows)
    "drain": (
        {"DRAIN": "3s", "SHUTDOWN_TIMEOUT": "5s"},
        None,
        "testpage drains 3 s after SIGTERM",
    ),
    "no-drain": (
        {"DRAIN": "0", "SHUTDOWN_TIMEOUT": "5s"},
        None,
        "quits on SIGTERM, like the article's app",
    ),
    "prestop": (
        {"DRAIN": "3s", "SHUTDOWN_TIMEOUT": "5s"},
        3.0,
        "preStop `probe drain --sleep 3s`, then SIGTERM",
    ),
}


def log(message):
    print(f"lab: {message}", file=sys.stderr, flush=True)


def now_ms():
    return time.time() * 1000


# ---------------------------------------------------------------- pods


class DockerPods:
    """Pods as containers on a private bridge network."""

    kind = "docker containers on a private bridge network"

    def __init__(self, run_id, registry=""):
        self.network = f"{LABEL}-{run_id}"
        self.label = f"{LABEL}={run_id}"
        self.registry = registry
        subprocess.run(
            ["docker", "network", "create", "--label", self.label, self.network],
            check=True,
            capture_output=True,
        )

    def start(self, name, color, env):
        args = [
            "docker",
            "run",
            "-d",
            "--label",
            self.label,
            "--network",
            self.network,
            "--name",
            f"{self.network}-{name}",
        ]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        cid = subprocess.run(
            args + [f"{self.registry}zero-downtime:{color}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        ip = testlib.container_ip(cid)
        return {"id": cid, "ip": ip, "port": IMAGE_PORT, "name": name}

    def prestop(self, pod, seconds):
        subprocess.run(
            ["docker", "exec", pod["id"], "/probe", "drain", "--sleep", f"{seconds}s"],
            check=False,
        )

    def stop(self, pod, grace):
        """SIGTERM, SIGKILL after `grace` seconds; returns the exit code."""
        subprocess.run(
            ["docker", "stop", "-t", str(int(grace)), pod["id"]],
            check=False,
            capture_output=True,
        )
        code = subprocess.run(
            ["docker", "wait", pod["id"]], capture_output=True, text=True, check=False
        ).stdout.strip()
        return int(code or -1)

    def cleanup(self):
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={self.label}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", *ids], capture_output=True, check=False
            )
        subprocess.run(
            ["docker", "network", "rm", self.network], capture_output=True, check=False
        )


class ProcessPods:
    """Pods as testpage processes on distinct loopback addresses, 127.0.0.x, as pods have
    distinct IPs (no Docker). Each binds port 0 and the lab reads the port the kernel gave it
    from its READY_FILE, as the Rust tests do."""

    kind = "testpage processes on 127.0.0.x (no Docker)"

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{LABEL}-"))
        self.procs = []
        self.next = 10
        self.bin = BIN

    def start(self, name, color, env):
        """Returns once the pod has bound its port: testpage writes the ready file, which
        holds the address, when it is ready (the lab's pods have no STARTUP_DELAY)."""
        ip = f"127.0.0.{self.next}"
        self.next += 1
        ready = self.dir / f"{name}.ready"
        proc = testlib.Process(
            [self.bin / "testpage", "--listen", f"{ip}:0"],
            env={
                **env,
                "VERSION": color,
                "COLOR": color,
                "READY_FILE": str(ready),
                "POD_IP": ip,
            },
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        host, port = testlib.ready_addr(ready, proc).rsplit(":", 1)
        return {
            "proc": proc,
            "ip": host,
            "port": int(port),
            "name": name,
            "ready": ready,
        }

    def prestop(self, pod, seconds):
        subprocess.run(
            [
                self.bin / "probe",
                "drain",
                "--ready-file",
                pod["ready"],
                "--sleep",
                f"{seconds}s",
            ],
            check=False,
        )

    def stop(self, pod, grace):
        """SIGTERM, SIGKILL after `grace` seconds; returns the exit code as a shell reports it."""
        code = pod["proc"].stop(grace)
        return 128 - code if code < 0 else code

    def cleanup(self):
        for proc in self.procs:
            proc.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the Service


class Haproxy:
    """haproxy as the Service: round robin, no retries, no health checks; endpoints switched
    through the runtime API only."""

    SLOTS = 16

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{LABEL}-haproxy-"))
        self.socket = self.dir / "admin.sock"
        self.slots = {}
        # haproxy serves on a socket this process bound to port 0 and passes down (`fd@N`), so
        # the port is the kernel's choice and is never free between choosing and serving.
        listener = testlib.listening_socket()
        self.port = listener.getsockname()[1]
        servers = "\n".join(
            f"    server pod{i} 127.0.0.1:1 disabled" for i in range(self.SLOTS)
        )
        config = self.dir / "haproxy.cfg"
        config.write_text(f"""
global
    stats socket {self.socket} level admin
    maxconn 4096
defaults
    mode http
    retries 0
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend service
    bind fd@{listener.fileno()}
    default_backend pods
backend pods
    balance roundrobin
{servers}
""")
        self.log = self.dir / "haproxy.log"
        with listener, self.log.open("wb") as log_file:
            self.proc = testlib.Process(
                ["haproxy", "-db", "-f", config],
                pass_fds=[listener.fileno()],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        try:
            testlib.wait_until(
                self.answers, 5, "answer on haproxy's admin socket", interval=0.02
            )
        except (TimeoutError, RuntimeError) as error:
            log_tail = self.log.read_text(errors="replace")[-500:]
            self.close()
            raise RuntimeError(f"haproxy did not start ({error}): {log_tail}") from None

    def answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with status {self.proc.poll()}")
        return self.socket.exists() and self.command("show info")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def add(self, pod):
        slot = next(i for i in range(self.SLOTS) if i not in self.slots.values())
        self.slots[pod["name"]] = slot
        self.command(f"set server pods/pod{slot} addr {pod['ip']} port {pod['port']}")
        self.command(f"set server pods/pod{slot} state ready")

    def remove(self, pod):
        slot = self.slots.pop(pod["name"])
        self.command(f"set server pods/pod{slot} state maint")

    def close(self):
        self.proc.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the rollout


class Rollout:
    def __init__(self, pods, service, scenario, args):
        self.pods, self.service = pods, service
        self.env, self.prestop, _ = SCENARIOS[scenario]
        self.args = args
        self.events = []  # (unix ms, what, pod)
        self.terminations = []  # {pod, t0, removed, exit_code, exited_after}
        self.threads = []
        self.counter = 0

    def event(self, what, pod):
        self.events.append(
            {"unix_ms": now_ms(), "event": what, "pod": pod["name"], "ip": pod["ip"]}
        )

    def start_pod(self, color):
        self.counter += 1
        pod = self.pods.start(f"{color}-{self.counter}", color, self.env)
        self.event("started", pod)
        return pod

    def wait_ready(self, pod):
        """Polls /readyz like a readinessProbe (periodSeconds, successThreshold 1)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if testlib.http_status(f"http://{pod['ip']}:{pod['port']}/readyz") == 200:
                self.event("ready", pod)
                return
            time.sleep(self.args.period)
        raise RuntimeError(f"pod {pod['name']} never became ready")

    def terminate(self, pod):
        """As the kubelet and the endpoints controller do, concurrently: preStop then SIGTERM at
        t0, and the endpoint removal reaching the load balancer at t0 + LAG."""
        record = {"pod": pod["name"], "ip": pod["ip"], "t0_unix_ms": now_ms()}
        self.terminations.append(record)
        grace = self.args.grace

        def kubelet():
            started = time.monotonic()
            if self.prestop is not None:
                self.event("preStop", pod)
                self.pods.prestop(pod, self.prestop)
            self.event("SIGTERM", pod)
            record["sigterm_unix_ms"] = now_ms()
            left = max(1, grace - (time.monotonic() - started))
            record["exit_code"] = self.pods.stop(pod, left)
            record["exited_after_s"] = round(time.monotonic() - started, 3)
            self.event(f"exited {record['exit_code']}", pod)

        def endpoints():
            time.sleep(self.args.lag)
            self.service.remove(pod)
            record["removed_unix_ms"] = now_ms()
            self.event("endpoint removed", pod)

        for target in (kubelet, endpoints):
            thread = threading.Thread(target=target)
            thread.start()
            self.threads.append(thread)

    def run(self, old_pods):
        """replicas, maxSurge, maxUnavailable as a Deployment applies them."""
        replicas, surge, unavailable = (
            self.args.replicas,
            self.args.max_surge,
            self.args.max_unavailable,
        )
        old = list(old_pods)
        new = []
        while len(new) < replicas:
            room = replicas + surge - (len(old) + len(new))
            batch = [
                self.start_pod("green")
                for _ in range(max(0, min(room, replicas - len(new))))
            ]
            for pod in batch:
                self.wait_ready(pod)
                self.service.add(pod)
                self.event("endpoint added", pod)
            new += batch
            removable = len(old) + len(new) - (replicas - unavailable)
            for pod in old[: max(0, removable)]:
                self.terminate(pod)
            old = old[max(0, removable) :]
            if not batch and removable <= 0:
                raise RuntimeError(
                    "rollout cannot progress: maxSurge and maxUnavailable are both 0"
                )
        self.join()
        return new

    def join(self):
        """Waits for the terminations under way (each ends within the grace period)."""
        for thread in self.threads:
            thread.join()


# ---------------------------------------------------------------- a scenario


def start_load(url, args):
    """`probe load` through the Service for the whole scenario, its JSON report on stdout."""
    command = [BIN / "probe", "load", url, "-c", args.connections, "--qps", args.qps]
    command += ["-t", f"{args.duration}s", "--json"]
    return testlib.Process(command, stdout=subprocess.PIPE, text=True)


def run_scenario(scenario, args, run_id):
    """One rollout under load. Whatever fails, the load, the old pods' terminations, the
    Service and the pods are all ended and reaped before this returns or raises."""
    pods = (
        DockerPods(run_id, args.registry) if args.backend == "docker" else ProcessPods()
    )
    service = rollout = None
    try:
        service = Haproxy()
        rollout = Rollout(pods, service, scenario, args)
        old = [rollout.start_pod("blue") for _ in range(args.replicas)]
        for pod in old:
            rollout.wait_ready(pod)
            service.add(pod)
        with start_load(service.url, args) as load:
            time.sleep(args.warmup)
            rollout_started = now_ms()
            rollout.run(old)
            rollout_s = (now_ms() - rollout_started) / 1000
            report = json.loads(load.communicate(timeout=args.duration + 60)[0])
        return summarize(scenario, args, pods.kind, report, rollout, rollout_s)
    finally:
        if rollout is not None:
            rollout.join()
        if service is not None:
            service.close()
        pods.cleanup()


def summarize(scenario, args, kind, report, rollout, rollout_s):
    lag_ms = args.lag * 1000
    slack_ms = 250
    windows = [
        (t["t0_unix_ms"], t["t0_unix_ms"] + lag_ms + slack_ms)
        for t in rollout.terminations
    ]
    errors = report["error_events"]
    outside = [
        e for e in errors if not any(lo <= e["unix_ms"] <= hi for lo, hi in windows)
    ]
    by_kind = {}
    for code, count in report["codes"].items():
        if code == "-1" or int(code) >= 500:
            by_kind[code] = count
    return {
        "scenario": scenario,
        "what": SCENARIOS[scenario][2],
        "pods": kind,
        "settings": {
            k: getattr(args, k)
            for k in (
                "replicas",
                "max_surge",
                "max_unavailable",
                "lag",
                "grace",
                "period",
                "connections",
                "qps",
                "duration",
            )
        },
        "requests": report["requests"],
        "errors": report["errors"],
        "errors_by_code": by_kind,
        "errors_outside_termination_windows": len(outside),
        "versions": report["versions"],
        "rollout_s": round(rollout_s, 2),
        "terminations": rollout.terminations,
        "events": rollout.events,
        "load": report,
    }


# ---------------------------------------------------------------- output


def table(results):
    lines = [
        (
            f"{'scenario':<10} {'requests':>9} {'errors':>7}  {'by code':<18} {'blue':>7} {'green':>7} "
            f"{'rollout':>8}  old pods exited"
        ),
    ]
    for r in results:
        codes = ", ".join(f"{c}: {n}" for c, n in r["errors_by_code"].items()) or "-"
        exits = " ".join(
            f"{t.get('exit_code')}@{t.get('exited_after_s')}s"
            for t in r["terminations"]
        )
        lines.append(
            f"{r['scenario']:<10} {r['requests']:>9} {r['errors']:>7}  {codes:<18} "
            f"{r['versions'].get('blue', 0):>7} {r['versions'].get('green', 0):>7} "
            f"{r['rollout_s']:>7}s  {exits}"
        )
    return "\n".join(lines)


def svg(results):
    """Requests per second by version for each scenario, errors in red, and the moments of each
    SIGTERM (solid) and endpoint removal (dashed)."""
    width, row, left, top = 900, 200, 60, 50
    height = top + row * len(results) + 20
    colours = {"blue": "#3b82f6", "green": "#22c55e"}
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        (
            '<text x="10" y="18" font-size="14">Rolling update under load: requests per second by '
            "version, blue (old) and green (new); errors in red.</text>"
        ),
        (
            '<text x="10" y="36" font-size="12">Solid line: SIGTERM (or preStop start) of an old pod; '
            "dashed line: its endpoint removed from the load balancer.</text>"
        ),
    ]
    for index, r in enumerate(results):
        timeline = r["load"]["timeline"]
        start = r["load"]["started_unix_ms"]
        seconds = max(len(timeline), 1)
        peak = max([s["ok"] + s["errors"] for s in timeline] + [1])
        y0 = top + index * row + 150
        plot_w = width - left - 20
        bar = plot_w / seconds
        scale = 130 / peak
        parts.append(
            f'<text x="10" y="{y0 - 140}"><tspan font-weight="bold">{r["scenario"]}</tspan>: '
            f"{r['errors']} errors in {r['requests']} requests — {r['what']}</text>"
        )
        for s in timeline:
            x = left + s["second"] * bar
            y = y0
            for version in ("blue", "green"):
                h = s["versions"].get(version, 0) * scale
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" fill="{colours[version]}"/>'
                )
            if s["errors"]:
                h = max(s["errors"] * scale, 3)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y - h:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" fill="#dc2626"/>'
                )
        for t in r["terminations"]:
            for key, dash in (
                ("t0_unix_ms", ""),
                ("removed_unix_ms", ' stroke-dasharray="4 3"'),
            ):
                if key in t:
                    x = left + (t[key] - start) / 1000 * bar
                    parts.append(
                        f'<line x1="{x:.1f}" y1="{y0 - 130}" x2="{x:.1f}" y2="{y0}" stroke="black"{dash}/>'
                    )
        parts.append(
            f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#555"/>'
        )
        parts.append(
            f'<text x="{left + plot_w - 10}" y="{y0 + 14}" text-anchor="end">{seconds} s</text>'
        )
        parts.append(
            f'<text x="{left - 5}" y="{y0 - 120}" text-anchor="end">{peak}/s</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def choose_backend(requested):
    if requested == "process":
        return "process"
    problem = testlib.docker_problem()
    if problem is None:
        return "docker"
    if requested == "docker":
        raise SystemExit(f"lab: --backend docker: {problem}")
    if testlib.require_docker():
        raise SystemExit(f"lab: Docker is required (REQUIRE_DOCKER=1): {problem}")
    log(f"{problem}: pods are testpage processes on 127.0.0.x addresses")
    return "process"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="repeatable; default all",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=60,
        help="seconds of load per scenario (60, as the tutorial)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=3,
        help="seconds of load before the rollout starts",
    )
    p.add_argument(
        "--lag",
        type=float,
        default=1.0,
        help="endpoint removal delay after SIGTERM, seconds",
    )
    p.add_argument(
        "--grace", type=float, default=10, help="terminationGracePeriodSeconds"
    )
    p.add_argument(
        "--period", type=float, default=1.0, help="readiness probe period, seconds"
    )
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--max-surge", type=int, default=1)
    p.add_argument("--max-unavailable", type=int, default=0)
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("--qps", type=float, default=500)
    p.add_argument("--backend", choices=["auto", "docker", "process"], default="auto")
    p.add_argument("--registry", default=os.environ.get("REGISTRY", ""))
    p.add_argument("--out", type=pathlib.Path, default=OUT)
    args = p.parse_args(argv)
    args.scenario = args.scenario or list(SCENARIOS)
    return args


def main(argv=None):
    args = parse_args(argv)
    for problem in (
        testlib.tool_problem("haproxy"),
        testlib.binaries_problem("testpage", "probe"),
    ):
        if problem:
            raise SystemExit(f"lab: {problem}")
    args.backend = choose_backend(args.backend)
    run_id = uuid.uuid4().hex[:8]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in args.scenario:
        log(
            f"scenario {scenario}: {SCENARIOS[scenario][2]}; {args.duration:g}s of load, "
            f"{args.connections} connections at {args.qps:g} qps"
        )
        result = run_scenario(scenario, args, run_id)
        (args.out / f"{scenario}.json").write_text(json.dumps(result, indent=2))
        results.append(result)
    (args.out / "timeline.svg").write_text(svg(results))
    print(table(results))
    print(f"\nresults: {args.out}/<scenario>.json, timeline: {args.out}/timeline.svg")
    return results


if __name__ == "__main__":
    main()
