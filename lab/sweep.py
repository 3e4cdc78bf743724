"""Failed requests against the endpoint propagation lag: an experiment's variants, each rolled
out under load at each lag of a range, several runs each.

    python -m lab.sweep EXP [--short] [--lags 0.5,2,8] [--runs 3] [--qps 200]

The experiment's lab.yaml holds the sweep:

    sweep:
      lags: [0.5, 2, 5, 8, 12, 16]        # seconds: each node's delay for every change
      runs: 3
      short: {lags: [1, 6], runs: 1}      # --short (make test)
      image: zero-downtime:green          # what every variant rolls to
      variants:                           # a Deployment and its Service, from the folder
        - {name: no hook, file: myapp-without-hook.yaml, drain_s: 0}
        - {name: testpage DRAIN 5 s, file: myapp-without-hook.yaml, env: {DRAIN: 5s},
           drain_s: 5}

Each run starts one cluster with every variant (renamed after it, a ClusterIP Service each, so
that they run side by side), loads each through its Service (`probe load -c 8`), sets the image
of all at once, waits for the rollouts, the terminations and every node's last endpoint change,
and counts each Service's failed requests. Writes target/lab/<folder>/sweep.json (per variant
and lag: `variant`, `lag`, `runs`, `failed`, `total`, the 95 % interval of the failed share)
and sweep.svg (failed requests per run against the lag, one line per variant).
"""

import argparse
import copy
import json
import pathlib
import re
import tempfile

import yaml

from lab import kube, run
from lab.common import K8S, OUT, log


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def config(name):
    plan = run.load_plan(name)
    sweep = plan.get("sweep")
    if not sweep:
        raise SystemExit(f"sweep: k8s/{name}/lab.yaml has no sweep: section")
    unknown = set(sweep) - {"lags", "runs", "short", "image", "variants"}
    if unknown:
        raise kube.ManifestError(
            f"k8s/{name}/lab.yaml sweep: unknown {sorted(unknown)}"
        )
    return sweep


def variant_objects(folder, variant):
    """The variant's Deployment, renamed after it (labels and selector too), its env overrides
    applied, and a ClusterIP Service of its own on the container's first port."""
    objects = kube.render(folder / variant["file"])
    deployment = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    name = slug(variant["name"])
    deployment["metadata"]["name"] = name
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


def one_run(name, sweep, lag, args, workdir):
    """One cluster with every variant, at `lag`: {variant name: (failed, total)}."""
    folder = K8S / name
    objects, names, set_image = [], {}, []
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
    plan = {
        "title": f"sweep of {name} at lag {lag}",
        "steps": [
            f"kubectl apply -f {manifest}",
            *(f"kubectl rollout status deployment {d}" for d in deps),
            "lab load " + " ".join(deps),
            "lab sleep 2",
            " && ".join(set_image),
            *(f"kubectl rollout status deployment {d}" for d in deps),
        ],
        "expect": [],
    }
    run_args = run.parse_args(
        [
            "--duration", "1", "--cooldown", "1", "--qps", str(args.qps),
            "--lag", str(lag), "--nodes", str(args.nodes),
        ]
    )  # fmt: skip
    result = run.Run(f"{name} sweep", plan, run_args).run()
    return {
        variant: (result.services[dep].errors, result.services[dep].requests)
        for variant, dep in names.items()
    }


def sweep(name, args):
    cfg = config(name)
    short = cfg.get("short", {})
    lags = args.lags or (short.get("lags") if args.short else None) or cfg["lags"]
    runs = (
        args.runs or (short.get("runs") if args.short else None) or cfg.get("runs", 3)
    )
    rows = {
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
        "settings": {
            "qps": args.qps,
            "connections": 8,
            "nodes": args.nodes,
            "lag": "each node's delay for every change, fixed at the row's value",
            "image": cfg["image"],
        },
        "rows": list(rows.values()),
    }


def table(report):
    lines = [
        (
            f"\n{report['experiment']}: failed requests against the propagation lag "
            f"({report['settings']['qps']:g} qps per variant, {report['settings']['nodes']} nodes)"
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


def svg(report):
    """Failed requests per run (mean, and each run as a dot) against the lag, a line per
    variant, each variant's drain as a dashed mark on the lag axis."""
    rows = report["rows"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lags = sorted({r["lag"] for r in rows})
    top = max((f for r in rows for f in r["failed"]), default=0)
    top = max(10, top * 1.1)
    right = max(lags) * 1.05 or 1
    w, h, left, bottom, pad = 760, 420, 70, 50, 20
    pw, ph = w - left - pad - 220, h - bottom - pad

    def x(lag):
        return left + pw * lag / right

    def y(v):
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
            f'{pad + ph / 2})">failed requests per rollout</text>'
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
    note = (
        f"{report['settings']['qps']:g} qps, 8 connections per variant; "
        "ticks on the axis: each variant's drain"
    )
    out.append(
        f'<text x="{left + pw + 15}" y="{pad + ph}" font-size="10">{note}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m lab.sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("experiment", help="a folder under k8s/ whose lab.yaml has a sweep:")
    p.add_argument("--short", action="store_true", help="the sweep's short form")
    p.add_argument(
        "--lags",
        type=lambda t: [float(v) for v in t.split(",")],
        default=None,
        help="lags to try, s, comma-separated (default: the sweep's)",
    )
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--qps", type=float, default=200, help="per variant (200)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--out", type=pathlib.Path, default=OUT)
    return p.parse_args(argv)


def main(argv=None):
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
    main()
