"""Inputs (text byte-range splits, Parquet row groups, tables, Arrow and Ray datasets) and
outputs (Parquet parts)."""
