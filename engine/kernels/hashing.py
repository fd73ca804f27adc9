"""A stable 64-bit hash of binary values, compiled: the same value in every process and machine.

``hash_binary(array, seed)`` hashes each value of a string/binary array over its bytes and
its length.  The hash is defined by ``hash_bytes_reference`` (plain Python, the oracle):

    key  = fmix64(seed * GOLDEN + SEED_SALT)                    (all arithmetic mod 2**64)
    h    = key ^ (length * LENGTH_MULTIPLIER)
    for each 8-byte little-endian word w of the value, the last one zero-padded:
        h = fmix64(h ^ fmix64(w ^ key))
    hash = fmix64(h ^ (key >> 1))

``fmix64`` is MurmurHash3's 64-bit finalizer.  The seed enters every word's mixing through
``key``, so two seeds give unrelated 64-bit lanes (two lanes make a 128-bit id hash).  A
null value hashes to ``fmix64(key ^ NULL_TAG)``.  Memory is O(rows): each value is read in
place, never padded to the longest one.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa

from engine.common.tables import valid_mask
from engine.kernels._jit import kernel, load_u64

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SEED_SALT = 0x632BE59BD9B4E019
LENGTH_MULTIPLIER = 0xC2B2AE3D27D4EB4F
NULL_TAG = 0x5851F42D4C957F2D

_U33 = np.uint64(33)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(GOLDEN)
_SEED_SALT = np.uint64(SEED_SALT)
_LENGTH_MULTIPLIER = np.uint64(LENGTH_MULTIPLIER)
_NULL_TAG = np.uint64(NULL_TAG)

_EMPTY_DATA = np.zeros(0, dtype=np.uint8)
_EMPTY_DATA.setflags(write=False)

if sys.byteorder != "little":  # load_u64 reads native order; the definition is little-endian
    raise ImportError("engine.kernels.hashing needs a little-endian machine")


# ----- compiled ----------------------------------------------------------------------------


@kernel
def fmix64(value: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finalizer (a bijection that mixes every bit into every bit)."""
    value ^= value >> _U33
    value *= _FMIX1
    value ^= value >> _U33
    value *= _FMIX2
    value ^= value >> _U33
    return value


@kernel
def _hash_values(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, seed: np.uint64) -> np.ndarray:
    """One hash per value ``data[offsets[i]:offsets[i + 1]]``; ``valid`` empty means no nulls.
    (The per-value loop is written out: a helper taking ``data`` would cost a reference count
    per call.)"""
    rows = offsets.size - 1
    out = np.empty(rows, dtype=np.uint64)
    key = fmix64(seed * _GOLDEN + _SEED_SALT)
    null_hash = fmix64(key ^ _NULL_TAG)
    last = key >> np.uint64(1)
    for row in range(rows):
        if valid.size and not valid[row]:
            out[row] = null_hash
            continue
        start, end = offsets[row], offsets[row + 1]
        h = key ^ (np.uint64(end - start) * _LENGTH_MULTIPLIER)
        i = start
        while i + 8 <= end:
            h = fmix64(h ^ fmix64(load_u64(data, i) ^ key))
            i += 8
        if i < end:
            word = np.uint64(0)
            for k in range(end - i):
                word |= np.uint64(data[i + k]) << np.uint64(8 * k)
            h = fmix64(h ^ fmix64(word ^ key))
        out[row] = fmix64(h ^ last)
    return out


# ----- Arrow entry point -------------------------------------------------------------------


def binary_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, offsets, valid)`` of a (large_)string/binary array: ``data`` is the whole uint8
    data buffer (zero-copy, read-only), ``offsets`` int64 positions into it (the array's slice
    applied), ``valid`` a bool per row, or empty when there are no nulls.  The array flags
    are always the same, so each kernel compiles once."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        offset_type = np.int32
    elif pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        offset_type = np.int64
    else:
        raise TypeError(f"expected a string or binary array, got {kind}")
    rows = len(array)
    buffers = array.buffers()
    if rows == 0:
        return _EMPTY_DATA, np.zeros(1, np.int64), np.zeros(0, np.bool_)
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[array.offset: array.offset + rows + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else _EMPTY_DATA
    if data.flags.writeable:
        # Arrow memory that is mutable (lines read into a bytearray): numba types read-only and
        # writable arrays apart, so every kernel compiled twice (a fresh machine's first
        # line-mode job on Ray waited ~45 s for its workers to compile)
        data = data.view()
        data.setflags(write=False)
    valid = valid_mask(array) if array.null_count else np.zeros(0, np.bool_)
    return data, offsets, valid


def hash_binary(array: pa.Array | pa.ChunkedArray, seed: int = 0) -> np.ndarray:
    """A uint64 hash per value of a string/binary/large_* array (chunks concatenated in order).

    Equal bytes give equal hashes in every process and on every machine (no salted hash);
    nulls give one fixed value per seed (an array of type ``null`` is all nulls).  Equals
    ``hash_binary_reference``.
    """
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 0:
            return np.zeros(0, np.uint64)
        return np.concatenate([hash_binary(chunk, seed) for chunk in array.chunks])
    if pa.types.is_null(array.type):  # every row is null
        array = pa.nulls(len(array), pa.binary())
    data, offsets, valid = binary_buffers(array)
    return _hash_values(data, offsets, valid, np.uint64(seed & MASK64))


# ----- plain-Python reference (the test oracle) ---------------------------------------------


def fmix64_reference(value: int) -> int:
    """``fmix64`` on Python integers."""
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & MASK64
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & MASK64
    return value ^ (value >> 33)


def hash_bytes_reference(value: bytes | None, seed: int = 0) -> int:
    """The hash of one value (``None`` for null), computed with Python integers."""
    key = fmix64_reference((seed * GOLDEN + SEED_SALT) & MASK64)
    if value is None:
        return fmix64_reference(key ^ NULL_TAG)
    h = key ^ ((len(value) * LENGTH_MULTIPLIER) & MASK64)
    for start in range(0, len(value), 8):
        word = int.from_bytes(value[start:start + 8], "little")
        h = fmix64_reference(h ^ fmix64_reference(word ^ key))
    return fmix64_reference(h ^ (key >> 1))


def hash_binary_reference(values: list[bytes | str | None], seed: int = 0) -> list[int]:
    """``hash_binary`` over Python values (str hashed as its UTF-8 bytes)."""
    return [hash_bytes_reference(v.encode("utf-8") if isinstance(v, str) else v, seed) for v in values]
