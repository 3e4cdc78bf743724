"""Failed requests, or abnormal ends of long-lived streams, against the endpoint propagation
lag: an experiment's variants, each rolled out under load at each lag of a range, several runs
each.

    python -m lab.sweep EXP [--short] [--lags 0.5,2,8] [--runs 3] [--qps 200]

The experiment's lab.yaml holds the sweep:

    sweep:
      lags: [0.5, 2, 5, 8, 12, 16]        # seconds: each node's delay for every change
      runs: 3
      short: {lags: [1, 6], runs: 1}      # --short (make test)
      image: zero-downtime:green          # what every variant rolls to
      load: load                          # the default; or `streams ws=20 sse=20 grpc=3`
      variants:                           # a Deployment and its Service, from the folder
        - {name: no hook, file: myapp-without-hook.yaml, drain_s: 0}
        - {name: testpage DRAIN 5 s, file: myapp-without-hook.yaml, env: {DRAIN: 5s},
           drain_s: 5}
        - {name: DRAIN=0, deployment: no-drain, drain_s: 0}

A variant's Deployment comes from `file` (a manifest of the folder, or a folder of it with a
kustomization; the folder's own kustomization without one): the one named `deployment`, else
the first. `drain_s`: how long a deleted pod keeps accepting connections (drawn as a tick).

Each run starts one cluster with every variant (renamed after it, in the default namespace,
a ClusterIP Service each, so that they run side by side), loads each through its Service, sets
the image of all at once, waits for the rollouts, the terminations and every node's last
endpoint change, and counts, per variant, `failed` of `total`:

- `load: load`: `probe load -c 8 --qps Q` (kept-alive connections). `failed`: the requests
  that failed (fortio's errors: connection errors and statuses other than 2xx); `total`: the
  requests sent.
- `load: streams ws=N sse=N grpc=N`: lab/streams.py's long-lived clients (`lab streams`), N
  WebSockets, N streams of events and N gRPC `Watch` calls per variant, each reconnecting when
  its stream ends. `failed`: their abnormal ends, streams.py's `abnormal` summed over the
  kinds (streams cut, and connection attempts that gave no stream); `total`: the connection
  attempts they made (each client's first connection and its reconnections, and its failed
  attempts), of which `failed` is a part: each attempt either fails, or gives a stream that
  ends cleanly, is cut, or is still open at the end. The clients, like a load, run until
  every node has the last endpoint change (and 1 s more), so a reconnection sent to a pod
  that is gone is counted.

Writes target/lab/<folder>/sweep.json (`settings`, with what `failed` and `total` count; per
variant and lag: `variant`, `lag`, `runs`, `failed` and `total` per run, their sums, the 95 %
interval of the failed share) and sweep.svg (failed per run against the lag, one line per
variant).
"""

import argparse
import copy
import functools
import json
import pathlib
import re
import shlex
import tempfile
import textwrap
from typing import Any

import yaml

from lab import kube, run, streams
from lab.common import K8S, OUT, add_number, bounded, end_on_signals, log
from lab.results import Result

# A lab.yaml's `sweep:` section, a variant of it, a manifest, a row of sweep.json, the report.
Sweep = dict[str, Any]
Variant = dict[str, Any]
Manifest = dict[str, Any]
Row = dict[str, Any]
Report = dict[str, Any]

SWEEP_KEYS = {"lags", "runs", "short", "image", "load", "variants"}
VARIANT_KEYS = {"name", "file", "deployment", "env", "drain_s"}

