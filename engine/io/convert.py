"""Handing a result's Arrow table to pandas, Polars and Ray Data, copying only where
their memory layout differs from Arrow's.

The one place these conversions live: ``JobResult`` and ``PipelineResult`` call them.
pandas, Polars and Ray Data are optional: a missing one raises ``MissingDependencyError``
naming the package to install; Ray Data also needs ``engine.connect()`` first
(``NotConnectedError``, the engine's one not-connected check).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pyarrow as pa

from engine.errors import MissingDependencyError


def optional_module(module: str, package: str, what: str) -> ModuleType:
    """Import ``module``, or raise ``MissingDependencyError`` saying ``what`` needs ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs the {package!r} package: pip install '{package}'") from None


def to_pandas(table: pa.Table, what: str = "to_pandas()") -> Any:
    """``table.to_pandas(split_blocks=True)``: one pandas block per column, so a numeric
    column without nulls held in one Arrow chunk becomes a read-only view of the Arrow
    buffer (no copy); every other column (with nulls, several chunks, strings, nested
    types) is converted into pandas' own layout, which copies it."""
    optional_module("pandas", "pandas", what)
    return table.to_pandas(split_blocks=True)


def to_polars(table: pa.Table, what: str = "to_polars()") -> Any:
    """``polars.from_arrow(table, rechunk=False)``: Polars adopts the Arrow buffers of
    columns whose layout it shares (numbers, booleans, temporal types) chunk by chunk,
    without copying; columns it stores in a layout of its own (strings and binary, as
    string views; dictionary-encoded values) are converted, which copies them."""
    polars = optional_module("polars", "polars", what)
    return polars.from_arrow(table, rechunk=False)


def ray_data(what: str, job_id: str | None = None) -> ModuleType:
    """``ray.data``, once connected (``NotConnectedError`` otherwise) and once the engine's
    idle MapReduce workers (``job_id``'s too) gave their CPUs back, so that Ray Data's
    tasks need not wait for them to time out."""
    from engine.cluster import require_ray
    from engine.runtime.supervisor import stop_idle_workers

    require_ray(what)
    data = optional_module("ray.data", "ray[data]", what)
    stop_idle_workers(job_id)
    return data


def ray_dataset_from_table(table: pa.Table, what: str = "to_ray_dataset()") -> Any:
    """``ray.data.from_arrow(table)``: the table is put into Ray's object store once (one
    copy, from this process into shared memory); the Dataset's readers then see it
    without further copies."""
    return ray_data(what).from_arrow(table)


def ray_dataset_from_parquet(directory: str | os.PathLike, what: str = "to_ray_dataset()",
                             job_id: str | None = None) -> Any:
    """``ray.data.read_parquet`` of the ``*.parquet`` parts of a result directory: a lazy
    Dataset whose tasks list and read the files on the cluster's nodes (which must see the
    directory); nothing passes through this process.  Without parts, an empty Dataset.

    The directory is passed as one path, not the part list: Ray 2.60 resolves several
    paths in parallel threads and then fails on a race in fsspec's optional HTTP import.
    """
    from engine.io.parts import part_files

    data = ray_data(what, job_id)
    if not part_files(directory):
        return data.from_arrow(pa.table({}))
    return data.read_parquet(os.fspath(directory), file_extensions=["parquet"], partitioning=None)
