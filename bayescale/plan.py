"""Planning from a fitted posterior: compute-optimal allocation and the design of next runs.

Allocation
----------
For a law of model size :math:`N` and tokens :math:`D` under the budget :math:`C = 6ND`
(or a user-supplied FLOP formula :math:`C = c(N, D)`), :func:`allocate` returns the
posterior of the loss-minimising :math:`N_{opt}(C)`, :math:`D_{opt}(C)`, tokens per
parameter and the loss there, at one budget or a grid of budgets (vmapped over draws and
budgets).

For the Chinchilla form :math:`L = E + A N^{-\\alpha} + B D^{-\\beta}` under :math:`C = 6ND`
the optimum is closed form (Hoffmann et al. 2022, eq. 4):

.. math::

    N_{opt} = G (C/6)^{\\beta/(\\alpha+\\beta)}, \\quad
    D_{opt} = G^{-1} (C/6)^{\\alpha/(\\alpha+\\beta)}, \\quad
    G = \\left(\\frac{\\alpha A}{\\beta B}\\right)^{1/(\\alpha+\\beta)}.

Any other law with ``n_params`` and ``n_tokens`` covariates (``kaplan_nd``, a formula of
your own) or another FLOP formula is minimised numerically per posterior draw: a log-spaced
grid over :math:`N` (six decades either side of :math:`N = D`) refined by a parabola through
the best three points; :math:`D` solves :math:`c(N, D) = C` (closed form for ``6ND``,
bisection in :math:`\\log D` otherwise).

For the ``kaplan_*`` laws the allocation also gives the batch size and the number of steps:
the critical batch size at the predicted loss, :math:`B = B_{crit}(L_{opt}) = B_*
L_{opt}^{-1/\\alpha_B}` (Kaplan et al. 2020, eq. 5.3; the published constants, or the
posterior of a ``kaplan_bcrit`` fit passed as ``bcrit=``), and :math:`S = D_{opt} / B`.

A law of model size and steps, ``kaplan_ns``'s :math:`L(N, S_{min}) = (N_c/N)^{\\alpha_N}
+ (S_c/S_{min})^{\\alpha_S}`, is allocated under Kaplan et al.'s compute
:math:`C = 6 N B S` with the batch at its critical size for the loss reached,
:math:`B = B_{crit}(L) = B_* L^{-1/\\alpha_B}`, so
:math:`C(N, S) = 6 N S B_* L(N, S)^{-1/\\alpha_B}` (their :math:`C_{min}`, eq. 5.5): the
budget is spent on parameters and steps at the batch size that wastes neither compute nor
steps.  Per draw, :math:`S(N)` spending the budget exactly is found by bisection and
:math:`L(N, S(N))` minimised over :math:`N` as above; the tokens are :math:`D = BS`.

Design of the next runs
-----------------------
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

Campaigns
---------
:func:`simulate_campaigns` checks a design rule where the truth is known: seeded campaigns
start from the same runs (outcomes simulated from the true law), are fitted in one
``fit_batch`` call, spend compute on the runs :func:`next_runs` picks and on other designs of
the same cost (random, grid, or any callable, e.g. another package's suggestions), and every
design is refitted in one more ``fit_batch`` call and scored by the width of the target's
interval and whether it covers the truth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.data import DataError, covariate_frame
from bayescale.infer.batch import padded_length
from bayescale.laws import get_law
from bayescale.model import observation_dist
from bayescale.result import FitResult, quantile_column

__all__ = [
    "ALLOCATION_QUANTITIES",
    "Target",
    "allocate",
    "allocation_draws",
    "isoflop_candidates",
    "next_runs",
    "parse_target",
    "score_candidates",
    "simulate_campaigns",
    "target_draws",
]

#: Target names for an allocation quantity at a budget (``"n_opt@5.76e23"``).
ALLOCATION_QUANTITIES = {
    "n_opt": "n_params",
    "d_opt": "n_tokens",
    "tokens_per_param": "tokens_per_param",
    "loss_opt": "response",
}

FlopsFormula = Callable[[jax.Array, jax.Array], jax.Array]


# ---------------------------------------------------------------------------- allocation
def _is_chinchilla(law) -> bool:
    return law.formula.text.replace(" ", "") == "E+A*n_params**-alpha+B*n_tokens**-beta"


def _steps_law(law) -> bool:
    """A law of model size and (minimal) optimizer steps, ``kaplan_ns``'s :math:`L(N, S)`."""
    return set(law.covariates) == {"n_params", "steps"}


