"""The law's own error: a discrepancy :math:`\\delta` correlated along the covariate.

With a discrepancy the observation model of a one-covariate law is

.. math::

    \\log y_i = \\log f(x_i;\\theta) + \\delta(u_i) + \\varepsilon_i, \\qquad
    u_i = \\log_{10}(x_i / x_{\\min}),

:math:`x_{\\min}` the smallest fitted covariate (so :math:`u` counts decades from the first
fitted point) and :math:`\\varepsilon_i` the likelihood family's noise.  ``"ou_rw"`` (the
only model) is an Ornstein-Uhlenbeck process of one-decade length plus a random walk pinned
at :math:`u = 0`,

.. math::

    \\delta \\sim \\mathcal{GP}\\bigl(0,\\; s^2 e^{-|u - u'| / \\ell} + q^2 k_W(u, u')\\bigr),
    \\qquad \\ell = 1 \\text{ decade},

:math:`k_W(u, u') = \\min(|u|, |u'|)` where :math:`u, u'` have the same sign and 0
otherwise (a two-sided Brownian motion, :math:`W(0) = 0`).  Inside the data :math:`\\delta`
makes the residuals correlated (hundreds of points on one curve are not hundreds of
independent facts); beyond the data its variance grows like :math:`s^2 + q^2 d`, :math:`d`
the decades beyond the first fitted point.  :math:`s` and :math:`q` are
fitted through two sites that the data separate well: ``delta_r``, the local roughness
:math:`r = \\sqrt{2 s^2 + q^2}` (the standard deviation of :math:`\\delta`'s increments per
square-root decade at short lags, log response), and ``delta_w``, the random walk's share
:math:`w = q^2 / r^2` of it (:func:`scales`), so :math:`s = r\\sqrt{(1 - w)/2}`,
:math:`q = r\\sqrt{w}`.  Inside the data the two processes have the same local roughness
and split it only through the OU's mean reversion, so the posterior of :math:`(s, q)` is a
curved ridge that NUTS crosses slowly; in :math:`(r, w)` it is straight.  The hyperpriors
are :data:`HYPERPRIORS`; the roughness's is learnt from the calibration corpus
(``bayescale/corpus``) by leave-future-out predictive performance:
``benchmarks/discrepancy/learn.py`` fits the early part of every corpus curve and picks
the log-normal centre and sd with the best mean log predictive density of the rest (the
sources weighted equally), not the in-range marginal likelihood, which prefers smaller
scales than extrapolation needs (scores in ``benchmarks/results/discrepancy_loso.md``).

The process is a two-state linear Gaussian state-space model (:math:`a` the OU part,
:math:`b` the walk) with transition :math:`F = \\operatorname{diag}(e^{-\\Delta u/\\ell},
F_b)`, so the fit integrates :math:`\\delta` out with a Kalman filter under ``lax.scan``:
:math:`O(n)` per curve, vmapped in batched fits (:func:`kalman_log_likelihood`).  The filter
treats the noise as Gaussian with variance :math:`\\sigma_i^2` and scores each innovation
:math:`v_i` (variance :math:`S_i = h^\\top P_{i|i-1} h + \\sigma_i^2`) with the family's
density at scale :math:`\\sqrt{S_i}`: the exact marginal likelihood for normal noise; for a
Student-t or Huber family the robust innovation form, which equals the family's i.i.d.
likelihood as :math:`s, q \\to 0`.  Predictions at new points use the smoother's conditional
of :math:`\\delta` given the fitted residuals (:func:`delta_conditional`, numpy).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bayescale.laws import Prior

__all__ = [
    "DISCREPANCIES",
    "HYPERPRIORS",
    "OU_LENGTH",
    "decades_from_first",
    "delta_conditional",
    "delta_draws",
    "hyperpriors",
    "kalman_log_likelihood",
    "parse_discrepancy",
    "scales",
]

#: The discrepancy models: ``"ou_rw"`` (OU of one-decade length + random walk).
DISCREPANCIES = ("ou_rw",)
#: Length of the OU part, in decades of the covariate.
OU_LENGTH = 1.0
#: Hyperpriors: ``delta_r`` (roughness, log response per square-root decade) log-normal with
#: median 0.028 and log-sd 0.35, ``delta_w`` (the walk's share) Beta(2, 2) on (0, 1);
#: ``delta_r``'s learnt on the corpus's training curves by ``benchmarks/discrepancy/learn.py``
#: (fits across model sizes deviate less from their law: bands there are conservative).  The
#: data split ``r`` into its two parts only through the OU's mean reversion, so ``w``'s
#: posterior is close to its prior; Beta(2, 2) (mean 1/2) vanishes at the ends, where one
#: part disappears, and its logit has tails :math:`e^{-2|z|}`.
HYPERPRIORS = {
    "delta_r": Prior("lognormal", (math.log(0.028), 0.35)),
    "delta_w": Prior("beta", (2.0, 2.0)),
}


def scales(r, w):
    """``(s, q)``, the OU and random-walk scales of roughness ``r`` and walk share ``w``:
    :math:`s = r\\sqrt{(1 - w)/2}`, :math:`q = r\\sqrt{w}` (numpy or JAX arrays)."""
    xp = jnp if isinstance(r, jax.Array) or isinstance(w, jax.Array) else np
    return r * xp.sqrt(0.5 * (1.0 - w)), r * xp.sqrt(w)


def parse_discrepancy(text: str) -> tuple[str, str]:
    """``(name, canonical text)`` of a discrepancy: ``"ou_rw"`` (hyperpriors
    :data:`HYPERPRIORS`) or ``"ou_rw(m_r, sd_r)"``, the log-normal hyperprior
    :math:`\\log r \\sim \\mathcal N(m_r, sd_r)` of the roughness (the walk's share stays
    uniform).

    Raises
    ------
    ValueError
        For an unknown name, or arguments that are not two finite numbers with ``sd_r > 0``.
    """
    text = str(text).strip()
    name, _, rest = text.partition("(")
    name = name.strip()
    if name not in DISCREPANCIES:
        raise ValueError(
            f"unknown discrepancy {text!r}; choose one of {', '.join(DISCREPANCIES)} (or None)"
        )
    if not rest:
        return name, name
    try:
        if not rest.endswith(")"):
            raise ValueError
        args = [float(a) for a in rest[:-1].split(",")]
        if len(args) != 2 or not all(map(math.isfinite, args)) or args[1] <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"discrepancy {text!r}: give {name}(m_r, sd_r), two finite numbers with sd_r > 0 "
            "(the log-normal hyperprior of the roughness delta_r)"
        ) from None
    return name, f"{name}({', '.join(f'{a:.6g}' for a in args)})"


def hyperpriors(text: str) -> dict[str, Prior]:
    """Site -> prior of the discrepancy's scales (:func:`parse_discrepancy`)."""
    name, canonical = parse_discrepancy(text)
    if canonical == name:
        return dict(HYPERPRIORS)
    m_r, sd_r = (float(a) for a in canonical[len(name) + 1 : -1].split(","))
    return {**HYPERPRIORS, "delta_r": Prior("lognormal", (m_r, sd_r))}


