"""Top-k search over sharded word counts, served by scatter-gather.

``python -m jobs.topk_search --input DIR --prefix PFX`` loads a word-count output
directory (``part-NNNNN.parquet`` files with columns ``word: string, count: int64``, as the
word-count job writes) as shards onto shard hosts (one actor per node by default), then
answers "the k most frequent words that
start with PFX": each shard finds its own top k (a binary search for the prefix's rows in
the shard sorted by word, then the k best of their precomputed ranks) and the dispatcher
merges the shards' top-k lists.  Shards that miss the deadline are
left out and named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import engine
from jobs.prefix_index import SORTED_BY_WORD, prefix_index
from engine import GatherResult, ScatterGather, ScatterGatherError, ScatterGatherOptions, top_k_replies

SORT_KEYS = [("count", "descending"), ("word", "ascending")]
# Sent once at start-up: the first starts_with call in a process costs ~0.2 s.
WARMUP_REQUEST = {"prefix": "", "k": 1}


class InputError(ValueError):
    """The input directory is missing or does not hold a word-count output."""


def load_word_counts(input_dir: str | Path) -> pa.Table:
    """Read every ``part-*.parquet`` of a word-count output into one (word, count) table."""
    directory = Path(input_dir)
    if not directory.is_dir():
        raise InputError(f"input directory {str(directory)!r} does not exist")
    parts = sorted(directory.glob("part-*.parquet"))
    if not parts:
        raise InputError(f"no part-*.parquet files in {str(directory)!r}")
    tables = []
    for part in parts:
        try:
            schema = pq.read_schema(part)
        except (pa.ArrowInvalid, OSError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise InputError(f"{part}: not a Parquet file ({first_line})") from None
        for column, is_type, wanted in (("word", _is_text, "a string"),
                                        ("count", pa.types.is_integer, "an integer")):
            if column not in schema.names:
                raise InputError(f"{part}: no column {column!r} (has {schema.names})")
            if not is_type(schema.field(column).type):
                raise InputError(f"{part}: column {column!r} is "
                                 f"{schema.field(column).type}, not {wanted}")
        table = pq.read_table(part, columns=["word", "count"])
        tables.append(table.cast(pa.schema([("word", pa.string()), ("count", pa.int64())])))
    return pa.concat_tables(tables)


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def split_shards(table: pa.Table, shards: int) -> list[pa.Table]:
    """Cut ``table`` into ``shards`` near-equal slices, each sorted by word.

    Each shard is marked ``sorted_by=word`` in its schema metadata so that
    :func:`prefix_top_k` can find a prefix's rows by binary search instead of a scan.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    bounds = [table.num_rows * index // shards for index in range(shards + 1)]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        piece = table.slice(lo, hi - lo)
        piece = piece.take(pc.sort_indices(piece, sort_keys=[("word", "ascending")]))
        out.append(piece.combine_chunks().replace_schema_metadata(SORTED_BY_WORD))
    return out


def prefix_top_k(shard: pa.Table, request: dict) -> pa.Table:
    """The shard's ``request["k"]`` most frequent words starting with ``request["prefix"]``.

    Ties on count go to the alphabetically first word, so the merged answer is exact.
    On a shard marked sorted by word (:func:`split_shards`) the prefix's rows are found by
    search (``jobs.prefix_index``) and ranked with numpy; any other shard is scanned.
    """
    prefix, k = request["prefix"], int(request["k"])
    index = prefix_index(shard)
    if index is not None:
        return index.take(shard, index.top_rows(*index.rows_with_prefix(prefix), k))
    matches = shard.filter(pc.starts_with(shard.column("word"), pattern=prefix))
    if matches.num_rows > k:
        matches = matches.take(pc.select_k_unstable(matches, k=k, sort_keys=SORT_KEYS))
    return matches.take(pc.sort_indices(matches, sort_keys=SORT_KEYS))


def build_search(shards: Sequence[pa.Table], k: int,
                 options: ScatterGatherOptions | None = None) -> ScatterGather:
    """The scatter-gather description of prefix top-k search over ``shards``."""
    return ScatterGather(shards=list(shards), handler=prefix_top_k,
                         aggregator=top_k_replies("count", k, tie_break="word"),
                         options=options or ScatterGatherOptions())


def format_answer(result: GatherResult, prefix: str) -> str:
    """The answer as text: one ``count  word`` line per word, then who answered."""
    lines = [f"top words starting with {prefix!r}:"]
    table = result.value if result.value is not None else pa.table({"word": [], "count": []})
    for word, count in zip(table["word"].to_pylist(), table["count"].to_pylist()):
        lines.append(f"{count:>12}  {word}")
    if table.num_rows == 0:
        lines.append("  (no words)")
    shards = len(result.answered) + len(result.missing)
    status = (f"{len(result.answered)}/{shards} shards answered in "
              f"{result.elapsed_s * 1000:.1f} ms")
    if result.partial:
        status += f"; PARTIAL, missing: {', '.join(result.missing)}"
    return "\n".join(lines + [status])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.topk_search",
        description="Top-k words with a prefix over a word-count output, using "
                    "scatter-gather over shard actors (each shard answers its own top k; "
                    "the answers are merged). Shards that miss the deadline are left out "
                    "and the answer is marked partial.")
    parser.add_argument("--input", required=True, metavar="DIR",
                        help="word-count output directory: part-NNNNN.parquet files with "
                             "columns word (string) and count (integer)")
    parser.add_argument("--prefix", required=True, metavar="PFX",
                        help="return words starting with this prefix ('' for all words)")
    parser.add_argument("--k", type=int, default=10, help="how many words (default 10)")
    parser.add_argument("--shards", type=int, default=8,
                        help="number of shards to split the data into (default 8)")
    parser.add_argument("--hosts", type=int, default=None,
                        help="shard-host actors serving them (default: one per node)")
    parser.add_argument("--deadline-ms", type=float, default=100.0,
                        help="per-request deadline in milliseconds (default 100)")
    parser.add_argument("--executor", choices=["ray", "inline"], default="ray",
                        help="ray: shard hosts on an embedded Ray cluster (default); "
                             "inline: in-process, no Ray")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one search and print the answer; bad input -> one-line error, exit 2."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for name, value in (("--k", args.k), ("--shards", args.shards), ("--hosts", args.hosts)):
        if value is not None and value < 1:
            print(f"topk_search: error: {name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if not args.deadline_ms > 0:
        print(f"topk_search: error: --deadline-ms must be > 0, got {args.deadline_ms}",
              file=sys.stderr)
        return 2
    try:
        table = load_word_counts(args.input)
    except InputError as error:
        print(f"topk_search: error: {error}", file=sys.stderr)
        return 2
    spec = build_search(split_shards(table, args.shards), args.k,
                        ScatterGatherOptions(deadline_s=args.deadline_ms / 1000.0,
                                             hosts=args.hosts, warmup_request=WARMUP_REQUEST))
    if args.executor == "ray":
        engine.connect()
    try:
        with engine.run(spec, args.executor) as service:
            result = service.gather({"prefix": args.prefix, "k": args.k})
    except ScatterGatherError as error:
        print(f"topk_search: error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.executor == "ray":
            engine.shutdown()
    print(format_answer(result, args.prefix))
    return 0


if __name__ == "__main__":
    from engine.runtime.process_exit import exit_process

    exit_process(main())
