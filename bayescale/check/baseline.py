"""The classical point-fit baseline: least squares (or Huber) of a law in log space.

It evaluates the same law function as the Bayesian fits (:meth:`bayescale.laws.Law.log_mean`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bayescale.data import FitData
from bayescale.laws import Law, get_law
from bayescale.model import Posterior
from bayescale.precision import float64

__all__ = ["least_squares_fit"]


@float64
def least_squares_fit(
    law: str | Path | Law,
    data: FitData,
    *,
    loss: str = "linear",
    f_scale: float = 1e-3,
    num_starts: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """Point fit of a law's parameters in log space (the classical baseline).

    Minimises :math:`\\sum_i \\rho(\\log y_i - \\log f(x_i; \\theta))` with
    :func:`scipy.optimize.least_squares` over the unconstrained parameters (log of the
    positive ones), from ``num_starts`` prior draws; the best optimum is returned.
    ``loss="linear"`` is ordinary least squares; ``loss="huber"`` with ``f_scale=1e-3`` is
    Hoffmann et al.'s Huber fit (:math:`\\delta = 10^{-3}`).

    Returns
    -------
    dict
        Parameter name -> fitted value (NaN if no start gave a finite optimum).
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import least_squares

    law = get_law(law)
    posterior = Posterior(law, "normal")
    names = law.parameter_names
    k = len(names)
    res_fn, jac_fn = _residual_functions(posterior)
    log_x = {c: np.asarray(v) for c, v in data.log_x.items()}
    log_y = np.asarray(data.log_y)
    starts = np.asarray(posterior.prior_draws(jax.random.key(seed), num_starts))[:, :k]
    best, best_cost = None, np.inf
    for z0 in starts:
        if not np.all(np.isfinite(np.asarray(res_fn(z0, log_x, log_y)))):
            continue
        try:
            out = least_squares(
                lambda z: np.asarray(res_fn(z, log_x, log_y)),
                z0,
                jac=lambda z: np.asarray(jac_fn(z, log_x, log_y)),
                loss=loss,
                f_scale=f_scale,
                method="trf",
            )
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(out.cost) and out.cost < best_cost:
            best, best_cost = out.x, out.cost
    if best is None:
        return {n: math.nan for n in names}
    values = posterior.constrain(jnp.concatenate([jnp.asarray(best), jnp.zeros(posterior.dim - k)]))
    return {n: float(values[n]) for n in names}


_RESIDUALS: dict = {}


def _residual_functions(posterior: Posterior):
    """Jitted log-space residual and its Jacobian in the unconstrained law parameters."""
    import jax
    import jax.numpy as jnp

    key = json.dumps(posterior.law.to_spec(), sort_keys=True, default=str)
    if key not in _RESIDUALS:
        names = posterior.law.parameter_names
        k = len(names)

        def residual(z, log_x, log_y):
            values = posterior.constrain(jnp.concatenate([z, jnp.zeros(posterior.dim - k)]))
            return posterior.law.log_mean({n: values[n] for n in names}, log_x) - log_y

        _RESIDUALS[key] = (jax.jit(residual), jax.jit(jax.jacfwd(residual)))
    return _RESIDUALS[key]
