"""Keeps the host memory that XLA frees for reuse, so that a CPU step does not fault in fresh pages.

XLA:CPU allocates a step's large temporary buffers anew on every call. glibc's malloc serves
allocations over its mmap threshold (at most 32 MiB) with fresh `mmap`s and returns them on
`free`, so every step touches every page of them for the first time again: for the MNIST CNN,
tens of thousands of page faults a step, a third or more of its CPU time spent in the kernel
(benchmarks/host_memory.py measures it). Asking malloc to keep what is freed makes those pages
stay mapped and be reused: one arena for all threads (the other arenas' heaps are capped at
64 MiB, so larger blocks would be mmapped anyway), no mmap, no trimming. The price: the process
keeps its peak heap until it exits, which suits a training process.

It must run before JAX starts its threads (its first computation), so `fgjax/__init__.py` calls
it on import. It does nothing off glibc, and `FGJAX_KEEP_FREED_MEMORY=0` switches it off.
"""

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_NEVER_TRIM = 2 ** 31 - 1  # mallopt takes an int: trim only past 2 GiB of free heap top


def keep_freed_memory() -> bool:
  """Tunes glibc's malloc to keep freed memory for reuse; True when applied."""
  if os.environ.get("FGJAX_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (musl, ...)
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
  return all(mallopt(option, value) for option, value in settings)
