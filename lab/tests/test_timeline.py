"""The timeline picture: a y-axis in answers per second, the rate asked against the rate
reached, step labels whole and inside the picture."""

import pathlib
import re

from lab import timeline

ROOT = pathlib.Path(__file__).resolve().parents[2]


def result(step_label="apply -f k8s/000-rolling-update/deployment-0.9.yaml"):
    start = 1_000_000
    return {
        "experiment": "000-rolling-update",
        "title": "a rolling update",
        "settings": {"lag": "1 s", "nodes": 3},
        "services": {
            "testpage": {
                "started_unix_ms": start,
                "requests": 2600,
                "errors": 0,
                "qps_asked": 500,
                "qps_reached": 260.4,
                "versions": {"0.8": 2000, "0.9": 600},
                "timeline": [
                    {"second": i, "versions": {"0.8": 200 + i, "0.9": 60}, "errors": 0}
                    for i in range(10)
                ],
                "error_events": [],
            }
        },
        "steps": [
            {
                "step": step_label,
                "started_unix_ms": start + 1000,
                "ended_unix_ms": start + 1500,
            },
            {
                "step": "rollout status deployment testpage --timeout 120s",
                "started_unix_ms": start + 9000,
            },
        ],
        "events": [{"event": "endpoint removed", "unix_ms": start + 4000, "pod": "p"}],
    }


def test_nice_scale_tops():
    got = [timeline.nice(v) for v in (1, 3, 260, 500, 531, 1001)]
    assert got == [1, 3, 300, 500, 600, 1200]


def test_the_axis_the_asked_rate_and_the_reached_rate_are_drawn():
    svg = timeline.draw(result())
    assert "answers/s" in svg
    assert "260 of 500 answers/s asked" in svg
    # The dashed line of the rate asked, and ticks 0, 250, 500 on the axis.
    assert 'stroke-dasharray="6,3"' in svg
    ticks = re.findall(r'text-anchor="end" fill="#666">(\d+)</text>', svg)
    assert ticks == ["0", "250", "500"], ticks
    assert "endpoint removed" in svg


def test_step_labels_are_whole_and_inside_the_picture():
    svg = timeline.draw(result())
    assert "deployment-0.9.yaml" in svg
    # A label at the right edge ends at its line instead of running off the picture.
    late = "rollout status deployment testpage"
    line = next(x for x in svg.splitlines() if late in x)
    assert 'text-anchor="end"' in line


def test_the_picture_says_the_lag_it_was_measured_at():
    svg = timeline.draw(result())
    assert "(propagation lag 1 s, 3 nodes)" in svg
