"""Hierarchical (pooled) posteriors: some law parameters drawn from a population across groups.

:class:`PooledPosterior` wraps a base :class:`~bayescale.model.posterior.Posterior`; its
likelihood is the base posterior's, vmapped over groups (no second implementation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from bayescale.families import normal_logpdf
from bayescale.laws import Law, Prior
from bayescale.model.posterior import Posterior, capped_potential

__all__ = ["TAU_PRIOR", "PooledPosterior", "check_pooled_names"]

TAU_PRIOR = Prior("halfnormal", (0.2,))  # spread of pooled parameters across groups


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
            lp = lp + jnp.sum(specs[site].transform(free[:, j])[2])
        for j, site in enumerate(self.pooled):
            lp = lp + specs[site].transform(mu[j])[2]
            lp = lp + TAU_PRIOR.transform(log_tau[j])[2]
            if self.centring[j]:  # z_g ~ N(mu, tau)
                lp = lp + jnp.sum(normal_logpdf(eta[:, j], mu[j], jnp.exp(log_tau[j])))
            else:  # eta_g ~ N(0, 1)
                lp = lp + jnp.sum(normal_logpdf(eta[:, j], 0.0, 1.0))
        ll = jax.vmap(self.base.log_likelihood)(self.group_z(z), data)
        return lp + jnp.sum(ll)

    def potential(self, z, data):
        """Negative :meth:`log_density`; ``inf`` where it is not finite or above
        :data:`~bayescale.model.posterior.POTENTIAL_MAX` (:func:`capped_potential`).

        The cap matters here: far out in :math:`\\log\\tau` a pooled :math:`z_{p,g} = \\mu +
        \\tau\\eta_g` and the per-group shear can make the potential and its gradient finite
        but so large that the momentum overflows; capped, such a state is a divergence.
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
