"""The Deployment controller: a ReplicaSet per pod template, RollingUpdate (maxSurge rounded up,
maxUnavailable rounded down, numbers or percentages), Recreate, minReadySeconds, paused,
progressDeadlineSeconds, revision history for undo and its limit, scaling; and the ReplicaSet
controller's choice of which pods to delete."""

import copy
import time
from collections.abc import Callable

from lab.kube.admission import (
    Manifest,
    ManifestError,
    StepError,
    pod_template_hash,
    resolve_surge,
)
from lab.kube.kubelet import Pod
from lab.kube.records import Records


class ReplicaSet:
    def __init__(
        self, deployment: "Deployment", template: Manifest, revision: int
    ) -> None:
        self.deployment = deployment
        self.namespace = deployment.namespace
        self.template: Manifest = copy.deepcopy(template)
        self.hash = pod_template_hash(template)
        self.revision = revision
        self.replicas = 0
        self.pods: list[Pod] = []

    def active(self) -> "list[Pod]":
        return [p for p in self.pods if not p.terminating]

    def available(self) -> int:
        return sum(p.available(self.deployment.min_ready) for p in self.active())


# The Progressing condition's view of a rollout: the new ReplicaSet's hash, its replicas, active,
# ready and available pods, and minus the old ReplicaSets' replicas and active pods.
_ProgressMark = tuple[str | None, int, int, int, int, int]


