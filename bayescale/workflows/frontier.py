"""The compute-efficient frontier (Kaplan et al. 2020, §6; seed chart 002).

Runs trained at a batch size :math:`B` other than the critical one spend more compute or
more steps than needed to reach their loss :math:`L`.  By McCandlish et al.'s trade-off
:math:`(S/S_{min} - 1)(E/E_{min} - 1) = 1` with :math:`B_{crit} = E_{min}/S_{min}`, each run
is mapped to the minimal compute and steps that reach the same loss:

.. math::

    C_{min} = \\frac{C}{1 + B / B_{crit}(L)}, \\qquad
    S_{min} = \\frac{S}{1 + B_{crit}(L) / B}, \\qquad
    E_{min} = \\frac{E}{1 + B / B_{crit}(L)},

with :math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}` from a fitted ``kaplan_bcrit`` posterior
(seed chart 000), evaluated per posterior draw, so the adjusted values are posteriors too.
The frontier laws

.. math::

    N = N_e C_{min}^{p_N}, \\quad S_{min} = S_e C_{min}^{p_S}, \\quad
    B = B_e C_{min}^{p_B}, \\quad D = D_e C_{min}^{p_D}

(``kaplan_frontier_n/s/b/d``, :math:`C_{min}` in PF-days, :math:`B = B_{crit}(L)` and
:math:`D = E_{min}` at the frontier) are then fitted to :math:`K` imputed adjustments, one per
evenly spaced :math:`B_{crit}` posterior draw, all :math:`K` in one batched call per law, and
the posteriors pooled (:mod:`bayescale.workflows.propagate`): the exponents' intervals carry
the uncertainty of :math:`B_*` and :math:`\\alpha_B`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.api import resolve_options
from bayescale.data import DataError, as_frame, positive_column
from bayescale.laws import get_law
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result, quantile_column
from bayescale.simulate import noise_sd
from bayescale.units import PF_DAY
from bayescale.workflows.propagate import (
    IMPUTATION,
    IMPUTED_MODEL,
    ImputedFit,
    fit_imputed,
    imputation_draws,
)

__all__ = [
    "FRONTIER_LAWS",
    "FrontierResult",
    "adjust_runs",
    "adjusted_summary",
    "fit_frontier",
    "simulate_frontier",
]

#: Frontier quantity -> catalogue law of it against C_min (PF-days).
FRONTIER_LAWS = {
    "n_params": "kaplan_frontier_n",
    "steps": "kaplan_frontier_s",
    "batch_size": "kaplan_frontier_b",
    "n_tokens": "kaplan_frontier_d",
}
_RUN_COLUMNS = ("n_params", "batch_size", "steps", "loss")


def _runs(runs, columns: Mapping[str, str] | None) -> pd.DataFrame:
    """Validated runs under the standard names; ``flops`` (FLOP) = 6·N·B·S where absent."""
    frame = as_frame(runs)
    names = {c: c for c in (*_RUN_COLUMNS, "flops")} | dict(columns or {})
    missing = [names[c] for c in _RUN_COLUMNS if names[c] not in frame.columns]
    if missing:
        raise DataError(
            f"frontier runs lack the column(s) {missing} (need n_params, batch_size, steps, "
            f"loss; flops optional); they have {list(map(str, frame.columns))}"
        )
    use = [c for c in (*_RUN_COLUMNS, "flops") if names[c] in frame.columns]
    out = pd.DataFrame({c: positive_column(frame, names[c], c) for c in use})
    if "flops" not in out:
        out["flops"] = 6 * out["n_params"] * out["batch_size"] * out["steps"]
    return out


@float64
def adjust_runs(
    runs, bcrit: Result, *, columns: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Posterior draws of each run's minimal compute, steps, tokens and critical batch.

    Parameters
    ----------
    runs : DataFrame, dict of arrays, or CSV path
        One row per run (or per point of a run's learning curve): ``n_params``,
        ``batch_size`` (tokens), ``steps``, ``loss`` and optionally ``flops`` (FLOP;
        default :math:`6NBS`); other names mapped by ``columns``.
    bcrit : Result
        A fit of ``kaplan_bcrit`` (:math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}`).
    columns : dict, optional
        Standard name -> column.

    Returns
    -------
    dict of str to ndarray
        ``flops_min`` (PF-days), ``steps_min``, ``tokens_min`` and ``critical_batch_size``,
        each ``(chain, draw, run)`` over ``bcrit``'s posterior draws.
    """
    if not isinstance(bcrit, Result) or len(bcrit) != 1 or bcrit.law.covariates != ("loss",):
        raise TypeError(
            "bcrit must be the Result of one fit of a critical-batch law of loss "
            "(e.g. 'kaplan_bcrit')"
        )
    frame = _runs(runs, columns)
    b_crit = bcrit.predict_draws({"loss": frame["loss"].to_numpy()}, kind="mean")
    b = frame["batch_size"].to_numpy()
    flops_min = frame["flops"].to_numpy() / (1 + b / b_crit) / PF_DAY
    steps_min = frame["steps"].to_numpy() / (1 + b_crit / b)
    tokens_min = (b * frame["steps"].to_numpy()) / (1 + b / b_crit)
    return {
        "flops_min": flops_min,
        "steps_min": steps_min,
        "tokens_min": tokens_min,
        "critical_batch_size": b_crit,
    }


