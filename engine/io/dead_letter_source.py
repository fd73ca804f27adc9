"""Reading dead letters back as a source: re-run a fixed job or pipeline over them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from engine.common.dead_letters import DeadLetterStore
from engine.errors import InputNotFoundError
from engine.io.sources import SourceBatch, SplittableSource
from engine.io.splits import InputSplit


@dataclass(frozen=True)
class DeadLetterSource(SplittableSource):
    """The rows of the dead letters of one ``step`` in a ``DeadLetterStore`` directory
    (one split per letter, oldest first): re-run a fixed job or pipeline over them."""

    directory: str
    step: str
    include_replayed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", os.fspath(self.directory))

    def _letters(self) -> list[str]:
        if not os.path.isdir(self.directory):
            raise InputNotFoundError(f"no dead-letter store at {self.directory}")
        listing = DeadLetterStore(self.directory).list(self.step, include_replayed=self.include_replayed)
        return listing.column("letter_id").to_pylist()

    def plan_splits(self) -> list[InputSplit]:
        return [InputSplit("dead-letters", letter_id, index, index + 1)
                for index, letter_id in enumerate(self._letters())]

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        rows = DeadLetterStore(self.directory).rows(split.path)
        yield SourceBatch(rows, split.path, np.arange(rows.num_rows))

    def empty_table(self) -> pa.Table:
        letters = self._letters()
        if not letters:
            return pa.table({})
        return DeadLetterStore(self.directory).rows(letters[0]).slice(0, 0)

    def describe(self) -> dict:
        return {"kind": "dead-letters", "directory": str(Path(self.directory).resolve()), "step": self.step,
                "letters": self._letters()}
