"""Simulated design campaigns: the benchmark harness of :func:`bayescale.plan.next_runs`.

:func:`simulate_campaigns` checks a design rule where the truth is known: seeded campaigns
start from the same runs (outcomes simulated from the true law), are fitted in one
``fit(..., by=)`` call, spend compute on the runs :func:`~bayescale.plan.next_runs` picks and on
other designs of the same cost (random, grid, or any callable, e.g. another package's
suggestions), and every design is refitted in one more ``fit(..., by=)`` call and scored by the
width of the target's interval and whether it covers the truth.

Used by ``benchmarks/plan.py --part campaigns`` and ``tests/test_plan.py`` (which put this
folder on ``sys.path``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale import ConvergenceWarning, Result, fit
from bayescale.api import options_from_keywords
from bayescale.laws import get_law
from bayescale.plan import next_runs, parse_target
from bayescale.plan.allocation import check_allocation_law, log_target, log_target_draws
from bayescale.simulate import parameter_values, simulate_runs

__all__ = ["DesignFn", "simulate_campaigns"]


def _scaled_to_cost(runs: pd.DataFrame, cost: float) -> pd.DataFrame:
    """Runs with N and D scaled by one factor so that their total :math:`6ND` is ``cost``."""
    f = math.sqrt(cost / float(np.sum(6.0 * runs["n_params"] * runs["n_tokens"])))
    return pd.DataFrame({"n_params": runs["n_params"] * f, "n_tokens": runs["n_tokens"] * f})


DesignFn = Callable[[pd.DataFrame, Result, int], pd.DataFrame]


def simulate_campaigns(
    law,
    params: Mapping[str, float],
    *,
    start,
    candidates,
    target,
    budget: float,
    k: int,
    num_campaigns: int,
    noise: float = 0.02,
    likelihood: str = "normal",
    baselines: Sequence[str] = ("random", "grid"),
    grid_tokens_per_param: float = 20.0,
    others: Mapping[str, DesignFn] | None = None,
    fit_options: Mapping | None = None,
    design_options: Mapping | None = None,
    level: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulated design campaigns: does spending compute on the runs :func:`next_runs`
    chooses shrink the target's interval more than other designs of the same cost?

    Each campaign :math:`s` draws the outcomes of the ``start`` runs from the true law
    (:func:`bayescale.simulate.simulate_runs`, log-normal noise ``noise``), fits them (all
    campaigns in one :func:`bayescale.fit` call (``by=``)), then designs the next runs:

    - ``"next"``: :func:`next_runs` (target, candidates, budget, ``k``, ``design_options``);
    - ``"random"``: ``k`` candidates drawn at random, N and D scaled by one factor to the
      cost of ``"next"``;
    - ``"grid"``: ``k`` log-spaced sizes over the candidates' range of N at
      ``grid_tokens_per_param`` tokens per parameter, scaled to the cost of ``"next"``;
    - one per entry of ``others``: ``fn(start_data, start_fit, campaign) -> runs`` (e.g. another
      package's suggestions, at their own cost).

    The new runs' outcomes share their noise across designs (common random numbers), every
    (campaign, design) is refitted in one ``fit(..., by=)`` call, and each design is scored by
    the central ``level`` interval of the (log) target and whether it covers the truth.

    Parameters
    ----------
    law : str, Path or Law
        A law of ``n_params`` and ``n_tokens`` (runs are costed :math:`C = 6ND`).
    params : dict
        The true parameter values (over the law's reference values).
    start : DataFrame or dict
        Covariates of the runs every campaign starts from.
    candidates : DataFrame or dict
        Candidate runs for ``"next"`` and ``"random"`` (see :func:`next_runs`).
    target, budget, k
        See :func:`next_runs`.
    num_campaigns : int
    baselines : sequence of str
        Which of ``"random"`` and ``"grid"`` to add to ``"next"``.
    noise : float
        Standard deviation of the log-loss noise of the simulated runs.
    likelihood : str
        Likelihood of the fits.
    grid_tokens_per_param : float
    others : dict of str to callable, optional
    fit_options : dict, optional
        Passed to both ``fit(..., by=)`` calls (``num_chains``, ``num_warmup``, ...).
    design_options : dict, optional
        Passed to :func:`next_runs` (``num_outer``, ``max_per_candidate``, ...).
    level : float
        Central interval probability.
    seed : int
        Seeds the data, the fits and the random designs; campaign :math:`s` uses data seeds
        ``[seed, s, 0]`` (start) and ``[seed, s, 1]`` (new runs) and ``next_runs`` seed ``s``.

    Returns
    -------
    DataFrame
        One row per (``campaign``, ``design``), ``design`` ``"start"`` being the starting
        fit: ``cost`` and ``num_runs`` of the new runs, ``lower`` / ``upper`` / ``width`` of
        the log target's interval, ``covered``, ``num_nonfinite`` (draws of the log target
        that are not finite), ``max_rhat``, ``min_ess_bulk`` and
        ``status`` of the fit.  ``attrs``: ``truth`` (log target), ``target``, ``runs`` (all
        new runs with their ``campaign`` and ``design``, and for ``"next"`` the ``ess`` of the
        importance weights and the ``expected_sd_ratio`` of :func:`next_runs`),
        ``seconds`` (start fits, designs, refits), ``start_fits`` (the ``BatchResult``
        of the starting fits, labelled by campaign) and ``skipped``: ``{campaign: reason}``
        for the campaigns whose starting fit gives a non-finite target in some draws (a
        stuck chain): no design can be scored there, so they have a ``"start"`` row only.
        A refit with non-finite target draws has a ``NaN`` interval and is not covering.
    """
    law = get_law(law)
    check_allocation_law(law, steps=False)
    theta = parameter_values(law, params)
    target = parse_target(law, target)
    truth = float(log_target(law, target, {k_: jnp.asarray([v]) for k_, v in theta.items()})[0])
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(num_campaigns, bool) or not isinstance(num_campaigns, int | np.integer):
        raise ValueError(f"num_campaigns must be an integer >= 1, got {num_campaigns!r}")
    if num_campaigns < 1:
        raise ValueError(f"num_campaigns must be an integer >= 1, got {num_campaigns!r}")
    unknown = set(baselines) - {"random", "grid"}
    if unknown:
        raise ValueError(f"baselines must be among 'random' and 'grid', got {sorted(unknown)}")
    start = pd.DataFrame(start)[["n_params", "n_tokens"]].reset_index(drop=True)
    cands = pd.DataFrame(candidates).reset_index(drop=True)
    fit_options = {"progress_bar": False, **dict(fit_options or {})}
    design_options = dict(design_options or {})
    others = dict(others or {})
    seconds = {}

    def fits(data, fit_seed):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            options = options_from_keywords(likelihood=likelihood, **fit_options)
            out = fit(data, law, by="campaign", seed=fit_seed, **options)
        return out, time.perf_counter() - t0

    init = pd.concat(
        [
            simulate_runs(law, start, params=theta, noise=noise, seed=[seed, s, 0]).assign(
                campaign=s
            )
            for s in range(num_campaigns)
        ],
        ignore_index=True,
    )
    first, seconds["start_fits"] = fits(init, seed)
    rng = np.random.default_rng([seed, 2])
    sizes = np.geomspace(cands["n_params"].min(), cands["n_params"].max(), k)
    grid = pd.DataFrame({"n_params": sizes, "n_tokens": grid_tokens_per_param * sizes})
    t0 = time.perf_counter()
    runs = []
    skipped = {}
    for s in range(num_campaigns):
        data = init[init.campaign == s].drop(columns="campaign").reset_index(drop=True)
        # drawn for every campaign, so a skipped campaign leaves the others' random designs
        pick = cands.iloc[rng.choice(len(cands), k, replace=False)]
        start_log_t = log_target_draws(first[s], target)
        bad = int(np.sum(~np.isfinite(start_log_t)))
        if bad:  # e.g. a chain stuck where the target overflows: no design can be scored
            diag = first.diagnostics.loc[s]
            skipped[s] = (
                f"the starting fit's target is not finite in {bad} of {start_log_t.size} "
                f"draws (status {diag['status']}, max r-hat {diag['max_rhat']:.3g})"
            )
            continue
        chosen = next_runs(
            first[s], target=target, candidates=cands, budget=budget, k=k, seed=s, **design_options
        )
        cost = float(chosen["cost"].sum())
        designs = {
            "next": chosen[["n_params", "n_tokens", "ess", "expected_sd_ratio"]],
            "random": _scaled_to_cost(pick, cost),
            "grid": _scaled_to_cost(grid, cost),
        }
        designs = {name: runs for name, runs in designs.items() if name in {"next", *baselines}}
        for name, fn in others.items():
            designs[name] = pd.DataFrame(fn(data, first[s], s))[["n_params", "n_tokens"]]
        for name, new in designs.items():
            new = simulate_runs(law, new, params=theta, noise=noise, seed=[seed, s, 1])
            runs.append(new.assign(campaign=f"{name}/{s}", design=name, campaign_index=s))
    seconds["designs"] = time.perf_counter() - t0
    if not runs:
        raise ValueError(f"no campaign could be designed: {skipped}")
    new_runs = pd.concat(runs, ignore_index=True)
    data = pd.concat(
        [
            init[init.campaign == s].assign(campaign=label)
            for label, s in new_runs.groupby("campaign", sort=False)["campaign_index"]
            .first()
            .items()
        ]
        + [new_runs.drop(columns=["design", "campaign_index"])],
        ignore_index=True,
    )
    refit, seconds["refits"] = fits(data, seed + 1)

    probs = ((1 - level) / 2, (1 + level) / 2)

    def rows(batch, labels):
        diag = batch.diagnostics
        for label, (s, name) in labels.items():
            log_t = log_target_draws(batch[label], target).ravel()
            lo, hi = np.quantile(log_t, probs)
            new = new_runs[new_runs.campaign == label]
            yield {
                "campaign": s,
                "design": name,
                "cost": float(np.sum(6.0 * new["n_params"] * new["n_tokens"])),
                "num_runs": len(new),
                "lower": lo,
                "upper": hi,
                "width": hi - lo,
                "covered": bool(lo <= truth <= hi),
                "num_nonfinite": int(np.sum(~np.isfinite(log_t))),
                "max_rhat": float(diag.loc[label, "max_rhat"]),
                "min_ess_bulk": float(diag.loc[label, "min_ess_bulk"]),
                "status": diag.loc[label, "status"],
            }

    out = pd.DataFrame(
        [
            *rows(first, {s: (s, "start") for s in range(num_campaigns)}),
            *rows(
                refit,
                {
                    label: (int(label.rsplit("/", 1)[1]), label.rsplit("/", 1)[0])
                    for label in refit.labels
                },
            ),
        ]
    )
    out.attrs.update(
        truth=truth,
        target=str(target),
        runs=new_runs.drop(columns="campaign"),
        skipped=skipped,
        seconds=seconds,
        start_fits=first,
    )
    return out
