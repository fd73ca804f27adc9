"""The autoscaling decision for one stage: a pure function of its pipe depth over time."""

from __future__ import annotations

from engine.pipeline.spec import AutoscalePolicy


class Autoscaler:
    """Proposes one more replica when the input pipe has stayed at/above the high-water mark
    for ``sustain_s``, one fewer when it has stayed at/below the low-water mark, within bounds."""

    def __init__(self, policy: AutoscalePolicy) -> None:
        self.policy = policy
        self._high_since: float | None = None
        self._low_since: float | None = None

    def decide(self, depth: int, replicas: int, now: float) -> int:
        """The replica count the stage should have now (``replicas`` when no change)."""
        policy = self.policy
        self._high_since = (self._high_since if self._high_since is not None else now) if depth >= policy.high_water else None
        self._low_since = (self._low_since if self._low_since is not None else now) if depth <= policy.low_water else None
        if self._high_since is not None and now - self._high_since >= policy.sustain_s and replicas < policy.max_replicas:
            self._high_since = None
            return replicas + 1
        if self._low_since is not None and now - self._low_since >= policy.sustain_s and replicas > policy.min_replicas:
            self._low_since = None
            return replicas - 1
        return max(policy.min_replicas, min(policy.max_replicas, replicas))
