"""Likelihood families of the log-response residual: one class each, registered by name.

The observation model is :math:`\\log y_i = \\log f(x_i;\\theta) + \\varepsilon_i` with
:math:`\\varepsilon_i` from one of these families, at scale :math:`\\sigma_i`:

* ``"student_t"``: :math:`\\text{Student-}t_\\nu(0, \\sigma)`, :math:`\\nu` a fitted site with
  prior :math:`\\text{Gamma}(2, 0.1)` (:data:`NU_PRIOR`, Juárez & Steel 2010);
  ``"student_t(4)"``: :math:`\\nu` fixed at 4.
* ``"normal"``: :math:`\\mathcal N(0, \\sigma)`.
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

Each family gives its log density (:meth:`Likelihood.logpdf`), its NumPyro distribution
(:meth:`Likelihood.distribution`, whose ``sample`` is the JAX sampler), numpy draws
(:meth:`Likelihood.numpy_noise`) and its extra latent sites with their priors
(:attr:`Likelihood.extra_priors`).  Defining ``name`` on a subclass registers it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from bayescale.families.priors import HALF_LOG_2PI

__all__ = [
    "HUBER_DELTA",
    "LIKELIHOOD_FAMILIES",
    "NU_PRIOR",
    "Huber",
    "HuberLikelihood",
    "Likelihood",
    "NormalLikelihood",
    "StudentTLikelihood",
    "get_likelihood",
    "huber_logpdf",
    "likelihood_names",
]

NU_PRIOR = (2.0, 0.1)  # Gamma(shape, rate) on the Student-t degrees of freedom
HUBER_DELTA = 1e-3  # Hoffmann et al. 2022 / Besiroglu et al. 2024: delta on log residuals

#: Every likelihood family (its class) by name, in the order of definition.
LIKELIHOOD_FAMILIES: dict[str, type[Likelihood]] = {}


class Likelihood:
    """A likelihood family of the log residual; subclasses set :attr:`name`.

    Instances are frozen and hashable (they key compiled programs through their text).
    ``params`` maps the family's extra sites (:attr:`extra_priors`) to their values (other
    keys are ignored); arrays broadcast against the residuals.
    """

    name: ClassVar[str]
    #: Other accepted spellings, for error messages (e.g. ``"'student_t(nu)' ..."``).
    variants: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            LIKELIHOOD_FAMILIES[cls.name] = cls

    @classmethod
    def from_text(cls, text: str) -> Likelihood | None:
        """The likelihood written ``text`` (e.g. ``"student_t(4)"``), else None."""
        return cls() if text == cls.name else None

    @property
    def extra_priors(self) -> dict[str, tuple[str, tuple[float, ...]]]:
        """Extra latent sites -> ``(prior family, args)``; in the order of the flat vector."""
        return {}

    def logpdf(self, r, sigma, params=None):
        """Pointwise log density of the log residual ``r`` at scale ``sigma``."""
        raise NotImplementedError

    def distribution(self, loc, sigma, params=None) -> dist.Distribution:
        """NumPyro distribution of the log response around ``loc`` (density :meth:`logpdf`)."""
        raise NotImplementedError

    def numpy_noise(self, rng: np.random.Generator, sigma, params, shape) -> np.ndarray:
        """Numpy draws of the residual, shape ``shape`` (``sigma`` and ``params`` broadcast)."""
        raise NotImplementedError

    def jax_noise(self, rng_key, sigma, params, shape):
        """JAX draws of the residual, shape ``shape``: :meth:`distribution`'s ``sample``."""
        return self.distribution(jnp.zeros(shape), sigma, params).sample(rng_key)


_FIXED_NU = re.compile(r"^student_t\(\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\)$")


@dataclass(frozen=True)
class StudentTLikelihood(Likelihood):
    """Student-t residuals; ``nu=None`` fits :math:`\\nu` (site ``"nu"``, prior ``gamma(2, 0.1)``).

    :math:`\\log p(r) = \\log\\Gamma(\\tfrac{\\nu+1}{2}) - \\log\\Gamma(\\tfrac{\\nu}{2})
    - \\tfrac12\\log(\\nu\\pi) - \\log\\sigma - \\tfrac{\\nu+1}{2}\\log(1 + (r/\\sigma)^2/\\nu)`.
    """

    nu: float | None = None

    name = "student_t"
    variants = "'student_t(nu)' with a fixed nu > 0, e.g. 'student_t(4)'"

    @classmethod
    def from_text(cls, text):
        if text == cls.name:
            return cls()
        m = _FIXED_NU.match(text)
        return cls(float(m.group(1))) if m and float(m.group(1)) > 0 else None

    @property
    def extra_priors(self):
        return {"nu": ("gamma", NU_PRIOR)} if self.nu is None else {}

    def _nu(self, params):
        return self.nu if self.nu is not None else params["nu"]

    def logpdf(self, r, sigma, params=None):
        nu = self._nu(params)
        r = r / sigma
        return (
            jax.lax.lgamma(0.5 * (nu + 1.0))
            - jax.lax.lgamma(0.5 * jnp.asarray(nu, dtype=r.dtype))
            - 0.5 * jnp.log(nu * math.pi)
            - jnp.log(sigma)
            - 0.5 * (nu + 1.0) * jnp.log1p(r * r / nu)
        )

    def distribution(self, loc, sigma, params=None):
        return dist.StudentT(self._nu(params), loc, sigma)

    def numpy_noise(self, rng, sigma, params, shape):
        return sigma * rng.standard_t(np.broadcast_to(self._nu(params), shape))


