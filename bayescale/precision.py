"""Float64 for bayescale's own computations, without changing the caller's JAX settings.

Scaling-law posteriors need float64 (losses differ in the fourth digit, parameters span
decades). Rather than turning on ``jax_enable_x64`` for the whole process, every public entry
point that computes with JAX runs inside ``jax.enable_x64(True)``, a thread-local context:
programs traced there are float64, and the caller's setting is back when it returns.
Arrays returned to the caller are NumPy arrays (or pandas/xarray objects holding them).
"""

from __future__ import annotations

import functools

import jax

__all__ = ["float64"]


def float64(fn):
    """Decorate ``fn`` so that its body runs with JAX's float64 enabled (scoped, thread-local)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper
