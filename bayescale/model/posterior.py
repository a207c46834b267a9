"""The posterior of a law under an observation model: the one log density every fit uses.

:class:`Posterior` exposes the NumPyro model and its potential (negative log density in the
unconstrained space, Jacobians included) as a pure function of a flat parameter vector and a
data pytree, so the same function is jitted for one fit, vmapped over thousands and
differentiated by the optimiser.  The sites are the law's parameters (their priors from the
law), :math:`\\sigma` (the law's ``sigma_prior``), the likelihood family's extra sites
(:math:`\\nu` of a fitted Student-t) and the noise model's slopes (:mod:`.observation`).
Each prior's unconstrained density, and each likelihood's density, is its family's
(:mod:`bayescale.families`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from bayescale.families import Likelihood
from bayescale.laws import Law, Prior
from bayescale.laws.formula import PowerTerm
from bayescale.model.discrepancy import (
    decades_from_first,
    hyperpriors,
    kalman_log_likelihood,
    scales,
)
from bayescale.model.observation import (
    NOISE_SLOPE_PRIOR,
    discrepancy_model,
    likelihood_family,
    noise_model,
    noise_standardisation,
)

__all__ = ["POTENTIAL_MAX", "Posterior", "capped_potential", "posterior_key"]

#: Potentials above this are read as +inf by :func:`capped_potential`: far above any
#: posterior's (|potential| ~ points x a few), far below the ~1e150 at which squares of
#: gradients overflow float64.
POTENTIAL_MAX = 1e30


def capped_potential(pe):
    """``pe`` where finite and below :data:`POTENTIAL_MAX`, else ``+inf``.

    No state of a potential above :data:`POTENTIAL_MAX` can be accepted from a typical one
    (the energy error would be far above NumPyro's divergence threshold of 1000), so reading
    it as :math:`+\\infty` changes no legitimate transition and turns a float overflow of the
    momentum or kinetic energy (which NumPyro would not flag: it maps only a NaN energy to a
    divergence) into a divergence.
    """
    return jnp.where(jnp.isfinite(pe) & (pe < POTENTIAL_MAX), pe, jnp.inf)


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
    def family(self) -> Likelihood:
        """The likelihood family (:mod:`bayescale.families.likelihoods`)."""
        return likelihood_family(self.likelihood)

    @property
    def fits_nu(self) -> bool:
        """Whether the Student-t degrees of freedom are a fitted parameter."""
        return "nu" in self.family.extra_priors

    @property
    def noise(self) -> str:
        """Noise model: ``"constant"`` or ``"loglinear"`` (:mod:`bayescale.model.observation`)."""
        return noise_model(self.likelihood)

    @property
    def discrepancy(self) -> str | None:
        """The discrepancy (:mod:`bayescale.model.discrepancy`), or ``None``: none named,
        or a law of several covariates (the discrepancy runs along one covariate)."""
        if len(self.law.covariates) != 1:
            return None
        return discrepancy_model(self.likelihood)

    @cached_property
    def noise_slopes(self) -> dict[str, str]:
        """Covariate -> site name of its log-noise slope :math:`\\gamma_c` (``gamma_<c>``);
        empty for constant noise."""
        if self.noise != "loglinear":
            return {}
        return {c: f"gamma_{c}" for c in self.law.covariates}

    @cached_property
    def site_names(self) -> tuple[str, ...]:
        """Latent sites in the order of the flat parameter vector: the law's parameters,
        ``sigma``, the likelihood's extra sites, the noise slopes, the discrepancy's scales
        (``delta_r``, ``delta_w``)."""
        return tuple(self.prior_specs)

    @cached_property
    def prior_specs(self) -> dict[str, Prior]:
        """Site -> :class:`~bayescale.laws.Prior`, in the order of :attr:`site_names`."""
        specs = {k: p.prior for k, p in self.law.parameters.items()}
        specs["sigma"] = self.law.sigma_prior
        for name, (kind, args) in self.family.extra_priors.items():
            specs[name] = Prior(kind, args)
        for name in self.noise_slopes.values():
            specs[name] = Prior("normal", NOISE_SLOPE_PRIOR)
        if self.discrepancy:
            specs.update(hyperpriors(self.discrepancy))
        return specs

    @cached_property
    def priors(self) -> dict[str, dist.Distribution]:
        """Site -> NumPyro distribution of its prior."""
        return {k: p.distribution() for k, p in self.prior_specs.items()}

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
        if self.discrepancy:  # delta integrated out: the filter's likelihood as a factor
            m = jnp.ones_like(log_y, dtype=bool) if mask is None else mask
            ll = self._filtered(values, log_x, log_y - mu, sigma, m)
            numpyro.factor(self.law.response, jnp.sum(jnp.where(m, ll, 0.0)))
            return
        obs = self.family.distribution(mu, sigma, values)
        with numpyro.handlers.mask(mask=True if mask is None else mask):
            numpyro.sample(self.law.response, obs, obs=log_y)

    def _filtered(self, values, log_x, r, sigma, mask, in_order=False, presorted=False):
        """Per-point :math:`\\log p(r_i \\mid r_{<i})` under the discrepancy, sorted along
        the covariate unless ``in_order``
        (:func:`~bayescale.model.discrepancy.kalman_log_likelihood`; ``presorted``: the
        points are sorted along it already)."""
        (lx,) = log_x.values()
        lx = jnp.broadcast_to(lx, jnp.broadcast_shapes(jnp.shape(lx), jnp.shape(r)))
        sigma = jnp.broadcast_to(sigma, r.shape)
        # one value per curve: drop the point axis that pointwise callers append
        per_curve = {
            k: v[..., 0] if jnp.ndim(v) == r.ndim else v
            for k, v in ((k, jnp.asarray(v)) for k, v in values.items())
        }
        return kalman_log_likelihood(
            r,
            decades_from_first(lx, mask),
            sigma * sigma,
            mask,
            *scales(per_curve["delta_r"], per_curve["delta_w"]),
            lambda v, scale: self.family.logpdf(v, scale, per_curve),
            in_order,
            presorted,
        )

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
                and self.prior_specs[t.coefficient].family.log_coordinate
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
                env[0][name], env[1][name], _ = self.prior_specs[name].transform(w[..., i])
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
            values[name], logs[name], term = prior.transform(z[i])
            lp = lp + term
        log_x = data["log_x"]
        lx = self.law.in_units(log_x)
        mu = self.law.formula.log(
            {**{k: jnp.exp(v) for k, v in lx.items()}, **values}, {**lx, **logs}
        )
        sigma = self.point_sigma(values, log_x, log_x, data["mask"])
        if self.discrepancy:
            r = data["log_y"] - mu
            ll = self._filtered(values, log_x, r, sigma, data["mask"], presorted="sorted" in data)
        else:
            ll = self.family.logpdf(data["log_y"] - mu, sigma, values)
        return lp, jnp.sum(jnp.where(data["mask"], ll, 0.0))

    def potential(self, z, data):
        """Negative :meth:`log_density`; ``inf`` where it is not finite or above
        :data:`POTENTIAL_MAX` (:func:`capped_potential`)."""
        return capped_potential(-self.log_density(z, data))

    def prior_draws(self, rng_key, num: int) -> jnp.ndarray:
        """``num`` unconstrained starting points spread like the prior, shape ``(num, dim)``.

        Column ``i`` is the ``i``-th site's :meth:`~bayescale.laws.Prior.unconstrained_draws`
        of column ``i`` of one standard-normal ``(num, dim)`` draw from ``rng_key``: exact
        except for gamma priors (a lognormal with the same mean and variance).
        """
        eps = jax.random.normal(rng_key, (num, self.dim))
        cols = [p.unconstrained_draws(eps[:, i]) for i, p in enumerate(self.prior_specs.values())]
        return jnp.stack(cols, axis=-1)

    def prior_sample(self, num: int, seed: int) -> dict[str, np.ndarray]:
        """Exact prior draws with numpy (no compilation), ``{site: (num,)}``: each site's
        :meth:`~bayescale.laws.Prior.sample` in turn from ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        return {name: prior.sample(rng, num) for name, prior in self.prior_specs.items()}

    def log_mean(self, values, log_x):
        """:math:`\\log f` for constrained ``values`` (arrays broadcast against ``log_x``)."""
        return self.law.log_mean(values, log_x)

    def pointwise_log_likelihood(self, values, log_x, log_y, mask=None):
        """Log-likelihood of each observed log response, broadcast over draws.

        ``mask`` marks the fitted points (padding excluded) that standardise the covariates
        of a ``"loglinear"`` noise model; default all.  With a discrepancy, point :math:`i`'s
        is :math:`\\log p(y_i \\mid y_{<i})` along the covariate (the filter's innovation
        density), whose sum over the points is the marginal log-likelihood.
        """
        mu = self.log_mean(values, log_x)
        sigma = self.point_sigma(values, log_x, log_x, mask)
        r = log_y - mu
        if self.discrepancy:
            m = jnp.ones(jnp.shape(r)[-1:], dtype=bool) if mask is None else jnp.asarray(mask)
            m = jnp.broadcast_to(m, jnp.shape(r))
            return self._filtered(values, log_x, r, sigma, m, in_order=True)
        return self.family.logpdf(r, sigma, values)
