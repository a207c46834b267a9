"""One bounded cache of compiled programs, keyed by hashable settings.

Every builder of a jitted program (NUTS, MAP/Laplace, pointwise log-likelihood) stores it
here under a key naming what fixes the program: the law and likelihood
(:func:`bayescale.model.posterior_key`, a frozen spec), the settings and the devices.  The
least recently used program is dropped when the cache holds :data:`MAX_PROGRAMS`.
:func:`jit` compiles them with :data:`CPU_COMPILER_OPTIONS` on CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import jax

__all__ = ["CPU_COMPILER_OPTIONS", "MAX_PROGRAMS", "clear", "compiled", "compiler_options", "jit"]

#: Programs kept; each holds its compiled executables (a few MB for a small law).
MAX_PROGRAMS = 64

_PROGRAMS: OrderedDict = OrderedDict()

#: XLA options of bayescale's programs on CPU: LLVM optimisation level 1 instead of XLA's
#: default, which shortens compilation; the compiled fit program computes the same numbers
#: at the same speed (``benchmarks/compile_time.py --cold-fits``).  Compiler options are part
#: of the persistent compilation cache's key.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def compiled(key: Hashable, build: Callable[[], Callable]) -> Callable:
    """The program cached under ``key``, built by ``build()`` when absent (LRU order)."""
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    program = build()
    _PROGRAMS[key] = program
    while len(_PROGRAMS) > MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program


def clear() -> None:
    """Drop every cached program."""
    _PROGRAMS.clear()


def compiler_options(devices: Sequence | None = None) -> dict | None:
    """XLA options for a program run on ``devices`` (default: the default backend's).

    A copy of :data:`CPU_COMPILER_OPTIONS` when every device is a CPU, else ``None`` (XLA's
    defaults: accelerators keep their own code generation).
    """
    platforms = {d.platform for d in devices} if devices else {jax.default_backend()}
    return dict(CPU_COMPILER_OPTIONS) if platforms == {"cpu"} else None


def jit(fn: Callable, devices: Sequence | None = None) -> Callable:
    """``jax.jit(fn)`` compiled with :func:`compiler_options` for ``devices``."""
    return jax.jit(fn, compiler_options=compiler_options(devices))