def decades_from_first(log_x, mask=None):
    """:math:`u = (\\log x - \\min \\log x) / \\ln 10` along the last axis, the minimum over
    the points where ``mask`` is true (all when ``None``).  JAX or numpy arrays."""
    xp = jnp if isinstance(log_x, jax.Array) else np
    ref = log_x if mask is None else xp.where(mask, log_x, xp.inf)
    return (log_x - xp.min(ref, axis=-1, keepdims=True)) / math.log(10.0)


def _transition(u_prev, u, s2, q2):
    """``(F_a, F_b, Q_a, Q_b)`` of the step ``u_prev -> u`` (``u >= u_prev``)."""
    xp = jnp if isinstance(u, jax.Array) else np
    e = xp.exp(-(u - u_prev) / OU_LENGTH)
    neg = u_prev < 0
    safe = xp.where(neg, u_prev, -1.0)
    # before u = 0 the walk runs backwards from W(0) = 0: a Brownian bridge towards 0
    f_b = xp.where(neg, xp.where(u <= 0, u / safe, 0.0), 1.0)
    q_b = xp.where(
        neg,
        xp.where(u <= 0, -u * (u - safe) / -safe, u),
        u - u_prev,
    )
    return e, f_b, s2 * (1.0 - e * e), q2 * xp.maximum(q_b, 0.0)


