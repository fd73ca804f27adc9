"""Lookup tables of Python's whitespace (``str.isspace()``) over UTF-8 bytes, derived from Python.

``byte_classes()`` is a 256-entry table: ``WORD`` for a byte that never starts whitespace,
``SPACE`` for a one-byte whitespace character, ``LEAD`` for the lead byte of a multi-byte
sequence that may encode whitespace (then ``space_codepoints()`` decides).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

WORD, SPACE, LEAD = 0, 1, 2


@lru_cache(maxsize=1)
def whitespace_characters() -> tuple[str, ...]:
    """Every character that ``str.split()`` splits on (those with ``str.isspace()``), in code
    point order: the characters that splitting a string of all code points removes."""
    points = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)]).astype(np.uint32)
    everything = points.tobytes().decode("utf-32-le")
    kept = np.frombuffer("".join(everything.split()).encode("utf-32-le"), dtype=np.uint32)
    return tuple(chr(c) for c in np.setdiff1d(points, kept, assume_unique=True))


@lru_cache(maxsize=1)
def byte_classes() -> np.ndarray:
    """The 256-entry uint8 class table described in the module docstring."""
    table = np.full(256, WORD, dtype=np.uint8)
    for char in whitespace_characters():
        encoded = char.encode("utf-8")
        if len(encoded) == 1:
            table[encoded[0]] = SPACE
        else:
            if len(encoded) > 3:
                raise AssertionError("a 4-byte whitespace character: the kernels decode at most 3 bytes")
            table[encoded[0]] = LEAD
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def space_codepoints() -> np.ndarray:
    """A bool per code point up to the largest whitespace one: is it whitespace?"""
    characters = whitespace_characters()
    table = np.zeros(ord(characters[-1]) + 1, dtype=np.bool_)
    table[[ord(c) for c in characters]] = True
    table.setflags(write=False)
    return table
