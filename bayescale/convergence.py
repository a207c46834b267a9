"""Convergence of fits: the thresholds, the status of a fit, r̂/ESS of many fits at once,
and the reduction of a chunk of draws to a few (``NUTS(keep=...)``).

The statistics are arviz-stats' rank-normalised split r̂ and bulk/tail ESS, computed for all
fits at once by :mod:`bayescale.diagnostics`; a one-chain fit gets the r̂ of its two halves.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayescale import diagnostics as batch_diagnostics
from bayescale.model import Posterior
from bayescale.predict import quantile_column

__all__ = [
    "ALL_DRAWS",
    "ESS_PER_CHAIN_MIN",
    "PER_FIT",
    "RHAT_MAX",
    "SUMMARY_QUANTILES",
    "ConvergenceWarning",
    "Status",
    "convergence_numbers",
    "keep_draws",
    "mode_failure",
    "rhat",
    "sample_stats",
    "status_of",
    "worst",
]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


class Status(enum.Enum):
    """Convergence status of a fit (worst problem found)."""

    converged = "converged"
    divergences = "divergences"
    low_ess = "low_ess"
    high_rhat = "high_rhat"
    failed = "failed"  # no finite posterior mode was found


class ConvergenceWarning(UserWarning):
    """A fit that did not meet the convergence thresholds; the message carries the numbers."""


def rhat(post: xr.Dataset) -> xr.Dataset:
    """Rank-normalised split r̂ of each variable of ``post`` (dims ``chain``, ``draw`` and
    any others), by :mod:`bayescale.diagnostics`; a single chain is split into its two halves.

    arviz-stats returns NaN for one chain; split-r̂ compares the halves of each chain anyway,
    so a one-chain fit (e.g. one chain per curve in a large batch) gets the r̂ of its halves
    instead of never being reported converged.
    """
    out = {}
    for name, da in post.data_vars.items():
        da = da.transpose("chain", "draw", ...)
        x = np.asarray(da.values, dtype=float)
        if x.shape[0] == 1:
            half = x.shape[1] // 2
            x = np.concatenate([x[:, :half], x[:, half : 2 * half]], axis=0)
        out[name] = da.isel(chain=0, draw=0, drop=True).copy(data=batch_diagnostics.rhat(x))
    return xr.Dataset(out)


def sample_stats(samples: dict) -> dict[str, np.ndarray]:
    """NUTS statistics under ArviZ's names (``tree_depth`` from the leapfrog count).

    MAP and Laplace draws (no ``n_steps``) carry ``lp`` and ``diverging`` (all False).
    """
    if "n_steps" not in samples:
        lp = np.asarray(samples["lp"])
        return {"lp": lp, "diverging": np.zeros(lp.shape, dtype=bool)}
    n_steps = np.asarray(samples["n_steps"])
    return {
        "diverging": np.asarray(samples["diverging"], dtype=bool),
        "n_steps": n_steps,
        "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(int),
        "acceptance_rate": np.asarray(samples["acceptance_rate"]),
        "lp": np.asarray(samples["lp"]),
        "energy": np.asarray(samples["energy"]),
        "step_size": np.asarray(samples["step_size"]),
    }


def mode_failure(
    method: str,
    map_potential: float,
    min_eigenvalue: float,
    *,
    converged: bool = True,
    grad_norm: float = float("nan"),
    last_change: float = float("nan"),
    num_steps: int | None = None,
) -> str:
    """Why a ``"map"``/``"laplace"`` fit failed, or ``""``.

    In order: no finite mode; for Laplace, a Hessian that is not positive definite at the
    mode (``min_eigenvalue <= 0``); a best start that had not converged after ``num_steps``
    L-BFGS steps (``converged`` false: largest gradient component ``grad_norm`` not small and
    the objective still falling by ``last_change`` over the last 10% of the steps; see
    :func:`bayescale.infer.optimize.find_mode`).
    """
    if not np.isfinite(map_potential):
        return "no finite posterior mode found"
    if method == "laplace" and not min_eigenvalue > 0:
        return f"Hessian at the mode not positive definite (min eigenvalue {min_eigenvalue:.3g})"
    if not converged:
        return (
            f"mode search did not converge in {num_steps} steps: max |grad| {grad_norm:.3g}, "
            f"objective still falling by {last_change:.3g} over the last 10% of the steps"
        )
    return ""


def status_of(d, *, failed: bool = False) -> Status:
    """The status of one fit's convergence numbers ``d`` (a dict or a diagnostics row)."""
    if failed:
        return Status.failed
    if not np.isfinite(d["max_rhat"]) or d["max_rhat"] > d["rhat_max_allowed"]:
        return Status.high_rhat
    if min(d["min_ess_bulk"], d["min_ess_tail"]) < d["ess_min_allowed"]:
        return Status.low_ess
    if d["num_divergent"] > 0:
        return Status.divergences
    return Status.converged


#: DataTree group of a ``NUTS(keep=...)`` result holding, per fit, the
#: convergence numbers and the summary of every draw (the groups hold the kept draws).
ALL_DRAWS = "all_draws_summary"
#: Quantiles stored per fit and parameter when draws are thinned by ``keep``.
SUMMARY_QUANTILES = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)


