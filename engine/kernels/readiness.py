"""Whether this process should run a compiled kernel now, or its exact reference.

Loading the compiled kernels costs a process about a second of CPU and 140 MiB (numba,
LLVM and the cached code), even from a warm cache; compiling them on a fresh cache costs
twenty.  So a process loads them only once its inputs show they pay, and in the
background, as a JIT compiles a method that has run often: until they are loaded, a
kernel call on an input under ``SMALL_INPUT_BYTES`` runs the kernel's reference (numpy
and Arrow, with the same answers: the references are the kernels' test oracles), and once
the references have been given ``REFERENCE_BUDGET_BYTES`` in all (about half a load's time
of reference work) a background thread loads every kernel
(``engine.kernels.warmup.warm_up``, which takes turns with other processes on a fresh
cache) while calls go on through the references.  A call on a larger input waits for the
load and runs compiled; so does every call once the load is done.  A small job therefore
never waits for numba and its workers never hold it.  This module does not import numba.
"""

from __future__ import annotations

import threading

# The references take about 25 ms per MiB, a load about a second.
SMALL_INPUT_BYTES = 4 * 1024 * 1024
REFERENCE_BUDGET_BYTES = 16 * 1024 * 1024

_loaded = threading.Event()
_load_lock = threading.Lock()
_budget_lock = threading.Lock()
_reference_bytes = 0  # input given to references so far in this process
_background_started = False


def loaded() -> bool:
    """True once this process has loaded the compiled kernels through ``ensure_loaded``."""
    return _loaded.is_set()


def ensure_loaded() -> None:
    """Load (or compile) every compiled kernel, once per process; a thread that calls this
    while another loads waits for it.  A load that fails raises here and is tried again on
    the next call."""
    if _loaded.is_set():
        return
    with _load_lock:
        if _loaded.is_set():
            return
        from engine.kernels.warmup import warm_up

        warm_up()
        _loaded.set()


def load_in_background() -> None:
    """Start ``ensure_loaded`` in a daemon thread, once per process (a failed load is tried
    again by the next call that needs the kernels)."""
    global _background_started
    with _budget_lock:
        if _background_started or _loaded.is_set():
            return
        _background_started = True

    def load() -> None:
        try:
            ensure_loaded()
        except Exception:  # noqa: BLE001 -- the next call that needs the kernels raises it
            pass

    threading.Thread(target=load, name="kernel-load", daemon=True).start()


def use_compiled(input_bytes: int) -> bool:
    """Whether a kernel call on ``input_bytes`` of input should run compiled: yes once the
    kernels are loaded; no for an input under ``SMALL_INPUT_BYTES`` until then (past the
    references' budget the kernels start loading in the background); otherwise yes, after
    loading them (``ensure_loaded``)."""
    global _reference_bytes
    if _loaded.is_set():
        return True
    if input_bytes < SMALL_INPUT_BYTES:
        with _budget_lock:
            _reference_bytes += input_bytes
            spent = _reference_bytes > REFERENCE_BUDGET_BYTES
        if spent:
            load_in_background()
        return False
    ensure_loaded()
    return True
