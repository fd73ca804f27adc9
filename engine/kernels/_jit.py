"""The one place that imports numba: where compiled kernels are cached, and the decorator.

Numba's default cache sits beside the source files (``__pycache__``), which an installed,
read-only package cannot write.  Before numba is imported, ``NUMBA_CACHE_DIR`` is set
(unless the user set it) to a private per-user directory, ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``arrow-patterns-engine/numba``, created with mode 0700.  Numba writes
cache files under a temporary name and renames them, so several worker processes may
share the directory.  Every kernel module imports ``kernel`` from here.

Numba checks a cached kernel only against its own source file, not against the kernels it
calls in other files; so the default directory has one subdirectory per digest of this
package's sources, and an edited helper never runs as stale cached code.

Numba also keys its cache by the source file's path and modification time, so two copies
of the same sources (a checkout and the installed package, or two installs) would each
compile every kernel again.  In the directory chosen here, the kernels of this package are
keyed by the source digest instead (:class:`DigestCacheLocator`): any copy of the same
sources loads what another compiled.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

CACHE_ENV = "NUMBA_CACHE_DIR"
_CHOSEN_ENV = "ARROW_PATTERNS_ENGINE_NUMBA_CACHE"  # set when the value came from configure_cache
F = TypeVar("F", bound=Callable)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/arrow-patterns-engine/numba`` (``~/.cache/...`` when XDG is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "arrow-patterns-engine" / "numba"


def source_digest() -> str:
    """A short digest of every ``.py`` file of this package (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def configure_cache() -> str:
    """Point numba's cache at the user's directory unless ``NUMBA_CACHE_DIR`` is set; return it.

    The default is ``default_cache_dir() / source_digest()``, created with mode 0700
    (compiled code is code: other users must not be able to plant it).  A directory that
    this function chose in a parent process (inherited through the environment) is chosen
    again, so a child running other sources gets its own.  Safe to call more than once and
    after numba is loaded.
    """
    chosen = os.environ.get(CACHE_ENV)
    if not chosen or os.environ.get(_CHOSEN_ENV) == chosen:
        root = default_cache_dir()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = root / source_digest()
        path.mkdir(mode=0o700, exist_ok=True)
        chosen = str(path)
        os.environ[CACHE_ENV] = os.environ[_CHOSEN_ENV] = chosen
    if "numba" in sys.modules:  # imported before us: its config has already read the environment
        sys.modules["numba"].config.CACHE_DIR = chosen
    return chosen


configure_cache()

import numba  # noqa: E402  (must follow configure_cache)
import numba.core.caching  # noqa: E402
from llvmlite import ir  # noqa: E402
from llvmlite.binding import llvm_version_info  # noqa: E402
from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


_KERNELS_DIR = Path(__file__).resolve().parent


class DigestCacheLocator(numba.core.caching.UserProvidedCacheLocator):
    """Numba cache locator for this package's kernels, in the directory ``configure_cache``
    chose: cache files sit directly in it (it is already one per source digest) and are
    stamped with the digest, not the file's path and modification time."""

    _digest = source_digest()

    def __init__(self, py_func: Callable, py_file: str) -> None:
        super().__init__(py_func, py_file)
        self._cache_path = numba.config.CACHE_DIR

    def get_source_stamp(self) -> str:
        """The package's source digest (the same for every copy of the same sources)."""
        return self._digest

    @classmethod
    def from_function(cls, py_func: Callable, py_file: str) -> "DigestCacheLocator | None":
        """A locator for a kernel of this package while the cache directory is the one
        ``configure_cache`` chose; ``None`` (numba's own locators decide) otherwise."""
        chosen = os.environ.get(_CHOSEN_ENV)
        if (not chosen or numba.config.CACHE_DIR != chosen
                or Path(py_file).resolve().parent != _KERNELS_DIR):
            return None
        return super().from_function(py_func, py_file)


if DigestCacheLocator not in numba.core.caching.CacheImpl._locator_classes:
    numba.core.caching.CacheImpl._locator_classes.insert(0, DigestCacheLocator)


def kernel(function: F) -> F:
    """``numba.njit(cache=True, nogil=True)``: compiled on first call, cached on disk, GIL released."""
    return numba.njit(cache=True, nogil=True)(function)


# LLVM names the intrinsic by pointer type: opaque pointers (LLVM 15+) or typed i8*.
_PREFETCH = "llvm.prefetch.p0" if llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
    """``prefetch(array, i)`` in compiled code: ask the CPU to bring ``array[i]`` into cache
    (LLVM's ``llvm.prefetch``, read, high locality).  No effect on results; no bounds check
    is needed because a prefetch never faults."""
    signature = types.void(array, index)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        array_type = sig.args[0]
        handle = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, handle, [args[1]], wraparound=False,
                                           boundscheck=False)
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]), _PREFETCH)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(int32, 0), ir.Constant(int32, 3),
                                ir.Constant(int32, 1)])
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def load_u64(typingctx, array, index):  # type: ignore[no-untyped-def]
    """``load_u64(data, i)`` in compiled code: the 8 bytes ``data[i:i + 8]`` of a uint8 array as one
    unaligned native-order uint64 load.  Unchecked: the caller ensures ``0 <= i <= size - 8``."""
    signature = types.uint64(array, index)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        array_type = sig.args[0]
        handle = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, handle, [args[1]], wraparound=False,
                                           boundscheck=False)
        word = builder.bitcast(pointer, ir.IntType(64).as_pointer())
        return builder.load(word, align=1)

    return signature, codegen
