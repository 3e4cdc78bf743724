"""What every part of the lab shares: where things are, one log, one clock."""

import argparse
import contextlib
import functools
import importlib.util
import math
import pathlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import ClassVar

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


class _Signals:
    """What `end_on_signals` and `shielded` share: how deep in removals the main thread is,
    and the signals noted meanwhile."""

    depth: ClassVar[int] = 0
    noted: ClassVar[list[int]] = []


def _end(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def end_on_signals(source: str = "lab") -> None:
    """SIGTERM (`kill`, `timeout`, a cancelled CI job) and SIGINT (Ctrl-C) end a run: raised
    in the main thread (SystemExit 143, KeyboardInterrupt), so that the `finally` blocks stop
    the loads and remove the run's containers, volumes, network and haproxy processes. While
    one of those removals runs (`shielded`), a signal is noted and acted on when it is over,
    so that no second signal cuts it short; SIGKILL still ends everything at once. For the
    entry points only: a caller that imports the lab keeps its own handlers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if _Signals.depth:
            _Signals.noted.append(signum)
            log(f"{name}: noted; the run removes what it created first", source)
            return
        log(f"{name}: stopping, removing what the run created", source)
        _end(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block that must run to its end once begun (removing what a run created, or creating
    something and recording it where the removal finds it): SIGTERM and SIGINT arriving
    inside are acted on when the outermost such block is over. Without `end_on_signals`
    (the lab imported by tests or another program) it changes nothing."""
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
        if not _Signals.depth and _Signals.noted:
            signum = _Signals.noted[-1]
            _Signals.noted.clear()
            _end(signum)


def bounded(
    low: float, high: float, kind: type[int] | type[float] = float
) -> Callable[[str], float]:
    """An argparse `type`: a finite number from `low` to `high`, else a usage error that
    names the range (never a traceback, never a run with a value it cannot mean)."""
    name = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float:
        shown = text if len(text) <= 24 else f"{text[:24]}..."
        try:
            value = kind(text)
            ok = math.isfinite(value) and low <= value <= high
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"{shown!r}: {name} from {low:g} to {high:g}"
            ) from None
        if not ok:
            raise argparse.ArgumentTypeError(f"{shown}: from {low:g} to {high:g}")
        return value + 0  # -0.0 is 0

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
