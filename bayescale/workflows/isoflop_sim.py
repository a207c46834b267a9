"""Simulated isoFLOP sweeps, the data :func:`bayescale.workflows.isoflop.fit_isoflop` analyses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.laws import Law, get_law
from bayescale.precision import float64
from bayescale.simulate import noise_sd, parameter_values

__all__ = ["simulate_isoflop"]


@float64
def simulate_isoflop(
    law: str | Path | Law = "chinchilla",
    *,
    flops=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    params: Mapping[str, float] | None = None,
    num_points: int = 9,
    span: float = 1.0,
    center_jitter: float = 0.2,
    center_offset: float | Sequence[float] = 0.0,
    noise: float = 0.01,
    seed: int | None = 0,
) -> pd.DataFrame:
    """IsoFLOP sweeps: at each budget :math:`C`, runs of several sizes with :math:`D = C/(6N)`.

    Each sweep has ``num_points`` sizes log-spaced over ``span`` decades on either side of a
    centre that lies ``center_offset`` decades plus at most ``center_jitter`` decades
    (uniformly drawn) from the law's loss-minimising :math:`N^*(C)` (researchers do not know
    it in advance; an offset makes the sweeps reach further past the optimum on one side, as
    in Kaplan-like sweeps), and

    .. math::

        D_i = \\frac{C}{6 N_i}, \\qquad
        \\log L_i = \\log f(N_i, D_i; \\theta) + \\sigma \\varepsilon_i .

    For the Chinchilla law :math:`N^*(C) = G (C/6)^{\\beta/(\\alpha+\\beta)}` (Hoffmann et al.
    2022, eq. 4), so the sweeps' vertices follow a power law of exponent
    :math:`\\beta/(\\alpha+\\beta)`.

    Parameters
    ----------
    law : str, Path or Law
        A law of ``n_params`` and ``n_tokens``.
    flops : sequence of float
        Budgets :math:`C` in FLOP.
    params : dict, optional
        Parameter values overriding the law's reference values.
    num_points : int
        Runs per budget.
    span : float
        Decades of :math:`N` on either side of the sweep's centre.
    center_jitter : float
        Largest random offset (decades) of the sweep's centre from :math:`N^*(C)`.
    center_offset : float or sequence of float
        Fixed offset (decades, positive: larger models) of the sweeps' centres from
        :math:`N^*(C)`, one for all budgets or one per budget (e.g. falling with the budget,
        as when small-budget sweeps reach far past the optimum); :math:`|` offset
        :math:`|` + ``center_jitter`` must be below ``span`` so that every sweep brackets
        its optimum.
    noise : float
        :math:`\\sigma`, the standard deviation of the log-loss noise.
    seed : int, optional

    Returns
    -------
    DataFrame
        Columns ``flops``, ``n_params``, ``n_tokens``, ``loss``; ``attrs["n_opt"]`` maps each
        budget to the law's :math:`N^*(C)` (minimised on a grid of 1e-4 decades).
    """
    import jax.numpy as jnp

    law = get_law(law)
    if set(law.covariates) != {"n_params", "n_tokens"}:
        raise ValueError(
            f"simulate_isoflop needs a law of n_params and n_tokens; law {law.id!r} has "
            f"covariates {list(law.covariates)}"
        )
    theta = parameter_values(law, params)
    budgets = np.atleast_1d(np.asarray(flops, dtype=float))
    if budgets.ndim != 1 or not np.all(np.isfinite(budgets)) or np.any(budgets <= 0):
        raise ValueError(f"flops must be positive finite budgets, got {flops!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points must be an integer >= 3, got {num_points!r}")
    offsets = np.asarray(center_offset, dtype=float)
    if offsets.ndim > 1 or offsets.size not in (1, budgets.size):
        raise ValueError(
            f"center_offset must be one number or one per budget ({budgets.size}), "
            f"got {center_offset!r}"
        )
    offsets = np.broadcast_to(offsets.reshape(-1), budgets.shape)
    if not (
        span > 0
        and 0 <= center_jitter
        and np.all(np.isfinite(offsets))
        and np.all(np.abs(offsets) + center_jitter < span)
    ):
        raise ValueError(
            f"need span > 0, center_jitter >= 0 and |center_offset| + center_jitter < span, "
            f"got span={span}, center_jitter={center_jitter}, center_offset={center_offset}"
        )
    sigma = noise_sd(law, {}, noise)
    rng = np.random.default_rng(seed)
    ln10 = math.log(10.0)
    params_j = {k: jnp.asarray(v) for k, v in theta.items()}

    def log_f(log_n, log_c6):
        covs = {"n_params": jnp.asarray(log_n), "n_tokens": jnp.asarray(log_c6 - log_n)}
        return np.asarray(law.log_mean(params_j, covs))

    parts, n_opt = [], {}
    for c, offset in zip(budgets, offsets, strict=True):
        log_c6 = math.log(c / 6.0)
        grid = 0.5 * log_c6 + np.arange(-6.0, 6.0, 1e-4) * ln10
        values = log_f(grid, log_c6)
        log_n_opt = float(grid[np.nanargmin(values)])
        n_opt[float(c)] = math.exp(log_n_opt)
        centre = log_n_opt + (offset + rng.uniform(-center_jitter, center_jitter)) * ln10
        log_n = centre + np.linspace(-span, span, num_points) * ln10
        log_loss = log_f(log_n, log_c6) + sigma * rng.standard_normal(num_points)
        n = np.exp(log_n)
        parts.append(
            pd.DataFrame(
                {"flops": c, "n_params": n, "n_tokens": c / (6 * n), "loss": np.exp(log_loss)}
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"n_opt": n_opt}
    return out