# What `failed` and `total` count, per kind of load (sweep.json's settings say it too).
COUNTED = {
    "load": {
        "failed": "failed requests (connection errors and statuses other than 2xx)",
        "total": "requests sent",
        "axis": "failed requests per rollout",
        "table": "failed requests",
    },
    "streams": {
        "failed": (
            "abnormal stream ends: streams cut and connection attempts that gave no "
            "stream (lab/streams.py's abnormal), every kind of client together"
        ),
        "total": (
            "stream connection attempts: each client's first connection, its "
            "reconnections and its failed attempts"
        ),
        "axis": "abnormal stream ends per rollout",
        "table": "abnormal stream ends",
    },
}
KIND_NAMES = {
    "ws": "WebSockets",
    "sse": "streams of events",
    "grpc": "gRPC Watch calls",
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_load(name: str, text: str) -> tuple[str, dict[str, int]]:
    """`load` -> ("load", {}); `streams ws=20 sse=20 grpc=3` -> ("streams", the counts)."""
    words = shlex.split(text)
    if words == ["load"]:
        return "load", {}
    if not words or words[0] != "streams":
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: load: `load` or `streams ws=N sse=N grpc=N`, "
            f"not {text!r}"
        )
    try:
        others, asked = streams.client_counts(words[1:])
    except ValueError as error:
        raise kube.ManifestError(f"k8s/{name}/lab.yaml sweep: load: {error}") from None
    if others:
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: load: {others[0]!r}: ws=N, sse=N or grpc=N"
        )
    counts = {kind: n for kind, n in asked.items() if n}
    if not any(counts.values()):
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: load: {text!r}: no client"
        )
    return "streams", counts


def config(name: str) -> Sweep:
    plan = run.load_plan(name)
    sweep = plan.get("sweep")
    if not sweep:
        raise SystemExit(f"sweep: k8s/{name}/lab.yaml has no sweep: section")
    unknown = set(sweep) - SWEEP_KEYS
    if unknown:
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: unknown {sorted(unknown)}"
        )
    for variant in sweep["variants"]:
        unknown = set(variant) - VARIANT_KEYS
        if unknown:
            raise kube.ManifestError(
                f"k8s/{name}/lab.yaml sweep: variant {variant.get('name')}: unknown "
                f"{sorted(unknown)}"
            )
    parse_load(name, sweep.get("load", "load"))
    short = sweep.get("short") or {}
    if not isinstance(short, dict):
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: short: {short!r}: a map of lags and runs"
        )
    for where, values in (
        ("lags", sweep.get("lags")),
        ("short lags", short.get("lags", sweep.get("lags"))),
    ):
        if not (
            isinstance(values, list)
            and values
            and all(is_seconds(v, 600) for v in values)
        ):
            raise kube.ManifestError(
                f"k8s/{name}/lab.yaml sweep: {where}: {values!r}: a list of seconds, "
                "0 to 600 each"
            )
    for where, runs in (
        ("runs", sweep.get("runs", 3)),
        ("short runs", short.get("runs", 1)),
    ):
        if not (type(runs) is int and 1 <= runs <= 20):
            raise kube.ManifestError(
                f"k8s/{name}/lab.yaml sweep: {where}: {runs!r}: 1 to 20"
            )
    return sweep


def variant_objects(
    folder: pathlib.Path, variant: Variant
) -> tuple[str, str, list[Manifest]]:
    """The variant's Deployment, renamed after it (labels and selector too), in the default
    namespace, its env overrides applied, and a ClusterIP Service of its own on the
    container's first port."""
    objects = kube.render(folder / variant.get("file", "."))
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    wanted = variant.get("deployment")
    found = next(
        (d for d in deployments if wanted in (None, d["metadata"]["name"])), None
    )
    if found is None:
        raise kube.ManifestError(
            f"sweep variant {variant['name']}: no Deployment {wanted or ''} in "
            f"{folder.name}/{variant.get('file', '.')} (there: "
            f"{[d['metadata']['name'] for d in deployments]})"
        )
    deployment = copy.deepcopy(found)
    name = slug(variant["name"])
    deployment["metadata"]["name"] = name
    deployment["metadata"].pop("namespace", None)
    deployment["metadata"]["labels"] = {"app": name}
    deployment["spec"]["selector"] = {"matchLabels": {"app": name}}
    deployment["spec"]["template"]["metadata"]["labels"] = {"app": name}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = container.setdefault("env", [])
    for key, value in variant.get("env", {}).items():
        env[:] = [e for e in env if e["name"] != key] + [{"name": key, "value": value}]
    port = container["ports"][0]["containerPort"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
    }
    return name, container["name"], [deployment, service]


