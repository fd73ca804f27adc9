"""Tools for testing jobs and the engine itself (not part of the top-level API):
deterministic fault injection for MapReduce runs."""

from engine.testing.chaos import ChaosPlan, MasterChaos, WorkerChaos

__all__ = ["ChaosPlan", "MasterChaos", "WorkerChaos"]
