"""One bounded cache of compiled programs, keyed by hashable settings.

Every builder of a jitted program (NUTS, MAP/Laplace, pointwise log-likelihood) stores it
here under a key naming what fixes the program: the law and likelihood
(:func:`bayescale.model.posterior_key`, a frozen spec), the settings and the devices.  The
least recently used program is dropped when the cache holds :data:`MAX_PROGRAMS`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["MAX_PROGRAMS", "clear", "compiled"]

#: Programs kept; each holds its compiled executables (a few MB for a small law).
MAX_PROGRAMS = 64

_PROGRAMS: OrderedDict = OrderedDict()


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