def stream_counts(report: dict[str, Any]) -> tuple[int, int]:
    """(failed, total) of one Service's lab/streams.py report: its abnormal ends (cut and
    failed, every kind) and its connection attempts (connections made, and failed attempts)."""
    failed = sum(kind["abnormal"] for kind in report["summary"].values())
    total = sum(
        client["connections"] + client["outcomes"]["failed"]
        for client in report["clients"]
    )
    return failed, total


def counts(
    result: Result, load: str, names: dict[str, str]
) -> dict[str, tuple[int, int]]:
    """{variant name: (failed, total)} of a run: per variant's Service (`names`: variant ->
    Deployment and Service), its failed requests of those sent (`load`), or its clients'
    abnormal ends of their connection attempts (`streams`)."""
    if load == "streams":
        missing = [dep for dep in names.values() if dep not in result.streams]
        if missing:
            raise kube.StepError(f"no report of the clients on {missing}")
        return {
            variant: stream_counts(result.streams[dep])
            for variant, dep in names.items()
        }
    return {
        variant: (result.services[dep].errors, result.services[dep].requests)
        for variant, dep in names.items()
    }


def one_run(
    name: str,
    sweep: Sweep,
    lag: float,
    args: argparse.Namespace,
    workdir: pathlib.Path,
) -> dict[str, tuple[int, int]]:
    """One cluster with every variant, at `lag`: {variant name: (failed, total)}."""
    folder = K8S / name
    load, clients = parse_load(name, sweep.get("load", "load"))
    objects: list[Manifest] = []
    names: dict[str, str] = {}
    set_image = []
    for variant in sweep["variants"]:
        dep, container, objs = variant_objects(folder, variant)
        objects += objs
        names[variant["name"]] = dep
        set_image.append(
            f"kubectl set image deployment {dep} {container}={sweep['image']}"
        )
    manifest = workdir / "variants.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    deps = list(names.values())
    if load == "streams":
        start = "lab streams " + " ".join(
            deps + [f"{kind}={n}" for kind, n in clients.items()]
        )
    else:
        start = "lab load " + " ".join(deps)
    plan = {
        "title": f"sweep of {name} at lag {lag}",
        "steps": [
            f"kubectl apply -f {manifest}",
            *(f"kubectl rollout status deployment {d}" for d in deps),
            start,
            "lab sleep 2",
            " && ".join(set_image),
            *(f"kubectl rollout status deployment {d}" for d in deps),
        ],
        "expect": [],
    }
    run_args = run.parse_args(
        [
            "--duration", "1", "--cooldown", "1", "--qps", str(args.qps),
            "--lag", f"{lag:.3f}", "--nodes", str(args.nodes),
        ]
    )  # fmt: skip
    with run.started(f"{name} sweep", plan, run_args) as one:
        result = one.run()
    return counts(result, load, names)


