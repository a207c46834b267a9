"""bayescale: Bayesian fitting of neural scaling laws with JAX and NumPyro.

Importing bayescale changes nothing global: JAX's float64 flag, device count and compilation
cache stay as the caller set them. bayescale's computations run in float64 inside a scoped
context (:mod:`bayescale.precision`). :func:`bayescale.configure` is the explicit opt-in to
split the CPU into one JAX device per core and to keep compiled programs in a persistent
cache; call it first thing, before any JAX computation.
"""

from bayescale import check, laws, plan, plot, simulate, workflows
from bayescale.api import fit, fit_batch
from bayescale.compare import compare
from bayescale.data import DataError, DataWarning
from bayescale.laws import FormulaError, LawError
from bayescale.options import MAP, NUTS, ChEES, Laplace, Model
from bayescale.result import ConvergenceWarning, Result, Status, load
from bayescale.settings import configure

__version__ = "0.1.0"

__all__ = [
    "MAP",
    "NUTS",
    "ChEES",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "FormulaError",
    "Laplace",
    "LawError",
    "Model",
    "Result",
    "Status",
    "check",
    "compare",
    "configure",
    "fit",
    "fit_batch",
    "laws",
    "load",
    "plan",
    "plot",
    "simulate",
    "workflows",
]


def __getattr__(name: str):
    """``FitResult`` and ``BatchResult`` (0.1): deprecated names of :class:`Result`."""
    if name in ("FitResult", "BatchResult"):
        from bayescale import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
