"""The law error beyond the fitted range, learnt from held-out errors out of sample.

Its scale :math:`\\tau` (:func:`law_error_scale`) and its mean, an extrapolation bias
(:func:`law_error_bias`), per decade beyond the fitted range; the checks of
:func:`bayescale.check.backtest`'s law-error options; the band statistics of a backtest's
predictions these estimators use.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "LAW_ERROR_METHODS",
    "MIN_OTHER_CURVES",
    "band_variance",
    "bias_and_se",
    "check_enough_curves",
    "check_law_error_options",
    "finite_bands",
    "law_error_bias",
    "law_error_scale",
    "log_errors",
    "tau_of",
]

LAW_ERROR_METHODS = ("curves", "in_range")
#: Fewest curves whose errors estimate tau for the one left out (``law_error="curves"``).
MIN_OTHER_CURVES = 2
_Z90 = 1.6448536269514722  # standard normal 95% quantile: the 90% band is +-_Z90 sd


def check_law_error_options(method, bias, by, *, names: tuple[str, str, str]) -> None:
    """Eager checks of the law-error options; ``names``: what the caller calls ``method``,
    ``bias``, ``by`` (``backtest``: law_error, law_bias, law_error_by)."""
    if not isinstance(bias, bool | np.bool_):
        raise ValueError(f"{names[1]} must be True or False, got {bias!r}")
    if method is None:
        if bias or by is not None:
            option = f"{names[1]}=True" if bias else f"{names[2]}={by!r}"
            raise ValueError(f"{option} is an option of the law error: give law_error='curves'")
        return
    if method not in LAW_ERROR_METHODS:
        raise ValueError(
            f"{names[0]} must be one of {', '.join(map(repr, LAW_ERROR_METHODS))}, got {method!r}"
        )
    if method != "curves" and (bias or by is not None):
        option = f"{names[1]}=True" if bias else f"{names[2]}={by!r}"
        raise ValueError(
            f"{option} learns from the other curves' held-out errors: it needs "
            f"{names[0]}='curves', got {method!r}"
        )


def check_enough_curves(groups: pd.Series, by, *, argument: str) -> None:
    """``law_error="curves"`` learns a curve's law error from the other curves of its group
    (``groups``: each curve's group label; ``by``: what the caller grouped by, as given in
    ``argument``): every group needs ``MIN_OTHER_CURVES + 1`` curves."""
    sizes = groups.value_counts()
    if (sizes < MIN_OTHER_CURVES + 1).any():
        where = (
            "" if by is None else f" of each group of {argument}={by!r} (group {sizes.idxmin()!r})"
        )
        raise ValueError(
            f"law_error='curves' learns tau from the other curves: needs at least "
            f"{MIN_OTHER_CURVES + 1} curves{where}, this backtest has {sizes.min()}; use "
            "law_error='in_range'" + ("" if by is None else f" or a coarser {argument}=")
        )


def finite_bands(pred: pd.DataFrame) -> pd.DataFrame:
    """The held-out points whose 90% band is finite and positive (a draw beyond the float
    range, possible under wide priors, leaves a band that says nothing about tau)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(pred[["q5", "q50", "q95"]].to_numpy(dtype=float))
    ok = np.isfinite(log_q).all(axis=1)
    return pred[ok]


def tau_of(pred: pd.DataFrame) -> float:
    return law_error_scale(log_errors(pred), band_variance(pred), pred["distance"])


def log_errors(pred: pd.DataFrame) -> np.ndarray:
    """:math:`e = \\log y - \\log \\hat y`, the observed against the predictive median."""
    return np.log(pred["observed"].to_numpy()) - np.log(pred["q50"].to_numpy())


def band_variance(pred: pd.DataFrame) -> np.ndarray:
    """Normal-equivalent variance of each predictive band: ((log q95 - log q5) / 3.29)^2."""
    return (np.log(pred["q95"] / pred["q5"]).to_numpy() / (2 * _Z90)) ** 2


