"""How a batch reaches the sink: its stable name, and the retried, exactly-once write."""

from __future__ import annotations

import pyarrow as pa

from engine.common.retry import RetryPolicy
from engine.io.sinks import SinkWriter


def batch_name(name: tuple[int, ...]) -> str:
    """The sink name of a batch from its sequence number and split path."""
    return "-".join(f"{part:09d}" if i == 0 else f"{part:03d}" for i, part in enumerate(name))


def commit(writer: SinkWriter, batch_name: str, table: pa.Table, retry: RetryPolicy | None) -> None:
    """Write one batch, retrying transient failures per ``retry`` (if any)."""
    if retry is None:
        writer.write(batch_name, table)
    else:
        retry.call(writer.write, batch_name, table)