@dataclass(frozen=True)
class NormalLikelihood(Likelihood):
    """Normal residuals:

    :math:`\\log p(r) = -\\tfrac12 (r/\\sigma)^2 - \\log\\sigma - \\tfrac12\\log 2\\pi`.
    """

    name = "normal"

    def logpdf(self, r, sigma, params=None):
        r = r / sigma
        return -0.5 * r * r - jnp.log(sigma) - HALF_LOG_2PI

    def distribution(self, loc, sigma, params=None):
        return dist.Normal(loc, sigma)

    def numpy_noise(self, rng, sigma, params, shape):
        return sigma * rng.standard_normal(shape)


def _huber_log_norm(c):
    """:math:`\\log Z(c)`, :math:`Z(c) = \\int e^{-\\rho_c(u)} du`; stable for small ``c``."""
    core = math.sqrt(2 * math.pi) * jax.scipy.special.erf(c / math.sqrt(2.0))
    return jnp.log(core * c + 2.0 * jnp.exp(-0.5 * c * c)) - jnp.log(c)


def huber_logpdf(r, sigma, delta: float = HUBER_DELTA):
    """Log density of the Huber likelihood at log residual ``r`` (see the module docstring)."""
    a = jnp.abs(r)
    rho = jnp.where(a <= delta, 0.5 * r * r, delta * a - 0.5 * delta * delta)
    return -rho / (sigma * sigma) - jnp.log(sigma) - _huber_log_norm(delta / sigma)


class Huber(dist.Distribution):
    """NumPyro distribution of the Huber likelihood around ``loc`` (threshold ``delta``).

    ``sample`` draws exactly: with :math:`c = \\delta/\\sigma`, the standardised residual
    lies in the core :math:`|u| \\le c` with probability
    :math:`\\sqrt{2\\pi}\\operatorname{erf}(c/\\sqrt2) / Z(c)` (a normal truncated to
    the core there), else in a tail :math:`c + \\text{Exp}(c)` with a random sign.
    """

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


@dataclass(frozen=True)
class HuberLikelihood(Likelihood):
    """Huber residuals, threshold ``delta`` (:data:`HUBER_DELTA`; see the module docstring)."""

    delta: float = HUBER_DELTA

    name = "huber"

    def logpdf(self, r, sigma, params=None):
        return huber_logpdf(r, sigma, self.delta)

    def distribution(self, loc, sigma, params=None):
        return Huber(loc, sigma, self.delta)

    def numpy_noise(self, rng, sigma, params, shape):
        """Numpy twin of :meth:`Huber.sample` (the same mixture; another random stream)."""
        from scipy.special import erf, ndtr, ndtri

        c = np.broadcast_to(self.delta / sigma, shape)
        core_mass = math.sqrt(2 * math.pi) * erf(c / math.sqrt(2.0))
        p_core = core_mass * c / (core_mass * c + 2.0 * np.exp(-0.5 * c * c))
        lo = ndtr(-c)
        core = ndtri(lo + (1 - 2 * lo) * rng.uniform(size=shape))
        tail = (c + rng.exponential(size=shape) / c) * rng.choice([-1.0, 1.0], size=shape)
        return sigma * np.where(rng.uniform(size=shape) < p_core, core, tail)


def likelihood_names() -> str:
    """The accepted likelihood spellings, for error messages."""
    variants = [cls.variants for cls in LIKELIHOOD_FAMILIES.values() if cls.variants]
    return ", ".join(LIKELIHOOD_FAMILIES) + "".join(f" or {v}" for v in variants)


def get_likelihood(text: str) -> Likelihood:
    """The likelihood written ``text``: a family name or a variant (``"student_t(4)"``).

    Raises
    ------
    ValueError
        For text no family accepts (e.g. ``"student_t(-1)"``), listing the accepted ones.
    """
    text = str(text).strip()
    for cls in LIKELIHOOD_FAMILIES.values():
        found = cls.from_text(text)
        if found is not None:
            return found
    raise ValueError(f"unknown likelihood {text!r}; choose one of {likelihood_names()}")
