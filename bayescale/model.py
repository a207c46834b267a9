"""Law + likelihood -> NumPyro model and the one log density every inference path uses.

The observation model is on the log of the response:

.. math::

    \\log y_i = \\log f(x_i; \\theta) + \\varepsilon_i, \\qquad
    \\varepsilon_i \\sim \\text{Student-}t_\\nu(0, \\sigma) \\;\\text{or}\\; \\mathcal N(0, \\sigma)

with the law's priors on :math:`\\theta`, the law's ``sigma_prior`` on :math:`\\sigma` and
:math:`\\nu \\sim \\text{Gamma}(2, 0.1)` (Juárez & Steel 2010) for the robust default.

Likelihoods (the ``likelihood`` string):

* ``"student_t"``: :math:`\\nu` fitted; ``"student_t(4)"``: :math:`\\nu` fixed at 4.
* ``"normal"``.
* ``"huber"``: the density whose negative log is Hoffmann et al.'s (2022) Huber loss of the
  log residual :math:`r`, threshold :math:`\\delta = 10^{-3}` (:data:`HUBER_DELTA`), divided
  by :math:`\\sigma^2`:

  .. math::

      -\\log p(r \\mid \\sigma) = \\frac{\\rho_\\delta(r)}{\\sigma^2}
      + \\log\\bigl(\\sigma Z(\\delta/\\sigma)\\bigr),\\quad
      \\rho_\\delta(r) = \\begin{cases} r^2/2 & |r| \\le \\delta \\\\
      \\delta |r| - \\delta^2/2 & |r| > \\delta \\end{cases},\\quad
      Z(c) = \\sqrt{2\\pi}\\,\\operatorname{erf}(c/\\sqrt 2) + \\tfrac{2}{c} e^{-c^2/2}.

  For any fixed :math:`\\sigma` the :math:`\\theta` that maximises this likelihood minimises
  :math:`\\sum_i \\rho_\\delta(r_i)`, Hoffmann's (and Besiroglu et al.'s) objective, so the
  MAP with flat priors is their point estimate; :math:`\\sigma` scales the quadratic core
  (:math:`|r| \\le \\delta`) and the Laplace tails (scale :math:`\\sigma^2/\\delta`).

Noise models (the ``noise`` option of :func:`bayescale.fit`, appended to the likelihood
string as ``"student_t+loglinear"`` by :func:`with_noise`):

* ``"constant"`` (default): one :math:`\\sigma` for every point.
* ``"loglinear"``: the scale grows or shrinks log-linearly with each covariate,

  .. math::

      \\log \\sigma(x_i) = \\log \\sigma_0 + \\sum_c \\gamma_c\\,u_{ci}, \\qquad
      u_{ci} = \\frac{\\log x_{ci} - m_c}{s_c}, \\qquad \\gamma_c \\sim \\mathcal N(0, 0.5^2),

  with :math:`m_c, s_c` the mean and standard deviation of :math:`\\log x_c` over the fitted
  points (:math:`s_c = 1` where they do not vary), so :math:`\\sigma_0` is the scale at the
  data's centre and :math:`e^{\\gamma_c}` the factor per standard deviation of
  :math:`\\log x_c`.  The prior is centred at :math:`\\gamma = 0`, the constant model.
  Predictions at new covariates use the same :math:`m_c, s_c` (those of the fitted data),
  so the predictive noise follows the fitted trend into the extrapolation.

:class:`Posterior` exposes the model and its potential (negative log density in the
unconstrained space, Jacobians included) as a pure function of a flat parameter vector and a
data pytree, so the same function is jitted for one fit, vmapped over thousands and
differentiated by the optimiser.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from bayescale.laws import Law, Prior
from bayescale.laws.formula import PowerTerm

__all__ = [
    "HUBER_DELTA",
    "LIKELIHOODS",
    "NOISE_MODELS",
    "Huber",
    "PooledPosterior",
    "Posterior",
    "likelihood_family",
    "noise_model",
    "noise_standardisation",
    "observation_dist",
    "observation_noise",
    "with_noise",
]

LIKELIHOODS = ("student_t", "normal", "huber")
NU_PRIOR = (2.0, 0.1)  # Gamma(shape, rate) on the Student-t degrees of freedom
HUBER_DELTA = 1e-3  # Hoffmann et al. 2022 / Besiroglu et al. 2024: delta on log residuals
NOISE_MODELS = ("constant", "loglinear")
#: Prior of each log-noise slope gamma_c (per standard deviation of log x_c), centred at the
#: constant-noise model: e^{+-0.5} = x1.6 per sd is one prior sd.
NOISE_SLOPE_PRIOR = (0.0, 0.5)
_FIXED_NU = re.compile(r"^student_t\(\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\)$")


def with_noise(likelihood: str, noise: str = "constant") -> str:
    """The likelihood string of ``likelihood`` under noise model ``noise``.

    ``with_noise("student_t", "loglinear") == "student_t+loglinear"``; the constant model
    leaves the string unchanged (so default fits keep their names and compiled programs).

    Raises
    ------
    ValueError
        For an unknown noise model or likelihood.
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {noise!r}; choose one of {', '.join(NOISE_MODELS)}")
    current = noise_model(likelihood)
    if current != "constant" and noise != "constant" and current != noise:
        raise ValueError(f"likelihood {likelihood!r} already has noise model {current!r}")
    return likelihood if noise == "constant" or current == noise else f"{likelihood}+{noise}"


