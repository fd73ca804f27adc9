"""``python -m engine.kernels``: warm up every kernel and print where the cache is and the
seconds each kernel took, as one JSON object (see ``engine.kernels.warmup``)."""

from __future__ import annotations

import json
import os
import time

if __name__ == "__main__":
    started = time.perf_counter()
    from engine.kernels.warmup import warm_up

    seconds = warm_up()
    print(json.dumps({"cache_dir": os.environ.get("NUMBA_CACHE_DIR"), "seconds": seconds,
                      "process_s": time.perf_counter() - started}))
