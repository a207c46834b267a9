"""Rank-normalised split r̂ and bulk/tail ESS of many fits at once.

arviz-stats (the library every single fit's diagnostics come from) evaluates these
statistics one series at a time in a Python loop, about 3 ms per series and statistic: the
diagnostics of a batch of 10,000 fits of 7 parameters took longer than the fits.  The
functions here apply the same algorithms, written out from arviz-stats'
``arviz_stats.base.diagnostics`` (Vehtari et al. 2021, "Rank-normalization, folding, and
localization: an improved R-hat"), to arrays of shape ``(chain, draw, *batch)`` in a few
vectorised numpy operations.  ``tests/test_diagnostics.py`` checks they equal arviz-stats
to float rounding, series by series, including the edge cases (constant series, short
chains, strong autocorrelation, NaN).

* split: each chain's first and last ``draw // 2`` draws become two chains;
* rank normalisation: :math:`z = \\Phi^{-1}\\bigl((r - 3/8)/(S + 1/4)\\bigr)`, :math:`r` the
  average rank among all :math:`S` draws (Blom 1958);
* :math:`\\hat R = \\max(\\hat R(z(\\text{split})), \\hat R(z(|\\text{split} -
  \\text{median}|)))` with :math:`\\hat R = \\sqrt{(B/W + n - 1)/n}`;
* ESS :math:`= S/\\hat\\tau`, :math:`\\hat\\tau = -1 + 2\\sum_t \\hat\\rho_t` truncated by
  Geyer's initial positive sequence and made monotone; bulk ESS of the rank-normalised
  split chains, tail ESS the smaller ESS of the indicators :math:`x \\le q_{p}` and
  :math:`x \\le q_{1-p}` (:math:`p` = 0.11 by ArviZ's default).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["ess_bulk", "ess_tail", "rhat"]


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalise over chains and draws jointly, per batch element."""
    size = x.shape[0] * x.shape[1]
    series = np.ascontiguousarray(x.reshape(size, -1).T)  # rank along contiguous rows
    rank = rankdata(series, method="average", axis=1)
    return ndtri((rank.T - 0.375) / (size + 0.25)).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.var(x, axis=1, ddof=1).mean(axis=0)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of ``(chain, draw, *batch)`` series, arviz-stats' ``_ess`` elementwise."""
    x = np.asarray(x, dtype=float)
    chains, n = x.shape[:2]
    total = chains * n
    centred = x - x.mean(axis=1, keepdims=True)
    m = next_fast_len(2 * n)
    f = rfft(centred, n=m, axis=1)
    acov = irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, *batch)
    rho[0] = 1.0
    # Geyer's initial positive sequence over the pairs P_k = rho_2k + rho_2k+1: the loop
    # of arviz-stats computes pair k (k >= 1) while 2k - 1 < n - 3 and every earlier pair
    # sum is > 0; k_last is the last pair it computes (0: none)
    num_pairs = n // 2
    pairs = rho[0 : 2 * num_pairs : 2] + rho[1 : 2 * num_pairs : 2]  # (num_pairs, *batch)
    limit = max(0, (n - 3) // 2)  # the last k with 2k - 1 < n - 3
    k = np.arange(num_pairs).reshape(-1, *([1] * (x.ndim - 2)))
    nonpositive = (pairs <= 0) & (k <= limit)
    first = np.where(nonpositive.any(axis=0), nonpositive.argmax(axis=0), num_pairs)
    k_last = np.where(first == 0, 0, np.minimum(first, limit))
    even_last = np.take_along_axis(rho, (2 * k_last)[None], axis=0)[0]
    pair_last = np.take_along_axis(pairs, k_last[None], axis=0)[0]
    last = np.where((k_last > 0) & ((pair_last >= 0) | (even_last > 0)), even_last, 0.0)
    last = np.where(k_last == 0, 1.0, last)
    # Geyer's initial monotone sequence: pairs before k_last capped by the previous sum
    capped = np.minimum.accumulate(np.where(k < k_last, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(k < k_last, capped, 0.0).sum(axis=0) + last
    tau = np.maximum(tau, 1.0 / np.log10(total))
    ess = total / tau
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    ess = np.where(constant, float(total), ess)
    used = np.where(k <= k_last, pairs, 0.0)
    return np.where(np.isnan(used).any(axis=0) & ~constant, np.nan, ess)


def _valid(x: np.ndarray, min_chains: int) -> np.ndarray:
    ok = ~np.isnan(x).any(axis=(0, 1))
    return ok & (x.shape[0] >= min_chains) & (x.shape[1] >= 4)


def rhat(x) -> np.ndarray:
    """Rank-normalised split :math:`\\hat R` of ``x`` ``(chain, draw, *batch)`` -> ``batch``.

    NaN where a series holds NaN, or with fewer than 2 chains or 4 draws (as arviz-stats).
    """
    x = np.asarray(x, dtype=float)
    ok = _valid(x, 2)
    safe = np.where(ok, x, 0.0)
    split = _split(safe)
    with np.errstate(invalid="ignore", divide="ignore"):
        bulk = _rhat(_z_scale(split))
        folded = np.abs(split - np.median(split, axis=(0, 1)))
        tail = _rhat(_z_scale(folded))
    return np.where(ok, np.maximum(bulk, tail), np.nan)


def ess_bulk(x) -> np.ndarray:
    """Bulk ESS (rank-normalised split chains) of ``x`` ``(chain, draw, *batch)``."""
    x = np.asarray(x, dtype=float)
    ok = _valid(x, 1)
    return np.where(ok, _ess(_z_scale(_split(np.where(ok, x, 0.0)))), np.nan)


def ess_tail(x, prob: float | None = None) -> np.ndarray:
    """Tail ESS: the smaller ESS of the indicators :math:`x \\le q_{p}`, :math:`x \\le q_{1-p}`.

    ``prob`` defaults, as in arviz-stats, to ArviZ's ``rcParams["stats.ci_prob"]`` (0.89
    unless the user changed it: the quantiles 0.11 and 0.89).
    """
    if prob is None:
        from arviz_base import rcParams

        prob = rcParams["stats.ci_prob"]
    x = np.asarray(x, dtype=float)
    ok = _valid(x, 1)
    safe = np.where(ok, x, 0.0)
    out = []
    for p in sorted((prob, 1 - prob)):
        q = np.quantile(safe, p, axis=(0, 1))
        out.append(_ess(_split((safe <= q).astype(float))))
    return np.where(ok, np.minimum(*out), np.nan)