def adjusted_summary(
    runs,
    bcrit: Result,
    *,
    columns: Mapping[str, str] | None = None,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
) -> pd.DataFrame:
    """The runs with the posterior median and quantiles of each adjusted quantity.

    The quantiles over the :math:`B_{crit}` posterior draws of each run's
    :math:`C_{min} = C / (1 + B/B_{crit}(L))`, :math:`S_{min} = S / (1 + B_{crit}(L)/B)`,
    :math:`E_{min} = E / (1 + B/B_{crit}(L))` and :math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}`
    (:func:`adjust_runs`).

    Parameters
    ----------
    runs, bcrit, columns
        As for :func:`adjust_runs`.
    quantiles : sequence of float

    Returns
    -------
    DataFrame
        The validated run columns, then ``<quantity>_<q>`` for ``flops_min`` (PF-days),
        ``steps_min``, ``tokens_min`` and ``critical_batch_size`` (e.g. ``steps_min_q50``).
    """
    out = _runs(runs, columns)
    for name, x in adjust_runs(runs, bcrit, columns=columns).items():
        flat = x.reshape(-1, x.shape[-1])
        for q in quantiles:
            out[f"{name}_{quantile_column(q)}"] = np.quantile(flat, q, axis=0)
    return out


@dataclass(frozen=True)
class FrontierResult:
    """Pooled posteriors of the frontier laws, ``fits[quantity]`` (a :class:`ImputedFit`)."""

    fits: dict[str, ImputedFit]

    def exponents(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """One row per (quantity, law parameter): pooled mean, sd, quantiles, MCSE, status."""
        parts = []
        for quantity, pooled in self.fits.items():
            table = pooled.summary(quantiles)
            table = table[table["parameter"].isin(pooled.law.parameter_names)]
            parts.append(table.assign(quantity=quantity))
        out = pd.concat(parts, ignore_index=True)
        return out[["quantity", *[c for c in out.columns if c != "quantity"]]]

    def band(
        self, quantity: str, flops_min, quantiles: Sequence[float] = (0.05, 0.5, 0.95)
    ) -> pd.DataFrame:
        """Credible band of the frontier ``quantity`` at ``flops_min`` (PF-days)."""
        if quantity not in self.fits:
            raise KeyError(f"no frontier fit of {quantity!r}; fitted: {list(self.fits)}")
        return self.fits[quantity].band({"flops_min": np.asarray(flops_min, float)}, quantiles)


@float64
def fit_frontier(
    runs,
    bcrit: Result,
    *,
    quantities: Sequence[str] = tuple(FRONTIER_LAWS),
    columns: Mapping[str, str] | None = None,
    num_imputations: int = 16,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    **deprecated,
) -> FrontierResult:
    """Fit the compute-efficient frontier laws with :math:`B_{crit}`'s posterior propagated.

    Parameters
    ----------
    runs : DataFrame, dict of arrays, or CSV path
        Compute-efficient runs (see :func:`adjust_runs` for the columns).
    bcrit : Result
        Posterior of :math:`B_{crit}(L)` (law ``kaplan_bcrit``).
    quantities : sequence of str
        Which of ``n_params`` (:math:`N_{opt}`), ``steps`` (:math:`S_{min}`), ``batch_size``
        (:math:`B_{crit}`) and ``n_tokens`` (:math:`E_{min}`) to fit against :math:`C_{min}`.
    columns : dict, optional
        Standard name -> column of ``runs``.
    num_imputations : int
        :math:`K`, evenly spaced :math:`B_{crit}` draws; each gives one adjusted data set.
    model, inference : optional
        Of the fits (one :func:`fit_imputed` call per quantity, fitting all :math:`K` imputed
        data sets); defaults ``Model(discrepancy=None)``
        (:data:`~bayescale.workflows.propagate.IMPUTED_MODEL`: the adjusted runs are separate
        runs along :math:`C_{min}`, their adjustment's error carried by the imputations, not
        by a law error along one curve), ``NUTS()``.
    seed : int
        The fit of the ``i``-th quantity is seeded with ``seed + i``.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    FrontierResult
        ``.exponents()`` (``p_N``, ``p_S``, ``p_B``, ``p_D`` and prefactors), ``.band()``,
        ``.fits``.

    Raises
    ------
    ValueError
        Unknown ``quantities``.
    """
    model, inference = resolve_options(
        "fit_frontier", model, inference, deprecated, defaults=(IMPUTED_MODEL, NUTS())
    )
    unknown = [q for q in quantities if q not in FRONTIER_LAWS]
    if unknown or not quantities:
        raise ValueError(f"quantities must be among {list(FRONTIER_LAWS)}, got {list(quantities)}")
    frame = _runs(runs, columns)
    adjusted = imputation_draws(
        {k: np.moveaxis(v, -1, 0) for k, v in adjust_runs(frame, bcrit).items()},
        num_imputations,
    )  # each (run, K)
    response = {
        "n_params": lambda k: frame["n_params"].to_numpy(),
        "steps": lambda k: adjusted["steps_min"][:, k],
        "batch_size": lambda k: adjusted["critical_batch_size"][:, k],
        "n_tokens": lambda k: adjusted["tokens_min"][:, k],
    }
    fits = {}
    for i, quantity in enumerate(quantities):
        imputed = pd.concat(
            [
                pd.DataFrame(
                    {
                        IMPUTATION: k,
                        "flops_min": adjusted["flops_min"][:, k],
                        quantity: response[quantity](k),
                    }
                )
                for k in range(num_imputations)
            ],
            ignore_index=True,
        )
        fits[quantity] = fit_imputed(
            imputed,
            FRONTIER_LAWS[quantity],
            model=model,
            inference=inference,
            seed=seed + i,
        )
    return FrontierResult(fits)


# ----------------------------------------------------------------------------- simulator
@float64
def simulate_frontier(
    *,
    flops_min: tuple[float, float] = (1e-7, 1.0),
    num_points: int = 24,
    batch_size: float = 2.0**19,
    params: Mapping[str, float] | None = None,
    noise: float = 0.1,
    loss_noise: float = 0.005,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Compute-efficient training runs, as measured at a fixed batch size (seed chart 002).

    For budgets :math:`C_{min}` (PF-days) drawn log-uniformly, the compute-efficient run has

    .. math::

        N = N_e C_{min}^{p_N} e^{\\sigma\\varepsilon_1}, \\quad
        S_{min} = S_e C_{min}^{p_S} e^{\\sigma\\varepsilon_2}, \\quad
        E_{min} = \\frac{C_{min}\\,[\\text{FLOP}]}{6N}, \\quad
        B_{crit} = \\frac{E_{min}}{S_{min}}, \\quad
        L = \\Big(\\frac{B_{crit}}{B_*}\\Big)^{-\\alpha_B} e^{\\sigma_L \\varepsilon_3},

    (Kaplan et al. 2020, eqs. 5.3, 6.1-6.3; :math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}`
    inverted).  The run is trained at the fixed ``batch_size`` :math:`B`, so by McCandlish et
    al.'s trade-off it takes :math:`S = S_{min}(1 + B_{crit}/B)` steps and
    :math:`E = E_{min}(1 + B/B_{crit}) = BS` tokens, and costs :math:`C = 6NBS` FLOP.
    Defaults are the published values (the ``kaplan_frontier_n``, ``kaplan_frontier_s`` and
    ``kaplan_bcrit`` references: :math:`N_e = 1.3\\cdot10^9, p_N = 0.73, S_e = 5.4\\cdot10^3,
    p_S = 0.03, B_* = 2.1\\cdot10^8, \\alpha_B = 0.21`).

    Parameters
    ----------
    flops_min : (float, float)
        Range of :math:`C_{min}` in PF-days.
    num_points : int
        Runs.
    batch_size : float
        :math:`B` in tokens.
    params : dict, optional
        Overrides of ``N_e, p_N, S_e, p_S, B_star, alpha_B``.
    noise : float
        :math:`\\sigma`, log scatter of :math:`N` and :math:`S_{min}` about the frontier.
    loss_noise : float
        :math:`\\sigma_L`, log noise of the measured loss.
    seed : int, optional

    Returns
    -------
    DataFrame
        What a researcher measures: ``n_params``, ``batch_size``, ``steps``, ``n_tokens``,
        ``flops`` (FLOP), ``loss``; and the truth behind it: ``true_flops_min`` (PF-days),
        ``true_steps_min``, ``true_critical_batch_size``, ``true_tokens_min``.
    """
    laws = [get_law(k) for k in ("kaplan_frontier_n", "kaplan_frontier_s", "kaplan_bcrit")]
    defaults = {k: v for law in laws for k, v in law.reference.items()}
    unknown = [k for k in (params or {}) if k not in defaults]
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown}; simulate_frontier takes {list(defaults)}"
        )
    p = {**defaults, **(params or {})}
    lo, hi = (float(v) for v in flops_min)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"flops_min must be (low, high) with 0 < low < high, got {flops_min!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be an integer >= 1, got {num_points!r}")
    if not (math.isfinite(batch_size) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive number of tokens, got {batch_size!r}")
    sigma = noise_sd(laws[0], {}, noise)
    sigma_loss = noise_sd(laws[0], {}, loss_noise)
    rng = np.random.default_rng(seed)
    c_min = np.exp(rng.uniform(math.log(lo), math.log(hi), num_points))
    eps = rng.standard_normal((3, num_points))
    n = p["N_e"] * c_min ** p["p_N"] * np.exp(sigma * eps[0])
    s_min = p["S_e"] * c_min ** p["p_S"] * np.exp(sigma * eps[1])
    e_min = c_min * PF_DAY / (6 * n)
    b_crit = e_min / s_min
    loss = (b_crit / p["B_star"]) ** -p["alpha_B"] * np.exp(sigma_loss * eps[2])
    steps = s_min * (1 + b_crit / batch_size)
    return pd.DataFrame(
        {
            "n_params": n,
            "batch_size": float(batch_size),
            "steps": steps,
            "n_tokens": batch_size * steps,
            "flops": 6 * n * batch_size * steps,
            "loss": loss,
            "true_flops_min": c_min,
            "true_steps_min": s_min,
            "true_critical_batch_size": b_crit,
            "true_tokens_min": e_min,
        }
    )