def _check_allocation_law(law, *, steps: bool = True) -> None:
    if set(law.covariates) == {"n_params", "n_tokens"} or (steps and _steps_law(law)):
        return
    raise ValueError(
        "allocate needs a law of n_params and n_tokens"
        + (" (or of n_params and steps)" if steps else "")
        + f"; law {law.id!r} has covariates {list(law.covariates)}"
    )


def _budgets(flops) -> np.ndarray:
    flops = np.atleast_1d(np.asarray(flops, dtype=np.float64))
    if flops.ndim != 1 or not np.all(np.isfinite(flops)) or np.any(flops <= 0):
        raise ValueError(f"flops must be positive finite budget(s), got {flops!r}")
    return flops


def _log_tokens_solver(flops_formula: FlopsFormula | None):
    """``(log_n, log_c) -> log_d`` with ``c(N, D) = C``: closed form for 6ND, else bisection."""
    if flops_formula is None:
        return lambda log_n, log_c: log_c - math.log(6.0) - log_n

    def solve(log_n, log_c):
        def excess(log_d):
            return jnp.log(flops_formula(jnp.exp(log_n), jnp.exp(log_d))) - log_c

        lo, hi = log_c - log_n - 60.0, log_c - log_n + 60.0  # D in e^±60 of C/N

        def step(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = excess(mid) > 0
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(0, 80, step, (lo, hi))
        return 0.5 * (lo + hi)

    return solve


def _parabola_minimum(grid, vals, h):
    """The minimum of ``vals`` on the uniform ``grid`` (step ``h``), refined by a parabola
    through the best three points."""
    num_grid = grid.shape[0]
    i = jnp.argmin(jnp.where(jnp.isfinite(vals), vals, jnp.inf))
    i = jnp.clip(i, 1, num_grid - 2)
    y0, y1, y2 = vals[i - 1], vals[i], vals[i + 1]
    denom = y0 - 2 * y1 + y2
    shift = jnp.where(denom > 0, 0.5 * h * (y0 - y2) / denom, 0.0)
    return grid[i] + jnp.clip(shift, -h, h)


def _steps_allocation_fn(law, num_grid: int = 256, num_bisect: int = 60):
    """Allocation for a law :math:`L(N, S)` of model size and steps (``kaplan_ns``).

    The batch size is the critical one at the loss reached, :math:`B = B_*
    L^{-1/\\alpha_B}` (Kaplan et al. 2020, eq. 5.3), so a run of :math:`N` parameters and
    :math:`S` steps costs :math:`C = 6 N B S = 6 N S B_* L(N, S)^{-1/\\alpha_B}` (their
    :math:`C_{min}`, eq. 5.5, with :math:`S = S_{min}`).  Per draw and budget: a log grid
    over :math:`N` (six decades either side of a first guess), at each :math:`N` the steps
    spending the budget exactly (bisection in :math:`\\log S`: :math:`S B_{crit}(L)` grows
    with :math:`S`), the loss minimised over the grid and refined by a parabola.  ``B_star``
    and ``alpha_B`` come from the draw's values when present (a ``kaplan_bcrit`` posterior
    paired by :func:`allocation_draws`), else the published constants.
    """
    ref = get_law("kaplan_bcrit").reference
    offsets = jnp.linspace(-6.0, 6.0, num_grid) * math.log(10.0)
    h = float(offsets[1] - offsets[0])

    def log_batch(v, log_l):
        b_star = v["B_star"] if "B_star" in v else float(ref["B_star"])
        alpha_b = v["alpha_B"] if "alpha_B" in v else float(ref["alpha_B"])
        return jnp.log(b_star) - log_l / alpha_b

    def log_steps(v, log_n, log_c):
        def excess(log_s):
            log_l = law.log_mean(v, {"n_params": log_n, "steps": log_s})
            return math.log(6.0) + log_n + log_s + log_batch(v, log_l) - log_c

        centre = log_c - math.log(6.0) - log_n - math.log(1e6)  # a batch of ~1e6 tokens

        def step(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = excess(mid) > 0
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(0, num_bisect, step, (centre - 40.0, centre + 40.0))
        return 0.5 * (lo + hi)

    def allocation(v, log_c):
        # first guess: N ~ sqrt(C / (6 B)) with B ~ 1e6 tokens
        grid = 0.5 * (log_c - math.log(6.0) - math.log(1e6)) + offsets
        log_s = jax.vmap(lambda n: log_steps(v, n, log_c))(grid)
        vals = law.log_mean(v, {"n_params": grid, "steps": log_s})
        log_n = _parabola_minimum(grid, vals, h)
        log_s = log_steps(v, log_n, log_c)
        log_l = law.log_mean(v, {"n_params": log_n, "steps": log_s})
        log_b = log_batch(v, log_l)
        return {
            "n_params": log_n,
            "n_tokens": log_b + log_s,
            "response": log_l,
            "steps": log_s,
            "batch_size": log_b,
        }

    return allocation


def _allocation_fn(law, flops_formula: FlopsFormula | None = None, num_grid: int = 512):
    """``(values, log_c) -> {name: log value}`` for one draw and one budget (jittable):
    ``n_params``, ``n_tokens``, ``response`` (the loss at the optimum), and for laws of
    steps also ``steps`` and ``batch_size``."""
    _check_allocation_law(law)
    if _steps_law(law):
        if flops_formula is not None:
            raise ValueError(
                f"law {law.id!r} is a law of steps: its runs cost C = 6 N B_crit(L) S; "
                "flops_formula applies to laws of n_params and n_tokens"
            )
        return _steps_allocation_fn(law)
    log_d_of = _log_tokens_solver(flops_formula)
    if flops_formula is None and _is_chinchilla(law):

        def optimum(v, log_c):
            log_c6 = log_c - math.log(6.0)
            a, b = v["alpha"], v["beta"]
            log_g = (jnp.log(a) + jnp.log(v["A"]) - jnp.log(b) - jnp.log(v["B"])) / (a + b)
            log_n = log_g + log_c6 * b / (a + b)
            return log_n, log_c6 - log_n

    else:
        offsets = jnp.linspace(-6.0, 6.0, num_grid) * math.log(10.0)
        h = float(offsets[1] - offsets[0])

        def optimum(v, log_c):
            grid = 0.5 * (log_c - math.log(6.0)) + offsets
            log_d = jax.vmap(lambda n: log_d_of(n, log_c))(grid)
            vals = law.log_mean(v, {"n_params": grid, "n_tokens": log_d})
            log_n = _parabola_minimum(grid, vals, h)
            return log_n, log_d_of(log_n, log_c)

    def allocation(v, log_c):
        log_n, log_d = optimum(v, log_c)
        log_l = law.log_mean(v, {"n_params": log_n, "n_tokens": log_d})
        return {"n_params": log_n, "n_tokens": log_d, "response": log_l}

    return allocation


def _bcrit_values(bcrit: FitResult | None, num: int, seed: int) -> dict[str, np.ndarray]:
    """``B_star`` and ``alpha_B`` per draw: a kaplan_bcrit posterior resampled to ``num``
    draws, or the published constants."""
    if bcrit is None:
        ref = get_law("kaplan_bcrit").reference
        return {k: np.full(num, float(ref[k])) for k in ("B_star", "alpha_B")}
    if not {"B_star", "alpha_B"} <= set(bcrit.law.parameters):
        raise ValueError(
            f"bcrit must be a fit of the kaplan_bcrit law (parameters B_star, alpha_B); got law "
            f"{bcrit.law.id!r} with parameters {list(bcrit.law.parameters)}"
        )
    draws = bcrit.draws(["B_star", "alpha_B"])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, draws["B_star"].size, num)
    return {k: v.ravel()[idx] for k, v in draws.items()}


def allocation_draws(
    result: FitResult,
    flops,
    *,
    flops_formula: FlopsFormula | None = None,
    bcrit: FitResult | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Posterior draws of the allocation at each budget, arrays ``(chain, draw, budget)``.

    Parameters
    ----------
    result : FitResult
        A fit of a law of ``n_params`` and ``n_tokens``, or of ``n_params`` and ``steps``
        (``kaplan_ns``: runs cost :math:`C = 6 N B S` at the critical batch size
        :math:`B = B_{crit}(L)`, see the module docstring).
    flops : float or sequence of float
        Budget(s) :math:`C` in FLOP.
    flops_formula : callable, optional
        ``flops_formula(n_params, n_tokens) -> flops`` written with ``jax.numpy`` and
        increasing in ``n_tokens``; default :math:`C = 6ND`.
    bcrit : FitResult, optional
        A ``kaplan_bcrit`` fit giving :math:`B_{crit}(L)` for the batch size of ``kaplan_*``
        laws (its draws are resampled with ``seed`` to pair with this posterior's); default
        the published constants.  Passing it adds batch size and steps for any law.

    Returns
    -------
    dict of str to ndarray
        ``n_params``, ``n_tokens``, ``tokens_per_param``, the response (e.g. ``loss``) at the
        optimum, and for ``kaplan_*`` laws (or with ``bcrit``) ``batch_size`` (tokens) and
        ``steps``.  For a law of steps, ``n_tokens`` is :math:`B S`.
    """
    law = result.law
    _check_allocation_law(law)
    flops = _budgets(flops)
    allocation = _allocation_fn(law, flops_formula)
    draws = {k: jnp.asarray(x) for k, x in result.draws().items()}
    shape = (*next(iter(draws.values())).shape, flops.size)
    flat = {k: x.reshape(-1) for k, x in draws.items()}
    num = next(iter(flat.values())).size
    if _steps_law(law):  # the batch size is part of the cost: B_crit per draw inside
        flat.update({k: jnp.asarray(v) for k, v in _bcrit_values(bcrit, num, seed).items()})
    log_c = jnp.log(jnp.asarray(flops))

    def build():  # draws x budgets
        per_draw = lambda v, log_c: jax.vmap(lambda c: allocation(v, c))(log_c)  # noqa: E731
        return jax.vmap(per_draw, in_axes=(0, None))

    run = _program("allocation", law, flops_formula, build)
    logs = {k: np.asarray(a) for k, a in run(flat, log_c).items()}
    log_n, log_d, log_l = logs["n_params"], logs["n_tokens"], logs["response"]
    out = {
        "n_params": np.exp(log_n).reshape(shape),
        "n_tokens": np.exp(log_d).reshape(shape),
        "tokens_per_param": np.exp(log_d - log_n).reshape(shape),
        law.response: np.exp(log_l).reshape(shape),
    }
    if _steps_law(law):
        out["batch_size"] = np.exp(logs["batch_size"]).reshape(shape)
        out["steps"] = np.exp(logs["steps"]).reshape(shape)
    elif law.id.startswith("kaplan_") or bcrit is not None:
        b = _bcrit_values(bcrit, log_l.shape[0], seed)
        log_b = np.log(b["B_star"])[:, None] - log_l / b["alpha_B"][:, None]
        out["batch_size"] = np.exp(log_b).reshape(shape)
        out["steps"] = np.exp(log_d - log_b).reshape(shape)
    return out


def allocate(
    result: FitResult,
    flops,
    *,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    flops_formula: FlopsFormula | None = None,
    bcrit: FitResult | None = None,
) -> pd.DataFrame:
    """Compute-optimal allocation at budget(s) ``flops`` (FLOP, :math:`C = 6ND` by default).

    Parameters
    ----------
    result : FitResult
        A fit of a law of ``n_params`` and ``n_tokens``.
    flops : float or sequence of float
        One budget or a grid of budgets (all computed in one vmapped call).
    quantiles : sequence of float
        Each gives a column ``q<percent>``.
    flops_formula, bcrit
        See :func:`allocation_draws`.

    Returns
    -------
    DataFrame
        One row per budget and quantity (``n_params``, ``n_tokens``, ``tokens_per_param``,
        the response at the optimum, and ``batch_size``, ``steps`` for ``kaplan_*`` laws)
        with its posterior ``mean`` and quantile columns (``q5``, ``q50``, ``q95`` by
        default).  :func:`allocation_draws` gives the draws.
    """
    qs = [float(q) for q in quantiles]
    if not all(0 < q < 1 for q in qs):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
    draws = allocation_draws(result, flops, flops_formula=flops_formula, bcrit=bcrit)
    flops = _budgets(flops)
    rows = []
    for j, c in enumerate(flops):
        for name, x in draws.items():
            d = x[..., j].ravel()
            row = {"flops": c, "quantity": name, "mean": d.mean()}
            row.update({quantile_column(q): np.quantile(d, q) for q in qs})
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """A scalar quantity of the posterior whose uncertainty a design should shrink.

    Attributes
    ----------
    kind : {"point", "allocation"}
        ``"point"``: the law's response at covariate values ``at`` (loss at a target
        :math:`(N, D)`; :math:`B_{crit}` at a target loss for ``kaplan_bcrit``).
        ``"allocation"``: an allocation quantity (``n_opt``, ``d_opt``,
        ``tokens_per_param``, ``loss_opt``) at the budget ``at["flops"]``.
    quantity : str
        The response name (``"point"``) or the allocation quantity.
    at : dict of str to float
    """

    kind: str
    quantity: str
    at: dict

    def __str__(self) -> str:
        if self.kind == "allocation":
            return f"{self.quantity}@{self.at['flops']:.4g}"
        where = ",".join(f"{k}={v:.4g}" for k, v in self.at.items())
        return f"{self.quantity}({where})"


def _number(text, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"target {what}: {text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"target {what}: {text!r} must be a positive finite number")
    return value


def parse_target(law, target) -> Target:
    """Read a target: ``Target``, ``{"n_params": 1e11, "n_tokens": 2e12}``,
    ``"n_params=1e11,n_tokens=2e12"``, ``("n_opt", 5.76e23)`` or ``"n_opt@5.76e23"``.

    A mapping (or ``NAME=VALUE`` list) gives the law's response at those covariate values;
    ``QUANTITY@FLOPS`` gives an allocation quantity (``n_opt``, ``d_opt``,
    ``tokens_per_param``, ``loss_opt``) at a budget, for laws of ``n_params`` and
    ``n_tokens``.  Errors name the offending value.
    """
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        text = target.strip()
        if "@" in text:
            name, _, budget = text.partition("@")
            target = (name.strip(), budget.strip())
        else:
            pairs = {}
            for item in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(
                        f"target {target!r}: {item!r} is neither NAME=VALUE nor QUANTITY@FLOPS"
                    )
                pairs[key.strip()] = value.strip()
            target = pairs
    if isinstance(target, tuple):
        if len(target) != 2 or target[0] not in ALLOCATION_QUANTITIES:
            raise ValueError(
                f"allocation target {target!r} must be (QUANTITY, FLOPS) with QUANTITY one of "
                f"{', '.join(ALLOCATION_QUANTITIES)}"
            )
        _check_allocation_law(law)
        return Target("allocation", target[0], {"flops": _number(target[1], "budget")})
    if isinstance(target, Mapping):
        unknown = [k for k in target if k not in law.covariates]
        missing = [c for c in law.covariates if c not in target]
        if unknown or missing:
            raise ValueError(
                f"point target {dict(target)!r} for law {law.id!r} must give exactly its "
                f"covariates {list(law.covariates)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        at = {c: _number(target[c], c) for c in law.covariates}
        return Target("point", law.response, at)
    raise TypeError(f"cannot read a target from {type(target).__name__}: {target!r}")


_PROGRAMS: dict = {}


def _program(name: str, law, flops_formula, build):
    """The jitted ``build()``, made once per (``name``, law, FLOP formula) and process.

    The programs take the budgets and target values as arguments, so a new budget or target
    point reuses them instead of compiling again.
    """
    key = (name, json.dumps(law.to_spec(), sort_keys=True, default=str), flops_formula)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(build())
    return _PROGRAMS[key]


def _target_fn(law, target: Target, flops_formula: FlopsFormula | None = None):
    """``(values, log_at) -> log t`` for one draw (jittable); ``log_at`` holds the log of
    ``target.at`` (the covariate values, or the budget ``flops``)."""
    if target.kind == "point":
        return lambda v, log_at: law.log_mean(v, log_at)
    allocation = _allocation_fn(law, flops_formula)

    def fn(v, log_at):
        logs = allocation(v, log_at["flops"])
        if target.quantity == "tokens_per_param":
            return logs["n_tokens"] - logs["n_params"]
        return logs[ALLOCATION_QUANTITIES[target.quantity]]

    return fn


def _log_target(law, target: Target, values: dict, flops_formula=None) -> jnp.ndarray:
    """The log target at every draw of ``values`` (``{name: (S,)}``), shape ``(S,)``."""
    name = f"target:{target.kind}:{target.quantity}:{','.join(sorted(target.at))}"
    fn = _program(
        name,
        law,
        flops_formula,
        lambda: jax.vmap(_target_fn(law, target, flops_formula), in_axes=(0, None)),
    )
    log_at = {k: jnp.log(jnp.asarray(float(v))) for k, v in target.at.items()}
    return fn(values, log_at)


def _log_target_draws(result: FitResult, target, flops_formula=None) -> np.ndarray:
    """Posterior draws of the log target, shape ``(chain, draw)`` (no overflow of ``exp``)."""
    target = parse_target(result.law, target)
    draws = result.draws()
    shape = next(iter(draws.values())).shape
    flat = {k: jnp.asarray(x).reshape(-1) for k, x in draws.items()}
    return np.asarray(_log_target(result.law, target, flat, flops_formula)).reshape(shape)


def target_draws(result: FitResult, target, *, flops_formula: FlopsFormula | None = None):
    """Posterior draws of a target (see :func:`parse_target`), shape ``(chain, draw)``."""
    return np.exp(_log_target_draws(result, target, flops_formula))


# ---------------------------------------------------------------------------- candidates
def _candidates(
    result: FitResult, candidates, flops_formula
) -> tuple[pd.DataFrame, dict, np.ndarray]:
    """Validated candidates: the frame, log covariates ``{name: (m,)}`` and costs ``(m,)``."""
    law = result.law
    new = covariate_frame(law, candidates, result.columns)
    frame = pd.DataFrame(candidates).reset_index(drop=True)
    if "cost" in frame.columns:
        cost = pd.to_numeric(frame["cost"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(cost) & (cost > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"candidates column 'cost' must be positive and finite; row {i} has "
                f"{frame['cost'].iloc[i]!r} ({int(bad.sum())} bad row(s))"
            )
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
    extra = (1,) * (len(shape) - 1)
    sigma = values["sigma"].reshape(-1, *extra)
    nu = values["nu"].reshape(-1, *extra) if likelihood == "student_t" else None
    d = observation_dist(likelihood, jnp.zeros(shape), sigma, nu)
    return d.sample(rng_key)


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


_SCORERS: dict = {}

#: The scorer conditions on a fixed number of chosen-run slots (masked where unused), at
#: least this many, so that ``score_candidates`` and ``next_runs`` with ``k <= 3`` share one
#: compiled program.  A masked slot adds nothing to the weights.
MIN_CHOSEN_SLOTS = 3


def _scorer(posterior):
    """The jitted scorer of one posterior (law + likelihood), compiled once per process."""
    if posterior.noise_slopes:
        raise ValueError(
            "next_runs / score_candidates simulate outcomes with a constant noise scale; this "
            "result was fitted with a noise scale that varies with "
            f"{sorted(posterior.noise_slopes)} (noise='loglinear'): refit with "
            "noise='constant' to design runs"
        )
    key = (json.dumps(posterior.law.to_spec(), sort_keys=True, default=str), posterior.likelihood)
    if key not in _SCORERS:
        _SCORERS[key] = jax.jit(
            partial(_expected_variances, posterior), static_argnames=("num_outer", "batch_size")
        )
    return _SCORERS[key]


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
    t = _log_target(result.law, target, values, flops_formula)
    if not bool(jnp.all(jnp.isfinite(t))):
        bad = int(jnp.sum(~jnp.isfinite(t)))
        raise ValueError(f"target {target} is not finite for {bad} of {t.size} posterior draws")
    return target, values, t


def score_candidates(
    result: FitResult,
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
    result : FitResult
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
    var, ess, base = _scorer(result.posterior)(
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


def next_runs(
    result: FitResult,
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
    result : FitResult
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
    scorer = _scorer(result.posterior)
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


# ---------------------------------------------------------------------------- campaigns
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
    flops = _budgets(flops)
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


def _scaled_to_cost(runs: pd.DataFrame, cost: float) -> pd.DataFrame:
    """Runs with N and D scaled by one factor so that their total :math:`6ND` is ``cost``."""
    f = math.sqrt(cost / float(np.sum(6.0 * runs["n_params"] * runs["n_tokens"])))
    return pd.DataFrame({"n_params": runs["n_params"] * f, "n_tokens": runs["n_tokens"] * f})


DesignFn = Callable[[pd.DataFrame, FitResult, int], pd.DataFrame]


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
    campaigns in one :func:`bayescale.fit_batch` call), then designs the next runs:

    - ``"next"``: :func:`next_runs` (target, candidates, budget, ``k``, ``design_options``);
    - ``"random"``: ``k`` candidates drawn at random, N and D scaled by one factor to the
      cost of ``"next"``;
    - ``"grid"``: ``k`` log-spaced sizes over the candidates' range of N at
      ``grid_tokens_per_param`` tokens per parameter, scaled to the cost of ``"next"``;
    - one per entry of ``others``: ``fn(start_data, start_fit, campaign) -> runs`` (e.g. another
      package's suggestions, at their own cost).

    The new runs' outcomes share their noise across designs (common random numbers), every
    (campaign, design) is refitted in one ``fit_batch`` call, and each design is scored by
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
        Passed to both ``fit_batch`` calls (``num_chains``, ``num_warmup``, ...).
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
    import time
    import warnings

    from bayescale.api import fit_batch
    from bayescale.result import ConvergenceWarning
    from bayescale.simulate import _parameters, simulate_runs

    law = get_law(law)
    _check_allocation_law(law, steps=False)
    theta = _parameters(law, params)
    target = parse_target(law, target)
    truth = float(_log_target(law, target, {k_: jnp.asarray([v]) for k_, v in theta.items()})[0])
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
            out = fit_batch(
                data, law, by="campaign", likelihood=likelihood, seed=fit_seed, **fit_options
            )
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
        start_log_t = _log_target_draws(first[s], target)
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
            log_t = _log_target_draws(batch[label], target).ravel()
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
