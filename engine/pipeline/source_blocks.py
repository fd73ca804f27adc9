"""In-memory source tables sent to stage 0 a block at a time, by reference.

Passing a batch to a replica by value costs the driver a serialization and an object
store write per call (for 4 MiB slices of a string table, about 2.5 ms each: Ray rebases
the slice's offsets and pickles it).  When the source is a ``TableSource`` the rows are
already in the driver's memory, so the Ray coordinator puts a *block* of consecutive
batches into the object store once and sends each batch as a ``RowWindow``: the block's
reference (Ray hands the replica the block, zero-copy on the same node) and the batch's
rows in it.  Only on a one-node cluster: a replica on another node would pull the whole
block for one batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import ray

from engine.io.sources import SourceBatch, TableSource

BLOCK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class RowWindow:
    """Rows ``offset`` to ``offset + rows`` of the block stored under ``block``."""

    block: ray.ObjectRef
    offset: int
    rows: int


class SourceBlocks:
    """Reads a ``TableSource`` and gives each batch a ``RowWindow`` into a block of about
    ``block_bytes`` (at least one batch) put into the object store when its first batch
    is read; the block is freed once no window of it is referenced."""

    def __init__(self, source: TableSource, block_bytes: int = BLOCK_BYTES) -> None:
        self.source = source
        self.block_bytes = block_bytes
        self._table_index = -1
        self._block: tuple[int, int, ray.ObjectRef] | None = None  # start, end row, reference

    def read(self) -> Iterator[SourceBatch]:
        """The source's batches, in order, each with ``remote`` set to its ``RowWindow``."""
        for split in self.source.plan_splits():  # what read() reads, with each split's table index
            for batch in self.source.read_split(split):
                rows = batch.table.num_rows
                if rows == 0:
                    yield batch
                    continue
                window = self._window(split.index, int(batch.row_offsets[0]), rows)
                yield dataclasses.replace(batch, remote=window)

    def _window(self, index: int, start: int, rows: int) -> RowWindow:
        block = self._block
        if index != self._table_index or block is None or not block[0] <= start <= start + rows <= block[1]:
            table = self.source.tables[index]
            row_bytes = max(1, table.nbytes // max(1, table.num_rows))
            block_rows = max(rows, self.block_bytes // row_bytes // rows * rows)
            end = min(table.num_rows, start + block_rows)
            block = (start, end, ray.put(table.slice(start, end - start)))
            self._table_index, self._block = index, block
        return RowWindow(block[2], start - block[0], rows)