def settings(cfg: Sweep, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """What every row was measured at, and what `failed` and `total` count."""
    load, clients = parse_load(name, cfg.get("load", "load"))
    common = {
        "nodes": args.nodes,
        "lag": "each node's delay for every change, fixed at the row's value",
        "image": cfg["image"],
        "failed": COUNTED[load]["failed"],
        "total": COUNTED[load]["total"],
    }
    if load == "streams":
        return {
            "load": "streams",
            "clients": clients,
            "reconnect_s": streams.RECONNECT_S,
            **common,
        }
    return {"load": "probe load", "qps": args.qps, "connections": 8, **common}


def sweep(name: str, args: argparse.Namespace) -> Report:
    cfg = config(name)
    short = cfg.get("short") or {}
    lags = args.lags or (short.get("lags") if args.short else None) or cfg["lags"]
    runs = (
        args.runs or (short.get("runs") if args.short else None) or cfg.get("runs", 3)
    )
    rows: dict[tuple[str, float], Row] = {
        (v["name"], lag): {
            "variant": v["name"],
            "drain_s": v.get("drain_s"),
            "lag": lag,
            "runs": 0,
            "failed": [],
            "total": [],
        }
        for v in cfg["variants"]
        for lag in lags
    }
    with tempfile.TemporaryDirectory(prefix="lab-sweep-") as tmp:
        for r in range(runs):
            for lag in lags:
                log(f"sweep {name}: lag {lag} s, run {r + 1} of {runs}")
                for variant, (failed, total) in one_run(
                    name, cfg, lag, args, pathlib.Path(tmp)
                ).items():
                    row = rows[(variant, lag)]
                    row["runs"] += 1
                    row["failed"].append(failed)
                    row["total"].append(total)
    for row in rows.values():
        failed, total = sum(row["failed"]), sum(row["total"])
        row["failed_sum"], row["total_sum"] = failed, total
        row["failed_per_run"] = failed / row["runs"]
        low, high = run.wilson(failed, total)
        row["interval"] = [low, high]  # 95 % Wilson interval of the failed share
    return {
        "experiment": name,
        "settings": settings(cfg, name, args),
        "rows": list(rows.values()),
    }


def counted(report: Report) -> dict[str, str]:
    """What the report's `failed` counts, for the table and the picture."""
    load = "streams" if report["settings"].get("load") == "streams" else "load"
    return COUNTED[load]


def load_note(report: Report) -> str:
    """The load on each variant, in a few words."""
    s = report["settings"]
    if s.get("load") == "streams":
        return ", ".join(
            f"{n} {KIND_NAMES.get(kind, kind)}" for kind, n in s["clients"].items()
        )
    return f"{s['qps']:g} qps, {s['connections']} connections"


def table(report: Report) -> str:
    s = report["settings"]
    if s.get("load") == "streams":
        per = f"{load_note(report)} per variant"
    else:
        per = f"{s['qps']:g} qps per variant"
    lines = [
        (
            f"\n{report['experiment']}: {counted(report)['table']} against the propagation "
            f"lag ({per}, {s['nodes']} nodes)"
        ),
        f"  {'variant':<34} {'lag':>5} {'runs':>4} {'failed':>12} {'of':>7}  95% interval",
    ]
    for row in report["rows"]:
        failed = "+".join(str(f) for f in row["failed"])
        low, high = row["interval"]
        lines.append(
            f"  {row['variant']:<34} {row['lag']:>4g}s {row['runs']:>4} {failed:>12} "
            f"{row['total_sum']:>7}  {100 * low:.3f}-{100 * high:.3f} %"
        )
    return "\n".join(lines)


COLOURS = ["#e15759", "#f28e2b", "#4e79a7", "#59a14f", "#b07aa1", "#76b7b2"]


def svg(report: Report) -> str:
    """Failed requests (or abnormal stream ends) per run, the mean and each run as a dot,
    against the lag, a line per variant, each variant's drain as a mark on the lag axis."""
    rows = report["rows"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lags = sorted({r["lag"] for r in rows})
    top = max((f for r in rows for f in r["failed"]), default=0)
    top = max(10, top * 1.1)
    right = max(lags) * 1.05 or 1
    w, h, left, bottom, pad = 760, 420, 70, 50, 20
    pw, ph = w - left - pad - 220, h - bottom - pad

    def x(lag: float) -> float:
        return left + pw * lag / right

    def y(v: float) -> float:
        return pad + ph * (1 - v / top)

    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            'font-family="sans-serif" font-size="12">'
        ),
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{left}" y1="{pad + ph}" x2="{left + pw}" y2="{pad + ph}" stroke="#333"/>',
        f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{pad + ph}" stroke="#333"/>',
        (
            f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">endpoint propagation '
            "lag per node (s)</text>"
        ),
        (
            f'<text x="15" y="{pad + ph / 2}" text-anchor="middle" transform="rotate(-90 15 '
            f'{pad + ph / 2})">{counted(report)["axis"]}</text>'
        ),
    ]
    for lag in lags:
        out.append(
            f'<text x="{x(lag):.1f}" y="{pad + ph + 16}" text-anchor="middle">{lag:g}</text>'
        )
    for i in range(5):
        v = top * i / 4
        out.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>'
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" '
            'stroke="#eee"/>'
        )
    for n, variant in enumerate(variants):
        colour = COLOURS[n % len(COLOURS)]
        mine = sorted(
            (r for r in rows if r["variant"] == variant), key=lambda r: r["lag"]
        )
        points = " ".join(
            f"{x(r['lag']):.1f},{y(r['failed_per_run']):.1f}" for r in mine
        )
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for r in mine:
            for f in r["failed"]:
                out.append(
                    f'<circle cx="{x(r["lag"]):.1f}" cy="{y(f):.1f}" r="3" fill="{colour}" '
                    'fill-opacity="0.6"/>'
                )
        drain = mine[0].get("drain_s") if mine else None
        if drain is not None and drain <= right:
            out.append(
                f'<line x1="{x(drain):.1f}" y1="{pad + ph - 8}" x2="{x(drain):.1f}" '
                f'y2="{pad + ph}" stroke="{colour}" stroke-width="3"/>'
            )
        ly = pad + 20 + 22 * n
        out.append(
            f'<line x1="{left + pw + 15}" y1="{ly}" x2="{left + pw + 35}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{left + pw + 40}" y="{ly + 4}">{variant}</text>'
        )
    # In lines of 40 characters at most: the legend's column is 220 px wide.
    note = textwrap.wrap(
        f"{load_note(report)} per variant; ticks on the axis: each variant's drain", 40
    )
    for i, line in enumerate(note):
        out.append(
            f'<text x="{left + pw + 15}" y="{pad + ph - 13 * (len(note) - 1 - i)}" '
            f'font-size="10">{line}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def lag_list(text: str) -> list[float]:
    """`--lags 0.5,2,8`: one or more lags, each a number of seconds from 0 to 600, to the
    millisecond (what the lab's timers resolve)."""
    one = bounded(0, 600)
    return [round(one(word), 3) + 0 for word in text.split(",")]


def is_seconds(value: object, high: float) -> bool:
    """A number from 0 to `high` in lab.yaml (YAML's true and false are not numbers)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= high
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="python -m lab.sweep", description=doc.split("\n\n")[0]
    )
    p.add_argument("experiment", help="a folder under k8s/ whose lab.yaml has a sweep:")
    p.add_argument("--short", action="store_true", help="the sweep's short form")
    p.add_argument(
        "--lags",
        type=lag_list,
        default=None,
        help="lags to try, s, comma-separated, each 0 to 600 (default: the sweep's)",
    )
    number = functools.partial(add_number, p)
    number("--runs", low=1, high=20, default=None, kind=int, text="runs per lag")
    number(
        "--qps", low=1, high=100_000, default=200, text="per variant, under probe load"
    )
    number("--nodes", low=1, high=16, default=3, kind=int, text="nodes")
    p.add_argument("--out", type=pathlib.Path, default=OUT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    report = sweep(args.experiment, args)
    out = args.out / args.experiment
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(report, indent=2))
    (out / "sweep.svg").write_text(svg(report))
    print(table(report), flush=True)
    print(f"\nresults: {out}/sweep.json and sweep.svg")
    return report


if __name__ == "__main__":
    end_on_signals()
    main()
