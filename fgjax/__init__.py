"""fgjax: train Flax models with forward gradients and compare them fairly with backprop."""

from fgjax import estimators

__version__ = "0.1.0"
__all__ = ["estimators", "__version__"]
