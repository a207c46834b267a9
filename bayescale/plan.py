"""Planning from a fitted posterior: compute-optimal allocation with uncertainty.

For a law of model size :math:`N` and tokens :math:`D` under the budget :math:`C = 6ND`,
:func:`allocate` returns the posterior of the loss-minimising :math:`N_{opt}(C)`,
:math:`D_{opt}(C) = C / (6 N_{opt})`, tokens per parameter and the loss there.

For the Chinchilla form :math:`L = E + A N^{-\\alpha} + B D^{-\\beta}` the optimum is closed
form (Hoffmann et al. 2022, eq. 4):

.. math::

    N_{opt} = G (C/6)^{\\beta/(\\alpha+\\beta)}, \\quad
    D_{opt} = G^{-1} (C/6)^{\\alpha/(\\alpha+\\beta)}, \\quad
    G = \\left(\\frac{\\alpha A}{\\beta B}\\right)^{1/(\\alpha+\\beta)}.

Any other law with ``n_params`` and ``n_tokens`` covariates is minimised numerically per
posterior draw (a log-spaced grid over :math:`N` refined by a parabola through the best
three points), vmapped over draws and budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.result import FitResult, quantile_column

__all__ = ["allocate", "allocation_draws"]


def _closed_form_chinchilla(v, log_c6):
    a, b = v["alpha"], v["beta"]
    log_g = (jnp.log(a) + jnp.log(v["A"]) - jnp.log(b) - jnp.log(v["B"])) / (a + b)
    log_n = log_g + log_c6 * b / (a + b)
    return log_n, log_c6 - log_n


def _numeric(result: FitResult, v, log_c6, num_grid: int = 512):
    law = result.law
    # N from 1e-6 * sqrt(C/6) .. 1e6 * sqrt(C/6): five decades on either side of N = D
    offsets = jnp.linspace(-6.0, 6.0, num_grid) * jnp.log(10.0)

    def loss_at(log_n):
        return law.log_mean(v, {"n_params": log_n, "n_tokens": log_c6 - log_n})

    grid = 0.5 * log_c6 + offsets
    vals = loss_at(grid)
    i = jnp.clip(jnp.argmin(jnp.where(jnp.isfinite(vals), vals, jnp.inf)), 1, num_grid - 2)
    y0, y1, y2 = vals[i - 1], vals[i], vals[i + 1]
    h = offsets[1] - offsets[0]
    denom = y0 - 2 * y1 + y2
    shift = jnp.where(denom > 0, 0.5 * h * (y0 - y2) / denom, 0.0)
    log_n = grid[i] + jnp.clip(shift, -h, h)
    return log_n, log_c6 - log_n


def allocation_draws(result: FitResult, flops) -> dict[str, np.ndarray]:
    """Posterior draws of the allocation at each budget, arrays ``(chain, draw, budget)``."""
    law = result.law
    if not {"n_params", "n_tokens"} <= set(law.covariates) or len(law.covariates) != 2:
        raise ValueError(
            f"allocate needs a law of n_params and n_tokens; law {law.id!r} has covariates "
            f"{list(law.covariates)}"
        )
    flops = np.atleast_1d(np.asarray(flops, dtype=np.float64))
    if flops.ndim != 1 or not np.all(np.isfinite(flops)) or np.any(flops <= 0):
        raise ValueError(f"flops must be positive finite budget(s), got {flops!r}")
    draws = {k: jnp.asarray(x) for k, x in result.draws().items()}
    log_c6 = jnp.log(jnp.asarray(flops) / 6.0)
    closed = law.formula.text.replace(" ", "") == "E+A*n_params**-alpha+B*n_tokens**-beta"
    solve = _closed_form_chinchilla if closed else (lambda v, c: _numeric(result, v, c))

    @jax.jit
    def per_draw(v):
        def per_budget(c):
            log_n, log_d = solve(v, c)
            log_l = law.log_mean(v, {"n_params": log_n, "n_tokens": log_d})
            return log_n, log_d, log_l

        return jax.vmap(per_budget)(log_c6)

    flat = {k: x.reshape(-1) for k, x in draws.items()}
    log_n, log_d, log_l = jax.vmap(per_draw)(flat)
    shape = (*next(iter(draws.values())).shape, flops.size)
    return {
        "n_params": np.exp(np.asarray(log_n)).reshape(shape),
        "n_tokens": np.exp(np.asarray(log_d)).reshape(shape),
        "tokens_per_param": np.exp(np.asarray(log_d - log_n)).reshape(shape),
        law.response: np.exp(np.asarray(log_l)).reshape(shape),
    }


def allocate(
    result: FitResult,
    flops,
    *,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
) -> pd.DataFrame:
    """Compute-optimal allocation at budget(s) ``flops`` (FLOP, :math:`C = 6ND`).

    Returns
    -------
    DataFrame
        One row per budget and quantity (``n_params``, ``n_tokens``, ``tokens_per_param``,
        the response at the optimum) with its posterior ``mean`` and quantile columns
        (``q5``, ``q50``, ``q95`` by default).  :func:`allocation_draws` gives the draws.
    """
    draws = allocation_draws(result, flops)
    flops = np.atleast_1d(np.asarray(flops, dtype=np.float64))
    rows = []
    for j, c in enumerate(flops):
        for name, x in draws.items():
            d = x[..., j].ravel()
            row = {"flops": c, "quantity": name, "mean": d.mean()}
            row.update({quantile_column(q): np.quantile(d, q) for q in quantiles})
            rows.append(row)
    return pd.DataFrame(rows)
