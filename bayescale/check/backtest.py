"""Extrapolation backtests: per curve, fit the early part, predict and score the rest.

The early part of each curve is a fraction of the steps, or the runs below a size/budget
threshold; the held-out later part is predicted and the predictive intervals' coverage and
the posterior median's error scored against a least-squares (or Huber) point fit of the
same law (:func:`~bayescale.check.baseline.least_squares_fit`).  Optionally the curves of a
pool (e.g. one model size's seeds) are fitted together, chosen parameters drawn from a
population (``model=Model(pooled=...)``, ``pool_by=``); optionally a law error beyond the
fitted range is learnt out of sample (:mod:`bayescale.check.law_error`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.api import fit, resolve_options
from bayescale.check.baseline import least_squares_fit
from bayescale.check.law_error import (
    band_variance,
    bias_and_se,
    check_enough_curves,
    check_law_error_options,
    finite_bands,
    law_error_bias,
    law_error_scale,
    log_errors,
    tau_of,
)
from bayescale.check.scoring import predict_and_score
from bayescale.data import DataError, as_frame, prepare
from bayescale.laws import Law, get_law
from bayescale.model import check_pooled_names
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result

__all__ = ["BacktestResult", "backtest"]


@dataclass
class BacktestResult:
    """Outcome of :func:`backtest`.

    Attributes
    ----------
    table : DataFrame
        One row per curve and a final ``overall`` row: ``num_fit`` / ``num_held_out``
        points, ``coverage_50`` / ``coverage_90`` (fraction of held-out points inside the
        central 50% / 90% posterior-predictive intervals), ``final_in_50`` /
        ``final_in_90`` (the last held-out point inside them), ``rmse_log`` (RMSE of the
        log response of the posterior-median prediction of the law over the held-out
        points), ``baseline_rmse_log`` (the same for the point fit), ``final_error_log`` /
        ``baseline_final_error_log`` (signed log error at the last held-out point) and the
        fit's ``status``.  The overall row pools all held-out points (coverage, RMSE), averages
        ``final_in_*`` over curves and gives the root mean square of the final errors.
    predictions : DataFrame
        Every held-out point: the curve, covariates, observed response, predictive
        quantiles ``q0.5 q2.5 q5 q10 ... q50 ... q95 q97.5 q99.5`` (the central bands of
        ``scoring.BAND_LEVELS``), ``median`` (of the law), ``baseline``.
    batch : Result
        The Bayesian fits of the early parts (pooled: the pools' fits joined along
        the curve dimension, each pool's population draws ``<p>_pop``, ``<p>_pop_sd``
        repeated for its curves).
    baseline : DataFrame
        The point-fit parameters per curve.
    law_error : Series or None
        Per curve, the law-error scale :math:`\\tau` (log response per decade beyond the
        fitted range) its bands were widened by, learnt without its own held-out points
        (``law_error=`` of :func:`backtest`); ``None``: bands without law error.  With a
        learnt bias it is :math:`\\sqrt{\\hat\\tau^2 + \\mathrm{se}(\\hat\\mu)^2}`.
    law_bias : DataFrame or None
        With ``law_bias=True`` (:meth:`with_law_error`): per curve, the extrapolation bias
        ``bias`` (:math:`\\hat\\mu`, log response per decade, :func:`law_error_bias`) its
        medians and bands were shifted by, its standard error ``bias_se``, the scale ``tau``
        of the residual law error, the curves ``num_curves`` they were learnt from (never the
        curve itself) and the least-squares baseline's own bias ``baseline_bias`` from the
        same curves (its shifted predictions are ``debiased_baseline`` in the predictions,
        ``debiased_baseline_rmse_log`` / ``debiased_baseline_final_error_log`` in the table).
        ``None``: no bias learnt.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    batch: Result = field(repr=False)
    baseline: pd.DataFrame = field(repr=False)
    law_error: pd.Series | None = None
    law_bias: pd.DataFrame | None = None
    _context: dict = field(default_factory=dict, repr=False)

    @property
    def overall(self) -> pd.Series:
        return self.table.loc["overall"]

    @property
    def error_ratio(self) -> float:
        """Overall posterior-median RMSE / baseline RMSE (log response)."""
        row = self.overall
        return float(row["rmse_log"] / row["baseline_rmse_log"])

    @float64
    def with_law_error(
        self, method: str = "curves", *, bias: bool = False, by: str | Sequence[str] | None = None
    ) -> BacktestResult:
        """A new :class:`BacktestResult`: the same fits, their held-out bands widened by a law
        error learnt out of sample.

        Each held-out point's predictive draws get an independent
        :math:`\\tau\\,d(x)\\,z` in log response (``law_error`` of
        :meth:`bayescale.result.Result.predict`), :math:`d(x)` the decades beyond the
        curve's fitted range, so :math:`\\sigma(x)^2 = \\sigma_0^2 + \\tau^2 d(x)^2`.
        :math:`\\tau` is estimated by :func:`law_error_scale` from errors that never include
        the curve's own held-out points:

        * ``"curves"`` (leave one curve out): from the held-out points of the *other*
          curves (needs >= 3 curves; with ``by``, >= 3 per group);
        * ``"in_range"``: from a backtest inside the fitted range — every curve's fitted
          points split in halves (by the split covariate), the first half fitted (one more
          :func:`bayescale.fit` call), the second predicted — pooled over curves; uses
          no held-out point at all (the method for a single curve, e.g. Chinchilla).

        With ``bias=True`` (``"curves"`` only) the law error also has a mean, an
        extrapolation bias growing with the distance:
        :math:`e(x) = \\log y - \\log\\hat y \\approx \\mu\\,d(x) + \\tau\\,d(x)\\,z`.
        From the same other curves' held-out errors :math:`e_i` (observed against the
        predictive median without law error) at distances :math:`d_i`:
        :math:`\\hat\\mu` by :func:`law_error_bias` (least squares through the origin),
        :math:`\\hat\\tau` by :func:`law_error_scale` from the residuals
        :math:`e_i - \\hat\\mu d_i`, corrected for the variance the fit of
        :math:`\\hat\\mu` absorbed (its leverage, with the law error shared within each
        curve: about a factor :math:`m/(m-1)` on :math:`\\hat\\tau^2` with :math:`m` other
        curves, ``bias_curves`` of :func:`law_error_scale`).  The curve's predictive
        quantiles and its law median are multiplied by :math:`\\exp(\\hat\\mu\\,d(x))`, and
        its band carries the uncertainty of :math:`\\hat\\mu` too: law error
        :math:`\\sqrt{\\hat\\tau^2 + \\mathrm{se}(\\hat\\mu)^2}\\,d(x)` (se: a
        cluster-robust standard error over the curves, as :func:`law_error_bias` states).
        The least-squares baseline gets the same correction from its own errors on the same
        curves (``debiased_baseline``), so a gain can be told apart: the bias correction or
        the Bayesian fit.  The correction uses the other curves' *completed* held-out parts
        (e.g. other seeds' finished runs): it is an honest out-of-sample prediction only where
        such runs exist.

        Only predictions are recomputed (and, for ``"in_range"``, the inner fits); the fits of
        the backtest itself are reused.

        Parameters
        ----------
        method : {"curves", "in_range"}
        bias : bool
            Learn and apply the extrapolation bias :math:`\\mu` (default False).
        by : str or list of str, optional
            Column(s) of the data, constant within a curve: a curve's law error (and bias) is
            learnt only from the other curves of its group, e.g. ``"model"``: the other seeds
            of the same size.  ``None`` (default): all other curves.  ``"curves"`` only.

        Raises
        ------
        ValueError
            An unknown ``method``, ``bias`` not a bool, ``bias`` or ``by`` with
            ``"in_range"``, too few curves (in a group), or a backtest whose bands already
            carry a law error.
        DataError
            ``by`` names a missing column or one that varies within a curve.
        """
        check_law_error_options(method, bias, by, names=("method", "bias", "by"))
        if self.law_error is not None:
            raise ValueError(
                "this backtest's bands already carry a law error: call with_law_error on the "
                "backtest without one (backtest(..., law_error=None))"
            )
        ctx = self._context
        curves = [c for c in self.table.index if c != "overall"]
        if method == "in_range":
            tau = tau_of(finite_bands(_in_range_backtest(ctx).predictions))
            taus = pd.Series(dict.fromkeys(curves, tau), name="law_error")
            taus.index.name = "curve"
            table, pred = predict_and_score(self.batch, ctx, taus)
            return dataclasses.replace(self, table=table, predictions=pred, law_error=taus)
        groups = _curve_groups(ctx["held"], ctx["held_keys"], by, argument="by")
        if groups is None:
            groups = pd.Series("all", index=pd.Index(curves))
        check_enough_curves(groups.reindex(curves), by, argument="by")
        pred = finite_bands(self.predictions)
        taus, rows = {}, {}
        for label in curves:
            others = pred[(pred["curve"] != label) & (pred["curve"].map(groups) == groups[label])]
            if not bias:
                taus[label] = tau_of(others)
                continue
            e, d = log_errors(others), others["distance"].to_numpy(dtype=float)
            mu, se = bias_and_se(e, d, others["curve"].to_numpy())
            tau = law_error_scale(
                e - mu * d, band_variance(others), d, bias_curves=others["curve"].to_numpy()
            )
            base = others[np.isfinite(others["baseline"]) & (others["baseline"] > 0)]
            base_e = np.log(base["observed"].to_numpy()) - np.log(base["baseline"].to_numpy())
            rows[label] = {
                "bias": mu,
                "bias_se": se,
                "tau": tau,
                "num_curves": int(others["curve"].nunique()),
                "baseline_bias": law_error_bias(base_e, base["distance"]),
            }
            taus[label] = math.hypot(tau, se)
        taus = pd.Series(taus, name="law_error")
        taus.index.name = "curve"
        biases = None
        if bias:
            biases = pd.DataFrame.from_dict(rows, orient="index")
            biases.index.name = "curve"
        table, pred = predict_and_score(self.batch, ctx, taus, biases)
        return dataclasses.replace(
            self, table=table, predictions=pred, law_error=taus, law_bias=biases
        )


