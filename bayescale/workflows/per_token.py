"""Per-token loss (Kaplan et al. 2020, §6.3 and fig. 20; seed chart 004).

The loss at token position :math:`T` of the context, for a model of size :math:`N`, follows

.. math::

    L_N(T) = a_N + b_N\\, T^{-c_N}

(law ``kaplan_per_token``).  :func:`fit_per_token` fits every model size's curve in one
:func:`bayescale.fit` call (``by=``); :func:`fit_trends` then fits the trend of each coefficient
in :math:`N` as a power law,

.. math::

    a_N = A_a (N/N_{ref})^{p_a}, \\qquad b_N = A_b (N/N_{ref})^{p_b}, \\qquad
    c_N = A_c (N/N_{ref})^{p_c}

(law ``power_law``, :math:`y = A x^{-\\alpha}` with :math:`x = N/N_{ref}`,
:math:`p = -\\alpha` and a symmetric prior on :math:`\\alpha`; :math:`N_{ref}` the geometric
mean of the sizes, so that :math:`A` is the coefficient at a typical size and nearly
uncorrelated with :math:`p`), with each size's posterior of :math:`a_N, b_N, c_N` carried by
pooled multiple imputation (:mod:`bayescale.workflows.propagate`): all three coefficients and
all imputations in one batched call.  The same functions fit loss against training step
(seed 004's right panel; e.g. the PolyPythia curves) with ``columns={"token_index": "step"}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from bayescale.api import fit, resolve_options
from bayescale.data import DataError
from bayescale.laws import get_law
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result, quantile_column
from bayescale.simulate import noise_sd
from bayescale.workflows.propagate import IMPUTATION, ImputedFit, fit_imputed, imputation_draws

__all__ = [
    "PER_TOKEN_ENDS",
    "PER_TOKEN_LAW",
    "PER_TOKEN_SIZES",
    "PER_TOKEN_TRENDS",
    "TREND_LAW",
    "TREND_PRIORS",
    "fit_per_token",
    "fit_trends",
    "simulate_per_token",
    "trends",
]

PER_TOKEN_LAW = "kaplan_per_token"
TREND_LAW = "power_law"
#: The trend exponent may have either sign (a falls with N, b and c rise).
TREND_PRIORS = {"alpha": "normal(0, 0.5)"}
#: The model and inference of :func:`fit_trends` unless given.
TREND_MODEL = Model(likelihood="normal", priors=TREND_PRIORS, discrepancy=None)
TREND_INFERENCE = NUTS(target_accept_prob=0.99)


@float64
def fit_per_token(
    curves,
    *,
    by: str | Sequence[str] = "n_params",
    columns: Mapping[str, str] | None = None,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    warn: bool = True,
    **deprecated,
) -> Result:
    """Fit :math:`L(T) = a + b T^{-c}` to every curve of ``curves`` in one batched call.

    Parameters
    ----------
    curves : DataFrame, dict of arrays, or CSV path
        One row per (curve, position): ``token_index``, ``loss`` (or mapped by ``columns``)
        and the ``by`` column(s).
    by : str or sequence of str
        The column(s) naming a curve; for :func:`fit_trends` a numeric model size.
    columns : dict, optional
        ``{"token_index": ..., "loss": ...}`` -> columns.
    model, inference, seed, warn
        Of the :func:`bayescale.fit` call (``by=``); defaults ``Model()``, ``NUTS()``: the
        discrepancy on, since each curve runs along token position (or step) and its
        residuals run together along it.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    Result
        One posterior of ``a``, ``b``, ``c`` per curve.

    """
    model, inference = resolve_options("fit_per_token", model, inference, deprecated)
    return fit(
        curves, PER_TOKEN_LAW, by=by, columns=columns, model=model, inference=inference,
        seed=seed, warn=warn,
    )  # fmt: skip


@float64
def fit_trends(
    per_token: Result,
    *,
    n_params: Mapping | None = None,
    parameters: Sequence[str] = ("a", "b", "c"),
    num_imputations: int = 16,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    **deprecated,
) -> ImputedFit:
    """Fit each coefficient's power law in model size, carrying its per-size posterior.

    Parameters
    ----------
    per_token : Result
        From :func:`fit_per_token`, one fit per model size.
    n_params : dict, optional
        Curve label -> model size :math:`N`; by default the labels are the sizes.
    parameters : sequence of str
        Which coefficients to trend (default all three).
    num_imputations : int
        :math:`K`, evenly spaced per-size posterior draws.
    model : Model, optional
        Default :data:`TREND_MODEL`, ``Model(likelihood="normal", priors=TREND_PRIORS,
        discrepancy=None)``: a handful of model sizes cannot identify Student-t's degrees
        of freedom, whose prior-dominated posterior only slows the sampler, nor the
        discrepancy's scales; and the coefficients are first-stage estimates carried by
        imputation, not one curve.
    inference : NUTS, MAP or Laplace, optional
        Default :data:`TREND_INFERENCE`, ``NUTS(target_accept_prob=0.99)``: with a handful of
        sizes lying almost exactly on their trend, the posterior of the noise scale
        :math:`\\sigma` reaches towards zero, a funnel that larger steps cross with
        occasional divergences.
    seed : int
        Seeds the fits.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    ImputedFit
        Groups ``parameter`` (``a``, ``b``, ``c``); law ``power_law`` of ``x`` = :math:`N`
        read in units of :math:`N_{ref}` (``law.scales["x"]``, the geometric mean of the
        sizes: it decorrelates the prefactor and the exponent), ``y`` = the coefficient;
        the trend exponent is :math:`p = -\\alpha` (see :func:`trends`).

    Raises
    ------
    DataError
        Labels that are not sizes, fewer than 3 sizes, or unknown parameters.
    """
    model, inference = resolve_options(
        "fit_trends", model, inference, deprecated, defaults=(TREND_MODEL, TREND_INFERENCE)
    )
    labels = per_token.labels
    try:
        sizes = np.array(
            [float(n_params[lab]) if n_params is not None else float(lab) for lab in labels]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"fit_trends needs a model size per curve: labels {labels[:5]} are not numbers; "
            f"pass n_params={{label: size}} ({err})"
        ) from None
    if not np.all(np.isfinite(sizes) & (sizes > 0)) or len(np.unique(sizes)) < 3:
        raise DataError(f"fit_trends needs at least 3 distinct positive sizes, got {sizes}")
    unknown = [p for p in parameters if p not in per_token.law.parameter_names]
    if unknown:
        raise DataError(f"parameter(s) {unknown} are not in law {per_token.law.id!r}")
    n_ref = float(np.exp(np.log(sizes).mean()))
    post = per_token.group("posterior")
    draws = imputation_draws({p: post[p].values for p in parameters}, num_imputations)
    imputed = pd.concat(
        [
            pd.DataFrame({"parameter": p, IMPUTATION: k, "x": sizes, "y": draws[p][:, k]})
            for p in parameters
            for k in range(num_imputations)
        ],
        ignore_index=True,
    )
    law = replace(get_law(TREND_LAW), scales={"x": n_ref})
    return fit_imputed(
        imputed, law, groups=("parameter",), model=model, inference=inference, seed=seed
    )


def trends(pooled: ImputedFit, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
    """The trend exponent :math:`p` (:math:`= -\\alpha`) of each coefficient, with quantiles.

    Each coefficient :math:`y \\in \\{a, b, c\\}` was fitted as
    :math:`y = A\\,(N/N_{ref})^{-\\alpha}` (law ``power_law``), so :math:`y \\propto N^{p}`
    with :math:`p = -\\alpha`; the quantile :math:`q` of :math:`p` is minus the quantile
    :math:`1 - q` of :math:`\\alpha`.

    Parameters
    ----------
    pooled : ImputedFit
        From :func:`fit_trends`.
    quantiles : sequence of float

    Returns
    -------
    DataFrame
        ``parameter``, ``mean``, ``sd``, the quantile columns of :math:`p`, ``mcse_mean`` and
        ``status``.
    """
    table = pooled.summary(tuple(1 - q for q in reversed(quantiles)))
    table = table[table["parameter"] == "alpha"].drop(columns="parameter").copy()
    table = table.reset_index(drop=True)
    out = pd.DataFrame({"parameter": pooled.keys["parameter"].to_numpy()})
    out["mean"] = -table["mean"].to_numpy()
    out["sd"] = table["sd"].to_numpy()
    for q in quantiles:
        out[quantile_column(q)] = -table[quantile_column(1 - q)].to_numpy()
    out["mcse_mean"] = table["mcse_mean"].to_numpy()
    out["status"] = table["status"].to_numpy()
    return out


# ----------------------------------------------------------------------------- simulator
#: Per-token loss trends L_N(T) = a(N) + b(N) T^-c(N), each coefficient ``A * N**p``, set so
#: the seed chart 004 legend's smallest fit (4.0 + 3.2 T^-0.47) holds at N = 1e6 and its
#: largest (2.3 + 5.4 T^-0.62) at N = 3e8 (the ends of the chart's colour bar).
PER_TOKEN_SIZES = (1e6, 3e8)
PER_TOKEN_ENDS = {"a": (4.0, 2.3), "b": (3.2, 5.4), "c": (0.47, 0.62)}


def _trend(v_small: float, v_large: float) -> tuple[float, float]:
    """``(A, p)`` of ``A * N**p`` through the two ends of :data:`PER_TOKEN_ENDS`."""
    n0, n1 = PER_TOKEN_SIZES
    p = math.log(v_large / v_small) / math.log(n1 / n0)
    return v_small / n0**p, p


#: ``{coefficient: (A, p)}`` of the default per-token trends.
PER_TOKEN_TRENDS = {k: _trend(*v) for k, v in PER_TOKEN_ENDS.items()}


@float64
def simulate_per_token(
    *,
    n_params=(1e6, 3e6, 1e7, 3e7, 1e8, 3e8),
    token_index: tuple[float, float] = (1.0, 1024.0),
    num_points: int = 32,
    trends: Mapping[str, tuple[float, float]] | None = None,
    noise: float = 0.01,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Per-token loss curves of several model sizes (seed chart 004, left panel).

    For each model size :math:`N` the loss at token position :math:`T` in the context is

    .. math::

        L_N(T) = a(N) + b(N)\\, T^{-c(N)}, \\qquad
        a(N) = A_a N^{p_a},\\; b(N) = A_b N^{p_b},\\; c(N) = A_c N^{p_c},

    observed with log-normal noise :math:`\\log y = \\log L_N(T) + \\sigma\\varepsilon`.
    The default trends (:data:`PER_TOKEN_TRENDS`) pass through the seed legend's smallest and
    largest fits (:math:`4.0 + 3.2 T^{-0.47}` at :math:`N = 10^6`, :math:`2.3 + 5.4
    T^{-0.62}` at :math:`3 \\cdot 10^8`): :math:`p_a \\approx -0.097`, :math:`p_b \\approx
    0.092`, :math:`p_c \\approx 0.049`.

    Parameters
    ----------
    n_params : sequence of float
        Model sizes :math:`N` (one curve each).
    token_index : (float, float)
        First and last token position; ``num_points`` distinct integer positions, spaced
        logarithmically between them.
    num_points : int
        Positions per curve (fewer if rounding to integers merges some).
    trends : dict, optional
        ``{"a": (A_a, p_a), "b": (A_b, p_b), "c": (A_c, p_c)}``; default
        :data:`PER_TOKEN_TRENDS`.
    noise : float
        :math:`\\sigma`, the log-noise standard deviation (Kaplan's per-token losses are
        averages over many contexts, so it is small).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        Columns ``n_params``, ``token_index``, ``loss`` (the ``kaplan_per_token`` law's
        names, with ``n_params`` to split the curves).  ``attrs["parameters"]`` holds the
        true ``{N: {"a", "b", "c"}}`` and ``attrs["trends"]`` the trends used.
    """
    trends = dict(PER_TOKEN_TRENDS if trends is None else trends)
    if sorted(trends) != ["a", "b", "c"]:
        raise ValueError(f"trends must give 'a', 'b' and 'c', got {sorted(trends)}")
    sizes = np.atleast_1d(np.asarray(n_params, dtype=float))
    if sizes.ndim != 1 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"n_params must be positive finite sizes, got {n_params!r}")
    lo, hi = (float(v) for v in token_index)
    if not 1 <= lo < hi:
        raise ValueError(
            f"token_index must be (first, last) with 1 <= first < last, got {token_index!r}"
        )
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    sigma = noise_sd(get_law("kaplan_per_token"), {}, noise)
    positions = np.unique(np.round(np.geomspace(lo, hi, num_points)))
    rng = np.random.default_rng(seed)
    parts, truth = [], {}
    for n in sizes:
        coef = {k: a_k * n**p_k for k, (a_k, p_k) in trends.items()}
        truth[float(n)] = coef
        mean = coef["a"] + coef["b"] * positions ** -coef["c"]
        loss = mean * np.exp(sigma * rng.standard_normal(positions.size))
        parts.append(pd.DataFrame({"n_params": n, "token_index": positions, "loss": loss}))
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"parameters": truth, "trends": trends}
    return out
