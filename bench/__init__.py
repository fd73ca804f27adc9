"""Benchmarks: each measures the engine and its peers in the same run and reports ratios."""
