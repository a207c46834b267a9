"""Law + likelihood -> NumPyro model and the one log density every inference path uses.

The observation model is on the log of the response:

.. math::

    \\log y_i = \\log f(x_i; \\theta) + \\varepsilon_i, \\qquad
    \\varepsilon_i \\sim \\text{Student-}t_\\nu(0, \\sigma) \\;\\text{or}\\; \\mathcal N(0, \\sigma)

with the law's priors on :math:`\\theta`, the law's ``sigma_prior`` on :math:`\\sigma` and
:math:`\\nu \\sim \\text{Gamma}(2, 0.1)` (Juárez & Steel 2010) for the robust default.

:class:`Posterior` exposes the model and its potential (negative log density in the
unconstrained space, Jacobians included) as a pure function of a flat parameter vector and a
data pytree, so the same function is jitted for one fit, vmapped over thousands and
differentiated by the optimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from bayescale.laws import Law, Prior
from bayescale.laws.formula import PowerTerm

__all__ = ["LIKELIHOODS", "Posterior", "observation_dist"]

LIKELIHOODS = ("student_t", "normal")
NU_PRIOR = (2.0, 0.1)  # Gamma(shape, rate) on the Student-t degrees of freedom


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


def observation_logpdf(likelihood: str, log_y, log_mean, sigma, nu=None):
    """Pointwise log density of the log response (the same as :func:`observation_dist`)."""
    r = (log_y - log_mean) / sigma
    if likelihood == "student_t":
        return (
            jax.lax.lgamma(0.5 * (nu + 1.0))
            - jax.lax.lgamma(0.5 * nu)
            - 0.5 * jnp.log(nu * math.pi)
            - jnp.log(sigma)
            - 0.5 * (nu + 1.0) * jnp.log1p(r * r / nu)
        )
    return -0.5 * r * r - jnp.log(sigma) - _HALF_LOG_2PI


def observation_dist(likelihood: str, log_mean, sigma, nu=None) -> dist.Distribution:
    """Distribution of the log response around the law's log mean."""
    if likelihood == "student_t":
        return dist.StudentT(nu, log_mean, sigma)
    return dist.Normal(log_mean, sigma)


@dataclass(frozen=True)
class Posterior:
    """The posterior of ``law`` under ``likelihood``: model, potential, transforms.

    The data pytree is ``{"log_x": {name: (n,)}, "log_y": (n,), "mask": (n,) bool}``;
    masked points (padding in batched fits) contribute nothing.
    """

    law: Law
    likelihood: str = "student_t"

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(
                f"unknown likelihood {self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
            )

    @cached_property
    def site_names(self) -> tuple[str, ...]:
        """Latent sites in the order of the flat parameter vector."""
        extra = ("sigma", "nu") if self.likelihood == "student_t" else ("sigma",)
        return (*self.law.parameter_names, *extra)

    @cached_property
    def prior_specs(self) -> dict[str, Prior]:
        specs = {k: p.prior for k, p in self.law.parameters.items()}
        specs["sigma"] = self.law.sigma_prior
        if self.likelihood == "student_t":
            specs["nu"] = Prior("gamma", NU_PRIOR)
        return specs

    @cached_property
    def priors(self) -> dict[str, dist.Distribution]:
        priors = {k: p.prior.distribution() for k, p in self.law.parameters.items()}
        priors["sigma"] = self.law.sigma_prior.distribution()
        if self.likelihood == "student_t":
            priors["nu"] = dist.Gamma(*NU_PRIOR)
        return priors

    @property
    def dim(self) -> int:
        return len(self.site_names)

    def model(self, log_x, log_y=None, mask=None):
        """The NumPyro model (priors, law in log space, robust likelihood on log y)."""
        values = {k: numpyro.sample(k, d) for k, d in self.priors.items()}
        mu = self.law.log_mean(values, log_x)
        obs = observation_dist(self.likelihood, mu, values["sigma"], values.get("nu"))
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
        values, logs, lp = {}, {}, 0.0
        for i, (name, prior) in enumerate(self.prior_specs.items()):
            values[name], logs[name], term = prior_term(prior, z[i])
            lp = lp + term
        log_x = data["log_x"]
        mu = self.law.formula.log(
            {**{k: jnp.exp(v) for k, v in log_x.items()}, **values}, {**log_x, **logs}
        )
        ll = observation_logpdf(
            self.likelihood, data["log_y"], mu, values["sigma"], values.get("nu")
        )
        return lp + jnp.sum(jnp.where(data["mask"], ll, 0.0))

    def potential(self, z, data):
        """Negative :meth:`log_density`; ``inf`` where it is not finite."""
        pe = -self.log_density(z, data)
        return jnp.where(jnp.isfinite(pe), pe, jnp.inf)

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

    def pointwise_log_likelihood(self, values, log_x, log_y):
        """Log-likelihood of each observed log response, broadcast over draws."""
        mu = self.log_mean(values, log_x)
        return observation_logpdf(self.likelihood, log_y, mu, values["sigma"], values.get("nu"))
