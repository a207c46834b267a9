"""Rank-normalised split r̂ and bulk/tail ESS of many fits at once, in ``jax.numpy``.

The one implementation of these statistics in bayescale: traced inside the compiled
per-chunk reduction of a batch (:mod:`bayescale.infer.reduce`, on the device that sampled)
and called on host arrays by :func:`bayescale.convergence.convergence_numbers`.  The
algorithms are arviz-stats' ``arviz_stats.base.diagnostics`` (Vehtari et al. 2021,
"Rank-normalization, folding, and localization: an improved R-hat") written for arrays of
shape ``(chain, draw, *batch)``; ``tests/test_diagnostics.py`` checks they equal arviz-stats
series by series to float64 rounding, including the edge cases (constant series, short
chains, strong autocorrelation, ties, NaN).

* split: each chain's first and last ``draw // 2`` draws become two chains;
* rank normalisation: :math:`z = \\Phi^{-1}\\bigl((r - 3/8)/(S + 1/4)\\bigr)`, :math:`r` the
  average rank among all :math:`S` draws (Blom 1958);
* :math:`\\hat R = \\max(\\hat R(z(\\text{split})), \\hat R(z(|\\text{split} -
  \\text{median}|)))` with :math:`\\hat R = \\sqrt{(B/W + n - 1)/n}`;
* ESS :math:`= S/\\hat\\tau`, :math:`\\hat\\tau = -1 + 2\\sum_t \\hat\\rho_t` truncated by
  Geyer's initial positive sequence and made monotone; bulk ESS of the rank-normalised
  split chains, tail ESS the smaller ESS of the indicators :math:`x \\le q_{p}` and
  :math:`x \\le q_{1-p}` (:math:`p` = 0.11 by ArviZ's default).

The code is written once against a small array backend: given NumPy arrays it runs on
NumPy/SciPy in float64 (no compilation: the host path of a result's diagnostics), given JAX
arrays or tracers on ``jax.numpy`` in their dtype (traced into the device reduction).  A
series is constant when its range is below the dtype's resolution (``1e-15`` in float64, as
arviz-stats; ``1e-6`` in float32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.special
import scipy.stats
from jax.scipy.special import ndtri as jax_ndtri

__all__ = ["ess_bulk", "ess_tail", "quantile", "rhat", "tail_prob"]


def tail_prob() -> float:
    """ArviZ's ``rcParams["stats.ci_prob"]`` (0.89 unless changed): the tail ESS quantiles."""
    from arviz_base import rcParams

    return float(rcParams["stats.ci_prob"])


class _NumPy:
    """The host backend: NumPy and SciPy, float64."""

    xp = np
    ndtri = staticmethod(scipy.special.ndtri)
    rfft = staticmethod(scipy.fft.rfft)
    irfft = staticmethod(scipy.fft.irfft)

    @staticmethod
    def ranks(series):  # (batch, size) -> average ranks along the rows
        return scipy.stats.rankdata(np.ascontiguousarray(series), method="average", axis=1)

    @staticmethod
    def set_first(a, value):
        a = a.copy()
        a[0] = value
        return a

    @staticmethod
    def cummin(a):
        return np.minimum.accumulate(a, axis=0)

    @staticmethod
    def take0(a, index):  # a[index[...], ...] along axis 0
        return np.take_along_axis(a, index[None], axis=0)[0]


class _Jax:
    """The traced backend: ``jax.numpy``, in the input's dtype."""

    xp = jnp
    ndtri = staticmethod(jax_ndtri)
    rfft = staticmethod(jnp.fft.rfft)
    irfft = staticmethod(jnp.fft.irfft)

    @staticmethod
    def ranks(series):
        def one(s):
            ordered = jnp.sort(s)
            left = jnp.searchsorted(ordered, s, side="left")
            right = jnp.searchsorted(ordered, s, side="right")
            return (left + right + 1) / 2.0

        return jax.vmap(one)(series).astype(series.dtype)

    @staticmethod
    def set_first(a, value):
        return a.at[0].set(value)

    @staticmethod
    def cummin(a):
        return jax.lax.cummin(a, axis=0)

    @staticmethod
    def take0(a, index):
        return jnp.take_along_axis(a, index[None], axis=0)[0]


def _quiet(fn):
    """``fn`` with NumPy's divide/invalid warnings off: constant and short series give 0/0,
    which the statistics turn into the values arviz-stats reports."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(invalid="ignore", divide="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _backend(x):
    """``(backend, x)``: JAX arrays and tracers stay JAX; anything else is float64 NumPy."""
    if isinstance(x, jax.Array | jax.core.Tracer):
        return _Jax, (x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float))
    return _NumPy, np.asarray(x, dtype=np.float64)


def quantile(x, p: float, axis=0):
    """NumPy's default (``"linear"``) quantile ``p`` of ``x`` along ``axis``, rounded as
    NumPy rounds it (its virtual index and its two-sided interpolation), so that an
    indicator :math:`x \\le q_p` agrees with NumPy's draw for draw.  NumPy or JAX arrays."""
    b, x = _backend(x)
    xp = b.xp
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    rest = [a for a in range(x.ndim) if a not in axes]
    flat = xp.transpose(x, (*axes, *rest)).reshape(-1, *[x.shape[a] for a in rest])
    ordered = xp.sort(flat, axis=0)
    n = flat.shape[0]
    virtual = n * p + (1 + p * (1 - 1 - 1)) - 1  # NumPy's _compute_virtual_index, alpha=beta=1
    below = min(max(int(np.floor(virtual)), 0), n - 1)
    above = min(below + 1, n - 1)
    t = virtual - np.floor(virtual) if 0 <= virtual < n - 1 else 0.0
    lo, hi = ordered[below], ordered[above]
    diff = hi - lo
    return lo + diff * t if t < 0.5 else hi - diff * (1 - t)


