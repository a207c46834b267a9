"""Candidate discrepancy models for a saturating power law, MAP + Laplace (research code).

Model of one curve, in log response, covariate in decades ``u = log10(x / x0)`` from its
first fitted point ``x0``:

.. math:: \\log y_i = \\log(E + A x_i^{-\\alpha}) + \\delta(u_i) + \\varepsilon_i,
   \\quad \\varepsilon_i \\sim N(0, \\sigma^2),

with the discrepancy :math:`\\delta` a zero-mean Gaussian process whose kernel is one of

* ``none``:  :math:`\\delta = 0` (today's default model);
* ``tau_d``: :math:`\\delta = 0` in the fit, and :math:`\\tau^2 d^2` added to the predictive
  variance, :math:`d` the decades beyond the fitted range (today's opt-in law error);
* ``ou``:    :math:`s^2 e^{-|u-u'|/\\ell}` (AR(1) residuals in log x; stationary);
* ``se``:    :math:`s^2 e^{-(u-u')^2/2\\ell^2}` (squared-exponential GP; stationary);
* ``rw``:    :math:`q^2 \\min(u, u')` (random walk from the first point; variance grows
  as :math:`q^2 d`);
* ``irw``:   :math:`q^2 (m^3/3 + |u-u'| m^2/2)`, :math:`m = \\min(u,u')` (integrated random
  walk; grows as :math:`d^3`);
* ``ou_rw``: :math:`s^2 e^{-|u-u'|} + q^2 \\min(u, u')` (hyper = (s, q); OU with a
  one-decade length plus a random walk: correlated inside the data, growing beyond it).

The law's parameters and :math:`\\sigma` carry the priors of ``models/power_law_offset.toml``
(log E ~ N(0, 1.5), log A ~ N(0, 5), log alpha ~ N(-1.2, 1), sigma ~ HalfNormal(0.1));
the kernel's hyperparameters are fixed (chosen across sources by ``run.py``).  The fit is a
MAP by damped Newton from several starts, then a Laplace approximation; the predictive of a new
point is the mixture over Laplace draws of the GP conditional given the fitted residuals.
All of it is dense (Cholesky of the fitted points, at most ~60): the state-space forms of
``ou``/``rw``/``irw`` give the same numbers in O(n) and are for the implementation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

jax.config.update("jax_enable_x64", True)

KERNELS = ("none", "tau_d", "ou", "se", "rw", "irw", "ou_rw")
#: Unconstrained parameters: log E, log A' (A at x0: A = A' x0^alpha), log alpha, log sigma.
NUM_PARAMS = 4
_PRIOR_LOC = jnp.array([0.0, 0.0, -1.2])
_PRIOR_SCALE = jnp.array([1.5, 5.0, 1.0])
SIGMA_SCALE = 0.1


def kernel(name: str, hyper, u, v):
    """Covariance of delta between decades ``u`` (n,) and ``v`` (m,); ``hyper`` = (a, b)."""
    a, b = hyper[0], hyper[1]
    du = u[:, None] - v[None, :]
    m = jnp.minimum(u[:, None], v[None, :])
    if name == "ou":
        return a**2 * jnp.exp(-jnp.abs(du) / b)
    if name == "se":
        return a**2 * jnp.exp(-0.5 * (du / b) ** 2)
    if name == "rw":
        return a**2 * jnp.maximum(m, 0.0)
    if name == "ou_rw":
        return a**2 * jnp.exp(-jnp.abs(du)) + b**2 * jnp.maximum(m, 0.0)
    if name == "irw":
        m = jnp.maximum(m, 0.0)
        return a**2 * (m**3 / 3 + jnp.abs(du) * m**2 / 2)
    return jnp.zeros(du.shape)


def log_mean(z, log_x, log_x0):
    """log(E + A x^-alpha) with A = A' x0^alpha, for the unconstrained z."""
    log_e, log_a1, log_alpha = z[0], z[1], z[2]
    alpha = jnp.exp(log_alpha)
    return jnp.logaddexp(log_e, log_a1 - alpha * (log_x - log_x0))