def _curve_groups(frame: pd.DataFrame, keys: pd.Series, by, *, argument: str):
    """Each curve's group label (a Series indexed by curve; ``None`` when ``by`` is None),
    validated: ``by`` names existing columns, constant within each curve."""
    if by is None:
        return None
    if isinstance(by, str):
        cols = [by]
    elif isinstance(by, Sequence) and by and all(isinstance(c, str) for c in by):
        cols = list(by)
    else:
        raise ValueError(f"{argument} must be a column name or a list of them, got {by!r}")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(
            f"{argument}= names column(s) {missing} not in the data; it has {list(frame)}"
        )
    labels = frame[cols].astype(str).agg("/".join, axis=1)
    varying = labels.groupby(keys).nunique()
    if (varying > 1).any():
        raise DataError(
            f"{argument} column(s) {cols} vary within curve {varying.index[varying > 1][0]!r}: "
            "a curve must lie in one group"
        )
    return labels.groupby(keys).first()


@float64
def backtest(
    data,
    law: str | Path | Law,
    *,
    by: str | Sequence[str] | None,
    split: float | Mapping[str, float] = 0.2,
    on: str | None = None,
    columns: Mapping[str, str] | None = None,
    baseline: str = "least_squares",
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    law_error: str | None = None,
    law_bias: bool = False,
    law_error_by: str | Sequence[str] | None = None,
    pool_by: str | Sequence[str] | None = None,
    **deprecated,
) -> BacktestResult:
    """Extrapolation backtest: fit the early part of each curve, predict the rest.

    Each curve (group of ``by``) is split on a covariate :math:`x` into a fitted part and a
    held-out part:

    * ``split=s`` (a float in (0, 1)): fitted are the rows with
      :math:`x \\le s \\cdot \\max x` of that curve (``split=0.2``: the first 20% of the
      steps); ``on`` names :math:`x` (default: the law's only covariate), a law covariate
      or any numeric column of the data (e.g. ``on="step"`` for a law in the learning-rate
      areas, ``models/lr_annealing.toml``);
    * ``split={"n_params": 1e9}``: fitted are the rows with :math:`x < 10^9` (the smaller
      models or budgets), held out the rest.

    The early parts are fitted in one :func:`bayescale.fit` call (``by=`` the curves).  At
    each held-out point :math:`x_j` the posterior predictive of a new observation gives the
    central 50% and 90% intervals, and the posterior median of the law
    :math:`\\hat y_j = \\operatorname{median}_\\theta f(x_j; \\theta)` the point
    prediction.  The error is :math:`\\mathrm{RMSE} = \\sqrt{\\tfrac1m \\sum_j (\\log\\hat y_j
    - \\log y_j)^2}`; the baseline is :func:`least_squares_fit` of the same law to the same
    early part (``baseline="least_squares"``: ordinary least squares in log space;
    ``"huber"``: Hoffmann et al.'s Huber loss, :math:`\\delta = 10^{-3}`).

    Parameters
    ----------
    data : DataFrame, dict of arrays, or CSV path
    law : str, Path or Law
    by : str, list of str or None
        Column(s) naming the curves; ``None``: the whole data set is one curve.
    split : float or dict
        As above.
    on : str, optional
        The law covariate or data column a fractional ``split`` applies to.
    columns : dict, optional
        Law variable -> data column.
    baseline : {"least_squares", "huber"}
    model : Model, optional
        The fits' model (:class:`~bayescale.options.Model`; default ``Model()``).  With
        ``Model(noise="loglinear")`` the predictive intervals at held-out points use the
        noise scale :math:`\\sigma(x)` extrapolated there (covariates standardised by the
        fitted points).  ``Model(pooled=[...])`` fits the curves of a pool together, these
        law parameters drawn from a population across the pool's curves
        (:class:`~bayescale.model.PooledPosterior`): for curve :math:`g` of a pool,
        :math:`z_{p,g} \\sim \\mathcal N(\\mu_p, \\tau_p)` on the unconstrained scale, every
        other parameter per curve.  Only the early part of every curve enters the pooled
        fit (no held-out point of any curve); each curve is then scored on its own held-out
        points exactly as without pooling.  Default: independent fits.
    inference : NUTS, MAP or Laplace, optional
        How the fits' posteriors are computed (default ``NUTS()``; its
        ``target_accept_prob`` defaults to 0.8, and 0.99 for pooled fits, and is recorded in
        ``.batch.datatree.attrs``).
    seed : int
        Seeds the fits and the predictive draws.
    law_error : {None, "curves", "in_range"}
        Opt-in: widen the bands by a law error :math:`\\tau\\,d(x)` learnt out of sample
        (:meth:`BacktestResult.with_law_error`); ``None`` (default): no law error.
    law_bias : bool
        Opt-in (with ``law_error="curves"``): the law error also has a mean, an extrapolation
        bias :math:`\\mu\\,d(x)` learnt from the other curves' held-out errors (least
        squares through the origin, :func:`law_error_bias`); each curve's medians and bands
        are shifted by it and the least-squares baseline gets the same correction from its
        own errors (``debiased_baseline``).  Default False.
    law_error_by : str or list of str, optional
        With ``law_error="curves"``: column(s), constant within a curve, whose groups restrict
        the curves a curve's law error (and bias) is learnt from, e.g. ``"model"``: the other
        seeds of the same size.  ``None`` (default): all other curves.
    pool_by : str or list of str, optional
        With ``Model(pooled=...)``: column(s), constant within a curve, whose values form the
        pools, e.g. ``"model"``: each model size's seeds pooled, sizes fitted separately (one
        NUTS run per pool).  ``None``: all curves one pool.  Each pool needs >= 2 curves.  With
        pooling the result also carries a *pooled least-squares* baseline (one parameter
        vector per pool, fitted to the early parts of all its curves by
        :func:`least_squares_fit`): ``pooled_baseline`` in the predictions,
        ``pooled_baseline_rmse_log`` / ``pooled_baseline_final_error_log`` in the table.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    BacktestResult

    Raises
    ------
    ValueError
        An unknown ``baseline`` or ``law_error``, a ``law_bias`` that is not a bool,
        ``law_bias=True`` or ``law_error_by`` without ``law_error="curves"``, or a group of
        ``law_error_by`` with fewer than 3 curves (all checked before any fit).
    DataError
        Unknown columns, a split that leaves a curve without fitted or held-out points, a
        ``pool_by`` or ``law_error_by`` column that varies within a curve or a pool with
        fewer than 2 curves.
    """
    model, inference = resolve_options("backtest", model, inference, deprecated)
    law = get_law(law, priors=model.priors)
    if baseline not in ("least_squares", "huber"):
        raise ValueError(f"baseline must be 'least_squares' or 'huber', got {baseline!r}")
    frame = as_frame(data).reset_index(drop=True)
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [b for b in by_cols if b not in frame.columns]
    if missing:
        raise DataError(f"by= names column(s) {missing} not in the data; it has {list(frame)}")
    cov, threshold, fraction = _split_rule(law, split, on)
    col = (columns or {}).get(cov, cov) if cov in law.covariates else cov
    if col not in frame.columns:
        raise DataError(
            f"the split variable {cov!r} (column {col!r}) is not in the data; it has "
            f"{list(map(str, frame.columns))}"
        )
    check_law_error_options(
        law_error, law_bias, law_error_by, names=("law_error", "law_bias", "law_error_by")
    )
    curve_col = "/".join(by_cols) if by_cols else "curve"
    if by_cols:
        keys = frame[by_cols].astype(str).agg("/".join, axis=1)
    else:
        keys = pd.Series("all", index=frame.index)
        frame[curve_col] = "all"
        by_cols = [curve_col]
    x = pd.to_numeric(frame[col], errors="coerce")
    if x.isna().any():
        row = x.index[x.isna()][0]
        raise DataError(
            f"the split column {col!r} must be numeric; row {row} holds {frame.at[row, col]!r}"
        )
    if fraction is not None:
        limit = x.groupby(keys).transform("max") * fraction
        early = x <= limit
    else:
        early = x < threshold
    for label, is_early in early.groupby(keys):
        if is_early.all() or not is_early.any():
            part = "held-out" if is_early.all() else "fitted"
            raise DataError(f"split {split!r} on {cov!r} leaves curve {label!r} no {part} points")
    pools = _pools(frame, keys, law, model.pooled, pool_by)
    groups = _curve_groups(frame, keys, law_error_by, argument="law_error_by")
    if groups is not None:  # before any fit
        check_enough_curves(groups, law_error_by, argument="law_error_by")
    fit_frame, held = frame[early], frame[~early]
    by_arg = by_cols[0] if len(by_cols) == 1 else by_cols
    settings = dict(columns=columns, model=model, inference=inference, seed=seed, warn=False)
    if pools is None:
        batch = fit(fit_frame, law, by=by_arg, **settings)
    else:
        batch = _fit_pools(fit_frame, keys[early], pools[early], law, by_arg, settings)

    loss = "huber" if baseline == "huber" else "linear"
    base_rows, base_pred = [], pd.Series(np.nan, index=held.index)
    for label, rows in fit_frame.groupby(keys[early], sort=True):
        fit_data = prepare(rows.drop(columns=by_cols), law, columns, min_points=1)
        theta = least_squares_fit(law, fit_data, loss=loss, seed=seed)
        base_rows.append({"curve": label, **theta})
        target = held[keys[~early] == label]
        new = prepare(target.drop(columns=by_cols), law, columns, require_response=False)
        log_f = np.asarray(law.log_mean(theta, new.log_x), dtype=float)
        base_pred.loc[target.index] = np.exp(np.broadcast_to(log_f, (len(target),)))
    baseline_table = pd.DataFrame(base_rows).set_index("curve")
    if pools is not None:  # one least-squares parameter vector per pool (complete pooling)
        pooled_pred = pd.Series(np.nan, index=held.index)
        for value, rows in fit_frame.groupby(pools[early], sort=True):
            fit_data = prepare(rows.drop(columns=by_cols), law, columns, min_points=1)
            theta = least_squares_fit(law, fit_data, loss=loss, seed=seed)
            target = held[pools[~early] == value]
            new = prepare(target.drop(columns=by_cols), law, columns, require_response=False)
            log_f = np.asarray(law.log_mean(theta, new.log_x), dtype=float)
            pooled_pred.loc[target.index] = np.exp(np.broadcast_to(log_f, (len(target),)))
        held = held.assign(_pooled_baseline=pooled_pred)

    context = {
        "law": law,
        "held": held.assign(_baseline=base_pred),
        "held_keys": keys[~early],
        "by_cols": by_cols,
        "by": by_arg,
        "x_col": col,
        "split_covariate": cov,
        "fit_frame": fit_frame,
        "fit_keys": keys[early],
        "fit_counts": keys[early].value_counts(),
        "baseline": baseline,
        "settings": settings,
        "pool_by": pool_by,
    }
    table, pred = predict_and_score(batch, context, None)
    result = BacktestResult(table, pred, batch, baseline_table, _context=context)
    if law_error is None:
        return result
    return result.with_law_error(law_error, bias=law_bias, by=law_error_by)


