"""The conv nets' 3x3 convolutions, written per backend for speed; the same function everywhere.

`conv2d(x, kernel, padding)` is the stride-1 convolution of NHWC images with an HWIO kernel (what
`nnx.Conv` computes, whose parameters the models keep). How it is computed depends on the backend
(`method_for`):

- "xla" (GPU, TPU): XLA's own convolution, which cuDNN and the TPU compiler run well in every
  mode of differentiation.
- "patches" (CPU): XLA:CPU runs the forward convolution and the input gradient well, but the
  kernel gradient (backprop) and the kernel term of a jvp far below its matrix-product speed. So
  the convolution is a `jax.custom_jvp` whose tangent is written as
  `conv(x_dot, kernel) + patches(x) @ kernel_dot`: the input term stays XLA's convolution (its
  transpose, the input gradient, is fast), and the kernel term is one matrix product of the
  image patches (im2col: the kh x kw shifted views of `x`, side by side on the channel axis) with
  the kernel tangent, whose transpose, the kernel gradient, is again one matrix product. The
  primal output reuses the same patches. Tangents that are symbolically zero (an input cut by
  `stop_gradient`, a kernel held fixed) cost nothing.

Both methods agree to float32 rounding in outputs, gradients and jvps (tests/test_convolution.py).
"""

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

METHODS = ("xla", "patches")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def method_for(backend: str) -> str:
  """The formulation that runs fastest on `backend` ("cpu", "gpu", "tpu", ...)."""
  return "patches" if backend == "cpu" else "xla"


def conv2d(x, kernel, padding: str, method: str | None = None):
  """Stride-1 convolution of `x` (N, H, W, C) with `kernel` (kh, kw, C, O); `padding` "VALID" or
  "SAME" (odd kernel sizes). `method` (one of METHODS) defaults to the default backend's."""
  if padding not in ("VALID", "SAME"):
    raise ValueError(f"padding must be 'VALID' or 'SAME', got {padding!r}")
  method = method or method_for(jax.default_backend())
  if method == "xla":
    return _xla_conv(x, kernel, padding)
  if method == "patches":
    return _patches_conv(x, kernel, padding)
  raise ValueError(f"unknown convolution method {method!r}; choose one of {METHODS}")


def _xla_conv(x, kernel, padding: str):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=_DIMENSIONS)


def _patches(x, kernel_shape, padding: str):
  """(N, H', W', kh * kw * C): at each output position, the kh x kw window of `x` in (row,
  column, channel) order, the order of a reshaped HWIO kernel's rows."""
  kh, kw = kernel_shape[:2]
  if padding == "SAME":
    x = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  rows, columns = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  return jnp.concatenate([x[:, i:i + rows, j:j + columns]
                          for i in range(kh) for j in range(kw)], axis=-1)


def _times_kernel(patches, kernel):
  """The convolution as a matrix product: (N H' W', kh kw C) @ (kh kw C, O)."""
  out = patches.reshape(-1, patches.shape[-1]) @ kernel.reshape(-1, kernel.shape[-1])
  return out.reshape(*patches.shape[:-1], kernel.shape[-1])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _patches_conv(x, kernel, padding):
  return _xla_conv(x, kernel, padding)


def _patches_conv_jvp(padding, primals, tangents):
  x, kernel = primals
  x_dot, kernel_dot = tangents
  terms = []
  if isinstance(kernel_dot, SymbolicZero):
    out = _xla_conv(x, kernel, padding)
  else:
    patches = _patches(x, kernel.shape, padding)
    out = _times_kernel(patches, kernel)
    terms.append(_times_kernel(patches, kernel_dot))
  if not isinstance(x_dot, SymbolicZero):
    terms.append(_xla_conv(x_dot, kernel, padding))
  tangent = functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(out)
  return out, tangent


_patches_conv.defjvp(_patches_conv_jvp, symbolic_zeros=True)
