"""bayescale: Bayesian fitting of neural scaling laws with JAX and NumPyro.

Importing bayescale changes nothing global: JAX's float64 flag, device count and compilation
cache stay as the caller set them. bayescale's computations run in float64 inside a scoped
context (:mod:`bayescale.precision`). :func:`bayescale.configure` is the explicit opt-in to
split the CPU into one JAX device per core and to keep compiled programs in a persistent
cache; call it first thing, before any JAX computation.

The names below are imported on first use (PEP 562), so ``import bayescale`` (and the
command line's ``--help``) does not import JAX; ``from bayescale import fit`` and
``bayescale.fit`` work as usual.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it (a module itself where the two are equal)
_WHERE = {
    "MAP": "bayescale.options",
    "NUTS": "bayescale.options",
    "ConvergenceWarning": "bayescale.result",
    "DataError": "bayescale.data",
    "DataWarning": "bayescale.data",
    "FormulaError": "bayescale.laws",
    "Laplace": "bayescale.options",
    "LawError": "bayescale.laws",
    "Model": "bayescale.options",
    "Result": "bayescale.result",
    "Status": "bayescale.result",
    "check": "bayescale.check",
    "compare": "bayescale.compare",
    "configure": "bayescale.settings",
    "fit": "bayescale.api",
    "fit_batch": "bayescale.api",
    "io": "bayescale.io",
    "laws": "bayescale.laws",
    "load": "bayescale.result",
    "plan": "bayescale.plan",
    "plot": "bayescale.plot",
    "simulate": "bayescale.simulate",
    "workflows": "bayescale.workflows",
}
_MODULES = {"check", "io", "laws", "plan", "plot", "simulate", "workflows"}
_DEPRECATED = {"FitResult": "bayescale.result", "BatchResult": "bayescale.result"}  # 0.1 names

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Import a public name on first use and keep it as a module attribute."""
    where = _WHERE.get(name) or _DEPRECATED.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if name in _MODULES else getattr(module, name)
    if name not in _DEPRECATED:  # deprecated names warn on every use
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    loaded = [
        n
        for n, v in globals().items()
        if isinstance(v, types.ModuleType) and n not in ("importlib", "sys", "types")
    ]
    return sorted({*__all__, *loaded, "__version__"})


# A public function named as its own module (``compare``): importing the submodule sets the
# package attribute to the module; the package keeps the function instead.
_SHADOWED = {n for n, w in _WHERE.items() if n not in _MODULES and w == f"{__name__}.{n}"}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # static analysers and mkdocstrings see the eager imports
    from bayescale import check, io, laws, plan, plot, simulate, workflows  # noqa: F401
    from bayescale.api import fit, fit_batch  # noqa: F401
    from bayescale.compare import compare  # noqa: F401
    from bayescale.data import DataError, DataWarning  # noqa: F401
    from bayescale.laws import FormulaError, LawError  # noqa: F401
    from bayescale.options import MAP, NUTS, Laplace, Model  # noqa: F401
    from bayescale.result import ConvergenceWarning, Result, Status, load  # noqa: F401
    from bayescale.settings import configure  # noqa: F401
