"""fgjax: train Flax models with forward gradients and compare them fairly with backprop."""

from fgjax import host_memory

host_memory.keep_freed_memory()  # before JAX's first computation starts its threads

from fgjax import estimators  # pylint: disable=g-import-not-at-top,wrong-import-position

__version__ = "0.1.0"
__all__ = ["estimators", "__version__"]
