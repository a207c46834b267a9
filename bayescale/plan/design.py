"""Design of the next runs from a fitted posterior.

:func:`next_runs` chooses, among candidate runs with costs, up to ``k`` runs within a budget
that minimise the expected posterior variance of a target quantity :math:`t(\\theta)` (its
log, for positive targets) once their outcomes are observed,

.. math::

    U(\\xi) = \\operatorname{Var}[t] - \\mathbb E_{y \\sim p(y \\mid \\xi)}
    \\operatorname{Var}[t \\mid y, \\xi]

(the expected reduction of the target's posterior variance).  It is estimated by nested Monte
Carlo over the posterior draws, without any Gaussian assumption: for ``num_outer`` draws
:math:`\\theta_j`, an outcome :math:`y_j` of the design is simulated through the model's
observation noise (Student-t or normal, on the log response); every draw :math:`\\theta_i`
is weighted by its likelihood :math:`w_{ij} \\propto p(y_j \\mid \\theta_i, \\xi)` (the
model's own :meth:`~bayescale.model.Posterior.pointwise_log_likelihood`, importance
reweighting of the current posterior) and

.. math::

    \\widehat{\\mathbb E \\operatorname{Var}}[t \\mid y, \\xi] = \\frac{1}{J} \\sum_j
    \\Big( \\sum_i w_{ij} t_i^2 - \\big(\\sum_i w_{ij} t_i\\big)^2 \\Big).

All candidates are scored in one compiled, vmapped call (candidates x outer draws x inner
draws) with common random numbers (the same outer draws and noise for every candidate), so
differences between candidates carry little Monte Carlo noise.  Runs are chosen greedily: each
step scores every remaining affordable candidate jointly with the runs already chosen (their
simulated outcomes enter the same weights), once ranking by the variance removed and once by
the variance removed per unit cost; the better of the two final designs is returned (the
cost-benefit greedy of Krause & Guestrin 2005, within a constant factor of the best design
for a submodular criterion).  The weights degenerate when a design is far more informative
than the current posterior; the effective sample size of the weights is reported.  A
candidate may be chosen again (``max_per_candidate``): a replicate gets its own simulated
noise, and for one target the best design often repeats its most informative run.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.data import DataError, covariate_frame, positive_column
from bayescale.infer.cache import compiled
from bayescale.infer.parallel import padded_length
from bayescale.model import observation_noise_jax, posterior_key
from bayescale.plan.allocation import FlopsFormula, as_budgets, log_target, parse_target
from bayescale.precision import float64
from bayescale.result import Result

__all__ = [
    "MIN_CHOSEN_SLOTS",
    "compiled_scorer",
    "isoflop_candidates",
    "next_runs",
    "score_candidates",
]


# ---------------------------------------------------------------------------- candidates
def _candidates(result: Result, candidates, flops_formula) -> tuple[pd.DataFrame, dict, np.ndarray]:
    """Validated candidates: the frame, log covariates ``{name: (m,)}`` and costs ``(m,)``."""
    law = result.law
    new = covariate_frame(law, candidates, result.columns)
    frame = pd.DataFrame(candidates).reset_index(drop=True)
    if "cost" in frame.columns:
        cost = positive_column(frame, "cost", "the candidates' costs")
    elif {"n_params", "n_tokens"} <= set(law.covariates):
        n, d = np.exp(new.log_x["n_params"]), np.exp(new.log_x["n_tokens"])
        cost = 6.0 * n * d if flops_formula is None else np.asarray(flops_formula(n, d))
    else:
        raise DataError(
            f"candidates need a 'cost' column (law {law.id!r} has no n_params and n_tokens "
            "to cost a run by C = 6ND); they have columns "
            f"{list(map(str, frame.columns))}"
        )
    return frame, {k: np.asarray(v) for k, v in new.log_x.items()}, cost


# ---------------------------------------------------------------------------- scoring
def _observation_noise(likelihood: str, values, rng_key, shape):
    """Log-scale observation noise for outer draws ``values`` (``(J,)``) -> ``(J, *rest)``."""
    return observation_noise_jax(likelihood, values, rng_key, shape)


def _padded_candidates(log_x: dict, batch_size: int) -> dict:
    """Candidates padded (with copies of the first) to a bucketed count, a multiple of
    ``batch_size`` (:func:`~bayescale.infer.batch.padded_length`: 32, 48, 64, 96, ...).

    Candidate sets of similar size then share one compiled scorer, and ``lax.map`` traces no
    second body for a remainder batch.  Each candidate's score depends on its own covariates
    and the common random numbers only, so the padding changes no score; callers keep the
    first ``m`` results.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    m = len(next(iter(log_x.values())))
    size = -(-padded_length(m) // batch_size) * batch_size
    idx = np.where(np.arange(size) < m, np.arange(size), 0)
    return {c: jnp.asarray(np.asarray(v)[idx]) for c, v in log_x.items()}


#: The scorer conditions on a fixed number of chosen-run slots (masked where unused), at
#: least this many, so that ``score_candidates`` and ``next_runs`` with ``k <= 3`` share one
#: compiled program.  A masked slot adds nothing to the weights.
MIN_CHOSEN_SLOTS = 3


def compiled_scorer(posterior):
    """The jitted scorer of one posterior (law + likelihood), compiled once per process."""
    if posterior.noise_slopes:
        raise ValueError(
            "next_runs / score_candidates simulate outcomes with a constant noise scale; this "
            "result was fitted with a noise scale that varies with "
            f"{sorted(posterior.noise_slopes)} (noise='loglinear'): refit with "
            "noise='constant' to design runs"
        )
    return compiled(
        ("design_scorer", *posterior_key(posterior)),
        lambda: jax.jit(
            partial(_expected_variances, posterior), static_argnames=("num_outer", "batch_size")
        ),
    )


def _expected_variances(
    posterior, values, t, chosen_log_x, chosen_mask, cand_log_x, rng_key, num_outer, batch_size
):
    """Expected posterior variance of ``t`` after observing the chosen runs + each candidate.

    ``values``: ``{name: (S,)}`` draws; ``t``: ``(S,)`` log target; ``chosen_log_x``:
    ``{name: (K,)}`` with ``chosen_mask`` ``(K,)`` (a fixed size, so that one compiled program
    serves every greedy step); ``cand_log_x``: ``{name: (M,)}``.  Returns the expected
    variance ``(M,)``, the mean effective sample size of the weights ``(M,)`` and the
    expected variance with the chosen runs alone (scalar).

    The variance a candidate removes is estimated through the law of total variance,
    :math:`\\mathbb E_{y_c} (\\bar t_w(y, y_c) - \\bar t_w(y))^2` with :math:`\\bar t_w` the
    importance-weighted posterior mean, less the delta-method variance
    :math:`\\sum_i (w_i - w^0_i)^2 (t_i - \\bar t_w)^2` that the finite number of inner draws
    adds to it; with common random numbers its Monte Carlo error is small where a candidate
    carries little information.
    """
    num_draws = t.shape[0]
    k_outer, k_chosen, k_cand = jax.random.split(rng_key, 3)
    outer = jax.random.choice(k_outer, num_draws, (num_outer,), replace=num_outer > num_draws)
    v_outer = {k: x[outer] for k, x in values.items()}
    v_col = {k: x[None, :] for k, x in values.items()}  # inner draws along the last axis

    def loglik(log_x, log_y):  # log_x {name: scalar}, log_y (J_outer,) -> (J_outer, S)
        return posterior.pointwise_log_likelihood(v_col, log_x, log_y[:, None])

    # the chosen runs' simulated outcomes: the same for every candidate (common random numbers)
    num_chosen = chosen_mask.shape[0]
    ll_chosen = jnp.zeros((num_outer, num_draws))
    if num_chosen:
        eps = _observation_noise(posterior.likelihood, v_outer, k_chosen, (num_outer, num_chosen))
        mu = posterior.log_mean({k: x[:, None] for k, x in v_outer.items()}, chosen_log_x)
        y = mu + eps  # (J_outer, K)

        def add(j, acc):
            ll = loglik({k: x[j] for k, x in chosen_log_x.items()}, y[:, j])
            return acc + jnp.where(chosen_mask[j], ll, 0.0)

        ll_chosen = jax.lax.fori_loop(0, num_chosen, add, ll_chosen)
    eps_cand = _observation_noise(posterior.likelihood, v_outer, k_cand, (num_outer,))

    def weighted_moments(logw):  # (J_outer, S) -> weights, means, variances (J_outer, ...)
        w = jax.nn.softmax(logw, axis=-1)
        mean = w @ t
        var = jnp.maximum(w @ (t * t) - mean * mean, 0.0)
        return w, mean, var

    base_w, base_mean, base_var = weighted_moments(ll_chosen)

    def score(log_x):
        mu = posterior.log_mean(v_outer, log_x)  # (J_outer,)
        w, mean, _ = weighted_moments(ll_chosen + loglik(log_x, mu + eps_cand))
        # E_y Var[E(t | y_chosen, y_c) | y_chosen], the variance the candidate removes, less
        # the delta-method variance of the importance-sampling estimate of that difference
        dev = t[None, :] - mean[:, None]
        noise = jnp.sum((w - base_w) ** 2 * dev * dev, axis=-1)
        ess = 1.0 / jnp.sum(w * w, axis=-1)
        return jnp.mean((mean - base_mean) ** 2 - noise), jnp.mean(ess)

    reduction, ess = jax.lax.map(score, cand_log_x, batch_size=batch_size)
    base = jnp.mean(base_var)
    # a design that pins the target below the spacing of the draws (ESS near 1) saturates the
    # estimate: it cannot resolve a variance below zero
    var = jnp.clip(base - reduction, 0.0, None)
    return var, ess, base


def _prepared(result, target, flops_formula, num_draws, seed):
    target = parse_target(result.law, target)
    draws = result.draws(list(result.posterior.site_names))
    flat = {k: np.asarray(x, dtype=np.float64).reshape(-1) for k, x in draws.items()}
    total = next(iter(flat.values())).size
    if num_draws is not None and num_draws < total:
        idx = np.random.default_rng(seed).choice(total, num_draws, replace=False)
        flat = {k: x[idx] for k, x in flat.items()}
    values = {k: jnp.asarray(x) for k, x in flat.items()}
    t = log_target(result.law, target, values, flops_formula)
    if not bool(jnp.all(jnp.isfinite(t))):
        bad = int(jnp.sum(~jnp.isfinite(t)))
        raise ValueError(f"target {target} is not finite for {bad} of {t.size} posterior draws")
    return target, values, t


@float64
def score_candidates(
    result: Result,
    target,
    candidates,
    *,
    chosen=None,
    num_outer: int = 128,
    num_draws: int | None = None,
    batch_size: int = 16,
    flops_formula: FlopsFormula | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Score every candidate run, in one vmapped call, by the expected reduction of the
    posterior variance of the (log) target.

    Parameters
    ----------
    result : Result
        The current posterior.
    target
        See :func:`parse_target`.
    candidates : DataFrame or dict
        One row per candidate run: the law's covariates (under the law's names or the fit's
        columns) and a ``cost`` column (default :math:`6ND` for laws of ``n_params`` and
        ``n_tokens``).
    chosen : DataFrame or dict, optional
        Runs already planned; each candidate is scored jointly with them.
    num_outer : int
        Outer draws :math:`J` (simulated outcomes) per candidate.
    num_draws : int, optional
        Inner draws used (a random subset of the posterior); default all.
    batch_size : int
        Candidates evaluated together (memory: ``batch_size * num_outer * num_draws``).  The
        candidates are padded to a bucketed count (32, 48, 64, 96, ..., a multiple of
        ``batch_size``), so candidate sets of similar size share one compiled program.
    flops_formula : callable, optional
        See :func:`allocation_draws`.
    seed : int
        Seed of the outer draws and the simulated noise (common to all candidates).

    Returns
    -------
    DataFrame
        The candidates with ``cost``, ``expected_variance`` (of the log target after the
        run), ``variance_reduction`` (relative to the current design: the posterior, plus
        ``chosen``) and ``ess`` (mean effective sample size of the importance weights).
        ``attrs`` holds ``prior_variance`` (of the log target under the current design).
    """
    target, values, t = _prepared(result, target, flops_formula, num_draws, seed)
    frame, log_x, cost = _candidates(result, candidates, flops_formula)
    chosen_log_x = {c: np.zeros(0) for c in result.law.covariates}
    if chosen is not None and len(pd.DataFrame(chosen)):
        _, chosen_log_x, _ = _candidates(result, chosen, flops_formula)
    num_chosen = len(next(iter(chosen_log_x.values())))
    # at least MIN_CHOSEN_SLOTS (masked) slots: an empty design would be constant-folded by
    # XLA, slowly, and scoring shares its compiled program with next_runs(k <= 3)
    num_slots = max(num_chosen, MIN_CHOSEN_SLOTS)
    mask = np.arange(num_slots) < num_chosen
    chosen_log_x = {
        c: np.concatenate([v, np.zeros(num_slots - num_chosen)]) for c, v in chosen_log_x.items()
    }
    var, ess, base = compiled_scorer(result.posterior)(
        values,
        t,
        {k: jnp.asarray(v) for k, v in chosen_log_x.items()},
        jnp.asarray(mask),
        _padded_candidates(log_x, batch_size),
        jax.random.key(seed),
        num_outer=int(num_outer),
        batch_size=int(batch_size),
    )
    var, ess = np.asarray(var)[: cost.size], np.asarray(ess)[: cost.size]
    out = frame.copy()
    out["cost"] = cost
    out["expected_variance"] = var
    out["variance_reduction"] = float(base) - var
    out["ess"] = ess
    out.attrs["prior_variance"] = float(base)
    out.attrs["target"] = str(target)
    return out


@float64
def next_runs(
    result: Result,
    *,
    target,
    candidates,
    budget: float,
    k: int = 4,
    num_outer: int = 128,
    num_draws: int | None = None,
    batch_size: int = 16,
    flops_formula: FlopsFormula | None = None,
    max_per_candidate: int | None = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Choose up to ``k`` candidate runs, of total cost at most ``budget``, that most reduce
    the expected posterior variance of the (log) target.

    The criterion and its nested Monte Carlo estimate are described in the module docstring:
    importance reweighting of the current posterior draws under outcomes simulated through
    the model's observation noise, all candidates in one vmapped call.  Selection is greedy
    and joint (each step conditions on the runs already chosen), run twice — ranking by the
    variance removed and by the variance removed per unit cost — keeping the design with the
    lower expected variance.  A candidate may be chosen up to ``max_per_candidate`` times
    (replicates: each repeat gets its own simulated noise).

    Parameters
    ----------
    result : Result
        The current posterior.
    target
        What to learn: ``{"n_params": 1e11, "n_tokens": 2e12}`` (loss there),
        ``"n_opt@5.76e23"`` (:math:`N_{opt}` at a budget), ``"loss_opt@5.76e23"``,
        ``{"loss": 2.0}`` (:math:`B_{crit}` at a loss, ``kaplan_bcrit``) ... see
        :func:`parse_target`.
    candidates : DataFrame or dict
        The runs one could do: the law's covariates and a ``cost`` column (default
        :math:`6ND` FLOP for laws of ``n_params`` and ``n_tokens``).
    budget : float
        Total cost allowed, in the units of ``cost``.
    k : int
        At most this many runs.
    max_per_candidate : int or None
        How many times one candidate may be chosen (``None``: up to ``k``).  For a single
        target the best design often has few support points (Elfving's theorem), so
        replicates of the most informative run can beat spreading the runs.
    num_outer, num_draws, batch_size, flops_formula, seed
        See :func:`score_candidates`.

    Returns
    -------
    DataFrame
        The chosen runs in the order chosen: the candidate's columns, ``cost``,
        ``cumulative_cost``, ``expected_variance`` (of the log target once all runs so far
        are observed), ``expected_sd_ratio`` (its square root over the current posterior
        sd) and ``ess``.  ``attrs`` holds ``target``, ``prior_variance``, ``rule``
        (``"gain"`` or ``"gain_per_cost"``, the greedy ranking kept) and the candidate row
        indices ``candidate_index``.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    repeats = int(k) if max_per_candidate is None else max_per_candidate
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"max_per_candidate must be an integer >= 1 or None, got {repeats!r}")
    budget = float(budget)
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive finite number, got {budget!r}")
    target, values, t = _prepared(result, target, flops_formula, num_draws, seed)
    frame, log_x, cost = _candidates(result, candidates, flops_formula)
    if not np.any(cost <= budget):
        raise ValueError(
            f"no candidate run fits the budget {budget:.4g}: the cheapest costs {cost.min():.4g}"
        )
    cand = _padded_candidates(log_x, batch_size)
    key = jax.random.key(seed)
    prior_var = float(jnp.var(t))
    scorer = compiled_scorer(result.posterior)
    num_slots = max(int(k), MIN_CHOSEN_SLOTS)  # masked slots: one program for every k <= 3

    def greedy(per_cost: bool):
        chosen, rows, spent = [], [], 0.0
        for _ in range(int(k)):
            slots = np.zeros(num_slots, dtype=int)
            slots[: len(chosen)] = chosen
            mask = np.arange(num_slots) < len(chosen)
            chosen_log_x = {c: jnp.asarray(v[slots]) for c, v in log_x.items()}
            var, ess, base = (
                np.asarray(a)
                for a in scorer(
                    values,
                    t,
                    chosen_log_x,
                    jnp.asarray(mask),
                    cand,
                    key,
                    num_outer=int(num_outer),
                    batch_size=int(batch_size),
                )
            )
            var, ess = var[: cost.size], ess[: cost.size]  # the padding removed
            gain = float(base) - var
            allowed = cost + spent <= budget * (1 + 1e-12)
            allowed &= np.bincount(chosen, minlength=cost.size) < repeats
            if not allowed.any():
                break
            rank = gain / cost if per_cost else gain
            best = int(np.argmax(np.where(allowed, rank, -np.inf)))
            if gain[best] <= 0 and chosen:
                break
            chosen.append(best)
            spent += float(cost[best])
            rows.append((best, float(var[best]), float(ess[best]), spent))
        return rows

    designs = {"gain": greedy(False), "gain_per_cost": greedy(True)}
    rule = min(designs, key=lambda r: designs[r][-1][1])
    rows = designs[rule]
    idx = [r[0] for r in rows]
    out = frame.iloc[idx].reset_index(drop=True)
    out["cost"] = cost[idx]
    out["cumulative_cost"] = [r[3] for r in rows]
    out["expected_variance"] = [r[1] for r in rows]
    out["expected_sd_ratio"] = np.sqrt(np.asarray([r[1] for r in rows]) / prior_var)
    out["ess"] = [r[2] for r in rows]
    out.attrs.update(target=str(target), prior_variance=prior_var, rule=rule, candidate_index=idx)
    return out


@float64
def isoflop_candidates(
    flops, *, tokens_per_param: tuple[float, float] = (0.1, 3000.0), num: int = 31
) -> pd.DataFrame:
    """Candidate runs along iso-FLOP curves :math:`6ND = C`, log-spaced in tokens per
    parameter :math:`r = D/N`: :math:`N = \\sqrt{C / (6r)}`, :math:`D = rN`.

    Parameters
    ----------
    flops : float or sequence of float
        Budget(s) :math:`C` of one run, in FLOP.
    tokens_per_param : (float, float)
        The range of :math:`D/N` spanned (the default reaches well past the Chinchilla ratio
        of ~20 on both sides: the runs most informative about an extrapolated optimum are
        often far from it).
    num : int
        Candidates per budget.

    Returns
    -------
    DataFrame
        ``n_params``, ``n_tokens``, ``cost`` (:math:`6ND`, equal to the budget).
    """
    flops = as_budgets(flops)
    low, high = (float(x) for x in tokens_per_param)
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(
            f"tokens_per_param must be (low, high) with 0 < low < high, got {tokens_per_param!r}"
        )
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    ratio = np.geomspace(low, high, int(num))
    n = np.sqrt(flops[:, None] / (6.0 * ratio[None, :])).ravel()
    d = (n.reshape(flops.size, -1) * ratio[None, :]).ravel()
    return pd.DataFrame({"n_params": n, "n_tokens": d, "cost": 6.0 * n * d})
