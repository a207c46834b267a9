"""Loss against model size and steps, L(N, S_min) (Kaplan et al. 2020, §5.2/6; seed chart 003).

The law ``kaplan_ns``,

.. math::

    L(N, S_{min}) = (N_c / N)^{\\alpha_N} + (S_c / S_{min})^{\\alpha_S},

is fitted with :func:`bayescale.fit`; this module draws the two families of curves of the
seed chart from its posterior, each with a credible band:

* **fixed steps** (right panel): :math:`L(N, S)` against :math:`N` for several step counts —
  the law's posterior at those points (:meth:`Result.predict` with ``kind="mean"``);
* **fixed compute** (left panel): at a compute budget :math:`C_{min}` a model of size
  :math:`N` trained at the critical batch :math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}` takes
  :math:`S_{min} = C_{min} / (6 N B_{crit}(L))` steps, so its loss solves

  .. math::

      L = L\\Big(N,\\; \\frac{C_{min}\\, L^{1/\\alpha_B}}{6 N B_*}\\Big),

  whose right side falls as :math:`L` rises: one root, found by bisection in
  :math:`\\log L` per posterior draw (jitted, vmapped over draws and points), between
  :math:`(N_c/N)^{\\alpha_N}` (infinitely many steps) and :data:`MAX_LOSS`.  Each draw of
  :math:`L(N, S)` is paired with a draw of :math:`(B_*, \\alpha_B)` when a ``kaplan_bcrit``
  posterior is given, else with the catalogue's published values.

The fit of ``kaplan_ns`` is the caller's :func:`bayescale.fit`: a law of two covariates, so
it carries no discrepancy (:attr:`bayescale.model.Posterior.discrepancy`), and these bands are
the law's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.laws import get_law
from bayescale.precision import float64
from bayescale.result import Result, quantile_column
from bayescale.units import PF_DAY

__all__ = [
    "MAX_LOSS",
    "loss_at_fixed_compute",
    "loss_at_fixed_compute_draws",
    "loss_at_fixed_steps",
]

#: Upper end (nats/token) of the bracket of the fixed-compute loss.
MAX_LOSS = 1e3
_BISECTIONS = 80


def _check_ns(result: Result) -> None:
    if (
        not isinstance(result, Result)
        or len(result) != 1
        or set(result.law.covariates) != {"n_params", "steps"}
    ):
        raise TypeError(
            "result must be the Result of one fit of a law of n_params and steps (kaplan_ns)"
        )


def _grid(**axes) -> pd.DataFrame:
    """Every combination of the given 1-d axes, the first varying slowest."""
    arrays = {}
    for name, values in axes.items():
        v = np.atleast_1d(np.asarray(values, dtype=float))
        if v.ndim != 1 or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{name} must be positive finite values, got {values!r}")
        arrays[name] = v
    mesh = np.meshgrid(*arrays.values(), indexing="ij")
    return pd.DataFrame({k: m.ravel() for k, m in zip(arrays, mesh, strict=True)})


def _summarise(grid: pd.DataFrame, draws: np.ndarray, quantiles) -> pd.DataFrame:
    flat = draws.reshape(-1, draws.shape[-1])
    out = grid.copy()
    out["mean"] = flat.mean(axis=0)
    for q in quantiles:
        out[quantile_column(q)] = np.quantile(flat, q, axis=0)
    return out


@float64
def loss_at_fixed_steps(
    result: Result, n_params, steps, quantiles: Sequence[float] = (0.05, 0.5, 0.95)
) -> pd.DataFrame:
    """The law :math:`L(N, S)` on the grid ``steps`` x ``n_params``, with its credible band.

    Per posterior draw :math:`\\theta^{(k)}` and grid point,

    .. math::

        L^{(k)}(N, S) = \\bigl(N_c^{(k)} / N\\bigr)^{\\alpha_N^{(k)}}
            + \\bigl(S_c^{(k)} / S\\bigr)^{\\alpha_S^{(k)}},

    summarised by its mean and quantiles (the law itself, no observation noise).

    Parameters
    ----------
    result : Result
        A ``kaplan_ns`` fit.
    n_params, steps : array-like
        Model sizes :math:`N` and step counts :math:`S`; every combination is evaluated.
    quantiles : sequence of float

    Returns
    -------
    DataFrame
        ``steps``, ``n_params``, ``mean`` and the quantile columns, one row per grid point.
    """
    _check_ns(result)
    grid = _grid(steps=steps, n_params=n_params)
    draws = result.predict_draws(grid, kind="mean")
    return _summarise(grid, draws, quantiles)


def _bcrit_draws(bcrit, num: int, seed: int) -> dict[str, np.ndarray]:
    if bcrit is None:
        ref = get_law("kaplan_bcrit").reference
        return {k: np.full(num, ref[k]) for k in ("B_star", "alpha_B")}
    if isinstance(bcrit, Result) and len(bcrit) == 1:
        d = bcrit.draws(["B_star", "alpha_B"])
        flat = {k: v.ravel() for k, v in d.items()}
        idx = np.random.default_rng(seed).integers(0, flat["B_star"].size, num)
        return {k: v[idx] for k, v in flat.items()}
    if isinstance(bcrit, Mapping) and {"B_star", "alpha_B"} <= set(bcrit):
        return {k: np.full(num, float(bcrit[k])) for k in ("B_star", "alpha_B")}
    raise TypeError(
        "bcrit must be None (published values), a kaplan_bcrit Result of one fit, or "
        "{'B_star': ..., 'alpha_B': ...}"
    )


@float64
def loss_at_fixed_compute_draws(
    result: Result, n_params, flops_min, *, bcrit=None, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Draws of the loss at fixed compute: ``(grid, draws of shape (chain, draw, point))``.

    Per posterior draw, the root in :math:`L` of

    .. math::

        L = \\Bigl(\\frac{N_c}{N}\\Bigr)^{\\alpha_N}
            + \\Bigl(\\frac{6 N B_* S_c}{C_{min} L^{1/\\alpha_B}}\\Bigr)^{\\alpha_S},

    i.e. :math:`L(N, S_{min})` with :math:`S_{min} = C_{min} / (6 N B_{crit}(L))` (see the
    module text), found by bisection in :math:`\\log L`.

    Parameters
    ----------
    result : Result
        A ``kaplan_ns`` fit.
    n_params, flops_min : array-like
        Model sizes and compute budgets :math:`C_{min}` (PF-days); every combination.
    bcrit : Result, dict or None
        As for :func:`loss_at_fixed_compute`.
    seed : int
        Seed of the pairing of ``bcrit`` draws with ``result``'s.

    Returns
    -------
    grid : DataFrame
        ``flops_min`` and ``n_params`` of each point.
    draws : ndarray
        The loss, ``(chain, draw, point)``.
    """
    _check_ns(result)
    grid = _grid(flops_min=flops_min, n_params=n_params)
    draws = result.draws(result.law.parameter_names)
    shape = next(iter(draws.values())).shape
    flat = {k: jnp.asarray(v.ravel()) for k, v in draws.items()}
    bc = {k: jnp.asarray(v) for k, v in _bcrit_draws(bcrit, int(np.prod(shape)), seed).items()}
    log_n = jnp.log(jnp.asarray(grid["n_params"].to_numpy()))
    log_c = jnp.log(jnp.asarray(grid["flops_min"].to_numpy() * PF_DAY))
    law = result.law

    @jax.jit
    def solve(theta, b_star, alpha_b):
        def g(log_l):  # log L(N, S(L)) - log L, decreasing in log L
            log_s = log_c + log_l / alpha_b - jnp.log(6.0) - log_n - jnp.log(b_star)
            return law.log_mean(theta, {"n_params": log_n, "steps": log_s}) - log_l

        lo = law.log_mean(theta, {"n_params": log_n, "steps": jnp.full_like(log_n, 700.0)})
        hi = jnp.full_like(log_n, jnp.log(MAX_LOSS))

        def step(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            up = g(mid) > 0
            return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

        lo, hi = jax.lax.fori_loop(0, _BISECTIONS, step, (lo, hi))
        return jnp.exp(0.5 * (lo + hi))

    loss = jax.vmap(solve)(flat, bc["B_star"], bc["alpha_B"])
    return grid, np.asarray(loss).reshape(*shape, len(grid))


@float64
def loss_at_fixed_compute(
    result: Result,
    n_params,
    flops_min,
    *,
    bcrit=None,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    seed: int = 0,
) -> pd.DataFrame:
    """Loss against :math:`N` at fixed compute :math:`C_{min}` (PF-days), with its band.

    Parameters
    ----------
    result : Result
        A ``kaplan_ns`` fit.
    n_params, flops_min : array-like
        Model sizes and compute budgets (PF-days); every combination is evaluated.
    bcrit : Result, dict or None
        :math:`B_{crit}(L)`: a ``kaplan_bcrit`` posterior (its draws paired at random with
        the ``kaplan_ns`` draws), fixed ``{"B_star", "alpha_B"}``, or ``None`` for the
        published :math:`B_* = 2.1\\cdot10^8`, :math:`\\alpha_B = 0.21`.
    quantiles : sequence of float
    seed : int
        Seed of the pairing of draws.

    Returns
    -------
    DataFrame
        ``flops_min``, ``n_params``, ``mean`` and the quantile columns of the loss.
    """
    grid, draws = loss_at_fixed_compute_draws(result, n_params, flops_min, bcrit=bcrit, seed=seed)
    return _summarise(grid, draws, quantiles)
