"""``python -m jobs.wordcount``: count the words of UTF-8 text files with the engine.

Without INPUT it generates the default corpus (64 MiB, seeded) with ``datasets.text``
and counts it on an embedded local Ray cluster, printing the top words, the job's
counters and its throughput.  See ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from engine.errors import NotConnectedError

DEFAULT_CORPUS_SIZE = "64MiB"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the word-count job."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.wordcount",
        description="Count words (maximal runs of non-whitespace, exactly as Python's str.split() splits "
                    "a line) in UTF-8 text files with the MapReduce engine. Output: a Parquet dataset of "
                    "part-NNNNN.parquet files with columns word (string) and count (int64), rows sorted by word, "
                    "then _SUCCESS. Lines that are not valid UTF-8 are skipped and listed in "
                    "_dead_letters/ (a dead-letter store).",
        epilog="Examples:\n  python -m jobs.wordcount\n  python -m jobs.wordcount 'books/*.txt' --output out/wc --top 20\n"
               "  ray start --head --num-cpus 2 && python -m jobs.wordcount data/ --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="text files, directories or globs (default: generate a "
                             f"{DEFAULT_CORPUS_SIZE} Zipf corpus once, in your private cache directory "
                             "$XDG_CACHE_HOME/arrow-patterns-engine/ or ~/.cache/arrow-patterns-engine/)")
    parser.add_argument("--output", "-o", help="output directory (default: a new directory under the system temp directory)")
    parser.add_argument("--reducers", "-r", type=int, help="reduce partitions = output parts (default: 2 x task slots, fewer for a small input)")
    parser.add_argument("--workers", "-w", type=int, help="worker processes, one task slot each (default: on one node, one worker with a slot "
                        "per CPU; on several, one single-slot worker per CPU)")
    parser.add_argument("--address", help="join an existing Ray cluster: 'auto' (one started with `ray start --head` "
                                          "on this machine) or ray://host:port (default: start an embedded cluster)")
    parser.add_argument("--top", type=int, default=10, help="how many of the most frequent words to print (default 10)")
    parser.add_argument("--split-size", default="64MiB", help="bytes of text per map task (default 64MiB)")
    parser.add_argument("--local", action="store_true", help="run in local mode: in this process, without Ray")
    parser.add_argument("--overwrite", action="store_true", help="replace a result already in --output")
    parser.add_argument("--max-bad-fraction", type=float, default=0.01, metavar="F",
                        help="fail the job when more than this fraction of the lines are bad (not UTF-8, or "
                             "longer than 64 MiB); they are skipped and kept in _dead_letters/ (default 0.01)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--ui", action="store_true",
                        help="serve a live status page of the job on 127.0.0.1 (its URL, with a private token, "
                             "is printed at start); in a terminal, the page stays up until you press Enter")
    return parser


class UsageError(Exception):
    """A bad command line; its message is printed as one line."""


def _check_arguments(args: argparse.Namespace) -> int:
    from datasets.text import parse_size

    if args.reducers is not None and args.reducers < 1:
        raise UsageError(f"--reducers must be at least 1, got {args.reducers}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if not 0.0 <= args.max_bad_fraction <= 1.0:
        raise UsageError(f"--max-bad-fraction must be within [0, 1], got {args.max_bad_fraction}")
    if args.top < 0:
        raise UsageError(f"--top must be 0 or more, got {args.top}")
    try:
        split_size = parse_size(args.split_size)
    except ValueError as error:
        raise UsageError(f"--split-size: {error}") from None
    if split_size < 1:
        raise UsageError("--split-size must be at least 1 byte")
    return split_size


def _default_corpus() -> list[str]:
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    # A per-user directory made 0700, not a predictable name under /tmp where another local
    # user could plant files or a symlink first.
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arrow-patterns-engine"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = base / f"default-corpus-{DEFAULT_CORPUS_SIZE}"
    spec = TextCorpusSpec(parse_size(DEFAULT_CORPUS_SIZE))
    expected = [directory / f"part-{i:05d}.txt" for i in range(spec.file_count())]
    if not all(p.exists() for p in expected):
        print(f"generating the default {DEFAULT_CORPUS_SIZE} corpus in {directory} ...", file=sys.stderr)
        write_text_corpus(spec, directory, progress=True)
    return [str(directory)]


def run(args: argparse.Namespace) -> int:
    """Run the job described by parsed arguments; print results; return the exit status."""
    split_size = _check_arguments(args)
    from engine import JobOptions
    from engine.io.splits import expand_paths
    from jobs.wordcount_job import wordcount_job

    inputs = args.inputs or _default_corpus()
    expand_paths(inputs)  # a missing input fails here, before anything starts
    output = args.output or tempfile.mkdtemp(prefix="wordcount-")
    options = JobOptions(workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress,
                         max_bad_record_fraction=args.max_bad_fraction)
    job = wordcount_job(inputs, output, reducers=args.reducers, split_size=split_size, options=options)
    started = time.perf_counter()
    import engine

    if args.local:
        if args.ui:
            from engine.ui import start_ui

            start_ui()
        result = engine.run(job, "inline").result()
        where = "inline executor (local mode, no Ray)"
    else:
        info = engine.connect(address=args.address, ui=args.ui)
        connected = time.perf_counter()
        where = f"{'embedded' if info.embedded else 'existing'} Ray cluster, {info.cpus} CPUs"
        print(f"connected to {where} in {connected - started:.1f}s", file=sys.stderr)
        result = engine.run(job).result()
    _report(result, args.top, where)
    if args.ui and sys.stdin.isatty():
        input("status page still up: press Enter to exit ")
    return 0


def _report(result, top: int, where: str) -> None:
    import pyarrow.compute as pc

    table = result.table()
    counters = result.counters
    if top and table.num_rows:
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("word", "ascending")])
        best = table.take(order.slice(0, top))
        width = max(len(w) for w in best.column("word").to_pylist())
        print(f"top {min(top, table.num_rows)} words:")
        for word, count in zip(best.column("word").to_pylist(), best.column("count").to_pylist()):
            print(f"  {word:<{width}}  {count:>12,}")
    print("counters:")
    for name in sorted(counters):
        print(f"  {name:<24} {counters[name]:>14,}")
    mb = counters.get("map_input_bytes", 0) / 1e6
    print(f"distinct words: {table.num_rows:,}   input: {mb:,.1f} MB   job time: {result.elapsed_s:.2f}s   "
          f"throughput: {result.throughput_mb_s():,.1f} MB/s   ({where})")
    print(f"output: {result.output}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors print one line on standard error and exit with status 2 (usage) or 1."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NotConnectedError as error:  # no cluster at --address
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the job failed: say why in one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: job failed: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from engine.runtime.process_exit import exit_process

    exit_process(main())