def log_prior(z, log_x0):
    """Log prior of z: the law's priors on (log E, log A, log alpha), with
    log A = log A' + alpha log x0 (a reparametrisation with unit Jacobian), and sigma's
    half-normal with the Jacobian of log sigma."""
    theta = jnp.array([z[0], z[1] + jnp.exp(z[2]) * log_x0, z[2]])
    law = -0.5 * jnp.sum(((theta - _PRIOR_LOC) / _PRIOR_SCALE) ** 2)
    return law + z[3] - 0.5 * (jnp.exp(z[3]) / SIGMA_SCALE) ** 2


def neg_log_post(z, name, hyper, curve):
    """Negative log posterior of one curve's fitted points (masked to a fixed length)."""
    log_x, log_y, mask, log_x0 = curve["log_x"], curve["log_y"], curve["mask"], curve["log_x0"]
    u = (log_x - log_x0) / jnp.log(10.0)
    lp = log_prior(z, log_x0)
    r = jnp.where(mask, log_y - log_mean(z, log_x, log_x0), 0.0)
    sigma2 = jnp.exp(2 * z[3])
    k = kernel(name, hyper, u, u) * (mask[:, None] & mask[None, :])
    k = k + jnp.diag(jnp.where(mask, sigma2, 1.0))
    chol = jnp.linalg.cholesky(k)
    w = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
    ll = -0.5 * jnp.sum(w**2) - jnp.sum(jnp.where(mask, jnp.log(jnp.diag(chol)), 0.0))
    out = -(ll + lp)
    return jnp.where(jnp.isfinite(out), out, 1e10)


def starts(curve):
    """A few starting points from the fitted data: asymptote at 0.5 and 0.9 of the lowest
    fitted y, exponent 0.1, 0.3, 1."""
    y_min = jnp.exp(jnp.min(jnp.where(curve["mask"], curve["log_y"], jnp.inf)))
    y0 = jnp.exp(curve["log_y"][0])
    out = []
    for frac in (0.5, 0.9):
        for alpha in (0.1, 0.3, 1.0):
            e = frac * y_min
            out.append(
                jnp.array(
                    [jnp.log(e), jnp.log(jnp.maximum(y0 - e, 1e-6)), jnp.log(alpha), jnp.log(0.02)]
                )
            )
    return jnp.stack(out)


def damped_newton(obj, z0, iters: int = 40):
    """Minimise ``obj`` from ``z0`` by Levenberg-damped Newton steps on its exact Hessian:
    a step is kept when it lowers ``obj`` (damping / 3), else refused (damping x 4).  A
    fixed number of iterations, so it batches under ``vmap`` without lanes waiting."""
    grad, hess = jax.grad(obj), jax.hessian(obj)

    def body(state, _):
        z, f, lam = state
        g, h = grad(z), hess(z)
        h = 0.5 * (h + h.T)
        vals, vecs = jnp.linalg.eigh(h)
        step = -(vecs / (jnp.abs(vals) + lam)) @ (vecs.T @ g)
        step = step * jnp.minimum(1.0, 2.0 / (jnp.linalg.norm(step) + 1e-12))
        z_new = z + step
        f_new = obj(z_new)
        better = jnp.isfinite(f_new) & (f_new < f)
        return (
            jnp.where(better, z_new, z),
            jnp.where(better, f_new, f),
            jnp.where(better, lam / 3, lam * 4),
        ), None

    (z, f, _), _ = jax.lax.scan(body, (z0, obj(z0), jnp.asarray(1.0)), None, length=iters)
    return z, f


def fit_one(name, hyper, curve):
    """MAP (best of the starts) and the Laplace covariance of z."""
    obj = lambda z: neg_log_post(z, name, hyper, curve)  # noqa: E731
    zs, fs = jax.vmap(lambda z0: damped_newton(obj, z0))(starts(curve))
    best = jnp.argmin(jnp.where(jnp.isfinite(fs), fs, jnp.inf))
    z = zs[best]
    h = jax.hessian(obj)(z)
    h = 0.5 * (h + h.T)
    vals, vecs = jnp.linalg.eigh(h)
    cov = (vecs / jnp.maximum(vals, 1e-6)) @ vecs.T
    cov = jnp.where(jnp.all(jnp.isfinite(cov)), cov, 1e-6 * jnp.eye(NUM_PARAMS))
    return z, cov, fs[best]


