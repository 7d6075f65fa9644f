"""How fgjax compiles its programs: `jit` is `jax.jit` with the XLA options that suit the backend.

On CPU, XLA (jaxlib 0.10) hands convolutions by default to YNNPACK, which runs the conv nets' 3x3
convolutions, and their input and kernel gradients, several times slower than XLA's own (Eigen)
convolutions on the same machine (benchmarks/README.md, "Conv nets on CPU"). `CPU_OPTIONS`
keeps YNNPACK for matrix products alone, which it runs by default too. A jaxlib that does not
know the option, and other backends (GPU, TPU), compile with their defaults.

Every fgjax program that runs a model is compiled through `jit`; so is a user's own step that
wants the same speed: `compilation.jit(step)` where `jax.jit(step)` would be.
"""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.cache
def options(backend: Optional[str] = None) -> dict:
  """The compiler options for `backend` (default: JAX's default backend): `CPU_OPTIONS` on a CPU
  whose XLA knows them, else none."""
  if (backend or jax.default_backend()) != "cpu":
    return {}
  try:
    jax.jit(jnp.negative, compiler_options=CPU_OPTIONS).lower(np.zeros(1, np.float32)).compile()
  except jax.errors.JaxRuntimeError:
    return {}
  return dict(CPU_OPTIONS)


def jit(fun: Callable, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)`, compiled with `options()` for the default backend."""
  return jax.jit(fun, compiler_options=options() or None, **kwargs)
