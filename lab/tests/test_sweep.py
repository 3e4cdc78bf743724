"""The sweep's short form (two lags, one run each) for 003-zero-downtime under probe load and
for long-lived with its long-lived clients: the rule the full sweep draws, in its simplest
shape. A drain longer than the lag loses nothing; with no drain, a longer lag loses more. And
what a streams variant counts, on a report lab/streams.py's own code writes."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import streams, sweep


def require():
    testlib.skip_or_fail(
        testlib.tool_problem("haproxy"),
        testlib.docker_problem(),
        testlib.binaries_problem("probe"),
        testlib.tool_problem("kubectl"),
    )


def test_a_drain_longer_than_the_lag_loses_nothing(tmp_path):
    require()
    report = sweep.main(["003-zero-downtime", "--short", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "003-zero-downtime" / "sweep.json").read_text())
    assert written["rows"] == report["rows"]
    assert (tmp_path / "003-zero-downtime" / "sweep.svg").read_text().startswith("<svg")
    rows = {(r["variant"], r["lag"]): r for r in report["rows"]}
    lags = sorted({lag for _, lag in rows})
    assert len(lags) == 2
    for (variant, lag), row in rows.items():
        assert {"variant", "lag", "runs", "failed", "total", "interval"} <= set(row)
        assert row["runs"] == 1, row
        assert row["total_sum"] > 0, row
        if variant.startswith("preStop") and lag < row["drain_s"]:
            assert row["failed_sum"] == 0, row
    no_hook = [
        rows[(v, lag)]["failed_sum"] for v, lag in rows if v.startswith("no hook")
    ]
    low, high = (rows[("no hook (DRAIN=0)", lag)]["failed_sum"] for lag in lags)
    assert high > low, no_hook


def test_long_lived_clients_lose_nothing_with_a_drain_longer_than_the_lag(tmp_path):
    """long-lived's short sweep (lag 3 s, one run, about 40 s): both Deployments rolled
    0.8 -> 0.9 at once, each with its own long-lived clients. testpage's drain (5 s) outlasts
    the lag: no abnormal end; DRAIN=0 says goodbye at SIGTERM, and the reconnections a second
    later still reach the pod: some fail. (The full sweep shows the drain losing too once the
    lag outlasts it.)"""
    require()
    report = sweep.main(["long-lived", "--short", "--out", str(tmp_path)])
    out = tmp_path / "long-lived"
    written = json.loads((out / "sweep.json").read_text())
    assert written["rows"] == report["rows"]
    picture = (out / "sweep.svg").read_text()
    assert picture.startswith("<svg")
    assert "abnormal stream ends per rollout" in picture
    assert "failed requests" not in picture
    settings = report["settings"]
    assert settings["load"] == "streams"
    assert settings["clients"] == {"ws": 20, "sse": 20, "grpc": 3}
    assert "abnormal" in settings["failed"]
    assert "attempts" in settings["total"]
    rows = {(r["variant"], r["lag"]): r for r in report["rows"]}
    assert sorted({lag for _, lag in rows}) == [3]
    for row in rows.values():
        assert {"variant", "lag", "runs", "failed", "total", "interval"} <= set(row)
        assert row["runs"] == 1, row
        # At least one connection per client.
        assert row["total_sum"] >= 43, row
        assert row["failed_sum"] <= row["total_sum"], row
    drain, no_drain = "testpage drain (DRAIN 5 s)", "no drain (DRAIN=0)"
    assert rows[(drain, 3)]["failed_sum"] == 0, rows[(drain, 3)]
    assert rows[(no_drain, 3)]["failed_sum"] > 0, rows[(no_drain, 3)]


def test_a_streams_variant_counts_abnormal_ends_of_connection_attempts():
    """failed: every cut stream and failed attempt, of every kind; total: every attempt, the
    streams that are still open at the end included. On a report as lab/streams.py writes it."""
    ws, sse, grpc = (
        streams.Client("ws", 0),
        streams.Client("sse", 0),
        streams.Client("grpc", 0),
    )
    ws.connected()
    ws.ended("clean", "1001 going away")
    ws.ended("failed", "ConnectionRefusedError")  # an attempt that gave no stream
    ws.connected()  # still open at the end
    sse.connected()
    sse.ended("cut", "EOF without bye")
    sse.connected()
    sse.ended("clean", "bye, then the end of the stream")
    grpc.ended("failed", "no answer within 5s")  # never connected
    clients = [ws, sse, grpc]
    report = {
        "summary": streams.summary(clients),
        "clients": [c.report() for c in clients],
    }
    # ws: 2 connections + 1 failed; sse: 2 connections; grpc: 1 failed.
    assert sweep.stream_counts(report) == (3, 6)


@pytest.mark.parametrize(
    "words",
    [
        ["--lags", "1,-2"],
        ["--lags", ""],
        ["--lags", "1,,2"],
        ["--runs", "0"],
        ["--qps", "0"],
    ],
)
def test_a_sweep_number_out_of_its_range_is_a_usage_error(words):
    with pytest.raises(SystemExit) as exit_:
        sweep.parse_args(["003-zero-downtime", *words])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"lags": [1, -2]}, "lags"),
        ({"lags": []}, "lags"),
        ({"short": {"lags": [700]}}, "short lags"),
        ({"lags": 5}, "lags"),
        ({"lags": [True]}, "lags"),
        ({"short": None, "lags": "1,2"}, "lags"),
        ({"short": [1]}, "short"),
        ({"runs": 0}, "runs"),
        ({"runs": True}, "runs"),
        ({"short": {"runs": 21}}, "short runs"),
    ],
)
def test_a_sweep_setting_out_of_its_range_is_refused(monkeypatch, change, says):
    plan = sweep.run.load_plan("003-zero-downtime")
    plan["sweep"] = {**plan["sweep"], **change}
    monkeypatch.setattr(sweep.run, "load_plan", lambda _name: plan)
    with pytest.raises(sweep.kube.ManifestError, match=f"sweep: {says}"):
        sweep.config("003-zero-downtime")


def test_sweep_lags_are_taken_to_the_millisecond_and_reach_the_lab_as_such():
    assert sweep.lag_list("-0,0.00001,0.5,2") == [0, 0, 0.5, 2]
    for lag in sweep.lag_list("0.0004,1.2345,600"):
        assert sweep.run.parse_args(["--lag", f"{lag:.3f}"]).lag.low == lag


def test_the_sweep_load_is_probe_load_or_long_lived_clients():
    assert sweep.parse_load("x", "load") == ("load", {})
    assert sweep.parse_load("x", "streams ws=20 sse=20 grpc=3") == (
        "streams",
        {"ws": 20, "sse": 20, "grpc": 3},
    )
    with pytest.raises(sweep.kube.ManifestError, match="ws=N"):
        sweep.parse_load("x", "streams ws=20 tcp=3")
    with pytest.raises(sweep.kube.ManifestError, match="no client"):
        sweep.parse_load("x", "streams ws=0")


def test_a_variant_picks_its_deployment_out_of_the_kustomization():
    testlib.skip_or_fail(testlib.tool_problem("kubectl"))
    cfg = sweep.config("long-lived")
    folder = ROOT / "k8s" / "long-lived"
    envs = {}
    for variant in cfg["variants"]:
        name, container, (deployment, service) = sweep.variant_objects(folder, variant)
        assert deployment["metadata"]["name"] == service["metadata"]["name"] == name
        assert "namespace" not in deployment["metadata"]
        assert container == "app"
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        envs[variant["deployment"]] = {e["name"]: e.get("value") for e in env}
    assert "DRAIN" not in envs["drain"]
    assert envs["no-drain"]["DRAIN"] == "0"
    with pytest.raises(sweep.kube.ManifestError, match="no Deployment"):
        sweep.variant_objects(folder, {"name": "x", "deployment": "nowhere"})
