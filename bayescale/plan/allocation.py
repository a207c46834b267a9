"""Compute-optimal allocation from a fitted posterior, and the targets of planning.

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

A *target* (:func:`parse_target`, :class:`Target`) is a quantity of the law to learn: its
response at covariate values, or an allocation quantity at a budget
(:data:`ALLOCATION_QUANTITIES`); :func:`target_draws` gives its posterior draws.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.laws import get_law
from bayescale.precision import float64
from bayescale.result import FitResult, quantile_column

__all__ = [
    "ALLOCATION_QUANTITIES",
    "FlopsFormula",
    "Target",
    "allocate",
    "allocation_draws",
    "as_budgets",
    "check_allocation_law",
    "log_target",
    "log_target_draws",
    "parse_target",
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


def check_allocation_law(law, *, steps: bool = True) -> None:
    if set(law.covariates) == {"n_params", "n_tokens"} or (steps and _steps_law(law)):
        return
    raise ValueError(
        "allocate needs a law of n_params and n_tokens"
        + (" (or of n_params and steps)" if steps else "")
        + f"; law {law.id!r} has covariates {list(law.covariates)}"
    )


def as_budgets(flops) -> np.ndarray:
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
    check_allocation_law(law)
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


@float64
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
    check_allocation_law(law)
    flops = as_budgets(flops)
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


@float64
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
    flops = as_budgets(flops)
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
        check_allocation_law(law)
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


@float64
def log_target(law, target: Target, values: dict, flops_formula=None) -> jnp.ndarray:
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


@float64
def log_target_draws(result: FitResult, target, flops_formula=None) -> np.ndarray:
    """Posterior draws of the log target, shape ``(chain, draw)`` (no overflow of ``exp``)."""
    target = parse_target(result.law, target)
    draws = result.draws()
    shape = next(iter(draws.values())).shape
    flat = {k: jnp.asarray(x).reshape(-1) for k, x in draws.items()}
    return np.asarray(log_target(result.law, target, flat, flops_formula)).reshape(shape)


@float64
def target_draws(result: FitResult, target, *, flops_formula: FlopsFormula | None = None):
    """Posterior draws of a target (see :func:`parse_target`), shape ``(chain, draw)``."""
    return np.exp(log_target_draws(result, target, flops_formula))
