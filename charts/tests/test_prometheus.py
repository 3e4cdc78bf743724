"""The chart's PromQL on a real Prometheus (lab/chart_analysis.py): the dashboard's every
expression returns series, split by version or pod as its panel says, and none where no pod
is; the ServiceMonitor's and PodMonitor's relabelings give the labels the analysis queries
read; the chart's AnalysisTemplate and MetricTemplates pass for a healthy new version; the
shutdown panels show a pod's drain."""

import pytest
import testlib

from lab import chart_analysis


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, helm):  # noqa: ARG001 (helm: installed first)
    testlib.skip_or_fail(
        testlib.docker_problem(),
        testlib.tool_problem("prometheus"),
        testlib.binaries_problem("probe"),
    )
    out = tmp_path_factory.mktemp("chart-analysis") / "rows.json"
    return chart_analysis.main(["--duration", "8", "--out", str(out)])


def test_every_check_passes_and_absent_pods_give_no_series(outcome):
    rows, absent = outcome
    assert chart_analysis.problems(rows, absent) == []
    # 17 panels' 18 expressions in both namespaces, 4 pods' labels, 4 analysis metrics.
    kinds = [r["what"] for r in rows]
    assert kinds.count("dashboard") == 2 * len(
        list(chart_analysis.dashboard_expressions())
    )
    assert kinds.count("labels") == 4
    assert kinds.count("analysis") == 4
    assert kinds.count("drain") == 4
    assert absent
    assert all(r["verdict"] == "fail" for r in absent)