def _sort_order(u, mask):
    """Order of the points along ``u``, masked points last."""
    return jnp.argsort(jnp.where(mask, u, jnp.inf), axis=-1)


def kalman_log_likelihood(
    r, u, var, mask, s, q, logpdf, in_order: bool = True, presorted: bool = False
):
    """Log-likelihood of each residual under :math:`\\delta` + noise, integrated over
    :math:`\\delta` (JAX, :func:`jax.lax.scan` over the points).

    Parameters
    ----------
    r, var : arrays ``(..., n)``
        Residuals :math:`\\log y - \\log f` and noise variances :math:`\\sigma_i^2`.
    u, mask : arrays ``(..., n)``
        Decades (:func:`decades_from_first`; the first fitted point at 0) and the fitted points
        (false: padding, skipped by the filter and scored 0).  Any order.
    s, q : arrays ``(...)``
        The OU and random-walk scales.
    logpdf : callable
        ``logpdf(v, scale)`` of the innovation (the family's density).
    in_order : bool
        Return the points in the input's order (default), or sorted by :math:`u` (padding
        last): enough for the sum, and its gradient avoids a scatter.
    presorted : bool
        The points are sorted by :math:`u` already (masked points may sit anywhere: the
        filter skips them), e.g. by :func:`bayescale.infer.parallel.stack`; then they are
        returned in that order.  Default: sorted here.

    Returns
    -------
    array ``(..., n)``
        :math:`\\log p(r_i \\mid r_{<i})` (the points ordered by :math:`u`), 0 at padding;
        their sum is the marginal log-likelihood.
    """
    shape = jnp.broadcast_shapes(r.shape, u.shape, var.shape, mask.shape)
    r, u, var, mask = (jnp.broadcast_to(a, shape) for a in (r, u, var, mask))
    if presorted:
        take = lambda a: jnp.moveaxis(a, -1, 0)  # noqa: E731
    else:
        order = _sort_order(u, mask)
        take = lambda a: jnp.moveaxis(jnp.take_along_axis(a, order, axis=-1), -1, 0)  # noqa: E731
    batch = shape[:-1]
    s2 = jnp.broadcast_to(jnp.square(s), batch)
    q2 = jnp.broadcast_to(jnp.square(q), batch)
    zero = jnp.zeros(batch, dtype=r.dtype)

    def step(carry, x):
        m_a, m_b, p_aa, p_ab, p_bb, u_prev = carry
        r_i, u_i, var_i, on = x
        # padding: harmless inputs, so that no NaN reaches the gradient through the where
        r_i, u_i, var_i = (
            jnp.where(on, r_i, 0.0),
            jnp.where(on, u_i, u_prev),
            jnp.where(on, var_i, 1.0),
        )
        # u >= u_prev >= 0 here: the walk's plain increments (no bridge before u = 0)
        dt = u_i - u_prev
        e = jnp.exp(-dt / OU_LENGTH)
        m_a = e * m_a
        p_aa, p_ab, p_bb = e * e * p_aa + s2 * (1.0 - e * e), e * p_ab, p_bb + q2 * dt
        g_a, g_b = p_aa + p_ab, p_ab + p_bb
        big_s = g_a + g_b + var_i
        v = r_i - m_a - m_b
        k_a, k_b = g_a / big_s, g_b / big_s
        new = (
            m_a + k_a * v,
            m_b + k_b * v,
            jnp.maximum(p_aa - k_a * g_a, 0.0),
            p_ab - k_a * g_b,
            jnp.maximum(p_bb - k_b * g_b, 0.0),
            u_i,
        )
        carry = tuple(jnp.where(on, n, c) for n, c in zip(new, carry, strict=True))
        return carry, (v, big_s)

    init = (zero, zero, s2 + zero, zero, zero, zero)
    sorted_mask = take(mask)
    _, (v, big_s) = jax.lax.scan(step, init, (take(r), take(u), take(var), sorted_mask))
    # the family's density of every innovation at once, outside the sequential scan
    ll = jnp.where(sorted_mask, logpdf(v, jnp.sqrt(big_s)), 0.0)
    ll = jnp.moveaxis(ll, 0, -1)
    if not in_order or presorted:
        return ll
    return jnp.take_along_axis(ll, jnp.argsort(order, axis=-1), axis=-1)


