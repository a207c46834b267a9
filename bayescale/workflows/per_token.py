"""Per-token loss (Kaplan et al. 2020, §6.3 and fig. 20; seed chart 004).

The loss at token position :math:`T` of the context, for a model of size :math:`N`, follows

.. math::

    L_N(T) = a_N + b_N\\, T^{-c_N}

(law ``kaplan_per_token``).  :func:`fit_per_token` fits every model size's curve in one
:func:`bayescale.fit_batch` call; :func:`fit_trends` then fits the trend of each coefficient
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

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from bayescale.api import fit_batch
from bayescale.data import DataError
from bayescale.result import BatchResult, quantile_column
from bayescale.workflows.propagate import IMPUTATION, PooledFit, fit_pooled, imputation_draws

__all__ = ["PER_TOKEN_LAW", "TREND_LAW", "TREND_PRIORS", "fit_per_token", "fit_trends", "trends"]

PER_TOKEN_LAW = "kaplan_per_token"
TREND_LAW = "power_law"
#: The trend exponent may have either sign (a falls with N, b and c rise).
TREND_PRIORS = {"alpha": "normal(0, 0.5)"}


def fit_per_token(
    curves,
    *,
    by: str | Sequence[str] = "n_params",
    columns: Mapping[str, str] | None = None,
    **fit_kwargs,
) -> BatchResult:
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
    **fit_kwargs
        :func:`bayescale.fit_batch` settings (``num_chains``, ``seed``, ``priors`` ...).

    Returns
    -------
    BatchResult
        One posterior of ``a``, ``b``, ``c`` per curve.
    """
    return fit_batch(curves, PER_TOKEN_LAW, by=by, columns=columns, **fit_kwargs)


def fit_trends(
    per_token: BatchResult,
    *,
    n_params: Mapping | None = None,
    parameters: Sequence[str] = ("a", "b", "c"),
    num_imputations: int = 16,
    likelihood: str = "normal",
    **fit_kwargs,
) -> PooledFit:
    """Fit each coefficient's power law in model size, carrying its per-size posterior.

    Parameters
    ----------
    per_token : BatchResult
        From :func:`fit_per_token`, one fit per model size.
    n_params : dict, optional
        Curve label -> model size :math:`N`; by default the labels are the sizes.
    parameters : sequence of str
        Which coefficients to trend (default all three).
    num_imputations : int
        :math:`K`, evenly spaced per-size posterior draws.
    likelihood : {"normal", "student_t"}
        Normal by default: a handful of model sizes cannot identify Student-t's degrees of
        freedom, whose prior-dominated posterior only slows the sampler.
    **fit_kwargs
        :func:`bayescale.fit_batch` settings (priors default to :data:`TREND_PRIORS`;
        ``target_accept_prob`` to 0.99: with a handful of sizes lying almost exactly on their
        trend, the posterior of the noise scale :math:`\\sigma` reaches towards zero, a
        funnel that larger steps cross with occasional divergences; on the tests' simulated
        curves, 24 trend fits of 2 x 1500 draws had a divergence in 2 of 8 seeds at 0.95 and
        in none at 0.99).

    Returns
    -------
    PooledFit
        Groups ``parameter`` (``a``, ``b``, ``c``); law ``power_law`` of ``x`` =
        :math:`N/N_{ref}` (``covariate_scale["x"]`` = :math:`N_{ref}`; :meth:`PooledFit.band`
        takes :math:`N`), ``y`` = the coefficient; the trend exponent is :math:`p = -\\alpha` (see
        :func:`trends`).
    """
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
    post = per_token.datatree.posterior
    draws = imputation_draws({p: post[p].values for p in parameters}, num_imputations)
    imputed = pd.concat(
        [
            pd.DataFrame({"parameter": p, IMPUTATION: k, "x": sizes / n_ref, "y": draws[p][:, k]})
            for p in parameters
            for k in range(num_imputations)
        ],
        ignore_index=True,
    )
    fit_kwargs.setdefault("priors", TREND_PRIORS)
    fit_kwargs.setdefault("target_accept_prob", 0.99)
    pooled = fit_pooled(
        imputed, TREND_LAW, groups=("parameter",), likelihood=likelihood, **fit_kwargs
    )
    return replace(pooled, covariate_scale={"x": n_ref})


def trends(pooled: PooledFit, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
    """The trend exponent :math:`p` (:math:`= -\\alpha`) of each coefficient, with quantiles.

    Each coefficient :math:`y \\in \\{a, b, c\\}` was fitted as
    :math:`y = A\\,(N/N_{ref})^{-\\alpha}` (law ``power_law``), so :math:`y \\propto N^{p}`
    with :math:`p = -\\alpha`; the quantile :math:`q` of :math:`p` is minus the quantile
    :math:`1 - q` of :math:`\\alpha`.

    Parameters
    ----------
    pooled : PooledFit
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
