"""bayescale: Bayesian fitting of neural scaling laws with JAX and NumPyro.

Importing bayescale exposes every CPU core as a JAX device (``BAYESCALE_CPU_DEVICES``
overrides the count; an ``XLA_FLAGS`` device count is respected), enables float64 in JAX
(set ``BAYESCALE_X64=0`` before import to keep float32) and JAX's persistent compilation
cache under ``~/.cache/bayescale/jax`` (set ``BAYESCALE_CACHE_DIR`` to move it, or to an
empty string to disable it), so a law compiled once is not compiled again by later
processes.
"""

import os as _os

import jax as _jax


def _use_all_cpu_cores() -> None:
    """Expose each CPU core as a JAX device (chains and fits are then split over them).

    Only where the user has not chosen (``XLA_FLAGS`` device count, ``BAYESCALE_CPU_DEVICES``)
    and JAX's backends are not started yet; ``BAYESCALE_CPU_DEVICES=1`` turns it off.
    """
    if "xla_force_host_platform_device_count" in _os.environ.get("XLA_FLAGS", ""):
        return
    count = int(_os.environ.get("BAYESCALE_CPU_DEVICES", _os.cpu_count() or 1))
    if count > 1:
        try:
            _jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # backends already initialised by the caller: leave them
            pass


_use_all_cpu_cores()

if _os.environ.get("BAYESCALE_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

_cache = _os.environ.get(
    "BAYESCALE_CACHE_DIR", _os.path.join(_os.path.expanduser("~"), ".cache", "bayescale", "jax")
)
if _cache and not _jax.config.jax_compilation_cache_dir:
    _jax.config.update("jax_compilation_cache_dir", _cache)
    _jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from bayescale import check, laws, plan, plot, simulate, workflows  # noqa: E402
from bayescale.api import fit, fit_batch  # noqa: E402
from bayescale.compare import compare  # noqa: E402
from bayescale.data import DataError  # noqa: E402
from bayescale.laws import FormulaError, LawError  # noqa: E402
from bayescale.options import MAP, NUTS, Laplace, Model  # noqa: E402
from bayescale.result import ConvergenceWarning, Result, Status, load  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MAP",
    "NUTS",
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "Laplace",
    "LawError",
    "Model",
    "Result",
    "Status",
    "check",
    "compare",
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
