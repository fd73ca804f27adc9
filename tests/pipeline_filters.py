"""Filters the pipeline tests share (plain functions over Arrow batches)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def add_double(batch: pa.Table) -> pa.Table:
    """Append ``y = 2 * x``."""
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def keep_even(batch: pa.Table) -> pa.Table:
    """Keep the rows with an even ``x``."""
    return batch.filter(pc.equal(pc.bit_wise_and(batch["x"], 1), 0))
