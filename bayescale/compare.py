"""Model comparison by PSIS-LOO, stacking weights and the stacked posterior predictive.

:func:`compare` takes fitted results of several laws on the same observations and returns
a :class:`Comparison`: arviz-stats' comparison table (expected log pointwise predictive
density :math:`\\widehat{\\mathrm{elpd}}_{\\mathrm{loo}} = \\sum_i \\log p(y_i \\mid y_{-i})`
by Pareto-smoothed importance sampling, its standard error, differences to the best law and
their standard errors, stacking weights) with the Pareto :math:`\\hat k` diagnostics, and a
stacked posterior predictive

.. math::

    p(\\tilde y \\mid y) = \\sum_k w_k\\, p(\\tilde y \\mid y, M_k),

the weights :math:`w_k` maximising :math:`\\sum_i \\log \\sum_k w_k\\, p(y_i \\mid y_{-i}, M_k)`
(Yao et al. 2018), so an extrapolation need not pick one law.  The pointwise
log-likelihood is the one each result stores (``log_likelihood`` group), computed from the
one log density of :mod:`bayescale.model`; under a discrepancy (the default for one-covariate
laws), whose stored terms are sequential, PSIS-LOO reads :math:`\\log p(y_i \\mid y_{-i},
\\theta)` instead (:func:`loo_tree`; Bürkner, Gabry & Vehtari 2021).

**Leave-future-out** (``cv=LFO(...)``, Bürkner, Gabry & Vehtari 2020): LOO asks how well a
law predicts a point *among* the others; an extrapolation asks how well it predicts points
*beyond* the data.  With ``laws=``, :func:`compare` fits each law to the data, orders the
points by the covariate, refits each law (exactly, all origins in one batched
:func:`bayescale.fit`) on the first :math:`L_k` points at a few forecast origins and scores
the log predictive density of the later points,

.. math:: \\mathrm{elpd}_{\\mathrm{lfo}} = \\sum_k \\sum_{j > L_k}
    \\log \\frac1S \\sum_s p(y_j \\mid \\theta^{(s)}_{1:L_k}),

so the weights favour the laws that extrapolated well inside the data, and the stacked
predictive mixes laws that disagree beyond it (its band widens where they part).  Under a
discrepancy :math:`p(y_j \\mid \\theta)` is :math:`p(y_j \\mid y_{1:L_k}, \\theta)`, each later
point's predictive given the fitted ones (:func:`log_predictive_density`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.data import DataError, as_frame, prepare
from bayescale.laws import Law, get_law
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.predict import held_out_log_density, leave_one_out_log_density
from bayescale.result import Result, quantile_column

__all__ = ["LFO", "Comparison", "LooWarning", "compare", "log_predictive_density", "loo_tree"]

WEIGHT_METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


class LooWarning(UserWarning):
    """PSIS-LOO estimates that may be unreliable (Pareto k above the threshold)."""


@dataclass(frozen=True)
class LFO:
    """Leave-future-out cross-validation of :func:`compare` (exact refits).

    Parameters
    ----------
    start : float
        The first forecast origin, as a fraction of the points (ordered by ``on``): the
        first refit uses the first ``ceil(start * n)`` points.  In (0, 1); default 0.5.
    num_origins : int
        Forecast origins, evenly spaced from ``start`` to the last point but one (fewer when
        the points run out; origins with fewer points than a law's parameters plus two are
        skipped, for every law alike); default 4.
    horizon : int, optional
        Points after each origin that are scored; ``None`` (default): every later point, so
        far extrapolation counts as much as the next step.
    on : str, optional
        The data column ordering the points; default the laws' one covariate (its column).

    Raises
    ------
    ValueError
        An argument outside its range.
    """

    start: float = 0.5
    num_origins: int = 4
    horizon: int | None = None
    on: str | None = None

    def __post_init__(self):
        if isinstance(self.start, bool) or not isinstance(self.start, float | int):
            raise ValueError(f"LFO start must be a fraction in (0, 1), got {self.start!r}")
        if not 0 < self.start < 1:
            raise ValueError(f"LFO start must be a fraction in (0, 1), got {self.start!r}")
        for name in ("num_origins", "horizon"):
            value = getattr(self, name)
            if value is None and name == "horizon":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LFO {name} must be a positive integer, got {value!r}")
        if self.on is not None and not isinstance(self.on, str):
            raise ValueError(f"LFO on= names a data column, got {self.on!r}")

    def origins(self, num_points: int) -> list[int]:
        """The number of points each refit uses (distinct, ascending, < ``num_points``)."""
        first = math.ceil(self.start * num_points)
        grid = np.linspace(first, num_points - 1, self.num_origins)
        return sorted({round(v) for v in grid if first <= v < num_points})


class Comparison:
    """The outcome of :func:`compare`.

    Attributes
    ----------
    table : DataFrame
        One row per law, best first: ``rank``, ``elpd`` (PSIS-LOO), ``p`` (effective number
        of parameters), ``elpd_diff`` (to the best), ``weight``, ``se``, ``dse`` (SE of the
        difference), ``warning`` (arviz-stats' flag), plus ``max_pareto_k``,
        ``num_high_pareto_k`` (points with :math:`\\hat k` above ``pareto_k_threshold``)
        and ``pareto_k_threshold``.
    weights : dict of str to float
        Weights (stacking by default) by name.
    results : dict of str to Result
        Each law's fit to all the data.
    loo : dict of str to arviz_stats ELPDData
        Pointwise PSIS-LOO of each law, or with ``cv="lfo"`` its leave-future-out
        predictive densities (one per forecast origin and later point).
    cv : {"loo", "lfo"}
        How the elpd was estimated.
    """

    def __init__(self, table: pd.DataFrame, results: dict, loo: dict, cv: str = "loo"):
        self.table = table
        self.results = dict(results)
        self.loo = dict(loo)
        self.cv = cv
        self.weights = {name: float(w) for name, w in table["weight"].items()}

    @property
    def best(self) -> str:
        """Name of the law with the highest elpd."""
        return str(self.table.index[0])

    def predict_draws(
        self, new_data, *, num_draws: int = 4000, kind: str = "observation", seed: int = 0
    ) -> np.ndarray:
        """Draws of the stacked posterior predictive at ``new_data``, shape ``(num_draws, point)``.

        Each draw comes from law :math:`k` with probability :math:`w_k` (multinomial
        counts), then from a uniformly chosen posterior draw of that law.
        """
        if not isinstance(num_draws, int) or num_draws < 1:
            raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
        rng = np.random.default_rng(seed)
        names = list(self.weights)
        w = np.clip(np.array([self.weights[n] for n in names]), 0.0, None)
        counts = rng.multinomial(num_draws, w / w.sum())
        parts = []
        for name, count in zip(names, counts, strict=True):
            if count == 0:
                continue
            draws = self.results[name].predict_draws(new_data, kind=kind, seed=seed)
            flat = draws.reshape(-1, draws.shape[-1])
            parts.append(flat[rng.integers(0, len(flat), count)])
        out = np.concatenate(parts)
        return out[rng.permutation(len(out))]

    def predict(
        self,
        new_data,
        *,
        quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
        num_draws: int = 4000,
        kind: str = "observation",
        seed: int = 0,
    ) -> pd.DataFrame:
        """Summary of the stacked posterior predictive: ``mean`` and ``q<percent>`` columns,
        one row per row of ``new_data`` (whose columns are kept)."""
        qs = [float(q) for q in quantiles]
        if not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
        draws = self.predict_draws(new_data, num_draws=num_draws, kind=kind, seed=seed)
        out = pd.DataFrame(new_data).reset_index(drop=True)
        out["mean"] = draws.mean(axis=0)
        for q, col in zip(qs, map(quantile_column, qs), strict=True):
            out[col] = np.quantile(draws, q, axis=0)
        return out

    def __repr__(self) -> str:
        cols = ["elpd", "se", "elpd_diff", "dse", "weight", "max_pareto_k"]
        cols = [c for c in cols if self.table[c].notna().any()]
        return f"<Comparison best={self.best!r} cv={self.cv!r}>\n{self.table[cols].to_string()}"


@float64
def compare(
    results,
    *,
    method: str = "stacking",
    warn: bool = True,
    laws: Sequence[str | Path | Law] | Mapping[str, str | Path | Law] | None = None,
    cv: str | LFO = "loo",
    columns: Mapping[str, str] | None = None,
    model: Model | None = None,
    inference: NUTS | Laplace | None = None,
    seed: int = 0,
) -> Comparison:
    """Compare laws on the same observations: PSIS-LOO of fitted results (arviz-stats), or
    leave-future-out refits of laws on data.

    Parameters
    ----------
    results : dict of str to Result, or data
        Two or more results of one fit each (:class:`~bayescale.options.NUTS` or
        :class:`~bayescale.options.Laplace`: posterior draws are needed) fitted to the same
        observed response values.  With ``laws=``: the data (DataFrame, dict of arrays or
        CSV path) of one curve, which :func:`compare` fits each law to.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How the weights are computed from the pointwise elpd (:func:`arviz_stats.compare`).
    warn : bool
        Emit a :class:`LooWarning` naming each law with Pareto :math:`\\hat k` above the
        threshold (those points' leave-one-out densities are unreliable; refit without
        them or use K-fold CV).
    laws : list of laws or dict of name to law, optional
        Fit these laws (catalogue ids, TOML paths, formulas or :class:`~bayescale.laws.Law`;
        a list is named by the laws' ids) to ``results`` (the data) with ``columns``,
        ``model``, ``inference`` and ``seed`` as :func:`bayescale.fit` takes them.
    cv : "loo" or LFO
        ``"loo"`` (default): PSIS-LOO.  :class:`LFO`: leave-future-out (needs ``laws=``; the
        constant noise model).
    columns, model, inference, seed
        As :func:`bayescale.fit` (``laws=`` only; ``inference`` NUTS by default).

    Returns
    -------
    Comparison
        ``.table``, ``.weights``, ``.best``, ``.predict()``, ``.predict_draws()``.

    Raises
    ------
    ValueError
        Fewer than two results or laws, a result without posterior draws, results fitted to
        different observations, ``cv`` neither ``"loo"`` nor an :class:`LFO`, an
        :class:`LFO` without ``laws=``, MAP inference, a log-linear noise model, laws whose
        covariates give no common ``on``.
    DataError
        Data the laws cannot be fitted to, or too few points for the forecast origins.
    """
    import arviz_stats as azs

    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(WEIGHT_METHODS)}")
    if not (cv == "loo" or isinstance(cv, LFO)):
        raise ValueError(f"cv must be 'loo' or an LFO(...), got {cv!r}")
    if laws is None:
        if isinstance(cv, LFO):
            raise ValueError("cv=LFO(...) refits the laws: give the data and laws=[...]")
        if any(v is not None for v in (columns, model, inference)):
            raise ValueError("columns=, model= and inference= fit laws=: give laws=[...]")
    else:
        results, lfo = _fit_laws(results, laws, cv, columns, model, inference, seed)
        if lfo is not None:
            table = azs.compare(lfo, method=method, round_to="none")
            for col in ("max_pareto_k", "num_high_pareto_k", "pareto_k_threshold"):
                table[col] = np.nan
            return Comparison(table, {n: results[n] for n in table.index}, lfo, cv="lfo")
    if not isinstance(results, Mapping) or len(results) < 2:
        raise ValueError("compare needs a dict of at least two named results, {name: result}")
    results = {str(k): v for k, v in results.items()}
    reference = None
    for name, result in results.items():
        if not isinstance(result, Result) or len(result) != 1:
            raise ValueError(
                f"results[{name!r}] is not the Result of one fit (compare one curve of a "
                f"by= result with result[label])"
            )
        if result.method == "map" or result.num_chains * result.num_draws < 2:
            raise ValueError(
                f"results[{name!r}] is a point estimate (method {result.method!r}); PSIS-LOO "
                f"needs posterior draws: fit with inference=NUTS() or Laplace()"
            )
        observed = result.datatree_of().observed_data[result.law.response].values
        if reference is None:
            reference = (name, observed)
        elif observed.shape != reference[1].shape or not np.allclose(observed, reference[1]):
            raise ValueError(
                f"results[{name!r}] was fitted to different observations than "
                f"results[{reference[0]!r}] ({observed.size} vs {reference[1].size} points); "
                f"LOO compares laws on the same data"
            )
    loo = {name: azs.loo(loo_tree(r), pointwise=True) for name, r in results.items()}
    table = azs.compare(loo, method=method, round_to="none")
    k_max, k_high, k_thresh = {}, {}, {}
    for name, elpd in loo.items():
        k = np.asarray(elpd.pareto_k).ravel()
        threshold = float(getattr(elpd, "good_k", 0.7))
        k_max[name] = float(np.nanmax(k))
        k_high[name] = int(np.sum(k > threshold))
        k_thresh[name] = threshold
    table["max_pareto_k"] = pd.Series(k_max)
    table["num_high_pareto_k"] = pd.Series(k_high)
    table["pareto_k_threshold"] = pd.Series(k_thresh)
    if warn:
        bad = [n for n in table.index if table.loc[n, "num_high_pareto_k"] > 0]
        if bad:
            shown = "; ".join(
                f"{n}: {table.loc[n, 'num_high_pareto_k']} point(s) with Pareto k > "
                f"{table.loc[n, 'pareto_k_threshold']:.2f} (max {table.loc[n, 'max_pareto_k']:.2f})"
                for n in bad
            )
            warnings.warn(f"PSIS-LOO may be unreliable for {shown}", LooWarning, stacklevel=2)
    return Comparison(table, {n: results[n] for n in table.index}, loo)


def _fit_laws(data, laws, cv, columns, model, inference, seed):
    """Each law's fit to ``data`` and, for ``cv=LFO``, its leave-future-out elpd
    (``{name: ELPDData}``; ``None`` for LOO)."""
    from bayescale.api import fit

    if isinstance(laws, Mapping):
        named = {str(k): get_law(v) for k, v in laws.items()}
    elif isinstance(laws, Sequence) and not isinstance(laws, str):
        named = {}
        for law in map(get_law, laws):
            if law.id in named:
                raise ValueError(f"laws= names {law.id!r} twice; name them with a dict")
            named[law.id] = law
    else:
        raise ValueError(f"laws= is a list of laws or a dict of name to law, got {laws!r}")
    if len(named) < 2:
        raise ValueError("compare needs at least two laws")
    if isinstance(inference, MAP):
        raise ValueError("compare needs posterior draws: inference=NUTS() or Laplace(), not MAP")
    lfo = cv if isinstance(cv, LFO) else None
    if lfo is not None and model is not None and model.noise != "constant":
        raise ValueError(
            f"cv=LFO scores held-out points under the constant noise model, got noise="
            f"{model.noise!r}"
        )
    frame = as_frame(data).reset_index(drop=True)
    options = {"columns": columns, "seed": seed}
    options.update({k: v for k, v in (("model", model), ("inference", inference)) if v})
    if lfo is None:
        return {name: fit(frame, law, **options) for name, law in named.items()}, None
    on = _order_column(lfo, named, columns)  # every check before the first fit
    if on not in frame.columns:
        raise DataError(f"LFO on={on!r} is not a column of the data; it has {list(frame)}")
    frame = frame.sort_values(on, kind="stable").reset_index(drop=True)
    n = len(frame)
    need = max(len(law.parameters) for law in named.values()) + 2  # as bayescale.fit needs
    origins = [size for size in lfo.origins(n) if size >= need]
    if not origins:
        raise DataError(
            f"{n} points leave no forecast origin (LFO start {lfo.start}) with the {need} "
            f"points the laws' parameters need; give more points or a later start"
        )
    results = {name: fit(frame, law, **options) for name, law in named.items()}
    prefixes = pd.concat(
        [frame.iloc[:size].assign(_origin=f"L{size}") for size in origins], ignore_index=True
    )
    elpd = {}
    for name, law in named.items():
        refit = fit(prefixes, law, by="_origin", **{**options, "warn": False})
        parts = []
        for size in origins:
            later = frame.iloc[size : n if lfo.horizon is None else size + lfo.horizon]
            parts.append(log_predictive_density(refit[f"L{size}"], later, columns))
        lpd = np.concatenate(parts)
        elpd[name] = _elpd_data(lpd, refit.num_chains * refit.num_draws)
    return results, elpd


def _order_column(lfo: LFO, laws: dict, columns) -> str:
    """The data column ordering the points: ``lfo.on``, or the laws' one common covariate."""
    if lfo.on is not None:
        return lfo.on
    found = {
        (columns or {}).get(law.covariates[0], law.covariates[0])
        for law in laws.values()
        if len(law.covariates) == 1
    }
    if len(found) != 1 or any(len(law.covariates) != 1 for law in laws.values()):
        raise ValueError(
            "the laws have no one common covariate to order the points by: give LFO(on=...)"
        )
    return found.pop()


def _fitted(result: Result):
    """``(DataTree, draws (chain, draw) of every site, fitted log x, fitted log y)`` of a
    one-fit result, padding dropped."""
    dt = result.datatree_of()
    values = {k: dt.posterior[k].values for k in result.posterior.site_names}
    log_x = {c: np.log(dt.constant_data[c].values) for c in result.law.covariates}
    return dt, values, log_x, np.log(dt.observed_data[result.law.response].values)


@float64
def loo_tree(result: Result):
    """The DataTree PSIS-LOO reads for a one-fit result: :meth:`Result.datatree_of`, whose
    ``log_likelihood`` group under a discrepancy is replaced by
    :math:`\\log p(y_i \\mid y_{-i}, \\theta)`
    (:func:`~bayescale.predict.leave_one_out_log_density`): there the stored terms are the
    sequential :math:`\\log p(y_i \\mid y_{<i}, \\theta)`,
    whose sum is the likelihood but whose importance ratios would not leave point :math:`i`
    out (the later points still condition on it)."""
    import xarray as xr

    if not result.posterior.discrepancy:
        return result.datatree_of()
    dt, values, log_x, log_y = _fitted(result)
    ll = leave_one_out_log_density(result.posterior, values, log_x, log_y)
    stored = dt.log_likelihood[result.law.response]
    dt["log_likelihood"] = xr.DataTree(xr.Dataset({result.law.response: stored.copy(data=ll)}))
    return dt


@float64
def log_predictive_density(result: Result, rows: pd.DataFrame, columns) -> np.ndarray:
    """Log predictive density of new observations under one fit, one value per row:
    :math:`\\log \\frac1S \\sum_s p(y_j \\mid y_{\\rm fit}, \\theta^{(s)})` over the
    posterior draws :math:`\\theta^{(s)}` (the fit's likelihood, constant noise; under a
    discrepancy each point's predictive given the fitted points,
    :func:`~bayescale.predict.held_out_log_density`); ``rows`` carry the law's covariates and
    response (or the ``columns`` mapped to them)."""
    from scipy.special import logsumexp

    new = prepare(rows, result.law, columns, min_points=1)
    _, values, fitted_x, fitted_y = _fitted(result)
    values = {k: v.reshape(-1) for k, v in values.items()}
    ll = held_out_log_density(
        result.posterior, values, fitted_x, fitted_y,
        {c: np.asarray(v) for c, v in new.log_x.items()}, np.asarray(new.log_y),
    )  # fmt: skip
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])


def _elpd_data(lpd: np.ndarray, num_samples: int):
    """The pointwise leave-future-out densities as arviz-stats' ELPDData (for its compare)."""
    import xarray as xr
    from arviz_stats.utils import ELPDData

    return ELPDData(
        elpd=float(lpd.sum()),
        se=float(math.sqrt(lpd.size * lpd.var())),
        p=math.nan,
        n_samples=int(num_samples),
        n_data_points=int(lpd.size),
        scale="log",
        warning=False,
        good_k=None,
        elpd_i=xr.DataArray(lpd, dims=["forecast"]),
    )
