"""Law + observation model -> NumPyro model and the one log density every inference uses.

* :mod:`bayescale.model.observation`: the likelihood string (a family of
  :mod:`bayescale.families` and a noise model) and its densities and draws;
* :mod:`bayescale.model.posterior`: :class:`Posterior`, the one log density;
* :mod:`bayescale.model.hierarchy`: :class:`PooledPosterior`, parameters pooled across groups.
"""

from bayescale.families import HUBER_DELTA, NU_PRIOR, Huber, huber_logpdf
from bayescale.model.hierarchy import TAU_PRIOR, PooledPosterior, check_pooled_names
from bayescale.model.observation import (
    LIKELIHOODS,
    NOISE_MODELS,
    NOISE_SLOPE_PRIOR,
    likelihood_family,
    noise_model,
    noise_standardisation,
    observation_dist,
    observation_noise,
    observation_noise_jax,
    with_noise,
)
from bayescale.model.posterior import POTENTIAL_MAX, Posterior, capped_potential, posterior_key

__all__ = [
    "HUBER_DELTA",
    "LIKELIHOODS",
    "NOISE_MODELS",
    "NOISE_SLOPE_PRIOR",
    "NU_PRIOR",
    "POTENTIAL_MAX",
    "TAU_PRIOR",
    "Huber",
    "PooledPosterior",
    "Posterior",
    "capped_potential",
    "check_pooled_names",
    "huber_logpdf",
    "likelihood_family",
    "noise_model",
    "noise_standardisation",
    "observation_dist",
    "observation_noise",
    "observation_noise_jax",
    "posterior_key",
    "with_noise",
]
