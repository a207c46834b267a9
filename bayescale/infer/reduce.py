"""The per-chunk reduction of a batch, run where the draws are.

A ``fit(..., by=, inference=NUTS(keep=k))`` call needs from each chunk of fits only the
kept draws and, per fit, the convergence numbers and the summary of all draws
(:func:`bayescale.convergence.keep_draws`).  On accelerators :func:`build_reduction`
compiles that reduction as a second program applied to the sampler's output while it is
still on the device(s), so only summaries and ``k`` draws per chain cross to the host: a
100,000-curve call moves summaries, not draws.  On CPU devices (where the device is the
host and NumPy/SciPy evaluate the statistics faster than XLA's sort and FFT) the same
function runs on the fetched NumPy arrays.  Either way every statistic is the one
implementation of :mod:`bayescale.diagnostics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax

from bayescale.convergence import keep_draws
from bayescale.diagnostics import tail_prob
from bayescale.infer.cache import compiled
from bayescale.infer.parallel import shard
from bayescale.model import Posterior, posterior_key

__all__ = ["Reduction", "build_reduction"]


class Reduction(NamedTuple):
    """``fn(samples) -> samples`` reduced; ``on_device``: ``fn`` is a compiled program to
    apply to the sampler's JAX output before it is fetched, else a NumPy function to apply
    to the fetched output."""

    fn: Callable[[dict], dict]
    on_device: bool


def build_reduction(
    posterior: Posterior,
    keep: int,
    devices: Sequence | None = None,
    *,
    on_device: bool | None = None,
) -> Reduction:
    """The reduction of a chunk to ``keep`` draws per chain plus ``samples["all_draws"]``
    (:func:`~bayescale.convergence.keep_draws`) for fits sampled on ``devices`` (default
    ``jax.devices()``).

    ``on_device`` (default: unless every device is a CPU) compiles it with ``jax.jit``,
    split over several ``devices`` along the fit axis as the sampler's output is (every
    statistic is per fit), and caches it in :mod:`bayescale.infer.cache` under the law,
    likelihood, ``keep``, tail probability and devices.  The tail ESS quantiles are ArviZ's
    current ``rcParams["stats.ci_prob"]``.
    """
    devices = list(jax.devices() if devices is None else devices)
    if on_device is None:
        on_device = not all(d.platform == "cpu" for d in devices)
    prob = tail_prob()
    fn = partial(keep_draws, posterior, keep=int(keep), prob=prob)
    if not on_device:
        return Reduction(fn, False)
    sharded = tuple(devices) if len(devices) > 1 else None
    key = ("reduce", *posterior_key(posterior), int(keep), prob, sharded)
    program = compiled(key, lambda: jax.jit(fn if sharded is None else shard(fn, sharded, "fits")))
    return Reduction(program, True)