def _pools(frame, keys, law, pooled, pool_by) -> pd.Series | None:
    """Each row's pool label (``None`` without pooling: ``pooled`` empty), validated:
    ``pooled`` names law parameters, ``pool_by`` columns exist and are constant within a
    curve, every pool has >= 2 curves."""
    if not pooled:
        if pool_by is not None:
            raise ValueError("pool_by= groups curves for pooling: give model=Model(pooled=...) too")
        return None
    check_pooled_names(law, pooled)
    if pool_by is None:
        pools = pd.Series("all", index=frame.index)
    else:
        pools = keys.map(_curve_groups(frame, keys, pool_by, argument="pool_by"))
    num_curves = keys.groupby(pools).nunique()
    if (num_curves < 2).any():
        small = num_curves[num_curves < 2]
        raise DataError(
            f"pooling needs >= 2 curves per pool; pool(s) {list(small.index)} of "
            f"pool_by={pool_by!r} hold one curve"
        )
    return pools


def _fit_pools(fit_frame, fit_keys, fit_pools, law, by, settings) -> Result:
    """One pooled NUTS fit (:func:`bayescale.fit` with ``by=``, ``settings``) of the early
    parts of each pool's curves, the pools' results joined into one :class:`Result`
    whose fit dimension and labels are those :func:`bayescale.fit` gives for ``by``.

    The population draws ``<p>_pop``, ``<p>_pop_sd`` of a pool are repeated for each of its
    curves; ``attrs["population_diagnostics"]`` is keyed by pool.
    """
    by_cols = [by] if isinstance(by, str) else list(by)
    dim = "_".join(by_cols)
    parts, diagnostics, reasons = [], {}, {}
    for value, rows in fit_frame.groupby(fit_pools, sort=True):
        rows = rows.drop(columns=by_cols).assign(**{dim: fit_keys[rows.index].to_numpy()})
        part = fit(rows, law, by=dim, **settings)
        diagnostics[value] = json.loads(part.datatree.attrs["population_diagnostics"])
        reasons.update(json.loads(part.datatree.attrs.get("failure_reasons", "{}")))
        parts.append(part)
    width = max(p.datatree.observed_data.sizes["point"] for p in parts)
    groups = {}
    for name in parts[0].datatree.children:
        sets = [p.datatree[name].to_dataset() for p in parts]
        sets = [
            ds.pad(point=(0, width - ds.sizes["point"])) if "point" in ds.dims else ds
            for ds in sets
        ]
        groups[name] = xr.concat(sets, dim=dim, data_vars="all", coords="minimal")
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {
        **parts[0].datatree.attrs,
        "by": json.dumps(by),
        "pool_labels": json.dumps([str(v) for v in diagnostics]),
        "failure_reasons": json.dumps(reasons),
        "population_diagnostics": json.dumps(diagnostics),
    }
    first = parts[0]
    return Result(tree, law, first.likelihood, first.columns, by)