@functools.cache
def noise_model(likelihood: str) -> str:
    """Noise model of a likelihood string: ``"student_t+loglinear"`` -> ``"loglinear"``."""
    noise = str(likelihood).partition("+")[2]
    noise = noise.strip() or "constant"
    if noise not in NOISE_MODELS:
        raise ValueError(
            f"unknown noise model {noise!r} in likelihood {likelihood!r}; choose one of "
            f"{', '.join(NOISE_MODELS)}"
        )
    return noise


def noise_standardisation(log_x: dict, mask=None) -> dict:
    """``{covariate: (m, s)}``: mean and standard deviation of each log covariate.

    Over the points where ``mask`` is true (all when ``None``); a covariate that does not
    vary gets :math:`s = 1`.  Works on numpy and JAX arrays alike, along the last axis.
    """
    out = {}
    for c, v in log_x.items():
        w = jnp.ones_like(v) if mask is None else jnp.asarray(mask, dtype=v.dtype)
        n = jnp.maximum(jnp.sum(w, -1), 1.0)
        m = jnp.sum(w * v, -1) / n
        sd = jnp.sqrt(jnp.sum(w * (v - m[..., None]) ** 2, -1) / n)
        out[c] = (m, jnp.where(sd > 1e-8, sd, 1.0))
    return out


@functools.cache
def likelihood_family(likelihood: str) -> tuple[str, float | None]:
    """``(family, fixed_nu)`` of a likelihood string: ``"student_t(4)"`` -> ``("student_t", 4.0)``.

    A noise-model suffix (``"student_t+loglinear"``) is ignored here (see :func:`noise_model`).

    Raises
    ------
    ValueError
        For an unknown likelihood or a fixed :math:`\\nu \\le 0`.
    """
    noise_model(likelihood)  # raises on an unknown noise model
    likelihood = str(likelihood).partition("+")[0].strip()
    if likelihood in LIKELIHOODS:
        return likelihood, None
    m = _FIXED_NU.match(str(likelihood).strip())
    if m and float(m.group(1)) > 0:
        return "student_t", float(m.group(1))
    raise ValueError(
        f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)} "
        f"or 'student_t(nu)' with a fixed nu > 0, e.g. 'student_t(4)'"
    )


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_logpdf(x, loc, scale):
    r = (x - loc) / scale
    return -0.5 * r * r - jnp.log(scale) - _HALF_LOG_2PI


def prior_term(prior: Prior, z):
    """Map unconstrained ``z`` to the parameter; return ``(value, log_value, log_density)``.

    ``log_density`` is the prior density of ``z`` in the unconstrained space (the log-Jacobian
    of the transform included), matching NumPyro's ``biject_to(support)`` transforms.
    ``log_value`` is exact for positive parameters (no exp-then-log round trip).
    """
    a = prior.args
    match prior.kind:
        case "lognormal":  # z = log(theta) ~ Normal(mu, s)
            return jnp.exp(z), z, _normal_logpdf(z, a[0], a[1])
        case "halfnormal":
            x = jnp.exp(z)
            return x, z, math.log(2.0) + _normal_logpdf(x, 0.0, a[0]) + z
        case "gamma":
            x = jnp.exp(z)
            lp = a[0] * math.log(a[1]) - math.lgamma(a[0]) + (a[0] - 1) * z - a[1] * x + z
            return x, z, lp
        case "uniform":
            width = a[1] - a[0]
            x = a[0] + width * jax.nn.sigmoid(z)
            return x, jnp.log(x), jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)
        case _:  # normal
            return z, jnp.log(z), _normal_logpdf(z, a[0], a[1])


def _huber_log_norm(c):
    """:math:`\\log Z(c)`, :math:`Z(c) = \\int e^{-\\rho_c(u)} du`; stable for small ``c``."""
    core = math.sqrt(2 * math.pi) * jax.scipy.special.erf(c / math.sqrt(2.0))
    return jnp.log(core * c + 2.0 * jnp.exp(-0.5 * c * c)) - jnp.log(c)


