"""The observation model: a likelihood family (:mod:`bayescale.families`) and a noise model.

The observation model is on the log of the response,

.. math::

    \\log y_i = \\log f(x_i; \\theta) + \\varepsilon_i, \\qquad
    \\varepsilon_i \\sim p_{\\text{family}}(\\,\\cdot \\mid \\sigma_i),

named by one string: the family (``"student_t"``, ``"student_t(4)"``, ``"normal"``,
``"huber"``; :func:`bayescale.families.get_likelihood`), optionally followed by ``+`` and a
noise model (``"student_t+loglinear"``, see :func:`with_noise`) and by ``+`` and a
discrepancy, the law's own error :math:`\\delta` (``"student_t+ou_rw"``,
``"normal+loglinear+ou_rw"``; :mod:`bayescale.model.discrepancy`, :func:`observation_name`).

Noise models:

* ``"constant"`` (default): one :math:`\\sigma` for every point.
* ``"loglinear"``: the scale grows or shrinks log-linearly with each covariate,

  .. math::

      \\log \\sigma(x_i) = \\log \\sigma_0 + \\sum_c \\gamma_c\\,u_{ci}, \\qquad
      u_{ci} = \\frac{\\log x_{ci} - m_c}{s_c}, \\qquad \\gamma_c \\sim \\mathcal N(0, 0.5^2),

  with :math:`m_c, s_c` the mean and standard deviation of :math:`\\log x_c` over the fitted
  points (:math:`s_c = 1` where they do not vary; :func:`noise_standardisation`), so
  :math:`\\sigma_0` is the scale at the data's centre and :math:`e^{\\gamma_c}` the factor per
  standard deviation of :math:`\\log x_c`.  The prior is centred at :math:`\\gamma = 0`, the
  constant model.  Predictions at new covariates use the same :math:`m_c, s_c` (those of the
  fitted data), so the predictive noise follows the fitted trend into the extrapolation.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from bayescale.families import LIKELIHOOD_FAMILIES, Likelihood, get_likelihood
from bayescale.model.discrepancy import parse_discrepancy

__all__ = [
    "LIKELIHOODS",
    "NOISE_MODELS",
    "NOISE_SLOPE_PRIOR",
    "discrepancy_model",
    "likelihood_family",
    "noise_model",
    "noise_standardisation",
    "observation_dist",
    "observation_name",
    "observation_noise",
    "observation_noise_jax",
    "with_noise",
]

#: The likelihood family names (:data:`bayescale.families.LIKELIHOOD_FAMILIES`).
LIKELIHOODS = tuple(LIKELIHOOD_FAMILIES)
NOISE_MODELS = ("constant", "loglinear")
#: Prior of each log-noise slope gamma_c (per standard deviation of log x_c), centred at the
#: constant-noise model: e^{+-0.5} = x1.6 per sd is one prior sd.
NOISE_SLOPE_PRIOR = (0.0, 0.5)


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
    family, current, discrepancy = _parts(likelihood)
    if current != "constant" and noise != "constant" and current != noise:
        raise ValueError(f"likelihood {likelihood!r} already has noise model {current!r}")
    if noise == "constant" or current == noise:
        return likelihood
    return "+".join([family, noise] + ([discrepancy] if discrepancy else []))


@functools.cache
def _parts(likelihood: str) -> tuple[str, str, str | None]:
    """``(family, noise, discrepancy)`` of a likelihood string."""
    family, *suffixes = (p.strip() for p in str(likelihood).split("+"))
    noise, discrepancy = "constant", None
    for part in suffixes:
        if part in NOISE_MODELS and noise == "constant" and discrepancy is None:
            noise = part
            continue
        try:
            if discrepancy is not None:
                raise ValueError(f"a second discrepancy {part!r}")
            discrepancy = parse_discrepancy(part)[1]
        except ValueError as err:
            raise ValueError(
                f"unknown noise model or discrepancy {part!r} in likelihood {likelihood!r} "
                f"({err}); noise models: {', '.join(NOISE_MODELS)}, then a discrepancy, each "
                "at most once"
            ) from None
    return family, noise, discrepancy


def noise_model(likelihood: str) -> str:
    """Noise model of a likelihood string: ``"student_t+loglinear"`` -> ``"loglinear"``."""
    return _parts(likelihood)[1]


def discrepancy_model(likelihood: str) -> str | None:
    """Discrepancy of a likelihood string (:func:`~bayescale.model.discrepancy.parse_discrepancy`'s
    canonical text): ``"student_t+ou_rw"`` -> ``"ou_rw"``; ``None`` without one."""
    return _parts(likelihood)[2]


def observation_name(
    likelihood: str, noise: str = "constant", discrepancy: str | None = None
) -> str:
    """The likelihood string of a family, a noise model and a discrepancy:
    ``observation_name("normal", "loglinear", "ou_rw") == "normal+loglinear+ou_rw"``.

    Raises
    ------
    ValueError
        For an unknown likelihood, noise model or discrepancy.
    """
    name = with_noise(likelihood, noise)
    if discrepancy is not None:
        discrepancy = parse_discrepancy(discrepancy)[1]
        current = discrepancy_model(name)
        if current is not None and current != discrepancy:
            raise ValueError(f"likelihood {likelihood!r} already has discrepancy {current!r}")
        if current is None:
            name = f"{name}+{discrepancy}"
    likelihood_family(name)  # raises on an unknown family
    return name


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
def likelihood_family(likelihood: str) -> Likelihood:
    """The likelihood family of a likelihood string, noise model and discrepancy ignored:
    ``"student_t(4)+loglinear"`` -> ``StudentTLikelihood(nu=4.0)``.

    Raises
    ------
    ValueError
        For an unknown likelihood or noise model.
    """
    return get_likelihood(_parts(likelihood)[0])


def observation_dist(likelihood: str, log_mean, sigma, nu=None) -> dist.Distribution:
    """Distribution of the log response around the law's log mean (the family's;
    ``nu`` is used by a fitted Student-t)."""
    return likelihood_family(likelihood).distribution(log_mean, sigma, {"nu": nu})


def observation_noise(rng, likelihood: str, values: dict, shape):
    """Numpy draws of the log-scale observation noise for parameter draws ``values``.

    ``values["sigma"]`` (and the family's extra sites, ``values["nu"]`` for a fitted
    Student-t) have shape ``(...)``; the noise has ``shape = (..., points)``.
    ``values["sigma"]`` may instead be the scale at each point, of shape ``shape``
    (:meth:`Posterior.point_sigma` of a ``"loglinear"`` noise model).  Numpy, so
    post-processing compiles nothing.
    """
    family = likelihood_family(likelihood)
    sigma = np.asarray(values["sigma"])
    sigma = sigma if sigma.shape == tuple(shape) else sigma[..., None]
    params = {k: np.asarray(values[k])[..., None] for k in family.extra_priors}
    return family.numpy_noise(rng, sigma, params, shape)


def observation_noise_jax(likelihood: str, values: dict, rng_key, shape):
    """JAX draws of the log-scale observation noise, shape ``shape = (J, *rest)``, for
    parameter draws ``values`` of shape ``(J,)`` (``sigma`` and the family's extra sites)."""
    family = likelihood_family(likelihood)
    extra = (1,) * (len(shape) - 1)
    sigma = values["sigma"].reshape(-1, *extra)
    params = {k: values[k].reshape(-1, *extra) for k in family.extra_priors}
    return family.jax_noise(rng_key, sigma, params, shape)
