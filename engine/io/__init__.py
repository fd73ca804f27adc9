"""Inputs (text byte-range splits, Parquet row groups, tables) and outputs (Parquet parts)."""