def _in_range_backtest(ctx: dict) -> BacktestResult:
    """Backtest inside the fitted range: per curve, fit the first half of the fitted points
    (in the split covariate) and predict the second half."""
    fit_frame = ctx["fit_frame"]
    x = pd.to_numeric(fit_frame[ctx["x_col"]])
    rank = x.groupby(ctx["fit_keys"]).rank(method="first")
    count = x.groupby(ctx["fit_keys"]).transform("size")
    inner = fit_frame.assign(_half=rank / count)
    settings = ctx["settings"]
    inference = settings["inference"]
    if isinstance(inference, NUTS):
        inference = dataclasses.replace(inference, progress_bar=False)
    return backtest(
        inner,
        ctx["law"],
        by=ctx["by"],
        split=0.5,
        on="_half",
        baseline=ctx["baseline"],
        columns=settings["columns"],
        model=settings["model"],
        inference=inference,
        seed=settings["seed"],
        pool_by=ctx["pool_by"],
    )


def _split_rule(law: Law, split, on) -> tuple[str, float | None, float | None]:
    """``(covariate, absolute threshold or None, fraction or None)``."""
    if isinstance(split, Mapping):
        if len(split) != 1:
            raise ValueError(f"split as a dict names one covariate and its threshold, got {split}")
        ((cov, threshold),) = split.items()
        if cov not in law.covariates:
            raise ValueError(
                f"split covariate {cov!r} is not a covariate of law {law.id!r} "
                f"({', '.join(law.covariates)})"
            )
        threshold = float(threshold)
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"split threshold of {cov!r} must be a positive number, got {split}")
        return cov, threshold, None
    if isinstance(split, bool) or not isinstance(split, float | int) or not 0 < split < 1:
        raise ValueError(
            f"split must be a fraction in (0, 1) or {{covariate: value}}, got {split!r}"
        )
    if on is None:
        if len(law.covariates) != 1:
            raise ValueError(
                f"law {law.id!r} has covariates {list(law.covariates)}: say which one the "
                "fraction applies to with on="
            )
        on = law.covariates[0]
    if not isinstance(on, str):
        raise ValueError(f"on= names a law covariate or a data column, got {on!r}")
    return on, None, float(split)
