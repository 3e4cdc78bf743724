"""What a run records: its settings, steps, loads, checks and the cluster's events, as
dataclasses; `Result.to_json()` is what result.json holds (and what timeline.py draws)."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Something the stand-in did, at a wall-clock millisecond: a pod started, became ready,
    got SIGTERM; an endpoint reached a node; a step began."""

    unix_ms: float
    event: str
    pod: str | None = None
    ip: str | None = None
    node: int | None = None


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str


@dataclass
class Step:
    """One step of the plan as it ran; `ok` stays False until it ended well."""

    step: str | dict[str, Any]
    started_unix_ms: float
    ended_unix_ms: float | None = None
    ok: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Settings:
    """What every figure of a run was measured at."""

    lag: str  # the propagation lag, as `Lag` prints it: `1 s`, `0.5-3 s`
    lag_s: tuple[float, float]
    nodes: int
    connections: int
    qps: float
    duration_s: float


@dataclass(frozen=True)
class Load:
    """One Service's `probe load` report, and the rate it reached beside the rate asked."""

    requests: int
    errors: int
    codes: dict[str, int]
    versions: dict[str, int]
    timeline: list[dict[str, Any]]
    error_events: list[dict[str, Any]]
    started_unix_ms: float
    qps_asked: float
    qps_reached: float | None

    @classmethod
    def from_report(cls, report: dict[str, Any], qps_asked: float) -> "Load":
        return cls(
            requests=report["requests"],
            errors=report["errors"],
            codes=report["codes"],
            versions=report["versions"],
            timeline=report["timeline"],
            error_events=report["error_events"],
            started_unix_ms=report["started_unix_ms"],
            qps_asked=qps_asked,
            qps_reached=report.get("achieved_qps"),
        )


@dataclass
class Result:
    """One experiment's run. `streams` holds each Service's long-lived clients' report as
    lab/streams.py writes it (per kind of client the figures, and each client's record)."""

    experiment: str
    title: str
    settings: Settings
    steps: list[Step] = field(default_factory=list)
    services: dict[str, Load] = field(default_factory=dict)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Why the run stopped short (a step failed as it would on a cluster, or a manifest the
    # lab cannot play), if it did.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(c.ok for c in self.checks)
            and all(s.ok for s in self.steps)
        )

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["ok"] = self.ok
        if self.error is None:
            del document["error"]
        for event in document["events"]:
            if event["node"] is None:
                del event["node"]
        for step in document["steps"]:
            if step["error"] is None:
                del step["error"]
        return document
