"""Test-session settings.

The suite compiles many small XLA programs and runs each only a few steps, so compilation, not
execution, dominates its time: XLA's backend optimisation level 0 roughly halves it. Every test
compares runs made under the same flags, so no result depends on them.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