def predict_one(name, hyper, tau, curve, z, cov, new_log_x, key, num_draws: int = 100):
    """Mixture components (mean, sd) of log y at ``new_log_x`` over Laplace draws: (S, m)."""
    draws = (
        z
        + jax.random.normal(key, (num_draws, NUM_PARAMS))
        @ jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(NUM_PARAMS)).T
    )
    log_x, log_y, mask, log_x0 = curve["log_x"], curve["log_y"], curve["mask"], curve["log_x0"]
    u = (log_x - log_x0) / jnp.log(10.0)
    v = (new_log_x - log_x0) / jnp.log(10.0)
    u_max = jnp.max(jnp.where(mask, u, -jnp.inf))
    k_ff = kernel(name, hyper, u, u) * (mask[:, None] & mask[None, :])
    k_nf = kernel(name, hyper, v, u) * mask[None, :]
    k_nn = jnp.diag(kernel(name, hyper, v, v))
    extra = (tau * jnp.maximum(v - u_max, 0.0)) ** 2

    def one(zs):
        sigma2 = jnp.exp(2 * zs[3])
        k = k_ff + jnp.diag(jnp.where(mask, sigma2, 1.0))
        chol = jnp.linalg.cholesky(k)
        r = jnp.where(mask, log_y - log_mean(zs, log_x, log_x0), 0.0)
        alpha = jax.scipy.linalg.cho_solve((chol, True), r)
        w = jax.scipy.linalg.solve_triangular(chol, k_nf.T, lower=True)
        mean = log_mean(zs, new_log_x, log_x0) + k_nf @ alpha
        var = k_nn - jnp.sum(w**2, axis=0) + sigma2 + extra
        return mean, jnp.sqrt(jnp.maximum(var, 1e-12))

    return jax.vmap(one)(draws)


def mixture_cdf(y, mean, sd):
    """CDF of the equal-weight normal mixture (components along axis 0) at y."""
    return jnp.mean(ndtr((y[None] - mean) / sd), axis=0)


def mixture_quantiles(levels, mean, sd, iters: int = 60):
    """Quantiles of the mixture at each level (bisection): (len(levels), m)."""
    lo = jnp.min(mean - 8 * sd, axis=0)
    hi = jnp.max(mean + 8 * sd, axis=0)

    def one(q):
        def body(_, bounds):
            a, b = bounds
            mid = 0.5 * (a + b)
            below = mixture_cdf(mid, mean, sd) < q
            return jnp.where(below, mid, a), jnp.where(below, b, mid)

        a, b = jax.lax.fori_loop(0, iters, body, (lo, hi))
        return 0.5 * (a + b)

    return jax.vmap(one)(jnp.asarray(levels))


def mixture_logpdf(y, mean, sd):
    logp = jax.scipy.stats.norm.logpdf(y[None], mean, sd)
    return jax.scipy.special.logsumexp(logp, axis=0) - jnp.log(mean.shape[0])


@functools.cache
def _batched(name: str):
    @jax.jit
    def run(hyper, tau, fit, new_log_x, keys):
        def one(curve, nx, key):
            z, cov, _ = fit_one(name, hyper, curve)
            mean, sd = predict_one(name, hyper, tau, curve, z, cov, nx, key)
            return mean, sd, z

        return jax.vmap(one)(fit, new_log_x, keys)

    return run


def batch_fit_predict(name: str, hyper, tau: float, fit: dict, new_log_x, seed: int = 0):
    """Fit every curve (arrays stacked along axis 0) and return, per held-out point, the
    mixture's (mean, sd) components, shape (curves, S, m), and the MAP z (one compile per
    kernel name and array shapes; hyperparameters and tau are traced)."""
    keys = jax.random.split(jax.random.key(seed), len(fit["log_y"]))
    return _batched(name)(
        jnp.asarray(hyper, dtype=float),
        jnp.asarray(tau, dtype=float),
        jax.tree.map(jnp.asarray, fit),
        jnp.asarray(new_log_x),
        keys,
    )
