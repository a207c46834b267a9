"""Prior families: one class each, registered by name.

A prior is written as text, ``name(a, b)`` (e.g. ``"lognormal(0.5, 1.0)"``); the family of
``name`` checks the arguments and provides everything the rest of the package needs:

* :meth:`PriorFamily.distribution`: the NumPyro distribution (its support fixes the
  unconstrained coordinate :math:`z` through ``biject_to``);
* :meth:`PriorFamily.transform`: :math:`z \\mapsto (\\theta, \\log\\theta, \\log p(z))`, the log
  density of :math:`z` in the unconstrained space (Jacobian included) that the potential sums;
* :meth:`PriorFamily.unconstrained_draws`: JAX starting points spread like the prior, as a
  function of standard-normal draws;
* :meth:`PriorFamily.sample`: exact numpy draws of :math:`\\theta` (no compilation).

Adding a family is one subclass here (or in another module of this package imported by
``__init__``): defining ``name`` registers it.  This package imports nothing from
``bayescale``, so the law parser (``bayescale.laws``) and the model (``bayescale.model``)
both use it.
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

__all__ = [
    "HALF_LOG_2PI",
    "PRIOR_FAMILIES",
    "Beta",
    "Gamma",
    "HalfNormal",
    "LogNormal",
    "Normal",
    "PriorFamily",
    "Uniform",
    "get_prior_family",
    "normal_logpdf",
    "parse_prior",
]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

#: Every prior family by name, in the order of definition.
PRIOR_FAMILIES: dict[str, PriorFamily] = {}


def normal_logpdf(x, loc, scale):
    """:math:`\\log \\mathcal N(x \\mid \\text{loc}, \\text{scale})` in JAX."""
    r = (x - loc) / scale
    return -0.5 * r * r - jnp.log(scale) - HALF_LOG_2PI


class PriorFamily:
    """A family of priors ``name(args)``; subclasses set :attr:`name` and :attr:`arity`.

    The methods take the arguments ``args`` (a tuple of floats, already checked) and work on
    JAX arrays of any shape (``transform``, ``unconstrained_draws``) or return numpy arrays
    (``sample``).
    """

    name: ClassVar[str]
    arity: ClassVar[int]
    #: Whether the unconstrained coordinate is :math:`z = \\log\\theta`.
    log_coordinate: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            PRIOR_FAMILIES[cls.name] = cls()

    def problem(self, args: tuple[float, ...]) -> str | None:
        """What is wrong with (finite, correctly many) ``args``, naming the bad value; else None.

        Default: the last argument is a scale, which must be > 0."""
        return _scale_problem(args)

    def positive(self, args: tuple[float, ...]) -> bool:
        """Whether every draw is > 0 (the parameter may then appear inside a log)."""
        return self.log_coordinate

    def distribution(self, args: tuple[float, ...]) -> dist.Distribution:
        """The NumPyro distribution of :math:`\\theta`."""
        raise NotImplementedError

    def transform(self, args: tuple[float, ...], z):
        """``(value, log_value, log_density)`` at unconstrained ``z``.

        ``log_density`` is the prior density of ``z`` (log-Jacobian of ``biject_to(support)``
        included); ``log_value`` is exact for log coordinates (no exp-then-log round trip).
        """
        raise NotImplementedError

    def unconstrained_draws(self, args: tuple[float, ...], eps):
        """Unconstrained points spread like the prior, from standard-normal ``eps``."""
        raise NotImplementedError

    def sample(self, args: tuple[float, ...], rng: np.random.Generator, num: int) -> np.ndarray:
        """``num`` exact draws of :math:`\\theta` with numpy."""
        raise NotImplementedError


def _scale_problem(args, what: str = "scale") -> str | None:
    return None if args[-1] > 0 else f"{what} {args[-1]:g} must be > 0"


class LogNormal(PriorFamily):
    """``lognormal(mu, s)``: :math:`z = \\log\\theta \\sim \\mathcal N(\\mu, s)`."""

    name = "lognormal"
    arity = 2
    log_coordinate = True

    def distribution(self, args):
        return dist.LogNormal(args[0], args[1])

    def transform(self, args, z):
        return jnp.exp(z), z, normal_logpdf(z, args[0], args[1])

    def unconstrained_draws(self, args, eps):
        return args[0] + args[1] * eps

    def sample(self, args, rng, num):
        return rng.lognormal(args[0], args[1], num)


class Normal(PriorFamily):
    """``normal(mu, s)``: :math:`z = \\theta \\sim \\mathcal N(\\mu, s)`."""

    name = "normal"
    arity = 2

    def distribution(self, args):
        return dist.Normal(args[0], args[1])

    def transform(self, args, z):
        return z, jnp.log(z), normal_logpdf(z, args[0], args[1])

    def unconstrained_draws(self, args, eps):
        return args[0] + args[1] * eps

    def sample(self, args, rng, num):
        return rng.normal(args[0], args[1], num)


class HalfNormal(PriorFamily):
    """``halfnormal(s)``: :math:`\\theta = |\\mathcal N(0, s)|`, :math:`z = \\log\\theta`,

    :math:`\\log p(z) = \\log 2 + \\log\\mathcal N(e^z \\mid 0, s) + z`.
    """

    name = "halfnormal"
    arity = 1
    log_coordinate = True

    def distribution(self, args):
        return dist.HalfNormal(args[0])

    def transform(self, args, z):
        x = jnp.exp(z)
        return x, z, math.log(2.0) + normal_logpdf(x, 0.0, args[0]) + z

    def unconstrained_draws(self, args, eps):
        return jnp.log(args[0] * jnp.abs(eps) + 1e-12)

    def sample(self, args, rng, num):
        return np.abs(rng.normal(0.0, args[0], num))


class Uniform(PriorFamily):
    """``uniform(a, b)``: :math:`\\theta = a + (b - a)\\,\\mathrm{sigmoid}(z)`,

    :math:`\\log p(z) = \\log\\mathrm{sigmoid}(z) + \\log\\mathrm{sigmoid}(-z)` (the constant
    :math:`-\\log(b - a)` and the Jacobian's :math:`+\\log(b - a)` cancel).
    """

    name = "uniform"
    arity = 2

    def problem(self, args):
        if args[0] < args[1]:
            return None
        return f"lower bound {args[0]:g} must be below upper bound {args[1]:g}"

    def positive(self, args):
        return args[0] >= 0

    def distribution(self, args):
        return dist.Uniform(args[0], args[1])

    def transform(self, args, z):
        x = args[0] + (args[1] - args[0]) * jax.nn.sigmoid(z)
        return x, jnp.log(x), jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)

    def unconstrained_draws(self, args, eps):
        u = jax.scipy.stats.norm.cdf(eps)  # logit of a uniform draw
        return jnp.log(u) - jnp.log1p(-u)

    def sample(self, args, rng, num):
        return rng.uniform(args[0], args[1], num)


class Gamma(PriorFamily):
    """``gamma(k, rate)``: :math:`z = \\log\\theta`,

    :math:`\\log p(z) = k\\log r - \\log\\Gamma(k) + (k - 1) z - r e^z + z`.

    Its :meth:`unconstrained_draws` are the lognormal with the gamma's mean and variance
    (starting points need not be exact draws, and this compiles no rejection sampler).
    """

    name = "gamma"
    arity = 2
    log_coordinate = True

    def problem(self, args):
        bad = [a for a in args if not a > 0]
        return f"shape and rate must be > 0, got {bad[0]:g}" if bad else None

    def distribution(self, args):
        return dist.Gamma(args[0], args[1])

    def transform(self, args, z):
        k, rate = args
        x = jnp.exp(z)
        return x, z, k * math.log(rate) - math.lgamma(k) + (k - 1) * z - rate * x + z

    def unconstrained_draws(self, args, eps):
        s2 = math.log1p(1.0 / args[0])
        return math.log(args[0] / args[1]) - 0.5 * s2 + math.sqrt(s2) * eps

    def sample(self, args, rng, num):
        return rng.gamma(args[0], 1.0 / args[1], num)


class Beta(PriorFamily):
    """``beta(a, b)``: :math:`\\theta = \\mathrm{sigmoid}(z)` on (0, 1),

    :math:`\\log p(z) = a \\log\\mathrm{sigmoid}(z) + b \\log\\mathrm{sigmoid}(-z) - \\log B(a, b)`
    (the density of :math:`\\theta` times the Jacobian :math:`\\theta(1 - \\theta)`).  With
    :math:`a, b > 1` the density vanishes at both ends, and the tails of :math:`z` fall like
    :math:`e^{-a|z|}`, :math:`e^{-b z}`: lighter than ``uniform(0, 1)``'s :math:`e^{-|z|}`.
    """

    name = "beta"
    arity = 2

    def problem(self, args):
        bad = [a for a in args if not a > 0]
        return f"shape parameters must be > 0, got {bad[0]:g}" if bad else None

    def positive(self, args):
        return True

    def distribution(self, args):
        return dist.Beta(args[0], args[1])

    def transform(self, args, z):
        a, b = args
        log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        log_x = jax.nn.log_sigmoid(z)
        return jnp.exp(log_x), log_x, a * log_x + b * jax.nn.log_sigmoid(-z) - log_norm

    def unconstrained_draws(self, args, eps):
        """The logit-normal with the beta's mean and variance of the logit (digamma moments)."""
        a, b = args
        special = jax.scipy.special
        mean = special.digamma(a) - special.digamma(b)
        sd = jnp.sqrt(special.polygamma(1, a) + special.polygamma(1, b))
        return mean + sd * eps

    def sample(self, args, rng, num):
        return rng.beta(args[0], args[1], num)


def get_prior_family(name: str) -> PriorFamily:
    """The family called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return PRIOR_FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown prior family {name!r}; known: {', '.join(PRIOR_FAMILIES)}"
        ) from None


_PRIOR_RE = re.compile(r"^\s*([a-z_]+)\s*\(([^()]*)\)\s*$")


def parse_prior(text: str) -> tuple[str, tuple[float, ...]]:
    """``"lognormal(0.5, 1)"`` -> ``("lognormal", (0.5, 1.0))``, arguments checked.

    Raises
    ------
    ValueError
        Naming ``text`` and what is wrong: not ``name(a, b)`` with a known name (the known
        ones listed), a non-numeric or non-finite argument, the wrong number of arguments,
        or an invalid scale or range (with the bad value).
    """
    m = _PRIOR_RE.match(str(text))
    if not m or m.group(1) not in PRIOR_FAMILIES:
        raise ValueError(
            f"prior {text!r} is not of the form name(a, b) with name one of "
            f"{', '.join(PRIOR_FAMILIES)}"
        )
    family = PRIOR_FAMILIES[m.group(1)]
    try:
        args = tuple(float(a) for a in m.group(2).split(",") if a.strip())
    except ValueError:
        raise ValueError(f"prior {text!r} has a non-numeric argument") from None
    if len(args) != family.arity:
        raise ValueError(f"prior {text!r}: {family.name} takes {family.arity} argument(s)")
    if not all(math.isfinite(a) for a in args):
        raise ValueError(f"prior {text!r} has a non-finite argument")
    problem = family.problem(args)
    if problem:
        raise ValueError(f"prior {text!r} has an invalid scale or range: {problem}")
    return family.name, args
