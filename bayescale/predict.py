"""The prediction engine of a result: the law and new runs at new covariates, the prior and
observation-noise draws of its DataTree, and how far a point lies beyond the fitted range.

All numpy (no compilation) except :func:`pointwise`, one jitted program per posterior.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.data import FitData, nonnegative_number
from bayescale.infer.cache import compiled
from bayescale.model import (
    Posterior,
    delta_conditional,
    observation_noise,
    posterior_key,
    scales,
)

__all__ = [
    "band_quantile",
    "conditional_delta",
    "extrapolation_distance",
    "held_out_log_density",
    "leave_one_out_log_density",
    "log_prediction_draws",
    "log_predictions",
    "noise_draws",
    "point_sigma_values",
    "pointwise",
    "prediction_table",
    "prior_draws",
    "quantile_column",
    "quantile_list",
    "signed_decades",
]


def quantile_column(q: float) -> str:
    """Column name of quantile ``q``: 0.05 -> ``q5``, 0.025 -> ``q2.5``."""
    return f"q{100 * q:g}"


def quantile_list(quantiles) -> list[float]:
    """``quantiles`` as a list of floats, each in (0, 1).

    Raises
    ------
    TypeError
        Not a one-dimensional sequence or array: a scalar or a string (``quantiles=0.5``:
        write ``[0.5]``).
    ValueError
        A value that is not a number in (0, 1), naming it.
    """
    try:
        ndim = np.ndim(quantiles)
    except ValueError:  # ragged nesting
        ndim = None
    if isinstance(quantiles, str) or ndim != 1:
        raise TypeError(
            f"quantiles must be a sequence of numbers in (0, 1), e.g. [0.5]; got {quantiles!r}"
        )
    try:
        qs = [float(q) for q in quantiles]
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be numbers in (0, 1), got {list(quantiles)}") from None
    if not qs or not all(0 < q < 1 for q in qs):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
    return qs


def pointwise(posterior: Posterior):
    """Jitted pointwise log-likelihood and posterior-predictive draws (one per posterior)."""

    def build():
        @jax.jit
        def fn(values, log_x, log_y, mask=None):
            v = {k: x[..., None] for k, x in values.items()}
            ll = posterior.pointwise_log_likelihood(v, log_x, log_y, mask)
            return ll, posterior.log_mean(v, log_x)

        return fn

    return compiled(("pointwise", *posterior_key(posterior)), build)


def point_sigma_values(
    posterior: Posterior, values: dict, log_x: dict, shape, reference_log_x=None, mask=None
) -> dict:
    """``values`` with ``sigma`` replaced by the noise scale at each point (``shape``) when
    the noise model is ``"loglinear"`` (:meth:`Posterior.point_sigma`, covariates
    standardised by the fitted points ``reference_log_x``); ``values`` unchanged otherwise."""
    if not posterior.noise_slopes:
        return values
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    sigma = posterior.point_sigma(v, log_x, reference_log_x, mask)
    return {**values, "sigma": np.broadcast_to(np.asarray(sigma), shape)}


def noise_draws(rng: np.random.Generator, likelihood: str, values: dict, shape) -> np.ndarray:
    """Observation noise on the log scale for draws ``values`` (``(..., )`` -> ``shape``)."""
    return observation_noise(rng, likelihood, values, shape)


def prior_draws(posterior: Posterior, num: int, seed: int | Sequence[int]) -> dict[str, np.ndarray]:
    """Exact prior draws with numpy (no compilation), ``{name: (num,)}``."""
    return posterior.prior_sample(num, seed)


def log_predictions(
    posterior: Posterior,
    values: dict,
    log_x: dict,
    kind: str,
    rng,
    fitted_log_x: dict,
    mask=None,
    law_error: float = 0.0,
    fitted_log_y=None,
) -> np.ndarray:
    """Draws of the log response at ``log_x``: the law (``kind="mean"``) or a new run.

    ``values`` are parameter draws of shape ``(...)`` (a point axis is appended) and ``log_x``
    broadcasts against ``(..., points)``; ``fitted_log_x`` (and its ``mask``) are the fitted
    points, against which a ``"loglinear"`` noise model standardises its covariates.  A new
    run's draws get the opt-in law error :math:`\\tau\\,d(x)\\,z` (``law_error`` = :math:`\\tau`;
    :func:`extrapolation_distance`), drawn after the noise so that :math:`\\tau = 0` leaves
    the draws as they were.  Under a discrepancy (:mod:`bayescale.model.discrepancy`) a new
    run's draws also get :math:`\\delta(x)` drawn, per parameter draw, from its conditional
    given the fitted residuals ``fitted_log_y`` :math:`- \\log f` (required then; each point's
    marginal, independently across points); the law (``kind="mean"``) has no :math:`\\delta`.
    """
    if kind not in ("observation", "mean"):
        raise ValueError(f"kind must be 'observation' or 'mean', got {kind!r}")
    law_error = nonnegative_number(law_error, "law_error")
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    log_x = {k: jnp.asarray(x) for k, x in log_x.items()}
    log_mu = np.asarray(posterior.log_mean(v, log_x))
    if kind == "mean":
        return log_mu
    fitted = {c: jnp.asarray(fitted_log_x[c]) for c in log_x}
    noisy = point_sigma_values(posterior, values, log_x, log_mu.shape, fitted, mask)
    log_y = log_mu + noise_draws(rng, posterior.likelihood, noisy, log_mu.shape)
    if posterior.discrepancy:
        log_y = log_y + conditional_delta(
            posterior, values, fitted, fitted_log_y, mask, log_x, rng, log_mu.shape
        )
    if law_error > 0:
        distance = extrapolation_distance(log_x, fitted_log_x, mask)
        log_y = log_y + law_error * distance * rng.standard_normal(log_mu.shape)
    return log_y


def conditional_delta(posterior, values, fitted_log_x, fitted_log_y, mask, log_x, rng, shape):
    """Draws of :math:`\\delta` at ``log_x`` (``shape``) given the fitted residuals, one per
    parameter draw (:func:`~bayescale.model.discrepancy.delta_conditional`); arguments as in
    :func:`log_predictions`."""
    if fitted_log_y is None:
        raise ValueError("predictions under a discrepancy need the fitted responses")
    (c,) = log_x
    lx_fit = np.asarray(fitted_log_x[c], dtype=float)
    on = np.ones(lx_fit.shape, bool) if mask is None else np.asarray(mask, bool)
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    fitted = {c: jnp.asarray(lx_fit)}
    r = np.asarray(jnp.asarray(fitted_log_y) - posterior.log_mean(v, fitted))
    sigma = np.asarray(posterior.point_sigma(v, fitted, fitted, jnp.asarray(on)))
    first = np.min(np.where(on, lx_fit, np.inf), axis=-1, keepdims=True)
    u_fit = np.where(on, (lx_fit - first) / np.log(10), 0.0)
    u_new = (np.asarray(log_x[c], dtype=float) - first) / np.log(10)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, var = delta_conditional(
            np.where(on, r, 0.0), u_fit, np.square(sigma), on, u_new,
            *scales(np.asarray(values["delta_r"]), np.asarray(values["delta_w"])),
        )  # fmt: skip
    return mean + np.sqrt(var) * rng.standard_normal(np.broadcast_shapes(mean.shape, shape))


def _fitted_residuals(posterior, v, lx_fit, fitted_log_y):
    """Residuals :math:`\\log y - \\log f`, noise variances and decades of the fitted
    points (one covariate, no padding) per draw."""
    (c,) = posterior.law.covariates
    fitted = {c: jnp.asarray(lx_fit)}
    r = np.asarray(jnp.asarray(fitted_log_y) - posterior.log_mean(v, fitted))
    sigma = np.asarray(posterior.point_sigma(v, fitted, fitted, None))
    u = (lx_fit - np.min(lx_fit)) / np.log(10)
    return r, np.broadcast_to(np.square(sigma), r.shape), u


def held_out_log_density(posterior, values, fitted_log_x, fitted_log_y, log_x, log_y):
    """:math:`\\log p(y_j \\mid y_{\\rm fit}, \\theta)` of new observations, per draw and
    point, shape ``(..., points)`` for draws ``values`` ``(...)``.

    Without a discrepancy the points are independent given :math:`\\theta`, so this is the
    family's density of each residual.  Under a discrepancy it is the family's density of the
    residual less :math:`E[\\delta(x_j) \\mid y_{\\rm fit}, \\theta]` at scale
    :math:`\\sqrt{\\sigma^2 + \\operatorname{Var}[\\delta(x_j) \\mid y_{\\rm fit}, \\theta]}`
    (:func:`~bayescale.model.discrepancy.delta_conditional`): each point's predictive given
    the fitted ones, exact for normal noise.  ``fitted_log_x``, ``log_x``: ``{covariate:
    (points,)}`` (the fitted points without padding); the constant noise model.
    """
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    log_mu = np.asarray(posterior.log_mean(v, {c: jnp.asarray(x) for c, x in log_x.items()}))
    r_new = np.asarray(log_y) - log_mu
    scale2 = np.square(np.broadcast_to(np.asarray(values["sigma"])[..., None], r_new.shape))
    if posterior.discrepancy:
        (c,) = log_x
        lx_fit = np.asarray(fitted_log_x[c], dtype=float)
        r, var, u = _fitted_residuals(posterior, v, lx_fit, fitted_log_y)
        u_new = (np.asarray(log_x[c], dtype=float) - np.min(lx_fit)) / np.log(10)
        mean, dvar = delta_conditional(
            r, u, var, np.ones(u.shape, bool), u_new,
            *scales(np.asarray(values["delta_r"]), np.asarray(values["delta_w"])),
        )  # fmt: skip
        r_new, scale2 = r_new - mean, scale2 + dvar
    return np.asarray(posterior.family.logpdf(jnp.asarray(r_new), jnp.sqrt(scale2), v))


def leave_one_out_log_density(posterior, values, log_x, log_y):
    """:math:`\\log p(y_i \\mid y_{-i}, \\theta)` of each fitted point, per draw, shape
    ``(..., points)``: the terms PSIS-LOO weights by (Bürkner, Gabry & Vehtari 2021, for
    models whose points are not independent given :math:`\\theta`).

    Under a discrepancy the smoother's :math:`\\delta(x_i) \\mid y` (mean :math:`m`,
    variance :math:`V`) holds point :math:`i` once; removing it,
    :math:`V_{-i}^{-1} = V^{-1} - \\sigma_i^{-2}` and :math:`m_{-i} = V_{-i}(m/V - r_i /
    \\sigma_i^2)`, and the term is the family's density of :math:`r_i - m_{-i}` at scale
    :math:`\\sqrt{\\sigma_i^2 + V_{-i}}` (exact for normal noise).  Without one it is the
    pointwise log-likelihood.  ``log_x``, ``log_y``: the fitted points, no padding.
    """
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    log_x = {c: jnp.asarray(x) for c, x in log_x.items()}
    if not posterior.discrepancy:
        return np.asarray(posterior.pointwise_log_likelihood(v, log_x, jnp.asarray(log_y)))
    (c,) = log_x
    r, var, u = _fitted_residuals(posterior, v, np.asarray(log_x[c], dtype=float), log_y)
    mean, dvar = delta_conditional(
        r, u, var, np.ones(u.shape, bool), u,
        *scales(np.asarray(values["delta_r"]), np.asarray(values["delta_w"])),
    )  # fmt: skip
    with np.errstate(divide="ignore"):
        dvar = np.maximum(dvar, np.finfo(float).tiny)
        v_loo = 1.0 / np.maximum(1.0 / dvar - 1.0 / var, np.finfo(float).tiny)
    m_loo = v_loo * (mean / dvar - r / var)
    scale = jnp.sqrt(jnp.asarray(var + v_loo))
    return np.asarray(posterior.family.logpdf(jnp.asarray(r - m_loo), scale, v))


def signed_decades(log_x: dict, fitted_log_x: dict, mask=None) -> dict:
    """Per covariate, the signed decades by which ``log_x`` lies outside the fitted range
    (0 inside).  ``fitted_log_x[c]`` has the fitted points on its last axis (one row for all
    prediction points, or one row per row of ``log_x``); NaN or ``mask`` false: padding."""
    out = {}
    for c, x in log_x.items():
        fitted = np.asarray(fitted_log_x[c], dtype=float) / np.log(10)
        if mask is not None:
            fitted = np.where(mask, fitted, np.nan)
        lo, hi = np.nanmin(fitted, axis=-1), np.nanmax(fitted, axis=-1)
        x = np.asarray(x) / np.log(10)
        extra = (1,) * (x.ndim - np.ndim(lo))  # one fitted range per leading index of x
        lo, hi = np.reshape(lo, np.shape(lo) + extra), np.reshape(hi, np.shape(hi) + extra)
        out[c] = np.where(x > hi, x - hi, np.where(x < lo, x - lo, 0.0))
    return out


def extrapolation_distance(log_x: dict, fitted_log_x: dict, mask=None) -> np.ndarray:
    """:math:`d(x) = \\sqrt{\\sum_c d_c(x)^2}`, the Euclidean norm of
    :func:`_signed_decades` over covariates."""
    return np.sqrt(sum(d**2 for d in signed_decades(log_x, fitted_log_x, mask).values()))


def band_quantile(flat: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of draws ``flat`` ``(draws, points)`` per point, NumPy's linear rule.

    Where both order statistics around ``q`` overflowed to infinity (a heavy-tailed
    predictive, e.g. Student-t with :math:`\\nu < 1`, exponentiated), the linear rule gives
    NaN; there the order statistic itself (``inf``: the band reaches beyond float range) is
    returned instead, so the band stays usable and honest.
    """
    with np.errstate(invalid="ignore"):
        out = np.quantile(flat, q, axis=0)
    bad = np.isnan(out) & ~np.isnan(flat).any(axis=0)
    if bad.any():
        out[bad] = np.quantile(flat[:, bad], q, axis=0, method="inverted_cdf")
    return out


