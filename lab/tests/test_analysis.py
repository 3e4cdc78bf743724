"""The Argo Rollouts and Flagger analysis queries, run as the manifests write them on a real
Prometheus scraping real pods (lab/analysis.py): the healthy canary passes, the faulty ones
fail the metric their fault moves, and a query that selects nothing fails. The evaluators and
the substitutions are tested on their own first, without Docker."""

import json
import math
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import analysis

# ------------------------------------------------------------ without Docker


@pytest.mark.parametrize(
    ("condition", "result", "verdict"),
    [
        ("result[0] >= 0.95", [0.96], True),
        ("result[0] >= 0.95", [0.95], True),
        ("result[0] >= 0.95", [0.7], False),
        # An empty vector is never a pass: Argo errs on result[0], the lab fails it.
        ("result[0] >= 0.95", [], False),
        ("result[0] <= 0.25", [math.nan], False),
        ("result[0] <= 0.25", [0.1], True),
        ("result[0] > 0 && result[0] < 1", [0.5], True),
        ("result[0] > 0 && result[0] < 1", [1.0], False),
        ("result[1] == 2", [1.0, 2.0], True),
    ],
)
def test_argo_condition(condition, result, verdict):
    assert analysis.argo_condition(condition, result) is verdict


def test_argo_condition_refuses_forms_it_does_not_know():
    with pytest.raises(ValueError, match="not supported"):
        analysis.argo_condition("len(result) > 0", [1.0])


@pytest.mark.parametrize(
    ("threshold", "result", "verdict"),
    [
        ({"min": 95}, [99.0], True),
        ({"min": 95}, [70.0], False),
        ({"max": 250}, [407.6], False),
        ({"max": 250}, [0.1], True),
        ({"min": 1, "max": 2}, [1.5], True),
        # Flagger: "no values found" halts advancement, a failed check.
        ({"max": 250}, [], False),
        ({"max": 250}, [math.nan], False),
    ],
)
def test_flagger_condition(threshold, result, verdict):
    assert analysis.flagger_condition(threshold, result) is verdict


def test_both_folders_document_the_same_scrape_job():
    """The one job serves both tools; a user running both adds it once."""
    argo = (analysis.ARGO / "prometheus-scrape.yaml").read_text()
    assert argo == (analysis.FLAGGER / "prometheus-scrape.yaml").read_text()
    job = yaml.safe_load(argo)["scrape_configs"][0]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod", "rollouts_pod_template_hash"} <= targets


@pytest.fixture(scope="module")
def scenario():
    testlib.skip_or_fail(testlib.tool_problem("kubectl"))
    return analysis.scenario()


def test_every_rollout_passes_the_template_the_same_args(scenario):
    """The canary and the blue-green Rollouts resolve to the same queries, so the run covers
    both."""
    hashes = {"healthy": {"Latest": "abc", "Stable": "def"}}
    checks = analysis.argo_checks(scenario["argo_objects"], hashes)
    rollouts = [o for o in scenario["argo_objects"] if o["kind"] == "Rollout"]
    assert len(rollouts) == 2
    for rollout in rollouts:
        alone = [
            o for o in scenario["argo_objects"] if o not in rollouts or o is rollout
        ]
        assert analysis.argo_checks(alone, hashes).keys() == checks.keys()


def test_queries_are_the_manifests_text_with_the_args_filled_in(scenario):
    checks = analysis.argo_checks(
        scenario["argo_objects"], {"errors": {"Latest": "h4sh", "Stable": "s"}}
    )
    template = yaml.safe_load((analysis.ARGO / "analysistemplate.yaml").read_text())
    for metric in template["spec"]["metrics"]:
        text = metric["provider"]["prometheus"]["query"]
        text = text.replace("{{args.namespace}}", "testpage-argo")
        text = text.replace("{{args.canary-hash}}", "h4sh").strip()
        assert (
            "k8s/argo-rollouts/analysistemplate.yaml",
            metric["name"],
            text,
            "errors",
        ) in checks
    checks = analysis.flagger_checks(
        scenario["flagger_objects"], {"errors": "ns-errors"}
    )
    for key in checks:
        assert "{{" not in key[2]
        assert 'namespace="ns-errors"' in key[2]
        assert 'pod=~"testpage-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"' in key[2]
        assert "[1m]" in key[2]


