"""Inputs (text byte-range splits, Parquet row groups, tables, Arrow and Ray datasets) and
outputs (Parquet parts)."""

from engine.io.dataset_sources import ArrowDatasetSource, RayDatasetSource

__all__ = ["ArrowDatasetSource", "RayDatasetSource"]