def delta_conditional(r, u_fit, var, mask, u_new, s, q):
    """Mean and variance of :math:`\\delta(u^*)` given the fitted residuals (numpy).

    The Rauch-Tung-Striebel smoother of the filter of :func:`kalman_log_likelihood`
    (Gaussian noise of variance ``var``) over the fitted and the new points together.

    Parameters
    ----------
    r, var : arrays ``(..., n)``
        Fitted residuals and noise variances (broadcast against ``u_fit``).
    u_fit, mask : arrays ``(..., n)``
        Decades of the fitted points (first at 0) and which are real (false: padding).
    u_new : array ``(..., m)``
        Decades of the new points (negative before the first fitted point).
    s, q : arrays ``(...)``

    Returns
    -------
    (mean, var) : arrays ``(..., m)``
    """
    u_fit, mask, u_new = np.asarray(u_fit, float), np.asarray(mask, bool), np.asarray(u_new)
    u_fit = np.where(mask, u_fit, 0.0)
    n = u_fit.shape[-1]
    batch = np.broadcast_shapes(
        np.shape(r)[:-1], u_fit.shape[:-1], np.shape(var)[:-1], u_new.shape[:-1],
        np.shape(s), np.shape(q),
    )  # fmt: skip
    m = u_new.shape[-1]
    u_all = np.broadcast_to(_concat(u_fit, u_new), (*batch, n + m))
    obs = np.broadcast_to(_concat(mask, np.zeros(u_new.shape, bool)), (*batch, n + m))
    r_all = np.broadcast_to(_concat(np.where(mask, r, 0.0), np.zeros(u_new.shape)), obs.shape)
    v_all = np.broadcast_to(_concat(var * np.ones(mask.shape), np.ones(u_new.shape)), obs.shape)
    order = np.argsort(u_all, axis=-1, kind="stable")
    u_s, obs_s, r_s, v_s = (np.take_along_axis(a, order, -1) for a in (u_all, obs, r_all, v_all))
    s2 = np.broadcast_to(np.square(s), batch)
    q2 = np.broadcast_to(np.square(q), batch)
    steps = n + m
    # filtered (m, P) and predicted (m, P) at each step; F at each step
    fm = np.empty((steps, 2, *batch))
    fp = np.empty((steps, 3, *batch))
    pm = np.empty((steps, 2, *batch))
    pp = np.empty((steps, 3, *batch))
    fs = np.empty((steps, 2, *batch))
    u0 = u_s[..., 0]
    m_a, m_b = np.zeros(batch), np.zeros(batch)
    p_aa, p_ab, p_bb = s2 + 0.0, np.zeros(batch), q2 * np.maximum(-u0, 0.0)
    u_prev = u0
    for k in range(steps):
        u_k = u_s[..., k]
        f_a, f_b, q_a, q_b = _transition(u_prev, u_k, s2, q2)
        m_a, m_b = f_a * m_a, f_b * m_b
        p_aa, p_ab, p_bb = f_a * f_a * p_aa + q_a, f_a * f_b * p_ab, f_b * f_b * p_bb + q_b
        pm[k], pp[k], fs[k] = (m_a, m_b), (p_aa, p_ab, p_bb), (f_a, f_b)
        g_a, g_b = p_aa + p_ab, p_ab + p_bb
        big_s = g_a + g_b + v_s[..., k]
        on = obs_s[..., k]
        k_a, k_b = np.where(on, g_a / big_s, 0.0), np.where(on, g_b / big_s, 0.0)
        v = np.where(on, r_s[..., k] - m_a - m_b, 0.0)
        m_a, m_b = m_a + k_a * v, m_b + k_b * v
        p_aa, p_ab, p_bb = (
            np.maximum(p_aa - k_a * g_a, 0.0), p_ab - k_a * g_b, np.maximum(p_bb - k_b * g_b, 0.0)
        )  # fmt: skip
        fm[k], fp[k] = (m_a, m_b), (p_aa, p_ab, p_bb)
        u_prev = u_k
    mean = np.empty((*batch, steps))
    var_out = np.empty((*batch, steps))
    sm, sp = fm[-1].copy(), fp[-1].copy()
    mean[..., -1], var_out[..., -1] = sm[0] + sm[1], sp[0] + 2 * sp[1] + sp[2]
    for k in range(steps - 2, -1, -1):
        (a, b, c), (f_a, f_b) = fp[k], fs[k + 1]
        pa, pb, pc = pp[k + 1]
        jit = 1e-14 * (pa + pc) + 1e-300
        pa, pc = pa + jit, pc + jit
        det = pa * pc - pb * pb
        ia, ib, ic = pc / det, -pb / det, pa / det  # inverse of the predicted covariance
        # J = P F Ppred^-1 (F diagonal)
        pf = ((a * f_a, b * f_b), (b * f_a, c * f_b))
        j = [[pf[i][0] * ia + pf[i][1] * ib, pf[i][0] * ib + pf[i][1] * ic] for i in (0, 1)]
        d_m = sm - pm[k + 1]
        d_p = (sp[0] - pp[k + 1][0], sp[1] - pp[k + 1][1], sp[2] - pp[k + 1][2])
        new_m = np.stack([fm[k][i] + j[i][0] * d_m[0] + j[i][1] * d_m[1] for i in (0, 1)])

        def jdj(i, o, j=j, d_p=d_p):
            return j[i][0] * (d_p[0] * j[o][0] + d_p[1] * j[o][1]) + j[i][1] * (
                d_p[1] * j[o][0] + d_p[2] * j[o][1]
            )

        sp = np.stack([a + jdj(0, 0), b + jdj(0, 1), c + jdj(1, 1)])
        sm = new_m
        mean[..., k], var_out[..., k] = sm[0] + sm[1], sp[0] + 2 * sp[1] + sp[2]
    inverse = np.argsort(order, axis=-1)
    mean = np.take_along_axis(mean, inverse, -1)[..., n:]
    var_out = np.take_along_axis(var_out, inverse, -1)[..., n:]
    return mean, np.maximum(var_out, 0.0)


