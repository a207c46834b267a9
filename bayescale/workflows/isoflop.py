"""IsoFLOP profiles: the loss-minimising model size per budget, then its power law in compute.

Hoffmann et al.'s approach 2, as Porian et al. (2024) apply it, with posteriors at both stages:

1. **Profiles.**  For every FLOP budget :math:`C_j` (and configuration), the runs' losses along
   the budget's sweep of model sizes are fitted by a parabola of log loss in :math:`\\log N`
   (law ``isoflop_quadratic``), written in its polynomial coefficients about the sweep's
   centre :math:`\\log N^c_j` (the mean of the fitted runs' :math:`\\log N`),

   .. math::

       \\log L_{ij} = c_{0j} + c_{1j} u_{ij} + c_{2j} u_{ij}^2 + \\varepsilon_{ij}, \\qquad
       u_{ij} = \\log N_{ij} - \\log N^c_j, \\quad c_{2j} > 0,

   all budgets of all configurations in one :func:`bayescale.fit` call (``by=``).  The vertex is
   derived draw by draw,

   .. math::

       \\log N^*_j = \\log N^c_j - \\frac{c_{1j}}{2 c_{2j}}, \\qquad
       \\log L^*_j = c_{0j} - \\frac{c_{1j}^2}{4 c_{2j}} .

   The mean is linear in :math:`(c_0, c_1, c_2)`, so the posterior is nearly Gaussian in them
   wherever the data fix the curvature.  The vertex form :math:`\\log L^* + k (\\log N -
   \\log N^*)^2` (law ``isoflop_parabola``) is the same curve, but its posterior is a curved
   ridge between :math:`k` and :math:`\\log N^*` when a sweep barely brackets its minimum,
   which NUTS crosses poorly.

   Profiles whose fit does not converge (:math:`\\hat R > 1.01`, too few effective draws or
   divergences) are fitted again, all of them in one more :func:`bayescale.fit` call (``by=``),
   with ``refit_scale`` :math:`= m` times the warm-up and the draws, every :math:`m`-th draw
   kept (so the refit's draws have the first fit's shape and replace them); the first and
   the second fit's numbers are kept in :attr:`IsoflopResult.refits`.

   The parabola is the second-order Taylor expansion of the profile about its minimum; over a
   wide sweep that reaches far past the optimum on one side (Kaplan-like setups sweep 2-3
   decades, steep on the large-:math:`N` side) the cubic term pulls the fitted vertex towards
   the flat side.  ``window=w`` fits each profile only to the runs within :math:`w` decades of
   :math:`N` of its lowest-loss run, :math:`|\\log_{10} N_{ij} - \\log_{10} N_{j}^{\\rm obs}|
   \\le w`, a symmetric neighbourhood of the minimum in the variable of the expansion, so the
   cubic term's effect on the vertex largely cancels.  (Porian et al. locate each minimum by
   an Akima interpolation of log loss in :math:`\\log N`, which is local too: the minimum of
   the interpolant depends on the runs next to the observed one.)  A sweep whose lowest-loss
   run is its first or last does not bracket its minimum and is then left out of stage 2, as
   Porian et al. leave out budgets whose interpolated minimum lies at the sweep's end.
2. **Power law.**  :math:`N^*(C) = N_e\\, C^{a}` (law ``kaplan_frontier_n``, :math:`C` in
   PF-days) is fitted to :math:`K` imputed sets of vertices, set :math:`k` holding the
   :math:`k`-th of :math:`K` evenly spaced posterior draws of every :math:`N^*_j`, and the
   :math:`K` posteriors pooled (:mod:`bayescale.workflows.propagate`): the exponent's
   interval carries both the budgets' scatter about the power law and each vertex's own
   uncertainty (wide where a sweep barely brackets its minimum).

The exponent :math:`a` is Porian et al.'s ``n_exponent``: the slope of :math:`\\log N^*`
against :math:`\\log C`, with :math:`C` the budget as given (``flops``) and :math:`N` the
model size as given (``n_params``; Porian's count follows each configuration's
``param_count`` convention).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.api import fit, resolve_options
from bayescale.data import DataError, as_frame, positive_column
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import ConvergenceWarning, Result, Status, quantile_column
from bayescale.units import PF_DAY
from bayescale.workflows.propagate import (
    IMPUTATION,
    NORMAL_MODEL,
    ImputedFit,
    fit_imputed,
    imputation_draws,
)

__all__ = [
    "ISOFLOP_INFERENCE",
    "REFIT_SCALE",
    "IsoflopResult",
    "fit_isoflop",
    "log_vertex_draws",
    "window_runs",
]

PROFILE_LAW = "isoflop_quadratic"
#: Column of the profile law's covariate, :math:`x = N / N^c_j` (:math:`N^c_j` the centre).
PROFILE_COVARIATE = "x"
FRONTIER_LAW = "kaplan_frontier_n"
#: Default multiple :math:`m` of warm-up and draws (every :math:`m`-th kept) with which the
#: profiles that did not converge are fitted again.
REFIT_SCALE = 4
#: The inference of both stages unless given: a profile of 5-9 runs has few residual degrees
#: of freedom, and a budget set's vertices can lie almost exactly on their power law, so at
#: both stages the posterior of the noise scale :math:`\sigma` reaches towards zero, a
#: funnel that the default step size crosses with divergences.
ISOFLOP_INFERENCE = NUTS(target_accept_prob=0.95)
#: Convergence numbers of a refitted profile, before (``first_*``) and after its refit.
_REFIT_COLUMNS = ("max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergent", "status")


def log_vertex_draws(c1: np.ndarray, c2: np.ndarray, n_centre) -> np.ndarray:
    """The vertex :math:`\\log N^* = \\log N^c - c_1 / (2 c_2)` of each profile, per draw.

    Parameters
    ----------
    c1, c2 : ndarray
        Posterior draws of the linear and quadratic coefficients, ``(profile, chain, draw)``.
    n_centre : array_like
        :math:`N^c` of each profile, ``(profile,)``.

    Returns
    -------
    ndarray
        ``(profile, chain, draw)``.
    """
    log_centre = np.log(np.asarray(n_centre, dtype=np.float64))
    return log_centre[:, None, None] - np.asarray(c1) / (2.0 * np.asarray(c2))


@dataclass(frozen=True)
class IsoflopResult:
    """Both stages of an isoFLOP analysis.

    Attributes
    ----------
    profiles : Result
        One parabola fit per (group, budget); ``profiles.diagnostics`` per budget.
    keys : DataFrame
        The (group columns, ``flops``) of each profile, in ``profiles``' order, and
        ``n_centre``, the centre :math:`N^c_j` (geometric mean of the fitted runs' sizes) the
        profile's covariate :math:`x = N / N^c_j` is taken about.
    frontier : ImputedFit
        The pooled posterior of :math:`N^* = N_e C^a` per group (``p_N`` is :math:`a`,
        ``N_e`` the size at 1 PF-day).
    groups : tuple of str
        The group columns (e.g. Porian's configuration columns); empty for one sweep set.
    used : ndarray of bool
        Which profiles entered stage 2: those whose fit had enough points and, with a
        ``window``, whose lowest-loss run lies inside their sweep (bracketed).
    fitted : DataFrame or None
        The runs the profiles were fitted to (with a ``window``, the window's runs), under
        the input's column names.
    window : float or None
        The half-width (decades of :math:`N`) of each profile's window, or ``None``.
    refits : DataFrame or None
        One row per profile fitted again (index: the profile's label in ``profiles``):
        ``first_max_rhat``, ``first_min_ess_bulk``, ``first_min_ess_tail``,
        ``first_num_divergent``, ``first_status`` of the first fit and the same numbers of
        the refit that replaced it in ``profiles`` (``max_rhat``, ..., ``status``); empty when
        every profile converged at once, ``None`` when refits were off (``refit_scale=None``
        or a ``method`` other than NUTS).
    """

    profiles: Result
    keys: pd.DataFrame
    frontier: ImputedFit
    groups: tuple[str, ...]
    used: np.ndarray
    fitted: pd.DataFrame | None = None
    window: float | None = None
    refits: pd.DataFrame | None = None

    def log_vertex_draws(self) -> np.ndarray:
        """Posterior draws of :math:`\\log N^* = \\log N^c - c_1 / (2 c_2)` per profile.

        Shape ``(profile, chain, draw)``.
        """
        post = self.profiles.group("posterior")
        return log_vertex_draws(post["c1"].values, post["c2"].values, self.keys["n_centre"])

    def vertex_draws(self) -> np.ndarray:
        """Posterior draws of :math:`N^*` per profile, ``(profile, chain * draw)``."""
        x = self.log_vertex_draws()
        return np.exp(x.reshape(x.shape[0], -1))

    def profile_band(
        self, index: int, n_params, quantiles: Sequence[float] = (0.05, 0.5, 0.95)
    ) -> pd.DataFrame:
        """Credible band of profile ``index``'s mean loss at model sizes ``n_params``.

        Parameters
        ----------
        index : int
            Position of the profile in :attr:`keys` (and in ``profiles``).
        n_params : array_like
            Model sizes :math:`N`.
        quantiles : sequence of float

        Returns
        -------
        DataFrame
            ``n_params`` and the quantile columns (``q5``, ``q50``, ...) of
            :math:`\\exp(c_0 + c_1 u + c_2 u^2)`, :math:`u = \\log(N / N^c)`.
        """
        n = np.asarray(n_params, dtype=np.float64)
        fit = self.profiles[self.profiles.labels[index]]
        centre = float(self.keys["n_centre"].iloc[index])
        band = fit.predict({PROFILE_COVARIATE: n / centre}, kind="mean", quantiles=quantiles)
        return band.drop(columns=PROFILE_COVARIATE).assign(n_params=n)[
            ["n_params", *[c for c in band.columns if c != PROFILE_COVARIATE]]
        ]

    def vertices(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """Per profile: the posterior of :math:`N^*(C)` (mean, quantiles), fit status, use."""
        draws = self.vertex_draws()
        out = self.keys.copy()
        out["n_opt_mean"] = draws.mean(axis=1)
        for q in quantiles:
            out[f"n_opt_{quantile_column(q)}"] = np.quantile(draws, q, axis=1)
        out["status"] = self.profiles.diagnostics["status"].to_numpy()
        out["used"] = self.used
        return out

    def exponent(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """The pooled posterior of the exponent :math:`a` of :math:`N^* \\propto C^a` per group."""
        table = self.frontier.summary(quantiles)
        table = table[table["parameter"] == "p_N"].drop(columns="parameter")
        return table.reset_index(drop=True)


def window_runs(
    frame: pd.DataFrame, profile_by: Sequence[str], n_params: str, loss: str, window: float
) -> tuple[pd.DataFrame, pd.Series]:
    """The runs of each isoFLOP profile within ``window`` decades of its lowest-loss run.

    For profile :math:`j` with lowest-loss run at :math:`N^{\\rm obs}_j`, run :math:`i` is kept
    when :math:`|\\log_{10} N_{ij} - \\log_{10} N^{\\rm obs}_j| \\le w`.

    Parameters
    ----------
    frame : DataFrame
        One row per run.
    profile_by : sequence of str
        The columns naming a profile (group columns and the budget).
    n_params, loss : str
        The model-size and loss columns.
    window : float
        :math:`w`, the half-width in decades of :math:`N`.

    Returns
    -------
    kept : DataFrame
        The kept rows of ``frame`` (original index).
    bracketed : Series of bool
        Per profile (index: ``profile_by``), whether the lowest-loss run has a smaller and a
        larger run in the sweep, i.e. the sweep brackets its minimum.
    """
    log_n = np.log10(frame[n_params].to_numpy(dtype=np.float64))
    work = frame[list(profile_by)].assign(_log_n=log_n, _loss=frame[loss].to_numpy())
    grouped = work.groupby(list(profile_by), sort=True)
    best = work.loc[grouped["_loss"].idxmin(), [*profile_by, "_log_n"]]
    best = best.rename(columns={"_log_n": "_log_n_best"})
    centre = work.merge(best, on=list(profile_by), how="left")["_log_n_best"].to_numpy()
    kept = frame[np.abs(log_n - centre) <= window + 1e-12]
    lo, hi = grouped["_log_n"].min(), grouped["_log_n"].max()
    best = best.set_index(list(profile_by))["_log_n_best"]
    bracketed = (best > lo.reindex(best.index)) & (best < hi.reindex(best.index))
    return kept, bracketed.rename("bracketed")


def _splice(batch: Result, refit: Result, attrs: Mapping) -> Result:
    """``batch`` with the fits of ``refit`` (some of its labels, same law) in their place.

    Every group with a fit dimension but the data (``observed_data``, ``constant_data``:
    the same runs) takes the refit's values at the refit's labels; the refit's shorter
    ``point`` axis (its batch pads to its own longest curve) is padded with NaN.
    """
    dim = batch.dim
    position = {str(label): i for i, label in enumerate(batch.labels)}
    rows = np.array([position[str(label)] for label in refit.labels])
    groups = {}
    for name, node in batch.datatree.children.items():
        ds = node.to_dataset()
        if name not in ("observed_data", "constant_data") and dim in ds.dims:
            new = refit.datatree[name].to_dataset()
            for var in list(ds.data_vars):
                old = ds[var].transpose(dim, ...)
                values = old.values.copy()
                src = new[var].transpose(*old.dims).values
                if "point" in old.dims:
                    pad = [(0, 0)] * src.ndim
                    axis = old.dims.index("point")
                    pad[axis] = (0, values.shape[axis] - src.shape[axis])
                    src = np.pad(src, pad, constant_values=np.nan)
                values[rows] = src
                ds[var] = (old.dims, values)
        groups[name] = ds
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {**batch.datatree.attrs, **attrs}
    return Result(tree, batch.law, batch.likelihood, batch.columns, batch.by)


def _refit_unconverged(
    profiles: Result,
    data: pd.DataFrame,
    profile_by: Sequence[str],
    scale: int,
    *,
    columns: Mapping[str, str],
    model: Model,
    inference: NUTS,
    seed: int,
) -> tuple[Result, pd.DataFrame]:
    """Fit the profiles of ``profiles`` that did not converge again, ``scale`` times longer.

    One :func:`bayescale.fit` call (``by=``) with ``scale`` times ``inference``'s warm-up
    iterations and ``scale`` times its draws of which every ``scale``-th is kept, so the kept
    draws have
    the first fit's shape; the refits replace the first fits.  Profiles that failed for a
    reason (too few runs, no posterior mode) are not refitted: more draws do not help them.

    Returns
    -------
    profiles : Result
        With the refits in place (attribute ``refit`` of its DataTree: labels and settings).
    refits : DataFrame
        Per refitted profile, ``first_*`` convergence numbers and the refit's.
    """
    diag = profiles.diagnostics
    redo = ((diag["status"] != Status.converged.value) & (diag["reason"] == "")).to_numpy()
    numbers = list(_REFIT_COLUMNS)
    first = diag.loc[redo, numbers].add_prefix("first_")
    if not redo.any():
        return profiles, first.assign(**{c: pd.Series(dtype=diag[c].dtype) for c in numbers})
    curve = data.groupby(list(profile_by), sort=True).ngroup().to_numpy()
    longer = replace(
        inference, num_warmup=scale * inference.num_warmup, thin=scale * inference.thin
    )
    refit = fit(
        data[np.isin(curve, np.flatnonzero(redo))],
        PROFILE_LAW,
        by=list(profile_by),
        columns=columns,
        model=model,
        inference=longer,
        seed=seed,
        warn=False,
    )
    spliced = _splice(
        profiles,
        refit,
        {
            "refit": json.dumps(
                {
                    "labels": [str(label) for label in refit.labels],
                    "scale": scale,
                    "num_warmup": longer.num_warmup,
                    "thin": longer.thin,
                    "seed": seed,
                }
            )
        },
    )
    return spliced, first.join(spliced.diagnostics.loc[first.index, numbers])


@float64
def fit_isoflop(
    data,
    *,
    by: str | Sequence[str] = (),
    columns: Mapping[str, str] | None = None,
    window: float | None = None,
    num_imputations: int = 16,
    refit_scale: int | None = REFIT_SCALE,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    frontier_priors: Mapping[str, str] | None = None,
    seed: int = 0,
    warn: bool = True,
    **deprecated,
) -> IsoflopResult:
    """Fit isoFLOP profiles and the power law of their vertices, uncertainty carried through.

    Parameters
    ----------
    data : DataFrame, dict of arrays, or CSV path
        One row per run: ``flops`` (the budget, FLOP), ``n_params``, ``loss`` (or columns
        mapped by ``columns``), and the ``by`` columns.
    by : str or sequence of str
        Columns naming independent analyses (e.g. Porian's configuration columns); each
        gets its own profiles and its own power law.
    columns : dict, optional
        ``{"flops": ..., "n_params": ..., "loss": ...}`` -> data columns.
    window : float, optional
        Fit each profile only to the runs within ``window`` decades of :math:`N` of its
        lowest-loss run (see :func:`window_runs`), and leave out of stage 2 the profiles whose
        lowest-loss run is at the edge of their sweep.  ``None`` (default) fits every run.
        A window must hold the 5 runs a profile fit needs; about one decade suits sweeps
        spaced by a factor of about 1.5 in :math:`N`.
    num_imputations : int
        :math:`K`, imputed vertex sets per group in stage 2.
    refit_scale : int or None
        :math:`m`: the profiles whose NUTS fit did not converge (:math:`\\hat R > 1.01`, too
        few effective draws, or divergences; not those that failed for a reason such as too
        few runs) are fitted again, all in one more :func:`bayescale.fit` call (``by=``), with
        :math:`m` times the warm-up and :math:`m` times the draws of which every
        :math:`m`-th is kept; the refit replaces the first fit in ``profiles`` and stage 2
        uses it.  Both fits' numbers are in :attr:`IsoflopResult.refits`.  Default 4;
        ``None`` fits each profile once.  Ignored unless ``inference`` is :class:`NUTS`.
    model : Model, optional
        Observation model of both stages, and (``priors``) the prior overrides of the
        profile law (``c0``, ``c1``, ``c2``, ``sigma``).  Default ``Model(likelihood=
        "normal")``, unlike :func:`bayescale.fit`: a profile has 5-15 runs, too few to
        identify a Student-t :math:`\\nu`, and with :math:`\\nu` free the parabola can pass
        through three runs while :math:`\\sigma \\to 0` (an unbounded density when
        :math:`\\nu` is small), which stalls chains.  No discrepancy
        (:data:`~bayescale.workflows.propagate.NORMAL_MODEL`): a profile's runs are separate
        runs whose parabola is only read at its vertex, inside the sweep, and the second
        stage's vertices are first-stage estimates carried by imputation.
    inference : NUTS, MAP or Laplace, optional
        Of both stages' :func:`bayescale.fit` calls (``by=``); default
        :data:`ISOFLOP_INFERENCE`, ``NUTS(target_accept_prob=0.95)``.
    frontier_priors : dict, optional
        Prior overrides of the frontier law (``N_e``, ``p_N``, ``sigma``).
    seed : int
        Seeds the profile fits (``seed``), the frontier fit (``seed + 1``) and the refits
        (``seed + 2``).
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)
    warn : bool
        Warn (with the numbers) about profiles left out or fits that did not converge.

    Returns
    -------
    IsoflopResult
        ``.exponent()`` (the posterior of :math:`a` per group), ``.vertices()``,
        ``.profiles``, ``.frontier``.

    Raises
    ------
    DataError
        Missing columns, a ``window`` that is not a positive number, a ``refit_scale`` that
        is not ``None`` or an integer >= 2, or a group with fewer than two usable budgets.
    """
    model, inference = resolve_options(
        "fit_isoflop", model, inference, deprecated, defaults=(NORMAL_MODEL, ISOFLOP_INFERENCE)
    )
    frame = as_frame(data)
    groups = (by,) if isinstance(by, str) else tuple(by)
    names = {"flops": "flops", "n_params": "n_params", "loss": "loss", **dict(columns or {})}
    missing = [c for c in (*groups, *names.values()) if c not in frame.columns]
    if missing:
        raise DataError(
            f"isoFLOP data lacks the column(s) {missing}; it has {list(map(str, frame.columns))}"
        )
    flops_col = names["flops"]
    for name, what in (("flops", "budget"), ("n_params", "model size"), ("loss", "loss")):
        positive_column(frame, names[name], what)
    if window is not None and (
        isinstance(window, bool)
        or not isinstance(window, int | float | np.number)
        or not (np.isfinite(window) and window > 0)
    ):
        raise DataError(f"window must be a positive number of decades of N, got {window!r}")
    if refit_scale is not None and (
        isinstance(refit_scale, bool)
        or not isinstance(refit_scale, int | np.integer)
        or refit_scale < 2
    ):
        raise DataError(f"refit_scale must be None or an integer >= 2, got {refit_scale!r}")
    profile_by = [*groups, flops_col]
    fitted = frame[[*profile_by, names["n_params"], names["loss"]]]
    if window is not None:
        fitted, bracketed = window_runs(
            fitted, profile_by, names["n_params"], names["loss"], float(window)
        )
    log_n = np.log(fitted[names["n_params"]].to_numpy(dtype=np.float64))
    log_centre = pd.Series(log_n, index=fitted.index).groupby(
        [fitted[c] for c in profile_by], sort=True
    )
    log_centre = log_centre.transform("mean").to_numpy()
    profile_data = fitted.assign(**{PROFILE_COVARIATE: np.exp(log_n - log_centre)})
    profile_args = dict(
        columns={PROFILE_COVARIATE: PROFILE_COVARIATE, "loss": names["loss"]},
        model=model,
        inference=inference,
    )
    refit = refit_scale is not None and isinstance(inference, NUTS)
    profiles = fit(
        profile_data, PROFILE_LAW, by=profile_by, seed=seed, warn=warn and not refit,
        **profile_args,
    )  # fmt: skip
    refits = None
    if refit:
        profiles, refits = _refit_unconverged(
            profiles,
            profile_data,
            profile_by,
            int(refit_scale),
            seed=seed + 2,
            **profile_args,
        )
        profiles.check_convergence(warn=warn)
    keys = frame[profile_by].drop_duplicates().sort_values(profile_by).reset_index(drop=True)
    centres = (
        pd.DataFrame({**{c: fitted[c].to_numpy() for c in profile_by}, "_log": log_centre})
        .groupby(profile_by, sort=True)["_log"]
        .first()
        .rename("n_centre")
        .reset_index()
    )
    keys = keys.merge(centres, on=profile_by, how="left")
    keys["n_centre"] = np.exp(keys["n_centre"].to_numpy())
    reasons = profiles.diagnostics["reason"].to_numpy().astype(object)
    if window is not None:
        edge = ~keys.merge(bracketed.reset_index(), on=profile_by, how="left")[
            "bracketed"
        ].to_numpy(dtype=bool)
        reasons[edge & (reasons == "")] = "lowest-loss run at the sweep's edge (not bracketed)"
    used = reasons == ""
    if warn and not used.all():
        left = "; ".join(
            f"{'/'.join(map(str, keys.iloc[i]))}: {reasons[i]}" for i in np.flatnonzero(~used)
        )
        warnings.warn(
            f"{int((~used).sum())} isoFLOP profile(s) left out of the power law: {left}",
            ConvergenceWarning,
            stacklevel=2,
        )
    if groups:
        counts = keys[used].groupby(list(groups)).size()
        num_groups = len(keys[list(groups)].drop_duplicates())
    else:
        counts, num_groups = pd.Series([int(used.sum())]), 1
    if (counts < 2).any() or len(counts) < num_groups:
        raise DataError(
            f"every group needs at least two budgets with a fitted profile; usable budgets per "
            f"group: {counts.to_dict()}"
        )
    post = profiles.group("posterior")
    log_vertex = log_vertex_draws(post["c1"].values, post["c2"].values, keys["n_centre"])
    log_n = imputation_draws({"log_n_star": log_vertex}, num_imputations)["log_n_star"]
    rows = keys[used]
    imputed = pd.concat(
        [
            rows[list(groups)].assign(
                **{
                    IMPUTATION: k,
                    "flops_min": rows[flops_col].to_numpy() / PF_DAY,
                    "n_params": np.exp(log_n[used, k]),
                }
            )
            for k in range(log_n.shape[1])
        ],
        ignore_index=True,
    )
    frontier = fit_imputed(
        imputed,
        FRONTIER_LAW,
        groups=groups,
        model=replace(model, priors=frontier_priors),
        inference=inference,
        seed=seed + 1,
        warn=warn,
    )
    if warn:
        status = frontier.status()
        bad = status[status != Status.converged.value]
        if len(bad):
            warnings.warn(
                f"isoFLOP power law did not converge for {len(bad)} group(s): "
                f"{bad.to_dict()} (see .frontier.batch.diagnostics)",
                ConvergenceWarning,
                stacklevel=2,
            )
    return IsoflopResult(
        profiles=profiles,
        keys=keys,
        frontier=frontier,
        groups=groups,
        used=used,
        fitted=fitted,
        window=None if window is None else float(window),
        refits=refits,
    )
