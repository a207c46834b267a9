"""Planning from a fitted posterior: compute-optimal allocation and the design of next runs.

* :mod:`~bayescale.plan.allocation` — :func:`allocate` / :func:`allocation_draws`: the
  posterior of the loss-minimising :math:`N_{opt}(C)`, :math:`D_{opt}(C)` (and, for the
  ``kaplan_*`` laws, batch size and steps) at a budget; the targets of planning
  (:func:`parse_target`, :func:`target_draws`).
* :mod:`~bayescale.plan.design` — :func:`score_candidates` / :func:`next_runs`: candidate runs
  scored by the expected reduction of a target's posterior variance (nested Monte Carlo over
  the posterior draws), the next runs chosen greedily within a budget;
  :func:`isoflop_candidates`.

The campaign simulator that checks a design rule where the truth is known is a benchmark
harness: ``benchmarks/campaigns.py``.
"""

from bayescale.plan.allocation import (
    ALLOCATION_QUANTITIES,
    Target,
    allocate,
    allocation_draws,
    parse_target,
    target_draws,
)
from bayescale.plan.design import isoflop_candidates, next_runs, score_candidates

__all__ = [
    "ALLOCATION_QUANTITIES",
    "Target",
    "allocate",
    "allocation_draws",
    "isoflop_candidates",
    "next_runs",
    "parse_target",
    "score_candidates",
    "target_draws",
]