def huber_logpdf(r, sigma, delta: float = HUBER_DELTA):
    """Log density of the Huber likelihood at log residual ``r`` (see the module docstring)."""
    a = jnp.abs(r)
    rho = jnp.where(a <= delta, 0.5 * r * r, delta * a - 0.5 * delta * delta)
    return -rho / (sigma * sigma) - jnp.log(sigma) - _huber_log_norm(delta / sigma)


def observation_logpdf(likelihood: str, log_y, log_mean, sigma, nu=None):
    """Pointwise log density of the log response (the same as :func:`observation_dist`)."""
    family, fixed_nu = likelihood_family(likelihood)
    if family == "huber":
        return huber_logpdf(log_y - log_mean, sigma)
    r = (log_y - log_mean) / sigma
    if family == "student_t":
        nu = fixed_nu if fixed_nu is not None else nu
        return (
            jax.lax.lgamma(0.5 * (nu + 1.0))
            - jax.lax.lgamma(0.5 * jnp.asarray(nu, dtype=r.dtype))
            - 0.5 * jnp.log(nu * math.pi)
            - jnp.log(sigma)
            - 0.5 * (nu + 1.0) * jnp.log1p(r * r / nu)
        )
    return -0.5 * r * r - jnp.log(sigma) - _HALF_LOG_2PI


class Huber(dist.Distribution):
    """NumPyro distribution of the Huber likelihood around ``loc`` (threshold ``delta``)."""

    arg_constraints: ClassVar[dict] = {
        "loc": dist.constraints.real,
        "scale": dist.constraints.positive,
    }
    support = dist.constraints.real
    reparametrized_params: ClassVar[list] = ["loc", "scale"]

    def __init__(self, loc=0.0, scale=1.0, delta: float = HUBER_DELTA, *, validate_args=None):
        self.loc, self.scale = dist.util.promote_shapes(loc, scale)
        self.delta = delta
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def log_prob(self, value):
        return huber_logpdf(value - self.loc, self.scale, self.delta)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        c = jnp.broadcast_to(self.delta / self.scale, shape)
        k_which, k_core, k_tail, k_sign = jax.random.split(key, 4)
        log_core = jnp.log(math.sqrt(2 * math.pi) * jax.scipy.special.erf(c / math.sqrt(2.0)))
        in_core = jnp.log(jax.random.uniform(k_which, shape)) < log_core - _huber_log_norm(c)
        lo = jax.scipy.stats.norm.cdf(-c)
        u = lo + (1 - 2 * lo) * jax.random.uniform(k_core, shape)
        core = jax.scipy.special.ndtri(u)
        tail = c + jax.random.exponential(k_tail, shape) / c
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        return self.loc + self.scale * jnp.where(in_core, core, sign * tail)


def observation_dist(likelihood: str, log_mean, sigma, nu=None) -> dist.Distribution:
    """Distribution of the log response around the law's log mean."""
    family, fixed_nu = likelihood_family(likelihood)
    if family == "student_t":
        return dist.StudentT(fixed_nu if fixed_nu is not None else nu, log_mean, sigma)
    if family == "huber":
        return Huber(log_mean, sigma)
    return dist.Normal(log_mean, sigma)


def observation_noise(rng, likelihood: str, values: dict, shape):
    """Numpy draws of the log-scale observation noise for parameter draws ``values``.

    ``values["sigma"]`` (and ``values["nu"]`` for a fitted Student-t) have shape ``(...)``;
    the noise has ``shape = (..., points)``.  ``values["sigma"]`` may instead be the scale at
    each point, of shape ``shape`` (:meth:`Posterior.point_sigma` of a ``"loglinear"`` noise
    model).  Numpy, so post-processing compiles nothing.
    """
    import numpy as np
    from scipy.special import erf, ndtr, ndtri

    family, fixed_nu = likelihood_family(likelihood)
    sigma = np.asarray(values["sigma"])
    sigma = sigma if sigma.shape == tuple(shape) else sigma[..., None]
    if family == "student_t":
        nu = fixed_nu if fixed_nu is not None else np.asarray(values["nu"])[..., None]
        return sigma * rng.standard_t(np.broadcast_to(nu, shape))
    if family == "huber":
        c = np.broadcast_to(HUBER_DELTA / sigma, shape)
        core_mass = math.sqrt(2 * math.pi) * erf(c / math.sqrt(2.0))
        p_core = core_mass * c / (core_mass * c + 2.0 * np.exp(-0.5 * c * c))
        lo = ndtr(-c)
        core = ndtri(lo + (1 - 2 * lo) * rng.uniform(size=shape))
        tail = (c + rng.exponential(size=shape) / c) * rng.choice([-1.0, 1.0], size=shape)
        return sigma * np.where(rng.uniform(size=shape) < p_core, core, tail)
    return sigma * rng.standard_normal(shape)


