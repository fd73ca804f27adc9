"""Deterministic Zipf-distributed text corpora.

``python -m datasets.text --size 256MiB --out DIR`` writes ``part-NNNNN.txt`` files whose
words follow a Zipf law over a fixed vocabulary.  The same ``--seed`` and ``--size`` always
give byte-identical files.  Generation is vectorized (one Arrow ``take`` per file), so a
GiB takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "K": 1024, "M": 1024**2, "G": 1024**3}

# Separators follow each token; weights make spaces common, newlines end ~12-word lines,
# and leave some tabs, double spaces and CRLF line ends in the corpus.
_SEPARATORS = [" ", "\n", "\t", "  ", "\r\n"]
_SEPARATOR_WEIGHTS = np.array([0.86, 0.08, 0.02, 0.02, 0.02])
# A few words carry non-ASCII letters so the corpus exercises UTF-8, as real text does.
_NON_ASCII = ["é", "ü", "ß", "ñ", "ø", "ç", "ж", "λ", "東", "京"]


def parse_size(text: str) -> int:
    """Parse a size such as ``256MiB``, ``1GiB``, ``10MB`` or ``4096`` into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 256MiB, 1GiB, 10MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class TextCorpusSpec:
    """What corpus to generate: total bytes, file count, vocabulary and Zipf exponent."""

    size_bytes: int
    files: int = 0  # 0 chooses about one file per 32 MiB (at least 1)
    vocabulary: int = 100_000
    zipf_exponent: float = 1.1
    seed: int = 42

    def file_count(self) -> int:
        """The number of files the corpus is written in."""
        if self.files > 0:
            return self.files
        return max(1, -(-self.size_bytes // (32 * 1024 * 1024)))


def make_vocabulary(size: int, seed: int) -> list[str]:
    """A deterministic vocabulary of ``size`` distinct words of 1-14 letters."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = np.clip(rng.poisson(5.0, size * 2) + 1, 1, 14)
    words: list[str] = []
    seen: set[str] = set()
    for length in lengths:
        word = letters[rng.integers(0, 26, int(length))].tobytes().decode()
        roll = rng.random()
        if roll < 0.05:
            word = word.capitalize()
        elif roll < 0.06:
            word = word + _NON_ASCII[int(rng.integers(0, len(_NON_ASCII)))]
        if word not in seen:
            seen.add(word)
            words.append(word)
            if len(words) == size:
                break
    return words


def _token_table(vocabulary: list[str]) -> pa.Array:
    """Every word followed by every separator, as one Arrow string array."""
    return pa.array([w + sep for sep in _SEPARATORS for w in vocabulary], type=pa.string())


def generate_file_bytes(spec: TextCorpusSpec, index: int, size: int, tokens: pa.Array,
                        vocabulary_size: int) -> bytes:
    """The bytes of file ``index``: about ``size`` bytes, ending with a newline."""
    rng = np.random.default_rng([spec.seed, index])
    count = max(1, int(size / 5.0))  # over-generate, then cut at a line end
    ranks = rng.zipf(spec.zipf_exponent, count)
    ranks = np.where(ranks > vocabulary_size, rng.integers(1, vocabulary_size + 1, count), ranks) - 1
    separators = rng.choice(len(_SEPARATORS), size=count, p=_SEPARATOR_WEIGHTS)
    ids = separators * vocabulary_size + ranks
    ids[-1] = vocabulary_size + ranks[-1]  # every file ends with a newline
    chosen = tokens.take(pa.array(ids))
    data = chosen.buffers()[2]
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[: len(chosen) + 1]
    text = data.to_pybytes()[offsets[0]: offsets[-1]]
    if len(text) <= size:
        return text
    cut = text.rfind(b"\n", 0, size)
    return text[: cut + 1] if cut >= 0 else text[: size - 1] + b"\n"


def write_text_corpus(spec: TextCorpusSpec, out: Path, progress: bool = False) -> list[Path]:
    """Write the corpus into ``out`` as ``part-NNNNN.txt`` files and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    vocabulary = make_vocabulary(spec.vocabulary, spec.seed)
    tokens = _token_table(vocabulary)
    files = spec.file_count()
    base, extra = divmod(spec.size_bytes, files)
    paths = []
    iterator = range(files)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="generating corpus", unit="file", file=sys.stderr)
    for index in iterator:
        size = base + (1 if index < extra else 0)
        path = out / f"part-{index:05d}.txt"
        data = generate_file_bytes(spec, index, size, tokens, len(vocabulary)) if size else b""
        tmp = path.with_suffix(".txt.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m datasets.text --size 256MiB --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m datasets.text",
        description="Write a deterministic Zipf-distributed UTF-8 text corpus in many files.")
    parser.add_argument("--size", default="64MiB", help="total size, e.g. 256MiB, 1GiB (default 64MiB)")
    parser.add_argument("--out", required=True, type=Path, help="directory to write part-NNNNN.txt into")
    parser.add_argument("--files", type=int, default=0, help="number of files (default: one per 32 MiB)")
    parser.add_argument("--vocabulary", type=int, default=100_000, help="distinct words (default 100000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    if args.files < 0 or args.vocabulary < 1:
        parser.exit(2, "error: --files must be >= 0 and --vocabulary >= 1\n")
    spec = TextCorpusSpec(size, args.files, args.vocabulary, seed=args.seed)
    paths = write_text_corpus(spec, args.out, progress=True)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files, {total:,} bytes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
