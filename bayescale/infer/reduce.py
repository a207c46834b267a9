"""The per-chunk reduction of a batch, compiled and run where the draws are.

A ``fit(..., by=, inference=NUTS(keep=k))`` call needs from each chunk of fits only the
kept draws and, per fit, the convergence numbers and the summary of all draws
(:func:`bayescale.convergence.keep_draws`).  :func:`build_reduction` compiles that reduction
as a second program applied to the sampler's output while it is still on the device(s), so
only summaries and ``k`` draws per chain cross to the host: a 100,000-curve call moves
summaries, not draws.  Every statistic is the one implementation of
:mod:`bayescale.diagnostics`, traced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax

from bayescale.convergence import keep_draws
from bayescale.diagnostics import tail_prob
from bayescale.infer.cache import compiled
from bayescale.infer.parallel import shard
from bayescale.model import Posterior, posterior_key

__all__ = ["build_reduction"]


def build_reduction(
    posterior: Posterior, keep: int, devices: tuple | None = None
) -> Callable[[dict], dict]:
    """``reduce(samples) -> samples`` thinned to ``keep`` draws per chain plus
    ``samples["all_draws"]`` (:func:`~bayescale.convergence.keep_draws`), jitted.

    ``samples`` is a sampler's output, leaves with a leading fit axis (JAX arrays; on several
    ``devices`` sharded over them along that axis, and the reduction runs per device block:
    every statistic is per fit).  The tail ESS quantiles are ArviZ's current
    ``rcParams["stats.ci_prob"]`` (part of the cache key).  Cached in
    :mod:`bayescale.infer.cache` under the law, likelihood, ``keep`` and devices.
    """
    devices = tuple(devices) if devices is not None and len(devices) > 1 else None
    prob = tail_prob()
    key = ("reduce", *posterior_key(posterior), int(keep), prob, devices)

    def build():
        fn = partial(keep_draws, posterior, keep=int(keep), prob=prob)
        return jax.jit(fn if devices is None else shard(fn, devices, "fits"))

    return compiled(key, build)