def posterior_key(posterior) -> tuple[str, str]:
    """What identifies a posterior's compiled programs: its law (in full) and likelihood."""
    spec = json.dumps(posterior.law.to_spec(), sort_keys=True, default=str)
    return spec, posterior.likelihood


@dataclass(frozen=True)
class Posterior:
    """The posterior of ``law`` under ``likelihood``: model, potential, transforms.

    The data pytree is ``{"log_x": {name: (n,)}, "log_y": (n,), "mask": (n,) bool}``;
    masked points (padding in batched fits) contribute nothing.
    """

    law: Law
    likelihood: str = "student_t"

    def __post_init__(self):
        likelihood_family(self.likelihood)  # raises on an unknown likelihood

    @property
    def fits_nu(self) -> bool:
        """Whether the Student-t degrees of freedom are a fitted parameter."""
        return likelihood_family(self.likelihood) == ("student_t", None)

    @property
    def noise(self) -> str:
        """Noise model: ``"constant"`` or ``"loglinear"`` (see the module docstring)."""
        return noise_model(self.likelihood)

    @cached_property
    def noise_slopes(self) -> dict[str, str]:
        """Covariate -> site name of its log-noise slope :math:`\\gamma_c` (``gamma_<c>``);
        empty for constant noise."""
        if self.noise != "loglinear":
            return {}
        return {c: f"gamma_{c}" for c in self.law.covariates}

    @cached_property
    def site_names(self) -> tuple[str, ...]:
        """Latent sites in the order of the flat parameter vector."""
        extra = ("sigma", "nu") if self.fits_nu else ("sigma",)
        return (*self.law.parameter_names, *extra, *self.noise_slopes.values())

    @cached_property
    def prior_specs(self) -> dict[str, Prior]:
        specs = {k: p.prior for k, p in self.law.parameters.items()}
        specs["sigma"] = self.law.sigma_prior
        if self.fits_nu:
            specs["nu"] = Prior("gamma", NU_PRIOR)
        for name in self.noise_slopes.values():
            specs[name] = Prior("normal", NOISE_SLOPE_PRIOR)
        return specs

    @cached_property
    def priors(self) -> dict[str, dist.Distribution]:
        priors = {k: p.prior.distribution() for k, p in self.law.parameters.items()}
        priors["sigma"] = self.law.sigma_prior.distribution()
        if self.fits_nu:
            priors["nu"] = dist.Gamma(*NU_PRIOR)
        for name in self.noise_slopes.values():
            priors[name] = dist.Normal(*NOISE_SLOPE_PRIOR)
        return priors

    def point_sigma(self, values, log_x, reference_log_x=None, reference_mask=None):
        """Noise scale at each point: :math:`\\sigma_0 \\exp(\\sum_c \\gamma_c u_c)`.

        ``values`` are constrained draws (``sigma`` and the ``gamma_<c>`` broadcast against
        ``log_x``); :math:`u_c` standardises ``log_x`` by :func:`noise_standardisation` of
        ``reference_log_x`` (the fitted points; default ``log_x`` itself) under
        ``reference_mask``.  For constant noise this is ``values["sigma"]`` unchanged.
        """
        sigma = values["sigma"]
        if not self.noise_slopes:
            return sigma
        ref = noise_standardisation(
            log_x if reference_log_x is None else reference_log_x, reference_mask
        )
        log_factor = 0.0
        for c, name in self.noise_slopes.items():
            m, sd = ref[c]
            log_factor = log_factor + values[name] * (log_x[c] - m[..., None]) / sd[..., None]
        return sigma * jnp.exp(log_factor)

    @property
    def dim(self) -> int:
        return len(self.site_names)

    def model(self, log_x, log_y=None, mask=None):
        """The NumPyro model (priors, law in log space, robust likelihood on log y)."""
        values = {k: numpyro.sample(k, d) for k, d in self.priors.items()}
        mu = self.law.log_mean(values, log_x)
        sigma = self.point_sigma(values, log_x, log_x, mask)
        obs = observation_dist(self.likelihood, mu, sigma, values.get("nu"))
        with numpyro.handlers.mask(mask=True if mask is None else mask):
            numpyro.sample(self.law.response, obs, obs=log_y)

    def constrain(self, z):
        """Flat unconstrained vector(s) ``(..., dim)`` -> dict of constrained values."""
        return {
            k: biject_to(self.priors[k].support)(z[..., i]) for i, k in enumerate(self.site_names)
        }

    def unconstrain(self, values) -> jnp.ndarray:
        """Dict of constrained values -> flat unconstrained vector(s)."""
        return jnp.stack(
            [biject_to(self.priors[k].support).inv(values[k]) for k in self.site_names], axis=-1
        )

    @cached_property
    def shears(self) -> tuple[tuple[int, PowerTerm], ...]:
        """The law's terms :math:`P\\,v^{e}` that the sampler's coordinates centre.

        Those with :math:`v` a covariate, :math:`P` a positive parameter (unconstrained
        coordinate :math:`\\log P`) and :math:`e` a function of other parameters that are
        themselves not centred; each with the index of :math:`\\log P` in the flat vector.
        """
        index = {k: i for i, k in enumerate(self.site_names)}
        coefficients = {t.coefficient for t in self.law.formula.power_terms}
        out, seen = [], set()
        for t in self.law.formula.power_terms:
            if (
                t.base in self.law.covariates
                and t.coefficient in self.law.parameters
                and t.coefficient not in seen
                and self.prior_specs[t.coefficient].kind != "uniform"
                and self.prior_specs[t.coefficient].positive
                and t.exponent_names
                and t.exponent_names <= set(self.law.parameters) - coefficients
            ):
                seen.add(t.coefficient)
                out.append((index[t.coefficient], t))
        return tuple(out)

    def _shifts(self, w, data):
        """Per centred term, :math:`e \\cdot \\overline{\\log v}` (mean over the data)."""
        out = []
        for _, t in self.shears:
            env = ({}, {})
            for name in t.exponent_names:
                i = self.site_names.index(name)
                env[0][name], env[1][name], _ = prior_term(self.prior_specs[name], w[..., i])
            log_v, mask = data["log_x"][t.base], data["mask"]
            centre = jnp.sum(jnp.where(mask, log_v, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)
            out.append(t.exponent(env) * centre)
        return out

    def from_sampler(self, w, data):
        """Sampler coordinates ``w`` -> the unconstrained ``z`` of :meth:`log_density`.

        For each term :math:`P\\,v^{e}` of :attr:`shears` the sampler works with the log of
        the term at the data's centre, :math:`w_P = \\log P + e\\,\\overline{\\log v}`,
        instead of :math:`\\log P`: with :math:`\\log v` far from 0 (:math:`\\log N \\approx
        20`) :math:`\\log P` and a log-scale exponent lie on a curved ridge that no mass
        matrix straightens; centred, they are nearly independent.  The map is a shear
        (:math:`z_P = w_P - e(w)\\,\\overline{\\log v}`, every other coordinate unchanged,
        :math:`e` depending only on unchanged ones), so its Jacobian is 1 and the density is
        the same function: ``log_density(from_sampler(w))``.
        """
        for (i, _), shift in zip(self.shears, self._shifts(w, data), strict=True):
            w = w.at[..., i].add(-shift)
        return w

    def to_sampler(self, z, data):
        """Inverse of :meth:`from_sampler`."""
        for (i, _), shift in zip(self.shears, self._shifts(z, data), strict=True):
            z = z.at[..., i].add(shift)
        return z

    def sampler_potential(self, w, data):
        """:meth:`potential` in the sampler's (centred) coordinates ``w``."""
        return self.potential(self.from_sampler(w, data), data)

    def log_density(self, z, data):
        """Log posterior density (unnormalised) at unconstrained ``z`` of shape ``(dim,)``.

        This is THE log density: NUTS, MAP, Laplace and batched fits all call it.  It equals
        NumPyro's density of :meth:`model` (tested), written out so that the compiled
        program stays small.
        """
        log_prior, log_lik = self._log_terms(z, data)
        return log_prior + log_lik

    def log_likelihood(self, z, data):
        """Log-likelihood alone (no priors, no Jacobians) at unconstrained ``z``.

        The likelihood term of :meth:`log_density`: the objective of a maximum-likelihood
        fit (``method="map"`` with ``flat_priors=True``).
        """
        return self._log_terms(z, data)[1]

    def _log_terms(self, z, data):
        """``(log prior incl. Jacobians, summed log-likelihood of unmasked points)``."""
        values, logs, lp = {}, {}, 0.0
        for i, (name, prior) in enumerate(self.prior_specs.items()):
            values[name], logs[name], term = prior_term(prior, z[i])
            lp = lp + term
        log_x = data["log_x"]
        mu = self.law.formula.log(
            {**{k: jnp.exp(v) for k, v in log_x.items()}, **values}, {**log_x, **logs}
        )
        sigma = self.point_sigma(values, log_x, log_x, data["mask"])
        ll = observation_logpdf(self.likelihood, data["log_y"], mu, sigma, values.get("nu"))
        return lp, jnp.sum(jnp.where(data["mask"], ll, 0.0))

    def potential(self, z, data):
        """Negative :meth:`log_density`; ``inf`` where it is not finite or above
        :data:`POTENTIAL_MAX` (why: :meth:`PooledPosterior.potential`)."""
        return capped_potential(-self.log_density(z, data))

    def prior_draws(self, rng_key, num: int) -> jnp.ndarray:
        """``num`` unconstrained starting points spread like the prior, shape ``(num, dim)``.

        Exact for normal/lognormal/halfnormal/uniform priors; a gamma prior is replaced by
        the lognormal with its mean and variance (starting points need not be exact draws,
        and this avoids compiling a rejection sampler into every fit).
        """
        eps = jax.random.normal(rng_key, (num, self.dim))
        cols = []
        for i, prior in enumerate(self.prior_specs.values()):
            a, e = prior.args, eps[:, i]
            match prior.kind:
                case "lognormal" | "normal":
                    cols.append(a[0] + a[1] * e)
                case "halfnormal":
                    cols.append(jnp.log(a[0] * jnp.abs(e) + 1e-12))
                case "gamma":
                    s2 = math.log1p(1.0 / a[0])
                    cols.append(math.log(a[0] / a[1]) - 0.5 * s2 + math.sqrt(s2) * e)
                case _:  # uniform: logit of a uniform draw
                    u = jax.scipy.stats.norm.cdf(e)
                    cols.append(jnp.log(u) - jnp.log1p(-u))
        return jnp.stack(cols, axis=-1)

    def log_mean(self, values, log_x):
        """:math:`\\log f` for constrained ``values`` (arrays broadcast against ``log_x``)."""
        return self.law.log_mean(values, log_x)

    def pointwise_log_likelihood(self, values, log_x, log_y, mask=None):
        """Log-likelihood of each observed log response, broadcast over draws.

        ``mask`` marks the fitted points (padding excluded) that standardise the covariates
        of a ``"loglinear"`` noise model; default all.
        """
        mu = self.log_mean(values, log_x)
        sigma = self.point_sigma(values, log_x, log_x, mask)
        return observation_logpdf(self.likelihood, log_y, mu, sigma, values.get("nu"))


TAU_PRIOR = Prior("halfnormal", (0.2,))  # spread of pooled parameters across groups
#: Potentials above this are read as +inf by :meth:`PooledPosterior.potential` (see there):
#: far above any posterior's (|potential| ~ points x a few), far below the ~1e150 at which
#: squares of gradients overflow float64.
POTENTIAL_MAX = 1e30


def capped_potential(pe):
    """``pe`` where finite and below :data:`POTENTIAL_MAX`, else ``+inf``."""
    return jnp.where(jnp.isfinite(pe) & (pe < POTENTIAL_MAX), pe, jnp.inf)


def check_pooled_names(law, pooled) -> None:
    """Raise ``ValueError`` unless ``pooled`` is a non-empty list of ``law``'s parameters."""
    names = law.parameter_names
    if not pooled or any(p not in names for p in pooled):
        raise ValueError(
            f"pooled= must name parameters of law {law.id!r} ({', '.join(names)}); "
            f"got {list(pooled)}"
        )


@dataclass(frozen=True)
class PooledPosterior:
    """Hierarchical posterior: ``pooled`` parameters drawn from a population across groups.

    For each group :math:`g` (a seed, a dataset, an architecture) the law has its own
    parameters.  A pooled parameter :math:`p` has unconstrained value (the log, for a
    positive parameter)

    .. math::

        z_{p,g} \\sim \\mathcal N(\\mu_p, \\tau_p), \\qquad \\mu_p \\sim \\pi_p, \\quad
        \\tau_p \\sim \\text{HalfNormal}(0.2),

    :math:`\\pi_p` the law's prior of :math:`p` on the unconstrained scale.  Every other
    site (other law parameters, :math:`\\sigma`, :math:`\\nu`) is per group with the law's
    prior.  The likelihood of each group is :meth:`Posterior.log_likelihood` of the base
    posterior, vmapped over groups: the same density, no second implementation.

    Two coordinate systems for :math:`z_{p,g}` (``centred``, per pooled parameter):

    * non-centred (``False``): the sampler sees :math:`\\eta_{p,g} = (z_{p,g} - \\mu_p) /
      \\tau_p \\sim \\mathcal N(0, 1)`; right when each group's data say little about
      :math:`z_{p,g}` (the posterior is then close to the prior, whose funnel in
      :math:`(\\tau, z)` this removes);
    * centred (``True``): the sampler sees :math:`z_{p,g}` itself; right when each group's
      data pin :math:`z_{p,g}` down more tightly than the groups differ (long training
      curves): non-centred, :math:`\\eta = (z - \\mu)/\\tau` with :math:`z` nearly fixed
      lies on a curved ridge in :math:`(\\mu, \\log\\tau, \\eta)` (the inverse funnel)
      that no mass matrix straightens.  :func:`choose_centring` picks per parameter.

    Within each group the sampler also uses the base posterior's centred coordinates for
    the free sites (:meth:`Posterior.from_sampler`, a unit-Jacobian shear of
    :math:`\\log P` by :math:`e\\,\\overline{\\log v}`), unless a sheared coefficient is
    itself pooled.

    Flat layout of ``z``: ``num_groups`` blocks of the free sites, then :math:`\\mu`, then
    :math:`\\log\\tau`, then the pooled coordinates (``num_groups`` x pooled; :math:`\\eta`
    or :math:`z`).  Data leaves carry a leading group axis (padded and masked like a batch).
    """

    base: Posterior
    pooled: tuple[str, ...]
    num_groups: int
    centred: tuple[bool, ...] | None = None  # per pooled parameter; None: all non-centred

    def __post_init__(self):
        check_pooled_names(self.base.law, self.pooled)
        if self.num_groups < 2:
            raise ValueError(f"pooling needs at least 2 groups, got {self.num_groups}")
        if self.centred is not None and len(self.centred) != len(self.pooled):
            raise ValueError(
                f"centred= needs one flag per pooled parameter {list(self.pooled)}, "
                f"got {list(self.centred)}"
            )

    @property
    def likelihood(self) -> str:
        return self.base.likelihood

    @cached_property
    def centring(self) -> tuple[bool, ...]:
        """Per pooled parameter: centred coordinates (see the class docstring)."""
        return tuple(self.centred) if self.centred is not None else (False,) * len(self.pooled)

    @cached_property
    def law(self) -> Law:
        """The base law under an id naming the pooling (keys compiled-program caches)."""
        from dataclasses import replace

        coords = ",".join(
            f"{p}:{'c' if c else 'nc'}" for p, c in zip(self.pooled, self.centring, strict=True)
        )
        tag = f"{self.base.law.id}[pooled {coords} over {self.num_groups} groups]"
        return replace(self.base.law, id=tag)

    @cached_property
    def free_sites(self) -> tuple[str, ...]:
        return tuple(s for s in self.base.site_names if s not in self.pooled)

    @property
    def dim(self) -> int:
        g, f, p = self.num_groups, len(self.free_sites), len(self.pooled)
        return g * f + 2 * p + g * p

    def split(self, z):
        """``z (..., dim)`` -> ``(free, mu, log_tau, eta)``.

        Shapes ``(..., G, F)``, ``(..., P)``, ``(..., P)``, ``(..., G, P)``; ``eta`` holds
        :math:`\\eta` for non-centred parameters and :math:`z_{p,g}` for centred ones.
        """
        g, f, p = self.num_groups, len(self.free_sites), len(self.pooled)
        lead = z.shape[:-1]
        free = z[..., : g * f].reshape(*lead, g, f)
        mu = z[..., g * f : g * f + p]
        log_tau = z[..., g * f + p : g * f + 2 * p]
        eta = z[..., g * f + 2 * p :].reshape(*lead, g, p)
        return free, mu, log_tau, eta

    def group_z(self, z):
        """Per-group unconstrained vectors of the base posterior, ``(..., G, base.dim)``."""
        free, mu, log_tau, eta = self.split(z)
        centred = jnp.asarray(self.centring)
        pooled = jnp.where(centred, eta, mu[..., None, :] + jnp.exp(log_tau)[..., None, :] * eta)
        cols = []
        for site in self.base.site_names:
            if site in self.pooled:
                cols.append(pooled[..., self.pooled.index(site)])
            else:
                cols.append(free[..., self.free_sites.index(site)])
        return jnp.stack(cols, axis=-1)

    def log_density(self, z, data):
        """Log posterior density at unconstrained ``z`` (``(dim,)``); data with a group axis."""
        free, mu, log_tau, eta = self.split(z)
        specs = self.base.prior_specs
        lp = 0.0
        for j, site in enumerate(self.free_sites):
            lp = lp + jnp.sum(prior_term(specs[site], free[:, j])[2])
        for j, site in enumerate(self.pooled):
            lp = lp + prior_term(specs[site], mu[j])[2]
            lp = lp + prior_term(TAU_PRIOR, log_tau[j])[2]
            if self.centring[j]:  # z_g ~ N(mu, tau)
                lp = lp + jnp.sum(_normal_logpdf(eta[:, j], mu[j], jnp.exp(log_tau[j])))
            else:  # eta_g ~ N(0, 1)
                lp = lp + jnp.sum(_normal_logpdf(eta[:, j], 0.0, 1.0))
        ll = jax.vmap(self.base.log_likelihood)(self.group_z(z), data)
        return lp + jnp.sum(ll)

    def potential(self, z, data):
        """Negative :meth:`log_density`; ``inf`` where it is not finite or above
        :data:`POTENTIAL_MAX`.

        The cap keeps NUTS out of a numerical hole.  Far out in :math:`\\log\\tau`
        (:math:`\\tau \\approx 20`, reached by one leapfrog step of the large step size
        re-initialised after the last warm-up window), :math:`z_{p,g} = \\mu + \\tau\\eta_g`
        reaches 200, the per-group shear moves :math:`\\log A` by
        :math:`e^{z_{p,g}}\\,\\overline{\\log x} \\approx 10^{92}`, and the potential
        (:math:`10^{186}`) and its gradient are finite but so large that the momentum
        overflows and the dense kinetic energy :math:`r^\\top M^{-1} r` loses its sign
        (:math:`-\\infty`): NumPyro, which maps only a NaN energy to a divergence, accepted
        that state after one leapfrog step without a divergence, and every step from there
        diverges (PolyPythia 70m, seed 0, iteration 952 of 2000: one chain of four stuck
        with step size 0, r-hat 1.53).  No state of a potential above
        :data:`POTENTIAL_MAX` can be accepted from a typical one (the energy error would be
        far above NumPyro's divergence threshold of 1000), so reading it as :math:`+\\infty`
        changes no legitimate transition and turns the overflow into a divergence.
        """
        return capped_potential(-self.log_density(z, data))

    @cached_property
    def _sheared(self) -> bool:
        """Whether the per-group shear applies (no sheared coefficient is pooled)."""
        coefficients = {self.base.site_names[i] for i, _ in self.base.shears}
        return bool(coefficients) and not coefficients & set(self.pooled)

    def _shear(self, v, data, to_sampler: bool):
        if not self._sheared:
            return v
        g, f = self.num_groups, len(self.free_sites)
        fn = self.base.to_sampler if to_sampler else self.base.from_sampler
        # the shear moves only free coefficients, by amounts that depend on the exponents
        # (pooled or free but never sheared), so it is the same map in v and in z
        moved = jax.vmap(fn)(self.group_z(v), data)
        idx = jnp.asarray([self.base.site_names.index(s) for s in self.free_sites])
        return jnp.concatenate([moved[:, idx].reshape(g * f), v[g * f :]])

    def to_sampler(self, z, data):
        """Unconstrained ``z`` -> the sampler's coordinates (the base shear per group)."""
        return self._shear(z, data, True)

    def from_sampler(self, w, data):
        """Inverse of :meth:`to_sampler` (a unit-Jacobian shear)."""
        return self._shear(w, data, False)

    def sampler_potential(self, w, data):
        """:meth:`potential` in the sampler's coordinates ``w``."""
        return self.potential(self.from_sampler(w, data), data)

    def prior_draws(self, rng_key, num: int) -> jnp.ndarray:
        """``num`` starting points spread like the prior, shape ``(num, dim)``."""
        k_free, k_mu, k_tau, k_eta = jax.random.split(rng_key, 4)
        g, p = self.num_groups, len(self.pooled)
        base = self.base.prior_draws(k_free, num * g).reshape(num, g, self.base.dim)
        idx = [self.base.site_names.index(s) for s in self.free_sites]
        pidx = [self.base.site_names.index(s) for s in self.pooled]
        mu = self.base.prior_draws(k_mu, num)[:, pidx]
        log_tau = jnp.log(TAU_PRIOR.args[0] * jnp.abs(jax.random.normal(k_tau, (num, p))) + 1e-3)
        eta = jax.random.normal(k_eta, (num, g, p))
        eta = jnp.where(
            jnp.asarray(self.centring), mu[:, None] + jnp.exp(log_tau)[:, None] * eta, eta
        )
        return jnp.concatenate(
            [base[:, :, idx].reshape(num, -1), mu, log_tau, eta.reshape(num, -1)], axis=-1
        )

    def population(self, z) -> dict:
        """Population centre (constrained) and spread (unconstrained scale) of each pooled
        parameter: ``{"alpha_pop": ..., "alpha_pop_sd": ...}`` for draws ``z (..., dim)``."""
        _, mu, log_tau, _ = self.split(z)
        out = {}
        for j, site in enumerate(self.pooled):
            out[f"{site}_pop"] = biject_to(self.base.priors[site].support)(mu[..., j])
            out[f"{site}_pop_sd"] = jnp.exp(log_tau[..., j])
        return out