def _concat(a, b):
    """``a`` and ``b`` joined along the last axis, their leading axes broadcast."""
    a, b = np.asarray(a), np.asarray(b)
    lead = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    a = np.broadcast_to(a, (*lead, a.shape[-1]))
    b = np.broadcast_to(b, (*lead, b.shape[-1]))
    return np.concatenate([a, b], axis=-1)


def delta_draws(rng: np.random.Generator, u, s, q) -> np.ndarray:
    """Draws of :math:`\\delta(u)` from its prior (numpy), shape ``np.shape(u)`` broadcast
    against ``s, q`` with a trailing point axis: ``u (..., n)`` in decades (0 at the first
    point), ``s, q (...)``."""
    u = np.asarray(u, float)
    s, q = np.asarray(s, float)[..., None], np.asarray(q, float)[..., None]
    shape = np.broadcast_shapes(u.shape, s.shape, q.shape)
    u = np.broadcast_to(u, shape)
    order = np.argsort(u, axis=-1, kind="stable")
    u_s = np.take_along_axis(u, order, -1)
    s2 = np.broadcast_to(s[..., 0] ** 2, shape[:-1])
    q2 = np.broadcast_to(q[..., 0] ** 2, shape[:-1])
    z = rng.standard_normal((2, *shape))
    a = np.sqrt(s2) * z[0, ..., 0]
    b = np.sqrt(q2 * np.maximum(-u_s[..., 0], 0.0)) * z[1, ..., 0]
    out = np.empty(shape)
    out[..., 0] = a + b
    for k in range(1, shape[-1]):
        f_a, f_b, q_a, q_b = _transition(u_s[..., k - 1], u_s[..., k], s2, q2)
        a = f_a * a + np.sqrt(q_a) * z[0, ..., k]
        b = f_b * b + np.sqrt(q_b) * z[1, ..., k]
        out[..., k] = a + b
    return np.take_along_axis(out, np.argsort(order, axis=-1), -1)