class Deployment:
    def __init__(
        self,
        records: Records,
        create_pod: Callable[[ReplicaSet], None],
        obj: Manifest,
    ) -> None:
        """`create_pod` starts a pod of the ReplicaSet (the ReplicaSet controller's part)."""
        self.records = records
        self.create_pod = create_pod
        self.name: str = obj["metadata"]["name"]
        self.namespace: str = obj["metadata"].get("namespace", "default")
        self.replica_sets: list[ReplicaSet] = []
        # The Progressing condition: when the rollout last made progress, and whether it
        # ran out of its deadline (`pkg/controller/deployment/progress.go`).
        self.last_progress = time.monotonic()
        self.progress_mark: _ProgressMark | None = None
        self.timed_out = False
        self.update(obj)

    def update(self, obj: Manifest) -> None:
        spec = obj["spec"]
        self.obj: Manifest = copy.deepcopy(obj)
        self.replicas: int = spec.get("replicas", 1)
        self.min_ready: float = spec.get("minReadySeconds", 0)
        self.paused: bool = spec.get("paused", False)
        self.strategy: str = spec.get("strategy", {}).get("type", "RollingUpdate")
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        # `pkg/controller/deployment/util/deployment_util.go` `ResolveFenceposts`: surge
        # rounded up, unavailable down, and both 0 means unavailable 1.
        self.max_surge = resolve_surge(
            rolling.get("maxSurge", "25%"), self.replicas, True, "maxSurge"
        )
        self.max_unavailable = resolve_surge(
            rolling.get("maxUnavailable", "25%"), self.replicas, False, "maxUnavailable"
        )
        if self.max_surge == 0 and self.max_unavailable == 0:
            self.max_unavailable = 1
        # 10 by default, as the API server's defaulting sets it.
        self.history_limit: int = spec.get("revisionHistoryLimit", 10)
        self.progress_deadline: int = spec.get("progressDeadlineSeconds", 600)
        if not isinstance(self.history_limit, int) or self.history_limit < 0:
            raise ManifestError(
                f"Deployment {self.name}: spec.revisionHistoryLimit {self.history_limit!r}"
            )
        if not isinstance(self.progress_deadline, int) or self.progress_deadline <= 0:
            raise ManifestError(
                f"Deployment {self.name}: spec.progressDeadlineSeconds "
                f"{self.progress_deadline!r}"
            )
        if self.min_ready >= self.progress_deadline:
            raise ManifestError(
                f"Deployment {self.name}: spec.progressDeadlineSeconds must be greater "
                "than minReadySeconds"
            )
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            raise ManifestError(
                f"Deployment {self.name}: selector does not match the template's labels"
            )
        self.template: Manifest = spec["template"]

    @property
    def new_rs(self) -> ReplicaSet | None:
        wanted = pod_template_hash(self.template)
        return next((rs for rs in self.replica_sets if rs.hash == wanted), None)

    def pods(self) -> "list[Pod]":
        return [p for rs in self.replica_sets for p in rs.pods]

    def sync(self) -> None:
        """One pass of the controller, as level-triggered as the real one."""
        new = self.new_rs
        latest = max((rs.revision for rs in self.replica_sets), default=0)
        if new is not None and new.revision < latest and not self.paused:
            # An old template back (apply or undo): its ReplicaSet becomes the newest revision.
            new.revision = latest + 1
        if new is None and not self.paused:
            revision = latest + 1
            new = ReplicaSet(self, self.template, revision)
            self.replica_sets.append(new)
            self.records.note(f"ReplicaSet revision {revision} ({new.hash})")
        if new is None or self.paused:
            # Paused: no rollout step, whatever the template says; scaling still applies.
            self._scale_paused()
        elif self.strategy == "Recreate":
            self._recreate(new)
        else:
            self._rolling(new)
        for rs in self.replica_sets:
            self._sync_rs(rs)
        self._progress(new)
        if new is not None and (self.paused or self.complete()):
            self._cleanup()

    def _progress(self, new: ReplicaSet | None) -> None:
        """progressDeadlineSeconds is time without progress, not a cap on the rollout:
        `pkg/controller/deployment/progress.go` `syncRolloutStatus` refreshes the Progressing
        condition whenever `util.DeploymentProgressing` sees the new ReplicaSet grow, more
        updated, ready or available replicas, or fewer old ones, and
        `util.DeploymentTimedOut` reports ProgressDeadlineExceeded once the deadline passes
        after the last refresh. A paused Deployment does not time out; a complete one is
        done."""
        now = time.monotonic()
        old = [rs for rs in self.replica_sets if rs is not new]
        mark: _ProgressMark = (
            None if new is None else new.hash,
            0 if new is None else new.replicas,
            0 if new is None else len(new.active()),
            0 if new is None else sum(p.ready for p in new.active()),
            0 if new is None else new.available(),
            -sum(rs.replicas + len(rs.active()) for rs in old),
        )
        previous, self.progress_mark = self.progress_mark, mark
        if (
            previous is None
            or mark[0] != previous[0]
            or any(a > b for a, b in zip(mark[1:], previous[1:], strict=True))
            or self.paused
            or self.complete()
        ):
            self.last_progress = now
            self.timed_out = False
        elif not self.timed_out and now - self.last_progress > self.progress_deadline:
            self.timed_out = True
            self.records.note(
                f"deployment {self.name}: ProgressDeadlineExceeded "
                f"(no progress for {self.progress_deadline}s)"
            )

    def _cleanup(self) -> None:
        """Old ReplicaSets beyond revisionHistoryLimit, oldest first, once they have no
        pods: `pkg/controller/deployment/sync.go` `cleanupDeployment`, run when a rollout is
        complete or the Deployment is paused."""
        old = sorted(
            (
                rs
                for rs in self.replica_sets
                if rs is not self.new_rs and rs.replicas == 0 and not rs.pods
            ),
            key=lambda rs: rs.revision,
        )
        for rs in old[: max(0, len(old) - self.history_limit)]:
            self.replica_sets.remove(rs)
            self.records.note(
                f"ReplicaSet revision {rs.revision} ({rs.hash}) deleted: "
                f"revisionHistoryLimit {self.history_limit}"
            )

    def _scale_paused(self) -> None:
        """Paused: no rollout step, only scaling. One active ReplicaSet takes `replicas`;
        several (paused mid-rollout) may hold `replicas + maxSurge` between them, as the
        controller allows, and a difference goes to the largest (added) or comes from the
        oldest (removed): the controller's proportional scaling, rounded to whole pods."""
        live = sorted(
            (rs for rs in self.replica_sets if rs.replicas > 0),
            key=lambda rs: rs.revision,
        )
        if not live:
            return
        if len(live) == 1:
            live[0].replicas = self.replicas
            return
        surge = self.max_surge if self.strategy == "RollingUpdate" else 0
        diff = self.replicas + surge - sum(rs.replicas for rs in live)
        if diff > 0:
            max(live, key=lambda rs: rs.replicas).replicas += diff
        for rs in live:
            if diff >= 0:
                break
            down = min(rs.replicas, -diff)
            rs.replicas -= down
            diff += down

    def _recreate(self, new: ReplicaSet) -> None:
        old = [rs for rs in self.replica_sets if rs is not new]
        for rs in old:
            rs.replicas = 0
        if any(not p.gone for rs in old for p in rs.pods):
            return
        new.replicas = self.replicas

    def _rolling(self, new: ReplicaSet) -> None:
        old = sorted(
            (rs for rs in self.replica_sets if rs is not new),
            key=lambda rs: rs.revision,
        )
        total = sum(rs.replicas for rs in self.replica_sets)
        if new.replicas < self.replicas:
            up = min(
                self.replicas + self.max_surge - total, self.replicas - new.replicas
            )
            new.replicas += max(0, up)
        elif new.replicas > self.replicas:
            new.replicas = self.replicas
        old_count = sum(rs.replicas for rs in old)
        if old_count == 0:
            return
        all_count = sum(rs.replicas for rs in self.replica_sets)
        min_available = self.replicas - self.max_unavailable
        new_unavailable = new.replicas - new.available()
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return
        cleaned = 0
        for rs in old:
            unhealthy = rs.replicas - rs.available()
            if cleaned >= max_down or unhealthy <= 0:
                continue
            down = min(max_down - cleaned, unhealthy)
            rs.replicas -= down
            cleaned += down
        available = sum(rs.available() for rs in self.replica_sets)
        budget = available - min_available
        for rs in old:
            if budget <= 0:
                break
            down = min(rs.replicas, budget)
            rs.replicas -= down
            budget -= down

    def _sync_rs(self, rs: ReplicaSet) -> None:
        active = rs.active()
        for _ in range(rs.replicas - len(active)):
            self.create_pod(rs)
        if len(active) > rs.replicas:
            # Not ready first, then the most recently ready, as the ReplicaSet controller picks.
            victims = sorted(
                active,
                key=lambda p: (p.ready, p.ready_since or 0),
            )
            order = [p for p in victims if not p.ready] + sorted(
                (p for p in victims if p.ready),
                key=lambda p: -(p.ready_since or 0),
            )
            for pod in order[: len(active) - rs.replicas]:
                pod.delete()
        rs.pods = [p for p in rs.pods if not p.gone]

    def describe(self) -> str:
        """Why the rollout has not completed: the pods that are not available yet."""
        waiting = [
            f"{p.name}: {p.last_failure or 'not ready yet'}"
            for p in self.pods()
            if not p.terminating and not p.available(self.min_ready)
        ]
        return "; ".join(waiting) or "old pods still running"

    def complete(self) -> bool:
        new = self.new_rs
        if new is None:
            return False
        old_active = [
            p for rs in self.replica_sets if rs is not new for p in rs.active()
        ]
        return (
            new.replicas == self.replicas
            and len(new.active()) == self.replicas
            and new.available() == self.replicas
            and not old_active
        )

    def undo(self, to_revision: int | None = None) -> None:
        """`kubectl rollout undo [--to-revision=N]`: the template of that revision (by default
        the one before the current)."""
        if self.paused:
            # kubectl's `DeploymentRollbacker.Rollback` (`polymorphichelpers/rollback.go`).
            raise StepError(
                f"deployment {self.name}: you cannot rollback a paused deployment; resume "
                f"it first with 'kubectl rollout resume deployment/{self.name}' and try again"
            )
        current = self.new_rs
        previous = sorted(
            (rs for rs in self.replica_sets if rs is not current),
            key=lambda rs: rs.revision,
        )
        if to_revision is not None:
            previous = [rs for rs in previous if rs.revision == to_revision]
        if not previous:
            raise StepError(
                f"deployment {self.name}: unable to find specified revision"
                + (f" {to_revision} in history" if to_revision is not None else "")
            )
        target = previous[-1]
        target.revision = max(rs.revision for rs in self.replica_sets) + 1
        self.template = copy.deepcopy(target.template)
        self.obj["spec"]["template"] = copy.deepcopy(target.template)
