"""The Ray-free flow-control core of a pipeline run, shared by the inline and Ray executors.

- ``events.py``: the events an executor feeds in and the actions it gets back;
- ``plan.py``: what the core knows of a pipeline (bounds, keys, replica counts);
- ``pipes.py``: pieces, calls, replicas and one stage's bounded pipe;
- ``ledger.py``: the sink's book (exactly-once commits; what a resumed run skips);
- ``replicas.py``: replica death, scaling and autoscaling (a part of ``FlowCore``);
- ``core.py``: ``FlowCore``, the state machine.
"""

from engine.pipeline.flow.core import FlowCore
from engine.pipeline.flow.plan import FlowPlan, StagePlan

__all__ = ["FlowCore", "FlowPlan", "StagePlan"]
