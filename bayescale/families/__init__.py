"""The registry of prior and likelihood families: one class per family.

A leaf package: it imports nothing from ``bayescale``, so both the law parser
(:mod:`bayescale.laws`, which parses prior text) and the model (:mod:`bayescale.model`,
which sums log densities and draws) use it without an upward import.

* Priors (:mod:`bayescale.families.priors`): :data:`PRIOR_FAMILIES`,
  :func:`get_prior_family`, :func:`parse_prior`.
* Likelihoods (:mod:`bayescale.families.likelihoods`): :data:`LIKELIHOOD_FAMILIES`,
  :func:`get_likelihood`.
"""

from bayescale.families.likelihoods import (
    HUBER_DELTA,
    LIKELIHOOD_FAMILIES,
    NU_PRIOR,
    Huber,
    HuberLikelihood,
    Likelihood,
    NormalLikelihood,
    StudentTLikelihood,
    get_likelihood,
    huber_logpdf,
    likelihood_names,
)
from bayescale.families.priors import (
    PRIOR_FAMILIES,
    Beta,
    Gamma,
    HalfNormal,
    LogNormal,
    Normal,
    PriorFamily,
    Uniform,
    get_prior_family,
    normal_logpdf,
    parse_prior,
)

__all__ = [
    "HUBER_DELTA",
    "LIKELIHOOD_FAMILIES",
    "NU_PRIOR",
    "PRIOR_FAMILIES",
    "Beta",
    "Gamma",
    "HalfNormal",
    "Huber",
    "HuberLikelihood",
    "Likelihood",
    "LogNormal",
    "Normal",
    "NormalLikelihood",
    "PriorFamily",
    "StudentTLikelihood",
    "Uniform",
    "get_likelihood",
    "get_prior_family",
    "huber_logpdf",
    "likelihood_names",
    "normal_logpdf",
    "parse_prior",
]
