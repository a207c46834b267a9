"""Carry one fit's posterior into the data of the next: multiple imputation.

Several seed analyses are two-stage: a quantity measured by a first fit (the critical batch
size :math:`B_{crit}(L)`, an isoFLOP vertex :math:`N^*(C)`, a per-size exponent :math:`c(N)`)
becomes data for a second fit.  Fitting the second stage to posterior means would drop the
first stage's uncertainty.  Here the second stage is fitted to :math:`K` *imputed* data sets,
the :math:`k`-th built from the :math:`k`-th of :math:`K` evenly spaced first-stage posterior
draws, all :math:`K` fits in one :func:`bayescale.fit` call (``by=``) (the same compiled,
vmapped kernel), and the :math:`K` posteriors are pooled with equal weights:

.. math::

    p(\\theta \\mid y) \\approx \\frac1K \\sum_{k=1}^K p(\\theta \\mid \\tilde y^{(k)}),
    \\qquad \\tilde y^{(k)} \\sim p(y \\mid \\text{stage 1}),

the Bayesian form of multiple imputation (Gelman et al., *BDA3* §18.2; Zhou & Reiter 2010):
the pooled variance is the within-imputation variance plus the between-imputation variance,
so the second stage's intervals carry both the scatter of its data around the law and the
first stage's measurement error.  Unlike a measurement-error likelihood it needs no second
density: every fit is the project's one log density, and it does not assume the first-stage
posteriors are Gaussian (isoFLOP vertices near the edge of a sweep are strongly skewed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.api import fit, resolve_options
from bayescale.data import DataError
from bayescale.laws import Law
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.result import Result, Status, quantile_column

__all__ = [
    "IMPUTATION",
    "IMPUTED_MODEL",
    "NORMAL_MODEL",
    "ImputedFit",
    "fit_imputed",
    "imputation_draws",
    "summarize_draws",
]

#: Name of the column (and fit dimension) that numbers the imputed data sets.
IMPUTATION = "imputation"
#: The model of the workflows whose fits see a handful of points per fit (default of
#: ``model=`` where so documented): too few to identify a Student-t :math:`\\nu`, and no
#: discrepancy (:mod:`bayescale.model.discrepancy`): their points are separate runs or
#: first-stage estimates, not one curve whose residuals run together, and a handful of them
#: leaves the discrepancy's scales to their prior.
NORMAL_MODEL = Model(likelihood="normal", discrepancy=None)
#: Default model of :func:`fit_imputed`: :func:`bayescale.fit`'s without the discrepancy.  An
#: imputed data set is a draw of first-stage estimates whose error the imputations already
#: carry, and a pool of imputed fits has no observed responses to condition
#: :math:`\\delta` on (``predict(kind="observation")`` would raise).
IMPUTED_MODEL = Model(discrepancy=None)


def imputation_draws(draws: Mapping[str, np.ndarray], num_imputations: int) -> dict:
    """``num_imputations`` evenly spaced draws from posterior draws ``(..., chain, draw)``.

    Parameters
    ----------
    draws : dict of str to ndarray
        Posterior draws with the chain and draw axes last (any leading axes are kept).
    num_imputations : int
        :math:`K`; at most the number of draws.

    Returns
    -------
    dict of str to ndarray
        Each array of shape ``(..., K)``: draws ``round(j (S - 1) / (K - 1))`` of the
        flattened chains, :math:`j = 0 \\dots K-1` (one chain after another, so the draws
        are as far apart, and as nearly independent, as the chains allow).
    """
    first = next(iter(draws.values()))
    total = first.shape[-2] * first.shape[-1]
    if isinstance(num_imputations, bool) or not 1 <= int(num_imputations) <= total:
        raise ValueError(
            f"num_imputations must be an integer in [1, {total}], got {num_imputations!r}"
        )
    idx = np.round(np.linspace(0, total - 1, int(num_imputations))).astype(int)
    return {k: v.reshape(*v.shape[:-2], total)[..., idx] for k, v in draws.items()}


def summarize_draws(
    draws: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    index: pd.Index,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
) -> pd.DataFrame:
    """Per row, each quantity's posterior mean, sd and quantiles: the workflows' level tables.

    Parameters
    ----------
    draws : dict of str to ndarray or list of ndarray
        Per quantity either an array ``(row, ...)`` (the trailing axes, e.g. chain and draw,
        are pooled) or one array of draws per row (rows may hold different numbers).
    index : Index
        The rows (e.g. loss levels).
    quantiles : sequence of float

    Returns
    -------
    DataFrame
        Indexed by ``index``; for each quantity ``x`` the columns ``x_mean``, ``x_sd``
        (:math:`\\sqrt{\\overline{x^2} - \\bar x^2}` over the pooled draws) and ``x_q2.5``,
        ``x_q50`` ... (see :func:`bayescale.result.quantile_column`).
    """
    table = pd.DataFrame(index=index)
    for name, values in draws.items():
        rows = [np.asarray(v, dtype=np.float64).ravel() for v in values]
        if len(rows) != len(index):
            raise ValueError(f"{name!r} has draws for {len(rows)} rows, index has {len(index)}")
        table[f"{name}_mean"] = [r.mean() for r in rows]
        table[f"{name}_sd"] = [r.std() for r in rows]
        qs = np.array([np.quantile(r, quantiles) for r in rows]).reshape(len(rows), -1)
        for j, q in enumerate(quantiles):
            table[f"{name}_{quantile_column(q)}"] = qs[:, j]
    return table


@dataclass(frozen=True)
class ImputedFit:
    """The pooled posterior of a second-stage law fitted to :math:`K` imputed data sets.

    Attributes
    ----------
    batch : Result
        The :math:`G \\times K` fits (``by`` = the group columns and ``imputation``); its
        ``diagnostics`` give r̂, ESS and divergences per group and imputation.
    groups : tuple of str
        The group columns (empty for a single fit).
    keys : DataFrame
        One row per group (columns ``groups``), in the order of :meth:`draws`' first axis.
    """

    batch: Result
    groups: tuple[str, ...]
    keys: pd.DataFrame

    @property
    def law(self) -> Law:
        return self.batch.law

    @property
    def num_imputations(self) -> int:
        return len(self.batch) // len(self.keys)

    def _by_group(self, x: np.ndarray) -> np.ndarray:
        """``(G*K, chain, draw)`` in the batch's label order -> ``(G, K, chain, draw)``."""
        return x.reshape(len(self.keys), self.num_imputations, *x.shape[1:])

    def draws(self) -> dict[str, np.ndarray]:
        """Pooled draws ``{parameter: (group, K * chain * draw)}`` (law parameters, sigma...)."""
        post = self.batch.group("posterior")
        return {
            k: self._by_group(post[k].values).reshape(len(self.keys), -1)
            for k in self.batch.parameter_names
        }

    def pooled_result(self, group: int = 0) -> Result:
        """One group's pooled posterior as a :class:`~bayescale.Result`.

        Its posterior holds every imputation's draws, the chains stacked (chain = imputation
        x chain), so ``draws()``, ``summary()``, ``predict()`` and ``predict_draws()`` are
        those of the mixture :math:`\\frac1K \\sum_k p(\\theta \\mid \\tilde y^{(k)})`; its
        ``constant_data`` is the first imputation's.  Per-imputation convergence stays in
        :attr:`batch` (an r̂ of the stacked chains would measure the spread between
        imputations, not mixing).

        Parameters
        ----------
        group : int
            Position of the group in :attr:`keys`.

        Raises
        ------
        ValueError
            A ``group`` out of range.
        """
        import xarray as xr

        k = self.num_imputations
        if not 0 <= group < len(self.keys):
            raise ValueError(f"group must be in [0, {len(self.keys)}), got {group!r}")
        dim = self.batch.dim
        first = self.batch[self.batch.labels[group * k]]
        post = (
            self.batch.group("posterior").to_dataset().isel({dim: slice(group * k, group * k + k)})
        )
        pooled = post.stack(pooled=(dim, "chain")).transpose("pooled", "draw")
        pooled = pooled.drop_vars(["pooled", dim, "chain"]).rename(pooled="chain")
        pooled = pooled.assign_coords(chain=np.arange(pooled.sizes["chain"]))
        dt = xr.DataTree.from_dict(
            {"posterior": pooled, "constant_data": first.datatree_of().constant_data.to_dataset()}
        )
        dt.attrs = {**first.datatree.attrs, "by": json.dumps(None)}
        dt.attrs.pop("failure_reasons", None)  # the batch's: per imputation, in `batch`
        return Result(dt, first.law, first.likelihood, first.columns)

    def status(self) -> pd.Series:
        """Per group, the worst convergence status over its :math:`K` fits."""
        order = [s.value for s in Status]
        worst = self._by_group(
            np.array([order.index(s) for s in self.batch.diagnostics["status"]], dtype=int)[
                :, None, None
            ]
        ).max(axis=(1, 2, 3))
        return pd.Series([order[i] for i in worst], index=self._index(), name="status")

    def _index(self) -> pd.Index:
        if not self.groups:
            return pd.RangeIndex(1)
        return (
            pd.MultiIndex.from_frame(self.keys)
            if len(self.groups) > 1
            else pd.Index(self.keys[self.groups[0]])
        )

    def summary(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """One row per (group, parameter): pooled mean, sd, quantiles, MCSE of the mean.

        The Monte Carlo standard error of the pooled mean :math:`\\bar\\theta = \\frac1K
        \\sum_k \\bar\\theta_k` is :math:`\\frac1K (\\sum_k s_k^2 / \\mathrm{ESS}_k)^{1/2}`,
        with :math:`s_k` and :math:`\\mathrm{ESS}_k` (bulk, arviz-stats) of imputation k.
        """
        import arviz_stats as azs

        post = self.batch.group("posterior")
        names = list(self.batch.parameter_names)
        ess = azs.ess(post.dataset[names], method="bulk")
        status = self.status().to_numpy()
        rows = []
        for name in names:
            x = self._by_group(post[name].values)  # (G, K, chain, draw)
            flat = x.reshape(x.shape[0], -1)
            sd_k = x.reshape(*x.shape[:2], -1).std(axis=-1)
            ess_k = self._by_group(ess[name].values[:, None, None])[..., 0, 0]
            mcse = np.sqrt((sd_k**2 / ess_k).sum(axis=1)) / x.shape[1]
            qs = np.quantile(flat, quantiles, axis=1)
            for g in range(len(self.keys)):
                row = dict(self.keys.iloc[g]) if self.groups else {}
                row.update(parameter=name, mean=flat[g].mean(), sd=flat[g].std())
                row.update({quantile_column(q): qs[j, g] for j, q in enumerate(quantiles)})
                row.update(mcse_mean=mcse[g], status=status[g])
                rows.append(row)
        return pd.DataFrame(rows)

    @float64
    def band_draws(self, covariates: Mapping[str, np.ndarray]) -> np.ndarray:
        """Pooled draws of the law :math:`f(x;\\theta)` at ``covariates``.

        Returns an array ``(group, pooled draw, point)``.
        """
        import jax.numpy as jnp

        log_x = {
            c: jnp.log(jnp.asarray(np.asarray(covariates[c], dtype=float)))
            for c in self.law.covariates
        }
        params = {k: jnp.asarray(v)[..., None] for k, v in self.draws().items()}
        return np.exp(np.asarray(self.law.log_mean(params, log_x)))

    def band(
        self, covariates: Mapping[str, np.ndarray], quantiles: Sequence[float] = (0.05, 0.5, 0.95)
    ) -> pd.DataFrame:
        """The law's credible band at ``covariates``, one row per (group, point)."""
        missing = [c for c in self.law.covariates if c not in covariates]
        if missing:
            raise DataError(f"band needs the covariate(s) {missing} of law {self.law.id!r}")
        draws = self.band_draws(covariates)
        qs = np.quantile(draws, quantiles, axis=1)
        parts = []
        for g in range(len(self.keys)):
            part = pd.DataFrame({c: np.asarray(covariates[c], float) for c in self.law.covariates})
            for col in self.groups:
                part.insert(0, col, self.keys[col].iloc[g])
            part["mean"] = draws[g].mean(axis=0)
            for j, q in enumerate(quantiles):
                part[quantile_column(q)] = qs[j, g]
            parts.append(part)
        return pd.concat(parts, ignore_index=True)


@float64
def fit_imputed(
    imputed: pd.DataFrame,
    law,
    *,
    groups: Sequence[str] = (),
    columns: Mapping[str, str] | None = None,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    seed: int = 0,
    warn: bool = True,
    **deprecated,
) -> ImputedFit:
    """Fit ``law`` to every imputed data set (and group) in one batched call and pool.

    With imputed data sets :math:`y^{(1)} \\dots y^{(K)}`, the pooled posterior is the equal
    mixture of the :math:`K` posteriors, :math:`p(\\theta \\mid \\cdot) \\approx K^{-1}
    \\sum_k p(\\theta \\mid y^{(k)})` (their draws stacked), whose spread adds the
    between-imputation variance to the within-fit one.

    Parameters
    ----------
    imputed : DataFrame
        The imputed data sets stacked, numbered by an ``imputation`` column (0 … K-1), with
        the same groups in every imputation.
    law : str, Path or Law
        The second-stage law (anything :func:`bayescale.laws.get_law` accepts).
    groups : sequence of str
        Columns splitting each imputed data set into independent fits (e.g. a configuration).
    columns : dict, optional
        Law variable -> column, as in :func:`bayescale.fit`.
    model, inference, seed, warn
        Of the one :func:`bayescale.fit` call (``by=`` groups and imputation); defaults
        :data:`IMPUTED_MODEL` (``Model(discrepancy=None)``), ``NUTS()``.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    ImputedFit

    Raises
    ------
    DataError
        A missing column, or an imputation lacking a group.
    """
    model, inference = resolve_options(
        "fit_imputed", model, inference, deprecated, defaults=(IMPUTED_MODEL, NUTS())
    )
    groups = tuple(groups)
    missing = [c for c in (*groups, IMPUTATION) if c not in imputed.columns]
    if missing:
        raise DataError(f"imputed data lacks the column(s) {missing}")
    keys = (
        imputed[list(groups)].drop_duplicates().sort_values(list(groups)).reset_index(drop=True)
        if groups
        else pd.DataFrame(index=[0])
    )
    by = [*groups, IMPUTATION]
    counts = imputed.groupby(by).size()
    expected = len(keys) * imputed[IMPUTATION].nunique()
    if len(counts) != expected:
        raise DataError(
            f"every imputation must hold every group: {len(counts)} (group, imputation) pairs, "
            f"expected {len(keys)} groups x {imputed[IMPUTATION].nunique()} imputations"
        )
    batch = fit(
        imputed, law, by=by, columns=columns, model=model, inference=inference, seed=seed,
        warn=warn,
    )  # fmt: skip
    return ImputedFit(batch=batch, groups=groups, keys=keys)


_RENAMED = {"fit_pooled": "fit_imputed", "PooledFit": "ImputedFit"}  # 0.1 names


def __getattr__(name: str):
    """The 0.1 names ``fit_pooled``/``PooledFit`` (a name that suggested the hierarchical
    pooling of ``Model(pooled=)``), for one release, with a DeprecationWarning."""
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"bayescale.workflows.propagate.{name} is deprecated; use {new} (multiple "
            "imputation, not Model(pooled=)'s hierarchy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