def _split(b, x):
    half = x.shape[1] // 2
    return b.xp.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(b, x):
    """Rank-normalise over chains and draws jointly, per batch element (average ranks)."""
    size = x.shape[0] * x.shape[1]
    rank = b.ranks(x.reshape(size, -1).T)  # (batch, size)
    return b.ndtri((rank.T - 0.375) / (size + 0.25)).reshape(x.shape)


def _rhat(b, x):
    xp, n = b.xp, x.shape[1]
    x = x - x[:1, :1]  # a constant series: exact zeros, so 0/0 = NaN as in arviz-stats
    between = n * xp.var(x.mean(axis=1), axis=0, ddof=1)
    within = xp.var(x, axis=1, ddof=1).mean(axis=0)
    return xp.sqrt((between / within + n - 1) / n)


def _ess(b, x):
    """ESS of ``(chain, draw, *batch)`` series, arviz-stats' ``_ess`` elementwise."""
    xp = b.xp
    chains, n = x.shape[:2]
    total = chains * n
    centred = x - x.mean(axis=1, keepdims=True)
    m = scipy.fft.next_fast_len(2 * n)
    f = b.rfft(centred, n=m, axis=1)
    acov = b.irfft(f * xp.conjugate(f), n=m, axis=1)[:, :n].astype(x.dtype) / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + xp.var(x.mean(axis=1), axis=0, ddof=1)
    rho = b.set_first(1.0 - (mean_var - acov.mean(axis=0)) / var_plus, 1.0)  # (n, *batch)
    # Geyer's initial positive sequence over the pairs P_k = rho_2k + rho_2k+1: the loop
    # of arviz-stats computes pair k (k >= 1) while 2k - 1 < n - 3 and every earlier pair
    # sum is > 0; k_last is the last pair it computes (0: none)
    num_pairs = n // 2
    pairs = rho[0 : 2 * num_pairs : 2] + rho[1 : 2 * num_pairs : 2]  # (num_pairs, *batch)
    limit = max(0, (n - 3) // 2)  # the last k with 2k - 1 < n - 3
    k = xp.arange(num_pairs).reshape(-1, *([1] * (x.ndim - 2)))
    nonpositive = (pairs <= 0) & (k <= limit)
    first = xp.where(nonpositive.any(axis=0), nonpositive.argmax(axis=0), num_pairs)
    k_last = xp.where(first == 0, 0, xp.minimum(first, limit))
    even_last, pair_last = b.take0(rho, 2 * k_last), b.take0(pairs, k_last)
    last = xp.where((k_last > 0) & ((pair_last >= 0) | (even_last > 0)), even_last, 0.0)
    last = xp.where(k_last == 0, 1.0, last)
    # Geyer's initial monotone sequence: pairs before k_last capped by the previous sum
    capped = b.cummin(xp.where(k < k_last, pairs, xp.inf))
    tau = -1.0 + 2.0 * xp.where(k < k_last, capped, 0.0).sum(axis=0) + last
    tau = xp.maximum(tau, 1.0 / np.log10(total))
    ess = total / tau
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < xp.finfo(x.dtype).resolution
    ess = xp.where(constant, float(total), ess)
    used = xp.where(k <= k_last, pairs, 0.0)
    return xp.where(xp.isnan(used).any(axis=0) & ~constant, xp.nan, ess)


def _valid(b, x, min_chains: int):
    ok = ~b.xp.isnan(x).any(axis=(0, 1))
    return ok & (x.shape[0] >= min_chains) & (x.shape[1] >= 4)


@_quiet
def rhat(x):
    """Rank-normalised split :math:`\\hat R` of ``x`` ``(chain, draw, *batch)`` -> ``batch``.

    NaN where a series holds NaN, or with fewer than 2 chains or 4 draws (as arviz-stats).
    """
    b, x = _backend(x)
    xp = b.xp
    ok = _valid(b, x, 2)
    split = _split(b, xp.where(ok, x, 0.0))
    bulk = _rhat(b, _z_scale(b, split))
    folded = xp.abs(split - xp.median(split, axis=(0, 1)))
    tail = _rhat(b, _z_scale(b, folded))
    return xp.where(ok, xp.maximum(bulk, tail), xp.nan)


@_quiet
def ess_bulk(x):
    """Bulk ESS (rank-normalised split chains) of ``x`` ``(chain, draw, *batch)``."""
    b, x = _backend(x)
    ok = _valid(b, x, 1)
    return b.xp.where(ok, _ess(b, _z_scale(b, _split(b, b.xp.where(ok, x, 0.0)))), b.xp.nan)


@_quiet
def ess_tail(x, prob: float | None = None):
    """Tail ESS: the smaller ESS of the indicators :math:`x \\le q_{p}`, :math:`x \\le q_{1-p}`.

    ``prob`` defaults, as in arviz-stats, to ArviZ's ``rcParams["stats.ci_prob"]``
    (:func:`tail_prob`).
    """
    prob = tail_prob() if prob is None else float(prob)
    b, x = _backend(x)
    xp = b.xp
    ok = _valid(b, x, 1)
    safe = xp.where(ok, x, 0.0)
    out = []
    for p in sorted((prob, 1 - prob)):
        q = quantile(safe, p, axis=(0, 1))
        out.append(_ess(b, _split(b, (safe <= q).astype(x.dtype))))
    return xp.where(ok, xp.minimum(*out), xp.nan)