def prediction_table(new: FitData, draws: np.ndarray, quantiles, fitted_log_x: dict):
    """Covariates, ``mean``, quantile columns and the extrapolation columns of ``predict``.

    ``draws`` has shape ``(..., points)``; ``fitted_log_x[c]`` holds the fitted points'
    log covariate, one row per prediction point or one row for all (NaN: padding).
    """
    flat = draws.reshape(-1, draws.shape[-1])
    out = new.frame.rename(columns=new.columns).reset_index(drop=True)
    out["mean"] = flat.mean(axis=0)
    for q, col in zip(quantiles, map(quantile_column, quantiles), strict=True):
        out[col] = band_quantile(flat, q)
    decades = signed_decades(new.log_x, fitted_log_x)
    signed = pd.DataFrame({new.columns[c]: v for c, v in decades.items()})
    out["decades_beyond"] = signed.abs().max(axis=1).to_numpy() if len(signed.columns) else 0.0
    out["extrapolation"] = [
        ", ".join(f"{c} {v:+.2g} dec" for c, v in row.items() if v != 0) or "interpolation"
        for _, row in signed.iterrows()
    ]
    return out


def log_prediction_draws(
    posterior: Posterior,
    values: dict,
    fitted_log_x: dict,
    new_log_x: dict,
    fit_index: np.ndarray,
    kind: str,
    seed,
    law_error: float = 0.0,
    max_numbers: float = 2e7,
    fitted_log_y: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of the log response, ``(chain, draw, row)``, each row under its own fit.

    ``values[name]`` has shape ``(fit, chain, draw)``, ``fitted_log_x[c]`` and
    ``fitted_log_y`` ``(fit, point)`` (NaN: padding; the responses are needed under a
    discrepancy), ``new_log_x[c]`` ``(row,)`` and ``fit_index`` the fit of each row.  All
    rows of a set of fits are evaluated at once: the fits' rows padded to a ``(fits, rows)``
    grid against draws ``(chain, draw, fits)``, in chunks of fits of at most
    ``max_numbers`` numbers.
    """
    fits, inverse = np.unique(fit_index, return_inverse=True)
    rank = pd.Series(inverse).groupby(inverse).cumcount().to_numpy()
    width = int(rank.max()) + 1
    _, c, d = next(iter(values.values())).shape
    if posterior.discrepancy and kind == "observation":  # the smoother's 13 numbers a step
        width = 13 * (width + next(iter(fitted_log_x.values())).shape[-1])
    per_chunk = max(1, int(max_numbers // (c * d * width)))
    rng = np.random.default_rng(seed)
    out = np.empty((c, d, len(fit_index)))
    for start in range(0, len(fits), per_chunk):
        chunk = fits[start : start + per_chunk]
        rows = np.flatnonzero((inverse >= start) & (inverse < start + len(chunk)))
        f, r = inverse[rows] - start, rank[rows]
        v = {k: np.moveaxis(x[chunk], 0, -1) for k, x in values.items()}
        log_x = {}
        for cv, x in new_log_x.items():
            grid = np.full((len(chunk), width), x[rows[0]])
            grid[f, r] = x[rows]
            log_x[cv] = grid
        fitted = {cv: x[chunk] for cv, x in fitted_log_x.items()}
        mask = np.isfinite(next(iter(fitted.values())))
        fitted = {cv: np.where(mask, x, 0.0) for cv, x in fitted.items()}
        fy = None if fitted_log_y is None else np.where(mask, fitted_log_y[chunk], 0.0)
        with np.errstate(over="ignore", invalid="ignore"):  # padded cells: dropped below
            log_draws = log_predictions(posterior, v, log_x, kind, rng, fitted, mask, law_error, fy)
        out[:, :, rows] = log_draws[:, :, f, r]
    return out
