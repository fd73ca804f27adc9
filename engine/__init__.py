"""Public API of the engine.  Everything a user imports comes from here."""

from engine.cluster import ClusterInfo, connect, shutdown

__all__ = ["ClusterInfo", "connect", "shutdown"]
