"""The critical batch size law :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}` and the
gradient noise scale (Kaplan et al. 2020, seed chart 000).

:func:`fit_critical_batch_size` fits the catalogue law ``kaplan_bcrit`` to the per-level
posteriors of :math:`B_{\\rm crit}` from :func:`~bayescale.workflows.batch_scan.fit_batch_scan`,
carrying their uncertainty into :math:`B_*` and :math:`\\alpha_B` by multiple imputation (one
batched call); :func:`gradient_noise_scale` is McCandlish et al.'s estimator
:math:`B_{\\rm simple}` from squared gradient norms measured at two batch sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.api import fit, resolve_options
from bayescale.data import DataError, as_frame, positive_column
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result, quantile_column
from bayescale.workflows.batch_scan import BatchScanResult
from bayescale.workflows.propagate import (
    IMPUTATION,
    NORMAL_MODEL,
    fit_imputed,
    imputation_draws,
    summarize_draws,
)

__all__ = [
    "LAW_ID",
    "METHODS",
    "CriticalBatchSizeResult",
    "fit_critical_batch_size",
    "gradient_noise_scale",
]

#: Catalogue law: ``critical_batch_size = B_star * loss**(-1 / alpha_B)``.
LAW_ID = "kaplan_bcrit"
METHODS = ("imputation", "median")
_COLUMNS = {"loss": "loss_level", "critical_batch_size": "B_crit"}


@dataclass
class CriticalBatchSizeResult:
    """Posterior of :math:`B_*` and :math:`\\alpha_B` in :math:`B_{\\rm crit}(L) = B_*
    L^{-1/\\alpha_B}`.

    Attributes
    ----------
    method : {"imputation", "median"}
    levels : DataFrame
        The per-level inputs: ``source``, ``loss_level``, ``num_draws`` and the ``B_crit``
        posterior mean, sd, median and 95% interval of each level.
    batch : Result or None
        ``method="imputation"``: one ``kaplan_bcrit`` fit per imputation (fit dimension
        ``imputation``); their convergence is in ``diagnostics``.
    fit : Result or None
        ``method="median"``: the single fit to the per-level medians.
    """

    method: str
    levels: pd.DataFrame
    batch: Result | None
    fit: Result | None
    _pooled: Result

    @property
    def diagnostics(self) -> pd.DataFrame:
        """Convergence of each fit (one row per imputation, or one row for ``median``)."""
        if self.batch is not None:
            return self.batch.diagnostics
        return self.fit.diagnostics.reset_index(drop=True)

    @property
    def failed(self) -> list:
        """Labels of the fits (imputations, or ``0`` for the median fit) that did not
        converge."""
        diag = self.diagnostics
        return list(diag.index[diag["status"] != "converged"])

    def draws(self) -> dict[str, np.ndarray]:
        """Pooled posterior draws ``{name: (chain, draw)}``; with imputation the chains of
        all imputations are stacked (chain = imputation x chain)."""
        return self._pooled.draws()

    def summary(self, quantiles: Sequence[float] = (0.025, 0.5, 0.975)) -> pd.DataFrame:
        """Pooled posterior ``mean``, ``sd`` and quantiles per parameter (rows)."""
        rows = {}
        for name, v in self.draws().items():
            flat = v.ravel()
            row = {"mean": flat.mean(), "sd": flat.std()}
            row.update({quantile_column(q): np.quantile(flat, q) for q in quantiles})
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")

    def predict(
        self,
        loss,
        *,
        quantiles: Sequence[float] = (0.025, 0.5, 0.975),
        kind: str = "mean",
        seed: int = 0,
    ) -> pd.DataFrame:
        """:math:`B_{\\rm crit}` at target losses with its posterior band.

        ``kind="mean"`` (default) is the law :math:`B_* L^{-1/\\alpha_B}` itself;
        ``"observation"`` adds the scatter of single levels about it.  The columns are those
        of :meth:`bayescale.Result.predict` (``decades_beyond`` tells how far outside the
        fitted loss range a target lies).
        """
        values = np.asarray(loss, dtype=np.float64).ravel()
        return self._pooled.predict(
            {"loss": values}, quantiles=quantiles, kind=kind, seed=seed
        ).rename(columns={"loss_level": "loss"})

    def predict_draws(self, loss, *, kind: str = "mean", seed: int = 0) -> np.ndarray:
        """Draws of :math:`B_{\\rm crit}` at ``loss``, shape ``(chain, draw, point)``."""
        values = np.asarray(loss, dtype=np.float64).ravel()
        return self._pooled.predict_draws({"loss": values}, kind=kind, seed=seed)


def _level_draws(scans) -> pd.DataFrame:
    """``source, loss_level, draw, B_crit`` from scan results or a table of draws."""
    if isinstance(scans, BatchScanResult):
        scans = [scans]
    if isinstance(scans, Sequence) and all(isinstance(s, BatchScanResult) for s in scans):
        if not scans:
            raise DataError("fit_critical_batch_size needs at least one batch-scan result")
        parts = []
        for i, scan in enumerate(scans):
            part = scan.critical_batch_size_draws()
            part.insert(0, "source", i)
            parts.append(part)
        return pd.concat(parts, ignore_index=True)
    frame = as_frame(scans)
    missing = [c for c in ("loss_level", "B_crit") if c not in frame.columns]
    if missing:
        raise DataError(
            f"B_crit draws need column(s) {missing} (and optionally 'draw', 'source'); they "
            f"have columns {list(map(str, frame.columns))}"
        )
    frame = frame.copy()
    if "source" not in frame.columns:
        frame["source"] = 0
    if "draw" not in frame.columns:
        frame["draw"] = frame.groupby(["source", "loss_level"]).cumcount()
    for col in ("loss_level", "B_crit"):
        frame[col] = positive_column(frame, col, "B_crit draws")
    return frame[["source", "loss_level", "draw", "B_crit"]]


@float64
def fit_critical_batch_size(
    scans,
    *,
    method: str = "imputation",
    num_imputations: int = 16,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    **deprecated,
) -> CriticalBatchSizeResult:
    """Fit :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}` to per-level :math:`B_{\\rm crit}`
    posteriors, carrying their uncertainty.

    The levels :math:`\\ell = 1 \\dots K` (target losses :math:`L_\\ell`, possibly from
    several models' scans) each have a posterior of :math:`B_\\ell`, the critical batch
    size at that loss.  ``kaplan_bcrit`` is fitted with the likelihood of
    :func:`bayescale.fit` on :math:`\\log B_\\ell`:

    .. math::

        \\log B_\\ell = \\log B_* - \\alpha_B^{-1} \\log L_\\ell + \\varepsilon_\\ell.

    ``method="imputation"`` (default) propagates each level's uncertainty by pooled multiple
    imputation (:mod:`bayescale.workflows.propagate`): imputation :math:`m = 1 \\dots M`
    takes, at every level, the :math:`m`-th of :math:`M` evenly spaced posterior draws
    :math:`B_\\ell^{(m)}` as its data, all :math:`M` fits run in one
    :func:`bayescale.fit` call (``by=``), and the posterior reported is the mixture of the
    :math:`M` posteriors,

    .. math::

        p(B_*, \\alpha_B \\mid \\text{scans}) \\approx \\frac1M \\sum_{m=1}^{M}
        p\\bigl(B_*, \\alpha_B \\mid \\{L_\\ell, B_\\ell^{(m)}\\}\\bigr),

    i.e. the law's posterior averaged over what the scans leave unknown about each level
    (the between-imputation spread adds the per-level uncertainty to the within-fit
    spread).  This uses the one density of ``kaplan_bcrit`` unchanged, works for any shape
    of per-level posterior (they are skewed when a level's :math:`B_{\\rm crit}` nears the
    edge of the scanned batch sizes), and needs no Gaussian summary of it.  Each imputed
    data set also scatters more about the law than the true values would, so the intervals
    lean conservative.  ``method="median"`` fits the per-level medians once (the classical
    analysis), ignoring their uncertainty.

    Parameters
    ----------
    scans : BatchScanResult, sequence of them, or DataFrame
        Scan results (each contributes all its fitted levels; use several for several
        model sizes), or a table of draws with columns ``loss_level``, ``B_crit`` and
        optionally ``draw`` and ``source``.
    method : {"imputation", "median"}
    num_imputations : int
        :math:`M` (imputation only); more imputations give a smoother mixture.
    model : Model, optional
        Default ``Model(likelihood="normal")``, unlike :func:`bayescale.fit`: a dozen levels
        cannot identify a Student-t :math:`\\nu` (its chains mix poorly), and heavy tails
        would down-weight exactly the imputed draws that carry a level's uncertainty.  No
        discrepancy (:data:`~bayescale.workflows.propagate.NORMAL_MODEL`): the levels are
        first-stage estimates whose error the imputations carry, not one curve.
    inference : NUTS, MAP or Laplace, optional
        Default ``NUTS()``.
    seed : int
        Seeds the fits (the imputed draws are evenly spaced, not random).
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    CriticalBatchSizeResult
        ``summary()``, ``draws()``, ``predict(loss)``, ``diagnostics``, ``levels``.

    Raises
    ------
    DataError
        Bad draws, fewer than 4 levels, an unknown ``method``, ``num_imputations < 2`` or
        more imputations than a level has draws.
    """
    model, inference = resolve_options(
        "fit_critical_batch_size", model, inference, deprecated, defaults=(NORMAL_MODEL, NUTS())
    )
    if method not in METHODS:
        raise DataError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    draws = _level_draws(scans)
    draws = draws.sort_values(["source", "loss_level", "draw"], kind="stable")
    grouped = draws.groupby(["source", "loss_level"], sort=True)["B_crit"]
    per_level = {key: values.to_numpy() for key, values in grouped}
    levels = summarize_draws(
        {"B_crit": list(per_level.values())},
        pd.MultiIndex.from_tuples(list(per_level), names=["source", "loss_level"]),
    )
    levels.insert(0, "num_draws", [v.size for v in per_level.values()])
    levels = levels.reset_index()
    if len(levels) < 4:
        raise DataError(
            f"fitting B_crit(L) needs at least 4 loss levels (2 parameters, noise scale and "
            f"a residual degree of freedom); got {len(levels)}"
        )
    if method == "median":
        single = fit(
            levels[["loss_level", "B_crit_q50"]],
            LAW_ID,
            columns={"loss": "loss_level", "critical_batch_size": "B_crit_q50"},
            model=model,
            inference=inference,
            seed=seed,
        )
        return CriticalBatchSizeResult(method, levels, None, single, single)
    if isinstance(num_imputations, bool) or not isinstance(num_imputations, int | np.integer):
        raise DataError(f"num_imputations must be an integer >= 2, got {num_imputations!r}")
    if num_imputations < 2:
        raise DataError(f"num_imputations must be an integer >= 2, got {num_imputations!r}")
    fewest = int(levels["num_draws"].min())
    if num_imputations > fewest:
        raise DataError(
            f"num_imputations={num_imputations} exceeds the draws of the smallest level ({fewest})"
        )
    imputed = pd.concat(
        [
            pd.DataFrame(
                {
                    IMPUTATION: np.arange(num_imputations),
                    "loss_level": loss_level,
                    "B_crit": imputation_draws({"B_crit": values[None, :]}, num_imputations)[
                        "B_crit"
                    ],
                }
            )
            for (_, loss_level), values in per_level.items()
        ],
        ignore_index=True,
    )
    pooled = fit_imputed(
        imputed, LAW_ID, columns=_COLUMNS, model=model, inference=inference, seed=seed
    )
    return CriticalBatchSizeResult(method, levels, pooled.batch, None, pooled.pooled_result())


_NORM_COLUMNS = ("batch_size_small", "batch_size_big", "grad_norm_sq_small", "grad_norm_sq_big")


def gradient_noise_scale(measurements, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """McCandlish et al.'s simple noise scale from squared gradient norms at two batch sizes.

    With :math:`\\mathbb E|G_B|^2 = |G|^2 + \\operatorname{tr}\\Sigma/B`, the squared norms
    :math:`|G_{\\rm small}|^2`, :math:`|G_{\\rm big}|^2` measured at batch sizes
    :math:`B_{\\rm small} < B_{\\rm big}` give unbiased estimates

    .. math::

        |\\mathcal G|^2 = \\frac{B_{\\rm big}|G_{\\rm big}|^2 - B_{\\rm small}|G_{\\rm small}|^2}
        {B_{\\rm big} - B_{\\rm small}}, \\qquad
        \\mathcal S = \\frac{|G_{\\rm small}|^2 - |G_{\\rm big}|^2}
        {1/B_{\\rm small} - 1/B_{\\rm big}},

    and :math:`B_{\\rm simple} = \\mathcal S / |\\mathcal G|^2`, which approximates the
    critical batch size (:math:`B_{\\rm crit} \\approx B_{\\rm noise}`).

    Parameters
    ----------
    measurements : DataFrame or dict of arrays
        Columns ``batch_size_small``, ``batch_size_big`` (tokens), ``grad_norm_sq_small``,
        ``grad_norm_sq_big`` (or those mapped by ``columns``); other columns (e.g.
        ``loss``) are kept.
    columns : dict, optional
        Variable -> column.

    Returns
    -------
    DataFrame
        The input plus ``grad_norm_sq`` (:math:`|\\mathcal G|^2`), ``trace_cov``
        (:math:`\\mathcal S`) and ``noise_scale`` (:math:`B_{\\rm simple}`, tokens; NaN
        where either estimate is not positive, which noise makes happen when
        :math:`B_{\\rm simple}` lies far outside :math:`[B_{\\rm small}, B_{\\rm big}]`).

    Raises
    ------
    DataError
        A missing column, a value that is not finite and > 0, or
        :math:`B_{\\rm small} \\ge B_{\\rm big}`, naming the column and row.
    """
    frame = as_frame(measurements)
    mapping = {name: (columns or {}).get(name, name) for name in _NORM_COLUMNS}
    missing = [c for c in mapping.values() if c not in frame.columns]
    if missing:
        raise DataError(
            f"gradient-norm measurements need column(s) {missing}; they have columns "
            f"{list(map(str, frame.columns))}"
        )
    v = {name: positive_column(frame, col, name) for name, col in mapping.items()}
    order = v["batch_size_small"] >= v["batch_size_big"]
    if order.any():
        i = np.flatnonzero(order)[0]
        raise DataError(
            f"batch_size_small must be < batch_size_big; row {frame.index[i]!r} has "
            f"{v['batch_size_small'][i]!r} >= {v['batch_size_big'][i]!r}"
        )
    b_small, b_big = v["batch_size_small"], v["batch_size_big"]
    g_small, g_big = v["grad_norm_sq_small"], v["grad_norm_sq_big"]
    grad_sq = (b_big * g_big - b_small * g_small) / (b_big - b_small)
    trace = (g_small - g_big) / (1.0 / b_small - 1.0 / b_big)
    out = frame.copy()
    out["grad_norm_sq"] = grad_sq
    out["trace_cov"] = trace
    valid = (grad_sq > 0) & (trace > 0)
    out["noise_scale"] = np.where(valid, trace / np.where(valid, grad_sq, 1.0), np.nan)
    return out
