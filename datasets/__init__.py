"""Deterministic data-set generators for the example jobs, tests and benchmarks."""