def test_flagger_pod_regex_tells_the_canary_from_the_primary():
    """PromQL anchors =~ at both ends, as fullmatch does."""
    regex = re.compile("testpage-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)")
    assert regex.fullmatch("testpage-7d9f8c6b5d-x2x1k")
    assert not regex.fullmatch("testpage-primary-7d9f8c6b5d-x2x1k")


# ------------------------------------------------------------ on a real Prometheus


def require():
    testlib.skip_or_fail(
        testlib.tool_problem("prometheus"),
        testlib.docker_problem(),
        testlib.binaries_problem("probe"),
        testlib.tool_problem("kubectl"),
    )


@pytest.fixture(scope="module")
def outcome():
    """One run, as `make lab-analysis` makes it: target/lab/analysis.json."""
    require()
    outcome = analysis.main(["--duration", "10"])
    outcome["written"] = json.loads(analysis.OUT.read_text())
    return outcome


def rows_of(outcome, metric, canary):
    return [
        r for r in outcome["rows"] if r["metric"] == metric and r["canary"] == canary
    ]


def test_every_query_is_checked_on_every_canary(outcome):
    manifests = {
        "k8s/argo-rollouts/analysistemplate.yaml",
        "k8s/flagger/metrictemplates.yaml",
    }
    seen = {(r["manifest"], r["metric"], r["canary"]) for r in outcome["rows"]}
    assert seen == {
        (m, metric, c)
        for m in manifests
        for metric in ("success-rate", "latency-p99")
        for c in ("healthy", "errors", "latency")
    }


def test_the_healthy_canary_passes_and_the_faulty_ones_fail(outcome):
    assert analysis.problems(outcome["rows"]) == []


def test_the_values_are_the_canarys_own(outcome):
    """30 % errors read as 70 % success: the stable pods, which get as much traffic, would
    lift it towards 85 % if the query selected them too. 400 ms of latency reads as a p99
    in the bucket above 0.4 s."""
    for row in rows_of(outcome, "success-rate", "errors"):
        scale = 100 if "flagger" in row["manifest"] else 1
        assert 0.6 * scale <= row["value"] <= 0.8 * scale, row
    for row in rows_of(outcome, "success-rate", "healthy"):
        scale = 100 if "flagger" in row["manifest"] else 1
        assert row["value"] == pytest.approx(scale), row
    for row in rows_of(outcome, "latency-p99", "latency"):
        scale = 1000 if "flagger" in row["manifest"] else 1
        assert 0.4 * scale <= row["value"] <= 0.82 * scale, row


def test_a_query_that_selects_nothing_fails(outcome):
    assert outcome["absent"]
    for row in outcome["absent"]:
        assert row["value"] is None, row
        assert row["verdict"] == "fail", row


def test_versions_are_told_apart_by_a_join_on_build_info(outcome):
    assert set(outcome["by_version"]) == {"0.8", "0.9"}
    assert all(rate > 0 for rate in outcome["by_version"].values())


def test_every_pod_got_its_traffic(outcome):
    for name, report in outcome["loads"].items():
        assert report["requests"] > 50, name
    assert "500" in outcome["loads"]["errors"]["codes"]
    assert set(outcome["loads"]["healthy"]["codes"]) == {"200"}


def test_the_report_is_written(outcome):
    assert outcome["written"] == outcome["rows"]
    for row in outcome["written"]:
        assert set(row) == {
            "manifest",
            "metric",
            "query",
            "canary",
            "value",
            "condition",
            "verdict",
        }
        assert row["canary"] in ("healthy", "errors", "latency")
        assert row["verdict"] in ("pass", "fail")


@pytest.mark.usefixtures("outcome")
def test_nothing_is_left_behind():
    assert analysis.leftovers() == [[], []]
