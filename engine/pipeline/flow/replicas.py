"""The replica rules of the flow core: replacing a dead replica, scaling and autoscaling.

A mixin of ``core.FlowCore`` (kept apart to keep modules small): it works on the core's
stages, calls and actions, and adds no state of its own.
"""

from __future__ import annotations

from typing import Callable

from engine.pipeline.flow import events as ev
from engine.pipeline.flow.pipes import Call, Replica, StagePipe
from engine.pipeline.flow.plan import FlowPlan


class ReplicaRules:
    """Replica death, start failures, scale requests and the autoscalers' ticks."""

    plan: FlowPlan
    stages: list[StagePipe]
    _calls: dict[int, Call]
    _actions: list[ev.Action]
    _next_replica: int
    _clock: Callable[[], float]

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        raise NotImplementedError  # FlowCore's

    def _on_replica_died(self, event: ev.ReplicaDied) -> None:
        stage = self.stages[event.stage]
        replica = stage.find(event.replica)
        if replica is None:
            return  # replaced already, or retired
        lost = list(replica.calls.values())
        for call in lost:
            del self._calls[call.call_id]
        replica.calls.clear()
        stage.ready.extendleft(reversed([call.piece for call in lost]))
        if replica in stage.active:
            stage.active[stage.active.index(replica)] = self._new_replica(stage, replaces=replica.replica_id)
        else:
            stage.retiring.remove(replica)
        for counters in [stage.metrics, *stage.member_metrics]:  # a link's stages share its replicas
            counters.replica_restarts += 1
        if stage.metrics.replica_restarts > self.plan.max_replica_restarts:
            self._fail(f"stage {stage.plan.id!r}: replicas died {stage.metrics.replica_restarts} times "
                       f"(more than max_replica_restarts={self.plan.max_replica_restarts})")

    def _on_replica_start_failed(self, event: ev.ReplicaStartFailed) -> None:
        if self.stages[event.stage].find(event.replica) is not None:
            self._fail(f"stage {self.stages[event.stage].plan.id!r}: a replica failed to start: {event.reason}")

    def _on_scale(self, event: ev.ScaleRequested) -> None:
        if isinstance(event.replicas, bool) or not isinstance(event.replicas, int) or event.replicas < 1:
            raise ValueError(f"a stage needs at least one replica, got {event.replicas!r}")
        self._resize(self.stages[event.stage], event.replicas)

    def _on_tick(self, event: ev.Tick) -> None:
        now = self._clock()
        for stage in self.stages:
            if stage.autoscaler is not None:
                target = stage.autoscaler.decide(len(stage.ready) + stage.inflight(), len(stage.active), now)
                self._resize(stage, target)

    def _new_replica(self, stage: StagePipe, replaces: int | None = None) -> Replica:
        replica = Replica(self._next_replica)
        self._next_replica += 1
        self._actions.append(ev.StartReplica(stage.index, replica.replica_id, replaces))
        return replica

    def _resize(self, stage: StagePipe, target: int) -> None:
        while len(stage.active) < target:
            stage.active.append(self._new_replica(stage))
        while len(stage.active) > target:
            stage.retiring.append(stage.active.pop())
        self._retire_idle(stage)
        for counters in [stage.metrics, *stage.member_metrics]:
            counters.replicas = len(stage.active)

    def _retire_idle(self, stage: StagePipe) -> None:
        for replica in stage.idle_retiring():
            self._actions.append(ev.RetireReplica(stage.index, replica.replica_id))
