"""Law + observation model -> NumPyro model and the one log density every inference uses.

* :mod:`bayescale.model.observation`: the likelihood string (a family of
  :mod:`bayescale.families` and a noise model) and its densities and draws;
* :mod:`bayescale.model.discrepancy`: the law's own error, integrated out by a Kalman filter;
* :mod:`bayescale.model.posterior`: :class:`Posterior`, the one log density;
* :mod:`bayescale.model.hierarchy`: :class:`PooledPosterior`, parameters pooled across groups.
"""

from bayescale.families import HUBER_DELTA, NU_PRIOR, Huber, huber_logpdf
from bayescale.model import discrepancy, hierarchy, observation, posterior
from bayescale.model.discrepancy import *  # noqa: F403
from bayescale.model.hierarchy import *  # noqa: F403
from bayescale.model.observation import *  # noqa: F403
from bayescale.model.posterior import *  # noqa: F403

__all__ = [
    "HUBER_DELTA",
    "NU_PRIOR",
    "Huber",
    "huber_logpdf",
    *discrepancy.__all__,
    *hierarchy.__all__,
    *observation.__all__,
    *posterior.__all__,
]
