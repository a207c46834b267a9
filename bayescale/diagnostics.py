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

Given NumPy arrays the functions compute in float64 (scoped, :mod:`bayescale.precision`)
and return NumPy arrays; given JAX arrays or tracers they compute in their dtype and return
JAX arrays.  A series is constant when its range is below the dtype's resolution
(``1e-15`` in float64, as arviz-stats; ``1e-6`` in float32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from scipy.fft import next_fast_len

__all__ = ["ess_bulk", "ess_tail", "quantile", "rhat", "tail_prob"]


def tail_prob() -> float:
    """ArviZ's ``rcParams["stats.ci_prob"]`` (0.89 unless changed): the tail ESS quantiles."""
    from arviz_base import rcParams

    return float(rcParams["stats.ci_prob"])


def _host_or_traced(fn):
    """``fn`` jitted; NumPy input is computed in float64 and returned as NumPy."""
    jitted = jax.jit(fn, static_argnums=tuple(range(1, fn.__code__.co_argcount)))

    @functools.wraps(fn)
    def wrapper(x, *args):
        if isinstance(x, jax.Array | jax.core.Tracer):
            return jitted(x, *args)
        with jax.enable_x64(True):
            return np.asarray(jitted(np.asarray(x, dtype=np.float64), *args))

    return wrapper


def quantile(x, p: float, axis=0):
    """NumPy's default (``"linear"``) quantile ``p`` of ``x`` along ``axis``, rounded as
    NumPy rounds it (its virtual index and its two-sided interpolation), so that an
    indicator :math:`x \\le q_p` agrees with NumPy's draw for draw."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    rest = [a for a in range(x.ndim) if a not in axes]
    flat = jnp.transpose(x, (*axes, *rest)).reshape(-1, *[x.shape[a] for a in rest])
    ordered = jnp.sort(flat, axis=0)
    n = flat.shape[0]
    virtual = n * p + (1 + p * (1 - 1 - 1)) - 1  # NumPy's _compute_virtual_index, alpha=beta=1
    below = min(max(int(np.floor(virtual)), 0), n - 1)
    above = min(below + 1, n - 1)
    t = virtual - np.floor(virtual) if 0 <= virtual < n - 1 else 0.0
    a, b = ordered[below], ordered[above]
    diff = b - a
    return a + diff * t if t < 0.5 else b - diff * (1 - t)


def _split(x):
    half = x.shape[1] // 2
    return jnp.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x):
    """Rank-normalise over chains and draws jointly, per batch element (average ranks)."""
    size = x.shape[0] * x.shape[1]
    series = x.reshape(size, -1).T  # (batch, size)

    def ranks(s):
        ordered = jnp.sort(s)
        left = jnp.searchsorted(ordered, s, side="left")
        right = jnp.searchsorted(ordered, s, side="right")
        return (left + right + 1) / 2.0

    rank = jax.vmap(ranks)(series).astype(x.dtype)
    return ndtri((rank.T - 0.375) / (size + 0.25)).reshape(x.shape)


def _rhat(x):
    n = x.shape[1]
    x = x - x[:1, :1]  # a constant series: exact zeros, so 0/0 = NaN as in arviz-stats
    between = n * jnp.var(x.mean(axis=1), axis=0, ddof=1)
    within = jnp.var(x, axis=1, ddof=1).mean(axis=0)
    return jnp.sqrt((between / within + n - 1) / n)


def _ess(x):
    """ESS of ``(chain, draw, *batch)`` series, arviz-stats' ``_ess`` elementwise."""
    chains, n = x.shape[:2]
    total = chains * n
    centred = x - x.mean(axis=1, keepdims=True)
    m = next_fast_len(2 * n)
    f = jnp.fft.rfft(centred, n=m, axis=1)
    acov = jnp.fft.irfft(f * jnp.conjugate(f), n=m, axis=1)[:, :n].astype(x.dtype) / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + jnp.var(x.mean(axis=1), axis=0, ddof=1)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, *batch)
    rho = rho.at[0].set(1.0)
    # Geyer's initial positive sequence over the pairs P_k = rho_2k + rho_2k+1: the loop
    # of arviz-stats computes pair k (k >= 1) while 2k - 1 < n - 3 and every earlier pair
    # sum is > 0; k_last is the last pair it computes (0: none)
    num_pairs = n // 2
    pairs = rho[0 : 2 * num_pairs : 2] + rho[1 : 2 * num_pairs : 2]  # (num_pairs, *batch)
    limit = max(0, (n - 3) // 2)  # the last k with 2k - 1 < n - 3
    k = jnp.arange(num_pairs).reshape(-1, *([1] * (x.ndim - 2)))
    nonpositive = (pairs <= 0) & (k <= limit)
    first = jnp.where(nonpositive.any(axis=0), nonpositive.argmax(axis=0), num_pairs)
    k_last = jnp.where(first == 0, 0, jnp.minimum(first, limit))
    even_last = jnp.take_along_axis(rho, (2 * k_last)[None], axis=0)[0]
    pair_last = jnp.take_along_axis(pairs, k_last[None], axis=0)[0]
    last = jnp.where((k_last > 0) & ((pair_last >= 0) | (even_last > 0)), even_last, 0.0)
    last = jnp.where(k_last == 0, 1.0, last)
    # Geyer's initial monotone sequence: pairs before k_last capped by the previous sum
    capped = jax.lax.cummin(jnp.where(k < k_last, pairs, jnp.inf), axis=0)
    tau = -1.0 + 2.0 * jnp.where(k < k_last, capped, 0.0).sum(axis=0) + last
    tau = jnp.maximum(tau, 1.0 / np.log10(total))
    ess = total / tau
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < jnp.finfo(x.dtype).resolution
    ess = jnp.where(constant, float(total), ess)
    used = jnp.where(k <= k_last, pairs, 0.0)
    return jnp.where(jnp.isnan(used).any(axis=0) & ~constant, jnp.nan, ess)


def _valid(x, min_chains: int):
    ok = ~jnp.isnan(x).any(axis=(0, 1))
    return ok & (x.shape[0] >= min_chains) & (x.shape[1] >= 4)


def _float(x):
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


@_host_or_traced
def rhat(x):
    """Rank-normalised split :math:`\\hat R` of ``x`` ``(chain, draw, *batch)`` -> ``batch``.

    NaN where a series holds NaN, or with fewer than 2 chains or 4 draws (as arviz-stats).
    """
    x = _float(x)
    ok = _valid(x, 2)
    split = _split(jnp.where(ok, x, 0.0))
    bulk = _rhat(_z_scale(split))
    folded = jnp.abs(split - jnp.median(split, axis=(0, 1)))
    tail = _rhat(_z_scale(folded))
    return jnp.where(ok, jnp.maximum(bulk, tail), jnp.nan)


@_host_or_traced
def ess_bulk(x):
    """Bulk ESS (rank-normalised split chains) of ``x`` ``(chain, draw, *batch)``."""
    x = _float(x)
    ok = _valid(x, 1)
    return jnp.where(ok, _ess(_z_scale(_split(jnp.where(ok, x, 0.0)))), jnp.nan)


def ess_tail(x, prob: float | None = None):
    """Tail ESS: the smaller ESS of the indicators :math:`x \\le q_{p}`, :math:`x \\le q_{1-p}`.

    ``prob`` defaults, as in arviz-stats, to ArviZ's ``rcParams["stats.ci_prob"]``
    (:func:`tail_prob`).
    """
    return _ess_tail(x, tail_prob() if prob is None else float(prob))


@_host_or_traced
def _ess_tail(x, prob):
    x = _float(x)
    ok = _valid(x, 1)
    safe = jnp.where(ok, x, 0.0)
    out = []
    for p in sorted((prob, 1 - prob)):
        q = quantile(safe, p, axis=(0, 1))
        out.append(_ess(_split((safe <= q).astype(x.dtype))))
    return jnp.where(ok, jnp.minimum(*out), jnp.nan)
