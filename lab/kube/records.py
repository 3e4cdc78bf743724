"""What the stand-in records as it goes: events, errors and the control loop's samples, written
by the pods' threads and the loop, read by the run while they go on. The kubelet, the
controllers and the Services are given it, and nothing else of the cluster."""

import threading

from lab.common import now_ms
from lab.results import Event

# Per sample: unix ms, and per Deployment (available pods, pods not terminating).
Sample = tuple[float, dict[str, tuple[int, int]]]


class Records:
    """What happened, in order: events, errors, and the control loop's samples. Written by
    the pods' threads and the loop, read by the run while they go on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._errors: list[str] = []
        self._samples: list[Sample] = []

    def add(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def error(self, error: str) -> None:
        with self._lock:
            self._errors.append(error)

    def sample(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def first_error(self) -> str | None:
        with self._lock:
            return self._errors[0] if self._errors else None

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def note(
        self,
        what: str,
        pod: str | None = None,
        ip: str | None = None,
        node: int | None = None,
    ) -> None:
        """An event, now."""
        self.add(Event(now_ms(), what, pod, ip, node))

    def fail(self, error: object) -> None:
        """An error that ends the step under way, recorded as an event too."""
        self.error(str(error))
        self.note(f"error: {error}")