def law_error_bias(errors, distances) -> float:
    """Least-squares estimate of the extrapolation bias :math:`\\mu` per decade.

    Model: a held-out log error :math:`e_i` (observed minus predictive median) at
    :math:`d_i` decades beyond the fitted range has a mean growing with the distance,

    .. math:: e_i = \\mu\\,d_i + \\tau\\,d_i\\,z_i + \\varepsilon_i, \\qquad
        \\mathrm E[z_i] = \\mathrm E[\\varepsilon_i] = 0,

    (the first moment of the law error whose second moment :func:`law_error_scale`
    estimates).  Least squares through the origin:

    .. math:: \\hat\\mu = \\frac{\\sum_i d_i\\,e_i}{\\sum_i d_i^2},

    unbiased for any correlation of the :math:`z_i` (e.g. one :math:`z` per curve), since
    :math:`\\mathrm E[\\hat\\mu] = \\mu \\sum_i d_i^2 / \\sum_i d_i^2`.  Points at
    :math:`d_i = 0` carry no information on :math:`\\mu`.

    Parameters
    ----------
    errors, distances : array-like
        :math:`e_i`, :math:`d_i \\ge 0`.

    Returns
    -------
    float
        :math:`\\hat\\mu` (log response per decade; positive: the observations lie above the
        extrapolation).

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values, negative distances, or no point beyond the
        fitted range.
    """
    e, d = (np.asarray(a, dtype=float).ravel() for a in (errors, distances))
    if len(e) != len(d):
        raise ValueError(
            f"errors, distances must have one value per point; got lengths {len(e)}, {len(d)}"
        )
    if not np.all(np.isfinite(e) & np.isfinite(d)):
        raise ValueError("errors and distances must be finite")
    if np.any(d < 0):
        raise ValueError("distances must be >= 0")
    if not np.any(d > 0):
        raise ValueError("no point lies beyond the fitted range (all distances 0): mu is unknown")
    return float(np.sum(d * e) / np.sum(d**2))


def bias_and_se(errors, distances, curves) -> tuple[float, float]:
    """:func:`law_error_bias` and its cluster-robust standard error over curves.

    With :math:`r_i = e_i - \\hat\\mu d_i`, :math:`m` curves :math:`c` and
    :math:`S = \\sum_i d_i^2`: :math:`\\widehat{\\mathrm{Var}}(\\hat\\mu) =
    \\frac{m}{m-1} \\sum_c \\bigl(\\sum_{i \\in c} d_i r_i\\bigr)^2 / S^2` (errors correlated
    within a curve, independent between curves; the factor m/(m-1) the usual small-sample
    correction).
    """
    e = np.asarray(errors, dtype=float)
    d = np.asarray(distances, dtype=float)
    mu = law_error_bias(e, d)
    score = pd.Series(d * (e - mu * d)).groupby(np.asarray(curves)).sum()
    m = len(score)
    if m < 2:
        raise ValueError(f"the bias's standard error needs >= 2 curves, got {m}")
    var = m / (m - 1) * float(np.sum(score.to_numpy() ** 2)) / float(np.sum(d**2)) ** 2
    return mu, math.sqrt(var)


