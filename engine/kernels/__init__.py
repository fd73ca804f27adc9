"""Pure per-batch Arrow kernels: no scheduling, no I/O, no Ray."""