#: Most fits per block of :func:`convergence_numbers` on the host.
FITS_PER_BLOCK = 512


def convergence_numbers(
    values: dict, names: Sequence[str], diverging, prob: float | None = None
) -> dict:
    """Per fit: max split r̂, min bulk/tail ESS over ``names``, divergences, draws.

    ``values[name]`` and ``diverging`` have shape ``(fit, chain, draw)``: NumPy arrays (the
    numbers computed in float64, returned as NumPy; in blocks of at most
    :data:`FITS_PER_BLOCK` fits, at least one per CPU core, on one thread per core, so the
    memory the intermediates take is bounded by the block size, not the number of fits)
    or JAX arrays/tracers (traced, e.g. inside :mod:`bayescale.infer.reduce` on the device).
    The statistics are arviz-stats' (:mod:`bayescale.diagnostics`, all fits at once); a
    one-chain fit gets the r̂ of its two halves, as :func:`rhat` does.  ``prob``: the tail
    ESS quantiles ``prob``, ``1 - prob`` (default :func:`bayescale.diagnostics.tail_prob`).
    """
    arrays = [values[n] for n in names]
    if not all(isinstance(v, np.ndarray) for v in arrays):
        return _numbers(arrays, diverging, prob, jnp)
    prob = batch_diagnostics.tail_prob() if prob is None else prob
    num_fits = arrays[0].shape[0]
    num_blocks = max(min(_cores(), num_fits // 32), -(-num_fits // FITS_PER_BLOCK))
    blocks = np.array_split(np.arange(num_fits), max(1, num_blocks))
    if len(blocks) == 1:
        return _numbers(arrays, diverging, prob, np)
    with ThreadPoolExecutor(min(_cores(), len(blocks))) as pool:  # NumPy/SciPy release the GIL
        parts = list(
            pool.map(
                lambda i: _numbers([a[i] for a in arrays], np.asarray(diverging)[i], prob, np),
                blocks,
            )
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _numbers(arrays: list, diverging, prob, xp) -> dict:
    x = xp.stack([xp.moveaxis(v, 0, -1) for v in arrays], axis=-1)  # (c, d, fit, par)
    if x.shape[0] == 1:  # one chain: its two halves
        half = x.shape[1] // 2
        halves = xp.concatenate([x[:, :half], x[:, half : 2 * half]], axis=0)
    else:
        halves = x
    return {
        "max_rhat": batch_diagnostics.rhat(halves).max(axis=-1),
        "min_ess_bulk": batch_diagnostics.ess_bulk(x).min(axis=-1),
        "min_ess_tail": batch_diagnostics.ess_tail(x, prob).min(axis=-1),
        "num_divergent": xp.asarray(diverging).sum(axis=(1, 2)),
        "num_draws": xp.full(x.shape[2], x.shape[0] * x.shape[1]),
    }


#: Sampler outputs held once per fit (leading axes ``(fit, ...)`` or ``(fit, chain, ...)``
#: without a draw axis): :func:`keep_draws` passes them through unthinned.
PER_FIT = ("map_potential", "map_failed_starts", "inverse_mass_matrix")


def keep_draws(posterior: Posterior, samples: dict, keep: int, prob: float) -> dict:
    """Reduce one chunk of sampler output (leading fit axis) to ``keep`` draws per chain.

    NumPy arrays are reduced on the host in float64; JAX arrays are traced
    (:mod:`bayescale.infer.reduce` compiles this into the per-chunk reduction that runs
    where the draws are).  Before the other draws are dropped, every fit's convergence
    numbers (:func:`convergence_numbers`, tail ESS at quantiles ``prob`` and ``1 - prob``)
    and the mean, sd (``ddof=0``) and :data:`SUMMARY_QUANTILES` (NumPy's linear rule,
    :func:`bayescale.diagnostics.quantile`) of each parameter over all draws are returned
    under ``samples["all_draws"]``.  The kept draws are evenly spaced over each chain
    (``linspace`` indices rounded); every output but :data:`PER_FIT` is thinned.
    """
    values = posterior.constrain(samples["z"])
    if isinstance(samples["z"], np.ndarray):
        values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    summary = convergence_numbers(values, posterior.site_names, samples["diverging"], prob)
    for name, v in values.items():
        flat = v.reshape(v.shape[0], -1)
        summary[f"{name}_mean"], summary[f"{name}_sd"] = flat.mean(axis=1), flat.std(axis=1)
        for q in SUMMARY_QUANTILES:
            summary[f"{name}_{quantile_column(q)}"] = batch_diagnostics.quantile(flat, q, axis=1)
    num_draws = samples["z"].shape[2]
    index = np.unique(np.linspace(0, num_draws - 1, min(keep, num_draws)).round().astype(int))
    out = {k: (v if k in PER_FIT else v[:, :, index]) for k, v in samples.items()}
    out["all_draws"] = summary
    return out


#: Statuses from best to worst.
ORDER = (Status.converged, Status.divergences, Status.low_ess, Status.high_rhat, Status.failed)


def worst(statuses) -> Status:
    """The worst of ``statuses`` (``Status`` members or their values)."""
    ranks = [ORDER.index(Status(s)) for s in statuses]
    return ORDER[max(ranks)] if ranks else Status.converged
