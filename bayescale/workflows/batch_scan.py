"""Batch-size scans -> S_min, E_min and B_crit per target loss (Kaplan et al. 2020, seed 001).

A batch-size scan is the loss curves of one model trained at several batch sizes
:math:`B`.  At a fixed target loss :math:`L`, the steps :math:`S` and the examples
:math:`E = BS` each run needed lie on McCandlish et al.'s hyperbola

.. math::

    \\Bigl(\\frac{S}{S_{\\min}} - 1\\Bigr)\\Bigl(\\frac{E}{E_{\\min}} - 1\\Bigr) = 1
    \\quad\\Longleftrightarrow\\quad
    S = S_{\\min} + \\frac{E_{\\min}}{B} = S_{\\min}\\Bigl(1 + \\frac{B_{\\rm crit}}{B}\\Bigr),
    \\qquad B_{\\rm crit} = \\frac{E_{\\min}}{S_{\\min}}.

:func:`steps_to_target` reads :math:`S` (and :math:`E`) off each curve at each target loss;
:func:`fit_batch_scan` fits the catalogue law ``mccandlish_steps``
(``steps = S_min + E_min / batch_size``) to every target loss at once, one
:func:`bayescale.fit` call with ``by="loss_level"``, and derives the posterior of
:math:`B_{\\rm crit}` per loss level.

Only :math:`S` enters the likelihood: :math:`E = BS` is the same measurement multiplied by
the known :math:`B` (:math:`\\log E = \\log S + \\log B`), so adding it would count every
run twice and halve the noise the fit believes in.  Residuals are on :math:`\\log S`, the
scale on which read-off and seed-to-seed noise of a step count is multiplicative; they are
normal by default (see :func:`fit_batch_scan`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.api import fit, resolve_options
from bayescale.data import DataError, as_frame, positive_array, positive_column
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result, quantile_column
from bayescale.workflows.propagate import NORMAL_MODEL, summarize_draws

__all__ = ["LAW_ID", "BatchScanResult", "fit_batch_scan", "steps_to_target"]

#: Catalogue law fitted per loss level: ``steps = S_min + E_min / batch_size``.
LAW_ID = "mccandlish_steps"

_CURVE_COLUMNS = ("batch_size", "steps", "loss")


def _curve_frame(curves, columns: Mapping[str, str] | None, run: str | None) -> pd.DataFrame:
    """Validated ``batch_size, steps, loss[, run]`` columns of the curves (renamed)."""
    frame = as_frame(curves)
    mapping = {name: (columns or {}).get(name, name) for name in _CURVE_COLUMNS}
    unknown = [k for k in (columns or {}) if k not in _CURVE_COLUMNS]
    if unknown:
        raise DataError(
            f"columns= maps {unknown}, which are not batch-scan variables "
            f"({', '.join(_CURVE_COLUMNS)})"
        )
    wanted = [*mapping.values(), *([run] if run is not None else [])]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"batch-scan curves need column(s) {missing}; they have columns "
            f"{list(map(str, frame.columns))} (map yours with columns={{'steps': 'step', ...}})"
        )
    out = pd.DataFrame(index=frame.index)
    for name, col in mapping.items():
        out[name] = positive_column(frame, col, f"{name} of the curves")
    if run is not None:
        out["run"] = frame[run].to_numpy()
    return out


def _targets(target_losses) -> np.ndarray:
    return np.sort(positive_array(target_losses, "target_losses", distinct=True))[::-1]


@float64
def steps_to_target(
    curves,
    target_losses: Sequence[float],
    *,
    columns: Mapping[str, str] | None = None,
    run: str | None = None,
    smooth: int = 5,
) -> pd.DataFrame:
    """Steps and examples each run needed to first reach each target loss.

    Each run's logged log-loss is smoothed by a centred moving average of ``smooth`` points,
    made monotone by its running minimum :math:`\\ell_t = \\min_{u \\le t} \\log L_u`, and
    the step at which it first reaches :math:`\\log L^\\ast` is interpolated linearly in
    :math:`(\\log S, \\log L)` between the two logged points that bracket it:

    .. math::

        \\log S(L^\\ast) = \\log S_{t-1} + \\frac{\\ell_{t-1} - \\log L^\\ast}
        {\\ell_{t-1} - \\ell_t}\\,(\\log S_t - \\log S_{t-1}), \\qquad E(L^\\ast) = B\\,S(L^\\ast).

    A run that never reaches a target, or is already below it at its first logged step,
    gives no row for it.

    Parameters
    ----------
    curves : DataFrame, dict of arrays or CSV path
        One row per logged point with columns ``batch_size`` (tokens), ``steps`` and
        ``loss`` (or those mapped by ``columns``).  Each batch size (and ``run`` value) is
        one run.
    target_losses : sequence of float
        The loss levels :math:`L^\\ast`.
    columns : dict, optional
        Variable -> column, e.g. ``{"steps": "step", "loss": "train_loss"}``.
    run : str, optional
        Column telling apart several runs at the same batch size (e.g. seeds).
    smooth : int
        Window (logged points) of the moving average; 1 turns smoothing off.

    Returns
    -------
    DataFrame
        ``loss_level``, ``batch_size``, [``run``,] ``steps`` and ``n_tokens`` (:math:`E`),
        sorted by loss level (descending) then batch size.

    Raises
    ------
    DataError
        A missing or non-numeric column, a value that is not finite and > 0 (naming the
        column and row), bad ``target_losses`` or ``smooth``.
    """
    if isinstance(smooth, bool) or not isinstance(smooth, int | np.integer) or smooth < 1:
        raise DataError(f"smooth must be an integer >= 1 (logged points), got {smooth!r}")
    frame = _curve_frame(curves, columns, run)
    targets = _targets(target_losses)
    log_targets = np.log(targets)
    keys = ["batch_size", *(["run"] if run is not None else [])]
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values("steps")
        log_s = np.log(group["steps"].to_numpy())
        log_l = np.log(group["loss"].to_numpy())
        if smooth > 1 and log_l.size >= smooth:
            log_l = pd.Series(log_l).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
        envelope = np.minimum.accumulate(log_l)
        for target, log_target in zip(targets, log_targets, strict=True):
            reached = np.flatnonzero(envelope <= log_target)
            if reached.size == 0 or reached[0] == 0:
                continue
            t = reached[0]
            drop = envelope[t - 1] - envelope[t]
            frac = (envelope[t - 1] - log_target) / drop if drop > 0 else 1.0
            steps = float(np.exp(log_s[t - 1] + frac * (log_s[t] - log_s[t - 1])))
            row = {"loss_level": target, "batch_size": key[0]}
            if run is not None:
                row["run"] = key[1]
            row.update({"steps": steps, "n_tokens": key[0] * steps})
            rows.append(row)
    cols = ["loss_level", *keys, "steps", "n_tokens"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["loss_level", *keys], ascending=[False, *[True] * len(keys)])


@dataclass
class BatchScanResult:
    """Posteriors of :math:`S_{\\min}`, :math:`E_{\\min}` and :math:`B_{\\rm crit}` per loss.

    Attributes
    ----------
    batch : Result
        The ``mccandlish_steps`` fits, one per loss level (fit dimension ``loss_level``).
    points : DataFrame
        The fitted points: ``loss_level``, ``batch_size``, ``steps``, ``n_tokens``.
    levels : DataFrame
        One row per fitted loss level (index ``loss_level``): ``num_runs``, for each of
        ``S_min``, ``E_min``, ``B_crit`` its posterior ``mean``, ``sd`` and quantiles
        (columns ``B_crit_q2.5`` ...), ``status`` and ``bcrit_in_scan`` (whether the median
        :math:`B_{\\rm crit}` lies inside the scanned batch sizes; outside it, it is an
        extrapolation).
    skipped : DataFrame
        Target losses not fitted and why (too few runs reached them).
    """

    batch: Result
    points: pd.DataFrame
    levels: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)

    def draws(self) -> dict[str, np.ndarray]:
        """Posterior draws ``{S_min, E_min, B_crit: (level, chain, draw)}`` (levels in
        the order of ``levels.index``)."""
        post = self.batch.group("posterior")
        s_min = post["S_min"].sel(loss_level=list(self.levels.index)).values
        e_min = post["E_min"].sel(loss_level=list(self.levels.index)).values
        return {"S_min": s_min, "E_min": e_min, "B_crit": e_min / s_min}

    def critical_batch_size_draws(self) -> pd.DataFrame:
        """Long table of :math:`B_{\\rm crit}` draws: ``loss_level``, ``draw``, ``B_crit``.

        ``draw`` numbers the pooled (chain, draw) pairs; this is the input of
        :func:`bayescale.workflows.bcrit.fit_critical_batch_size`.
        """
        bcrit = self.draws()["B_crit"]
        num_levels = bcrit.shape[0]
        flat = bcrit.reshape(num_levels, -1)
        return pd.DataFrame(
            {
                "loss_level": np.repeat(self.levels.index.to_numpy(), flat.shape[1]),
                "draw": np.tile(np.arange(flat.shape[1]), num_levels),
                "B_crit": flat.ravel(),
            }
        )

    def predict_steps(self, batch_sizes, *, quantiles=(0.025, 0.5, 0.975)) -> pd.DataFrame:
        """The fitted :math:`S(B) = S_{\\min} + E_{\\min}/B` at ``batch_sizes`` for every
        level, with the posterior band of the law (``kind="mean"``), plus ``n_tokens``
        quantiles (:math:`E = BS`)."""
        sizes = np.asarray(batch_sizes, dtype=np.float64).ravel()
        new = pd.DataFrame(
            {
                "loss_level": np.repeat(self.levels.index.to_numpy(), sizes.size),
                "batch_size": np.tile(sizes, len(self.levels)),
            }
        )
        pred = self.batch.predict(new, quantiles=quantiles, kind="mean")
        for q in ("mean", *map(quantile_column, quantiles)):
            pred[f"n_tokens_{q}"] = pred[q] * pred["batch_size"]
        return pred.reset_index(drop=True)


@float64
def fit_batch_scan(
    curves,
    target_losses: Sequence[float],
    *,
    columns: Mapping[str, str] | None = None,
    run: str | None = None,
    smooth: int = 5,
    min_runs: int = 4,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    warn: bool = True,
    **deprecated,
) -> BatchScanResult:
    """Fit :math:`S = S_{\\min} + E_{\\min}/B` at every target loss, in one batched call.

    For each target loss :math:`L^\\ast` the steps :math:`S_r` of each run :math:`r` (read
    by :func:`steps_to_target`) are modelled as

    .. math::

        \\log S_r = \\log\\bigl(S_{\\min} + E_{\\min}/B_r\\bigr) + \\varepsilon_r,

    with :math:`\\varepsilon_r` normal (or Student-t) and the priors of the catalogue law
    ``mccandlish_steps``; all levels are fitted by one
    :func:`bayescale.fit` call (``by="loss_level"``).  :math:`B_{\\rm crit} =
    E_{\\min}/S_{\\min}` is computed draw by draw, so its posterior is exact.

    Parameters
    ----------
    curves, target_losses, columns, run, smooth
        As for :func:`steps_to_target`.
    min_runs : int
        Fewest runs that must reach a target loss for it to be fitted (at least 4: two
        parameters, the noise scale and a residual degree of freedom); other targets are
        listed in ``skipped``.
    quantiles : sequence of float
        Quantiles reported in ``levels`` (default: median and 95% interval).
    model : Model, optional
        Default ``Model(likelihood="normal")``, unlike :func:`bayescale.fit`: a level has one
        point per run (about ten), too few to identify a Student-t :math:`\\nu`, whose funnel
        with :math:`\\sigma` then slows mixing and causes divergences.  Choose
        ``Model(likelihood="student_t", discrepancy=None)`` when a scan may hold a broken
        run.  No discrepancy (:data:`~bayescale.workflows.propagate.NORMAL_MODEL`): the
        points are separate runs at distinct batch sizes, and what is wanted is the
        hyperbola's :math:`S_{\\min}, E_{\\min}`, not a forecast along :math:`B`.
    inference : NUTS, MAP or Laplace, optional
        Default ``NUTS()``.
    seed, warn
        As in :func:`bayescale.fit`.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    BatchScanResult

    Raises
    ------
    DataError
        Bad curves (see :func:`steps_to_target`), or no target loss reached by
        ``min_runs`` runs.
    """
    model, inference = resolve_options(
        "fit_batch_scan", model, inference, deprecated, defaults=(NORMAL_MODEL, NUTS())
    )
    if isinstance(min_runs, bool) or not isinstance(min_runs, int | np.integer) or min_runs < 4:
        raise DataError(f"min_runs must be an integer >= 4, got {min_runs!r}")
    points = steps_to_target(curves, target_losses, columns=columns, run=run, smooth=smooth)
    counts = points.groupby("loss_level").size()
    targets = _targets(target_losses)
    num_runs = counts.reindex(targets, fill_value=0)
    skip = num_runs[num_runs < min_runs]
    skipped = pd.DataFrame(
        {
            "loss_level": skip.index.to_numpy(),
            "reason": [f"{n} run(s) reached it, {min_runs} needed" for n in skip.to_numpy()],
        }
    )
    kept = points[points["loss_level"].isin(num_runs.index[num_runs >= min_runs])]
    if kept.empty:
        raise DataError(
            f"no target loss was reached by {min_runs} runs: runs reaching each target "
            f"{dict(zip(num_runs.index.tolist(), num_runs.tolist(), strict=True))}"
        )
    if len(skipped):
        warnings.warn(
            f"target losses {skipped['loss_level'].tolist()} not fitted: "
            + "; ".join(skipped["reason"]),
            stacklevel=2,
        )
    data = kept.drop(columns=["n_tokens", *(["run"] if run is not None else [])])
    batch = fit(
        data, LAW_ID, by="loss_level", model=model, inference=inference, seed=seed, warn=warn
    )
    return BatchScanResult(
        batch=batch,
        points=kept.reset_index(drop=True),
        levels=_level_table(batch, kept, quantiles),
        skipped=skipped,
    )


def _level_table(batch: Result, points: pd.DataFrame, quantiles) -> pd.DataFrame:
    """Per level: runs, posterior mean/sd/quantiles of S_min, E_min, B_crit, status."""
    labels = batch.labels
    post = batch.group("posterior")
    s_min, e_min = post["S_min"].values, post["E_min"].values
    values = {"S_min": s_min, "E_min": e_min, "B_crit": e_min / s_min}
    table = summarize_draws(values, pd.Index(labels, name="loss_level"), quantiles)
    table.insert(0, "num_runs", points.groupby("loss_level").size().reindex(labels).to_numpy())
    table["status"] = batch.diagnostics["status"].reindex(labels).to_numpy()
    lo = points.groupby("loss_level")["batch_size"].min().reindex(labels).to_numpy()
    hi = points.groupby("loss_level")["batch_size"].max().reindex(labels).to_numpy()
    median = np.median(values["B_crit"].reshape(len(labels), -1), axis=1)
    table["bcrit_in_scan"] = (median >= lo) & (median <= hi)
    return table.sort_index(ascending=False)
