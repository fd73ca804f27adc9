"""``python -m bench SUITE [options]``: run one benchmark suite (see ``--help``)."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "wordcount": ("bench.wordcount", "word count: engine vs Ray Data, Polars, DuckDB, Daft"),
    "faults": ("bench.faults", "every pattern under the loss of each kind of process (time, exact results)"),
    "pipeline": ("bench.pipeline", "3-stage pipeline vs a Ray Data map_batches chain"),
    "scatter-gather": ("bench.scatter_gather", "scatter-gather top-k latency over shard hosts vs the fan-out floor"),
    "lambda": ("bench.lambda_arch", "Lambda architecture ingest, freshness and queries"),
    "lambda_soak": ("bench.lambda_soak", "Lambda ingest soak: process-tree RSS over time, nothing lost, exact answers"),
    "bad-input": ("bench.bad_input", "the bad-input catalog: each case run as a user feeds it, with its message"),
}


def main(argv: list[str]) -> int:
    """Dispatch to the suite named by the first argument (``_`` and ``-`` alike)."""
    if argv and argv[0].replace("_", "-") in SUITES:
        argv = [argv[0].replace("_", "-"), *argv[1:]]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        print("usage: python -m bench SUITE [options]   (python -m bench SUITE --help)\n")
        print("suites:")
        for name, (_, text) in SUITES.items():
            print(f"  {name:15s} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown suite {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(SUITES[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
