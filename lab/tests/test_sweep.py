"""The sweep's short form (two lags, one run each) for 003-zero-downtime: the rule the full
sweep draws, in its simplest shape. A drain longer than the lag loses nothing; with no drain,
a longer lag loses more."""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import sweep


def test_a_drain_longer_than_the_lag_loses_nothing(tmp_path):
    testlib.skip_or_fail(
        testlib.tool_problem("haproxy"),
        testlib.docker_problem(),
        testlib.binaries_problem("probe"),
        testlib.tool_problem("kubectl"),
    )
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
