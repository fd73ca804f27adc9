"""The ad-tech application on the engine's Lambda architecture.

    from jobs.adtech import AdTech
    with AdTech.start("/data/adtech", "inline") as lam:     # or "ray" (after engine.connect())
        lam.ingest(events)                                   # durable, de-duplicated by event_id
        lam.recompute_batch()                                # every view by one MapReduce job
        lam.ads_shown(hours=24, top_k=3).value               # batch view + real-time view, merged

``adtech_architecture(directory, options)`` is the plain spec (``engine.run(spec, ...)``
returns a deployment whose ``query("ads_shown", hours=24)`` does the same);
:class:`AdTech` is a thin wrapper adding the three queries as methods.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from engine.lambda_arch import Answer, EventContract, LambdaArchitecture, LambdaOptions
from jobs.adtech.events import EVENT_SCHEMA, validate_events
from jobs.adtech.queries import QUERIES
from jobs.adtech.views import VIEWS

CONTRACT = EventContract(EVENT_SCHEMA, validate_events, id_column="event_id", time_column="event_time")


def adtech_architecture(directory: str | os.PathLike[str], options: LambdaOptions | None = None) -> LambdaArchitecture:
    """The ad-tech deployment over the master dataset in ``directory``."""
    return LambdaArchitecture(directory, CONTRACT, VIEWS, QUERIES, options)


class AdTech:
    """A running ad-tech deployment: the three queries as methods; every other attribute
    (``ingest``, ``recompute_batch``, ``wait_visible``, ``close``, ...) is the deployment's."""

    def __init__(self, deployment: Any) -> None:
        self.deployment = deployment

    @classmethod
    def start(cls, directory: str | os.PathLike[str], executor: str = "ray",
              options: LambdaOptions | None = None) -> "AdTech":
        """Open (or continue) the deployment in ``directory`` on ``executor``."""
        import engine

        return cls(engine.run(adtech_architecture(directory, options), executor))

    def ads_shown(self, as_of: datetime | int | None = None, hours: float = 24, advertiser_id: int | None = None,
                  top_k: int = 0) -> Answer:
        """View events in the last ``hours`` as of ``as_of`` (default: the newest event time
        the queries cover); ``extra['top']`` holds the top-k advertisers."""
        return self.deployment.query("ads_shown", as_of=as_of, hours=hours, advertiser_id=advertiser_id, top_k=top_k)

    def active_viewers(self, as_of: datetime | int | None = None, minutes: int = 5) -> Answer:
        """Distinct users with a view in the last ``minutes`` minutes as of ``as_of``."""
        return self.deployment.query("active_viewers", as_of=as_of, minutes=minutes)

    def roi(self, advertiser_id: int | None = None) -> Answer:
        """ROI from the batch view as of its W (``extra['table']`` per advertiser)."""
        return self.deployment.query("roi", advertiser_id=advertiser_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.deployment, name)

    def __enter__(self) -> "AdTech":
        return self

    def __exit__(self, *exc: object) -> None:
        self.deployment.close()
