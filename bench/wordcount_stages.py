"""Where a word count's time goes between the kernel and the shuffle, in one process, no Ray.

``python -m bench.wordcount_stages --size 256MiB`` replays the engine's word-count data path
on a cached corpus (``datasets.text``) with the engine's own functions, timing each stage:

- ``read``:      ``engine.io.text.read_text_split`` of every split (records="blocks");
- ``kernel``:    ``count_words`` per block (the compiled split + count);
- ``combine``:   the map-side combine over each split's kernel outputs (the job's combiner);
- ``partition``: ``engine.common.hashing.hash_partition`` of each combined map output;
- ``reduce``:    per partition, concatenate the maps' pieces, the job's reduce, sort by word.

The same combine, partition and reduce are then timed with the proposed compiled steps of
``engine.kernels.aggregate`` (``sum_by_key``, ``partition_by_hash``) on the same kernel
outputs (``proposed_seconds``).  Also times the numpy/Arrow reference
(``count_words_reference``) on one block, and checks
the final counts against ``collections.Counter(text.split())`` when ``--check`` is given.
Prints one JSON object; figures are seconds (one process, one core).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def measure(corpus: Path, split_size: int, batch_size: int, reducers: int, check: bool) -> dict[str, Any]:
    """Run every stage over ``corpus`` and return the seconds each took, with row counts."""
    import pyarrow as pa

    from engine.common.hashing import hash_partition
    from engine.common.packed_keys import sort_by_keys
    from engine.common.tables import concat
    from engine.io.text import read_text_split
    from engine.kernels import warm_up
    from engine.kernels.text import count_words, count_words_reference
    from engine.io.sources import TextSource
    from jobs.wordcount_job import SUM_COUNTS

    warm_up()
    seconds = {"read": 0.0, "kernel": 0.0, "combine": 0.0, "partition": 0.0, "reduce": 0.0}
    rows = {"kernel_output": 0, "combined": 0, "reduced": 0}
    pieces: list[list[pa.Table]] = [[] for _ in range(reducers)]
    kept: list[list[pa.Table]] = []  # each split's kernel outputs, for the proposed steps
    splits = TextSource([str(corpus)], split_size=split_size).plan_splits()
    nbytes = 0
    reference_block = None
    for split in splits:
        outputs = []
        reader = read_text_split(split, batch_size, "blocks")
        while True:
            started = time.perf_counter()
            item = next(reader, None)
            seconds["read"] += time.perf_counter() - started
            if item is None:
                break
            table, _, size, _ = item
            nbytes += size
            reference_block = reference_block or table
            started = time.perf_counter()
            outputs.append(count_words(table.column("text")))
            seconds["kernel"] += time.perf_counter() - started
            rows["kernel_output"] += outputs[-1].num_rows
        kept.append(outputs)
        started = time.perf_counter()
        combined = SUM_COUNTS(concat(outputs))
        seconds["combine"] += time.perf_counter() - started
        rows["combined"] += combined.num_rows
        started = time.perf_counter()
        for index, part in enumerate(hash_partition(combined, ["word"], reducers)):
            pieces[index].append(part)
        seconds["partition"] += time.perf_counter() - started
    results = []
    started = time.perf_counter()
    for partition in pieces:
        results.append(sort_by_keys(SUM_COUNTS(concat(partition)), ["word"]))
    seconds["reduce"] = time.perf_counter() - started
    rows["reduced"] = sum(t.num_rows for t in results)
    proposed = _proposed_steps(kept, reducers)
    started = time.perf_counter()
    count_words_reference(reference_block.column("text"))
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    count_words(reference_block.column("text"))
    kernel_one_block_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "corpus": str(corpus), "bytes": nbytes, "splits": len(splits), "split_size": split_size,
        "batch_size": batch_size, "reducers": reducers, "seconds": seconds, "rows": rows,
        "share_of_kernel": {k: v / seconds["kernel"] for k, v in seconds.items() if k != "kernel"},
        "proposed_seconds": proposed,
        "proposed_share_of_kernel": {k: v / seconds["kernel"] for k, v in proposed.items()},
        "kernel_mb_s": nbytes / 1e6 / seconds["kernel"],
        "one_block": {"bytes": reference_block.column("text").chunk(0).buffers()[2].size,
                      "kernel_s": kernel_one_block_s, "reference_s": reference_s},
        "load_average": os.getloadavg(),
    }
    if check:
        from collections import Counter

        expected: Counter = Counter()
        for path in sorted(corpus.glob("*.txt")):
            expected.update(path.read_text(encoding="utf-8").split())
        got = {w: c for t in results for w, c in zip(t.column("word").to_pylist(), t.column("count").to_pylist())}
        report["identical_to_counter"] = got == dict(expected)
    return report


def _proposed_steps(kept: list[list[Any]], reducers: int) -> dict[str, float]:
    """Combine, partition and reduce timed with ``engine.kernels.aggregate`` instead."""
    from engine.common.packed_keys import sort_by_keys
    from engine.common.tables import concat
    from engine.kernels.aggregate import partition_by_hash, sum_by_key

    sum_by_key(kept[0][0].slice(0, 10))  # compile or load before timing
    partition_by_hash(kept[0][0].slice(0, 10), "word", reducers)
    seconds = {"combine": 0.0, "partition": 0.0, "reduce": 0.0}
    pieces: list[list[Any]] = [[] for _ in range(reducers)]
    for outputs in kept:
        started = time.perf_counter()
        combined = sum_by_key(concat(outputs))
        seconds["combine"] += time.perf_counter() - started
        started = time.perf_counter()
        for index, part in enumerate(partition_by_hash(combined, "word", reducers)):
            pieces[index].append(part)
        seconds["partition"] += time.perf_counter() - started
    started = time.perf_counter()
    for partition in pieces:
        sort_by_keys(sum_by_key(concat(partition)), ["word"])
    seconds["reduce"] = time.perf_counter() - started
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Parse options, generate the corpus if needed, print the JSON report."""
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    parser = argparse.ArgumentParser(prog="python -m bench.wordcount_stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256MiB", help="corpus size (default 256MiB)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bench-wordcount"),
                        help="where corpora are cached (default /tmp/bench-wordcount)")
    parser.add_argument("--split-size", default="64MiB", help="bytes per map split (default 64MiB, the job's)")
    parser.add_argument("--batch-size", default="64MiB", help="bytes per block read (default 64MiB: one block per "
                                                              "split, as the word-count job reads)")
    parser.add_argument("--reducers", type=int, default=4, help="reduce partitions (default 4 = 2 x 2 workers)")
    parser.add_argument("--check", action="store_true", help="also compare with Counter(text.split()) (slow)")
    args = parser.parse_args(argv)
    spec = TextCorpusSpec(parse_size(args.size))
    corpus = args.data_dir / f"corpus-{args.size}"
    if not all((corpus / f"part-{i:05d}.txt").exists() for i in range(spec.file_count())):
        print(f"generating the {args.size} corpus in {corpus} ...", file=sys.stderr)
        write_text_corpus(spec, corpus)
    report = measure(corpus, parse_size(args.split_size), parse_size(args.batch_size), args.reducers, args.check)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
