"""The Lambda architecture over Arrow, generic over the application's events, views and queries.

Describe a deployment with :class:`LambdaArchitecture` (an :class:`EventContract`, the
:class:`View` s, the :class:`Query` s, :class:`LambdaOptions`) and open it with
``engine.run(spec, "inline" | "ray")``, which returns a ``LambdaDeployment`` handle.

Layers, each built from another pattern: ``log.py`` (the master dataset: durable Arrow IPC
segments), ``batch_layer.py`` (every view by one MapReduce job, blue-green versions),
``speed_layer.py`` (a pipeline stage producing real-time partials), ``shard.py`` and
``serving.py`` (scatter-gather over view shards, batch and real-time merged with the
views' combiners); ``deployment.py`` ties them together.  The ad-tech application lives
in ``jobs/adtech``, live word counts in ``jobs/live_wordcount.py``.
"""

from engine.errors import QueryFailedError
from engine.lambda_arch.contract import EventContract, require_fields
from engine.lambda_arch.errors import BatchLayerError, SpeedLayerError
from engine.lambda_arch.event_time import EventTimeWindow
from engine.lambda_arch.log import IngestAck
from engine.lambda_arch.serving import Answer
from engine.lambda_arch.shard import ShardSnapshot
from engine.lambda_arch.spec import LambdaArchitecture, LambdaOptions, Query, QueryContext, QueryResult, View

__all__ = ["Answer", "BatchLayerError", "EventContract", "EventTimeWindow", "IngestAck", "LambdaArchitecture",
           "LambdaOptions", "Query", "QueryContext", "QueryFailedError", "QueryResult", "ShardSnapshot",
           "SpeedLayerError", "View", "require_fields"]
