"""What every part of the lab shares: where things are, one log, one clock."""

import argparse
import functools
import importlib.util
import math
import pathlib
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType, ModuleType

import testlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
if not K8S.is_dir():
    raise ImportError(
        f"lab: {ROOT} is not the repository: the lab runs from its checkout "
        "(make's venv installs it editable: pip install -e .)"
    )
OUT = ROOT / "target" / "lab"
# The binaries the lab runs on the host (probe load, probe grpc).
DIST = testlib.DIST
# How often the control loop, the kubelet's probers and every wait look again, s.
TICK = 0.1


def log(message: str, source: str = "lab") -> None:
    """One line on stderr, named after its source (`lab`, `lab-analysis`, ...), at once."""
    print(f"{source}: {message}", file=sys.stderr, flush=True)


def end_on_sigterm(source: str = "lab") -> None:
    """SIGTERM (`kill`, `timeout`, a cancelled CI job) ends a run as Ctrl-C does: the
    `finally` blocks stop the loads and remove the run's containers, volumes, network and
    haproxy processes, and the exit code is 143. A second SIGTERM is ignored while that
    happens (it takes seconds, at most about 40); SIGKILL still ends it at once. For the
    entry points only: a caller that imports the lab keeps its own handlers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("SIGTERM: stopping, removing what the run created", source)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def bounded(
    low: float, high: float, kind: type[int] | type[float] = float
) -> Callable[[str], float]:
    """An argparse `type`: a finite number from `low` to `high`, else a usage error that
    names the range (never a traceback, never a run with a value it cannot mean)."""
    name = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {name} from {low:g} to {high:g}"
            ) from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text}: from {low:g} to {high:g}")
        return value

    return parse


def add_number(
    parser: argparse.ArgumentParser,
    *flags: str,
    low: float,
    high: float,
    default: float | None,
    text: str,
    kind: type[int] | type[float] = float,
) -> None:
    """An option that takes a number from `low` to `high`; its help says the range and the
    default, from the same figures the check uses."""
    default_text = "" if default is None else f" ({default:g})"
    parser.add_argument(
        *flags,
        type=bounded(low, high, kind),
        default=default,
        help=f"{text}, {low:g} to {high:g}{default_text}",
    )


def now_ms() -> float:
    """The wall clock in unix milliseconds: what every record (event, step, sample, request)
    carries, so that the lab's records line up with probe's and the clients' own."""
    return time.time() * 1000


@functools.cache
def k8s_validator() -> ModuleType:
    """k8s/validate.py, the offline validator `make validate` runs as a script: the analyses
    evaluate the very queries it reads out of the manifests. Loaded from its file (it is a
    script of k8s/, not a module of this package), once."""
    spec = importlib.util.spec_from_file_location("validate", K8S / "validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