def law_error_scale(errors, variances, distances, *, bias_curves=None) -> float:
    """Method-of-moments estimate of the law-error scale :math:`\\tau` per decade.

    Model: a held-out log error :math:`e_i` (observed minus predictive median) at
    :math:`d_i` decades beyond the fitted range has

    .. math:: \\mathrm E[e_i^2] = v_i + \\tau^2 d_i^2,

    :math:`v_i` the variance the predictive band already carries (posterior and noise).
    Least squares of :math:`e_i^2 - v_i` on :math:`d_i^2` through the origin:

    .. math:: \\hat\\tau^2 = \\max\\Bigl(0,\\;
        \\frac{\\sum_i d_i^2 (e_i^2 - v_i)}{\\sum_i d_i^4}\\Bigr).

    **After a fitted bias** (``bias_curves``): the errors are residuals
    :math:`r_i = e_i - \\hat\\mu d_i`, :math:`\\hat\\mu` fitted by
    :func:`law_error_bias` to these same points, under its model
    :math:`e_i = \\mu d_i + \\tau d_i z_{c(i)} + \\varepsilon_i` with one
    :math:`z_c \\sim (0, 1)` per curve :math:`c` (the law error shared by a curve's points,
    independent between curves) and independent :math:`\\varepsilon_i \\sim (0, v_i)`.
    The fit of :math:`\\hat\\mu` absorbs part of the variance, so the plain statistic is
    biased low (by about :math:`\\tau^2/m` with :math:`m` alike curves, since the shared
    :math:`z_c` average over curves, not points).  With :math:`r = (I - H)\\,e`,
    :math:`H = d d^\\top / S`, :math:`S = \\sum_i d_i^2`, :math:`S_c = \\sum_{i \\in c} d_i^2`
    and :math:`Q = \\sum_c S_c^2`, the expectation of :math:`\\sum_i d_i^2 r_i^2` is linear in
    :math:`\\tau^2`:

    .. math:: \\mathrm E\\Bigl[\\sum_i d_i^2 r_i^2\\Bigr] = \\tau^2 a + b, \\quad
        a = \\sum_i d_i^4 \\Bigl(1 - \\frac{2 S_{c(i)}}{S} + \\frac{Q}{S^2}\\Bigr), \\quad
        b = \\sum_i d_i^2 v_i - \\frac{2}{S} \\sum_i d_i^4 v_i
            + \\frac{1}{S^2} \\sum_i d_i^4 \\sum_j d_j^2 v_j

    (the diagonal of :math:`(I - H)\\,\\mathrm{Cov}(e)\\,(I - H)`,
    :math:`\\mathrm{Cov}(e)_{ij} = \\tau^2 d_i d_j [c(i) = c(j)] + v_i [i = j]`), and
    :math:`\\hat\\tau^2 = \\max(0, (\\sum_i d_i^2 r_i^2 - b) / a)` is unbiased before the
    clip.  Without the fit (:math:`H = 0`) this is the plain estimate; for :math:`m` curves of
    the same design :math:`a = (1 - 1/m) \\sum_i d_i^4`, the cluster-level
    degrees-of-freedom factor :math:`m / (m - 1)` on the law-error part (the small-sample
    factor of the bias's cluster-robust standard error), here exact for curves of unequal
    lengths and distances too.  The leverage is a curve's, not a point's: with the :math:`z`
    independent per point the fit would absorb only about one point's share, :math:`\\tau^2/n`
    with :math:`n` points.  :math:`a > 0` (as :math:`Q/S^2 \\ge (S_c/S)^2`) needs >= 2
    curves beyond the fitted range.

    Parameters
    ----------
    errors, variances, distances : array-like
        :math:`e_i` (or, with ``bias_curves``, the residuals :math:`r_i`),
        :math:`v_i \\ge 0`, :math:`d_i \\ge 0` (points with :math:`d_i = 0` carry no
        information on :math:`\\tau`).
    bias_curves : array-like, optional
        Each point's curve, given when the errors are residuals after
        :func:`law_error_bias` was fitted to these same points: the estimate then corrects
        for what that fit absorbed (above).  ``None`` (default): no bias was fitted.

    Returns
    -------
    float
        :math:`\\hat\\tau \\ge 0`.

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values, no point beyond the fitted range, or (with
        ``bias_curves``) fewer than 2 curves beyond it.
    """
    e, v, d = (np.asarray(a, dtype=float).ravel() for a in (errors, variances, distances))
    if not (len(e) == len(v) == len(d)):
        raise ValueError(
            f"errors, variances, distances must have one value per point; got lengths "
            f"{len(e)}, {len(v)}, {len(d)}"
        )
    if not np.all(np.isfinite(e) & np.isfinite(v) & np.isfinite(d)):
        raise ValueError("errors, variances and distances must be finite")
    if np.any(v < 0) or np.any(d < 0):
        raise ValueError("variances and distances must be >= 0")
    d2 = d**2
    if not np.any(d2 > 0):
        raise ValueError("no point lies beyond the fitted range (all distances 0): tau is unknown")
    if bias_curves is None:
        tau2 = np.sum(d2 * (e**2 - v)) / np.sum(d2**2)
        return float(math.sqrt(max(tau2, 0.0)))
    curves = np.asarray(bias_curves).ravel()
    if len(curves) != len(e):
        raise ValueError(
            f"bias_curves must have one value per point; got length {len(curves)}, {len(e)} errors"
        )
    per_curve = pd.Series(d2).groupby(curves).sum()
    if (per_curve > 0).sum() < 2:
        raise ValueError(
            "tau after a fitted bias needs >= 2 curves beyond the fitted range, got "
            f"{int((per_curve > 0).sum())}"
        )
    s = float(np.sum(d2))
    share = per_curve.reindex(curves).to_numpy() / s  # S_c(i) / S
    q = float(np.sum((per_curve.to_numpy() / s) ** 2))  # Q / S^2
    a = float(np.sum(d2**2 * (1 - 2 * share + q)))
    b = float(np.sum(d2 * v) - 2 * np.sum(d2**2 * v) / s + np.sum(d2**2) * np.sum(d2 * v) / s**2)
    tau2 = (float(np.sum(d2 * e**2)) - b) / a
    return float(math.sqrt(max(tau2, 0.0)))
