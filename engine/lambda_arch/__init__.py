"""The Lambda architecture over Arrow: master log, batch, speed and serving layers.

See ``system.py`` for the assembled :class:`LambdaArchitecture`; ``log.py`` (master
dataset), ``batch_layer.py`` (MapReduce views), ``speed_layer.py`` (pipeline),
``serving.py`` and ``shard.py`` (scatter-gather over view shards), ``views.py`` (pure
view functions and the combine contract), ``oracle.py`` (plain-Python reference).
"""

from engine.lambda_arch.batch_layer import BatchViews
from engine.lambda_arch.events import EVENT_SCHEMA, LOG_SCHEMA, REJECT_SCHEMA, validate_events
from engine.lambda_arch.log import IngestAck, MasterLog
from engine.lambda_arch.oracle import AdEventOracle
from engine.lambda_arch.serving import Answer, QueryFailedError
from engine.lambda_arch.system import LambdaArchitecture, LambdaOptions
from engine.lambda_arch.views import Combiner

__all__ = ["AdEventOracle", "Answer", "BatchViews", "Combiner", "EVENT_SCHEMA", "IngestAck", "LOG_SCHEMA",
           "LambdaArchitecture", "LambdaOptions", "MasterLog", "QueryFailedError", "REJECT_SCHEMA",
           "validate_events"]
