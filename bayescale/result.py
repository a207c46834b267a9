"""The result of :func:`bayescale.fit`: one type for one fit and for many.

:class:`Result` holds an ArviZ DataTree whose groups (``posterior``, ``sample_stats``,
``log_likelihood``, ``posterior_predictive``, ``observed_data``, ``constant_data``,
``prior_predictive``) always carry a fit dimension before ``chain``/``draw``: named after
``by`` (coordinates: the curves' labels), or ``fit`` (one coordinate, 0) for a single fit.
Curves shorter than the longest are NaN-padded in the data groups.  ``prior`` holds the
law's prior draws (``chain``/``draw``; the same for every fit); ``predictions`` the draws
of the last :meth:`Result.predict`.  The root attributes carry the law (as a spec), the
likelihood, the column mapping, ``by`` and the settings, so a saved result loads back whole.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.convergence import (
    ALL_DRAWS,
    ESS_PER_CHAIN_MIN,
    RHAT_MAX,
    ConvergenceWarning,
    Status,
    convergence_numbers,
    status_of,
    worst,
)
from bayescale.data import DataError, FitData, covariate_frame, seed_int
from bayescale.datatree import (
    POINTWISE_GROUPS,
    build_datatree,
    dim_name,
    recompute_pointwise,
    restore_pointwise,
    with_fit_dim,
)
from bayescale.laws import Law, law_from_spec
from bayescale.model import Posterior
from bayescale.precision import float64
from bayescale.predict import (
    extrapolation_distance,
    log_prediction_draws,
    prediction_table,
    quantile_column,
    quantile_list,
)

__all__ = ["Result", "load", "quantile_list"]

#: Groups :meth:`Result.save` leaves out by default and :func:`load` recomputes.
RECOMPUTED_GROUPS = POINTWISE_GROUPS
#: Groups of the last :meth:`Result.predict`, not saved by default.
PREDICTION_GROUPS = ("predictions", "predictions_constant_data")
#: zlib level of saved results (1 fastest .. 9 smallest).
COMPRESSION_LEVEL = 4


class Result:
    """Posteriors of one or many fits of one law (what :func:`bayescale.fit` returns).

    Attributes
    ----------
    datatree : xarray.DataTree
        ArviZ DataTree with a fit dimension (see the module docstring).  The pointwise
        groups (:data:`RECOMPUTED_GROUPS`) of a fresh or loaded result are computed from the
        draws, the data and the seed on first access of ``datatree`` (one vmapped program
        and the noise draws), not during :func:`bayescale.fit`.
    law : Law
    likelihood : str
    columns : dict
        Law variable -> data column used in the fit.
    by : str, list of str or None
        The column(s) that split the data into fits (``None``: a single fit).
    """

    def __init__(self, datatree: xr.DataTree, law: Law, likelihood: str, columns: dict, by=None):
        self.law = law
        self.likelihood = likelihood
        self.columns = dict(columns)
        self.by = by
        self.posterior = Posterior(law, likelihood)
        self._tree = with_fit_dim(datatree, self.dim)

    @property
    def datatree(self) -> xr.DataTree:
        if "dropped_groups" in self._tree.attrs:  # pointwise groups not computed yet
            self._restore_pointwise()
        return self._tree

    @float64
    def _restore_pointwise(self) -> None:
        self._tree = restore_pointwise(self._tree, self.posterior, self.dim)

    @datatree.setter
    def datatree(self, tree: xr.DataTree) -> None:
        self._tree = tree

    def group(self, name: str) -> xr.DataTree:
        """The DataTree group ``name`` (``"posterior"``, ``"observed_data"``, ...).  Unlike
        ``datatree[name]``, it computes the pointwise groups only when one of them is named.

        Raises
        ------
        KeyError
            No group ``name``, naming the groups there are.
        """
        tree = self.datatree if name in RECOMPUTED_GROUPS else self._tree
        if name not in tree.children and name not in RECOMPUTED_GROUPS:
            groups = sorted({*tree.children, *RECOMPUTED_GROUPS})
            raise KeyError(f"no group {name!r}; this result has {groups}")
        return tree[name]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(
        cls, posterior: Posterior, fits: Sequence[FitData], labels: Sequence, by, samples, **kw
    ) -> Result:
        """The result of sampler output with a leading fit axis (arguments and keywords as
        in :func:`bayescale.datatree.build_datatree`)."""
        dt = build_datatree(posterior, fits, labels, by, samples, pointwise=False, **kw)
        return cls(dt, posterior.law, posterior.likelihood, fits[0].columns, by)

    # ------------------------------------------------------------------ shape
    @property
    def dim(self) -> str:
        """Name of the fit dimension: ``by``'s, or ``"fit"`` for a single fit."""
        return dim_name(self.by)

    @property
    def labels(self) -> list:
        """The fits' labels (``[0]`` for a single fit)."""
        return list(self._tree.posterior[self.dim].values)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.posterior.site_names

    @property
    def num_chains(self) -> int:
        return int(self._tree.posterior.sizes["chain"])

    @property
    def num_draws(self) -> int:
        return int(self._tree.posterior.sizes["draw"])

    @property
    def method(self) -> str:
        """``"nuts"``, ``"map"`` or ``"laplace"``: what made the draws."""
        return str(self._tree.attrs.get("method", "nuts"))

    def draws(self, var_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Posterior draws ``{name: array}``: ``(chain, draw)`` for a result of one fit,
        ``(fit, chain, draw)`` for several."""
        names = list(var_names or self.parameter_names)
        post = self._tree.posterior
        if len(self) == 1:
            return {k: _drop_fit(post[k], self.dim).values for k in names}
        return {k: post[k].values for k in names}

    def __getitem__(self, label) -> Result:
        """The fit ``label`` as a result of its own (fit dimension of length 1, its padded
        points dropped)."""
        if label not in self.labels:
            raise KeyError(f"no fit labelled {label!r}; labels include {self.labels[:5]}")
        i = self.labels.index(label)
        sub = self.datatree.isel({self.dim: [i]})
        mask = ~np.isnan(sub.observed_data[self.law.response].values[0])
        groups = {}
        for name, node in sub.children.items():
            ds = node.to_dataset()
            if "point" in ds.dims:
                ds = ds.isel(point=np.flatnonzero(mask))
            groups[name] = ds
        dt = xr.DataTree.from_dict(groups)
        dt.attrs = dict(self.datatree.attrs)
        if "mode_stats" in dt.attrs:
            stats = json.loads(dt.attrs["mode_stats"])
            dt.attrs["mode_stats"] = json.dumps({k: [v[i]] for k, v in stats.items()})
        return Result(dt, self.law, self.likelihood, self.columns, self.by)

    def datatree_of(self, label=None) -> xr.DataTree:
        """The DataTree of fit ``label`` (default: the only fit) without the fit dimension
        and its padding: ``chain``/``draw`` dims only, what ArviZ functions expect
        (``arviz_stats.loo``, ``arviz_plots``).

        Raises
        ------
        ValueError
            ``label`` left out for a result of several fits.
        """
        if label is None and len(self) != 1:
            raise ValueError(
                f"this result holds {len(self)} fits; name one: datatree_of(label), labels "
                f"include {self.labels[:5]}"
            )
        one = self if label is None else self[label]
        groups = {}
        for name, node in one.datatree.children.items():
            ds = node.to_dataset()
            groups[name] = ds.isel({one.dim: 0}, drop=True) if one.dim in ds.dims else ds
        dt = xr.DataTree.from_dict(groups)
        dt.attrs = dict(one.datatree.attrs)
        return dt

    # ------------------------------------------------------------------ diagnostics
    @cached_property
    def diagnostics(self) -> pd.DataFrame:
        """One row per fit: max r̂, min bulk/tail ESS, divergences, draws, mean leapfrog
        steps, the thresholds, ``status`` and ``reason`` (why it failed, or ``""``).

        For ``"map"``/``"laplace"``: the mode search's numbers (objective, largest gradient
        component, failed and agreeing starts, convergence, smallest Hessian eigenvalue);
        r̂ and ESS are NaN (no Markov chain).  Computed once per result.
        """
        index = pd.Index(self.labels, name=self.dim)
        reasons = json.loads(self._tree.attrs.get("failure_reasons", "{}"))
        reason = [reasons.get(str(label), "") for label in self.labels]
        draws = self.num_chains * self.num_draws
        if self.method != "nuts":
            frame = pd.DataFrame(json.loads(self._tree.attrs["mode_stats"]), index=index)
            frame["max_rhat"] = frame["min_ess_bulk"] = frame["min_ess_tail"] = np.nan
            frame["num_divergent"], frame["num_draws"] = 0, draws
            frame["reason"] = reason
            frame["status"] = np.where(
                frame["reason"] != "", Status.failed.value, Status.converged.value
            )
            return frame
        if ALL_DRAWS in self._tree.children:  # NUTS(keep=...): from all draws
            conv = {k: v.values for k, v in self._tree[ALL_DRAWS].dataset.items()}
        else:
            post, names = self._tree.posterior.dataset, self.parameter_names
            conv = convergence_numbers(
                {n: post[n].transpose(self.dim, "chain", "draw").values for n in names},
                names,
                self._tree.sample_stats["diverging"].transpose(self.dim, ...).values,
            )
        frame = pd.DataFrame(
            {
                "max_rhat": np.asarray(conv["max_rhat"], dtype=float),
                "min_ess_bulk": np.asarray(conv["min_ess_bulk"], dtype=float),
                "min_ess_tail": np.asarray(conv["min_ess_tail"], dtype=float),
                "num_divergent": np.asarray(conv["num_divergent"], dtype=int),
                "num_draws": np.asarray(conv["num_draws"], dtype=int),
            },
            index=index,
        )
        stats = self._tree.sample_stats
        if "n_steps" in stats:
            frame["mean_n_steps"] = stats["n_steps"].mean(("chain", "draw")).values
        frame["rhat_max_allowed"] = RHAT_MAX
        frame["ess_min_allowed"] = ESS_PER_CHAIN_MIN * self.num_chains
        frame["status"] = [
            status_of(row, failed=bool(why)).value
            for (_, row), why in zip(frame.iterrows(), reason, strict=True)
        ]
        frame["reason"] = reason
        return frame

    @property
    def status(self) -> Status:
        """The worst status over the fits (each fit's in ``diagnostics["status"]``): failed
        > high r̂ > low ESS > divergences > converged."""
        return worst(self.diagnostics["status"])

    @property
    def failed(self) -> list:
        """Labels of the fits that did not converge."""
        s = self.diagnostics["status"]
        return list(s.index[s != Status.converged.value])

    def check_convergence(self, *, warn: bool = True, stacklevel: int = 2) -> Status:
        """:attr:`status`; with ``warn``, a :class:`ConvergenceWarning` with the numbers of
        the fits that did not converge (``stacklevel`` as :func:`warnings.warn`'s)."""
        diag = self.diagnostics
        bad = diag[diag["status"] != Status.converged.value]
        if warn and len(bad):
            message = self._convergence_message(diag, bad)
            warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
        return self.status

    def _convergence_message(self, diag: pd.DataFrame, bad: pd.DataFrame) -> str:
        if len(diag) == 1 and self.by is None:
            d = diag.iloc[0]
            if self.method != "nuts":
                return (
                    f"{self.method} fit of law {self.law.id!r} failed: {d['reason']} "
                    f"({d['map_failed_starts']} of {self._tree.attrs['num_starts']} starts "
                    f"ended non-finite, {d['map_agreeing_starts']} agree with the best, "
                    f"potential {d['map_potential']:.6g})"
                )
            return (
                f"fit of law {self.law.id!r} did not converge ({d['status']}): "
                f"max r̂ = {d['max_rhat']:.4f} (limit {RHAT_MAX}), "
                f"min bulk ESS = {d['min_ess_bulk']:.0f}, min tail ESS = "
                f"{d['min_ess_tail']:.0f} (limit {d['ess_min_allowed']}), "
                f"{d['num_divergent']} divergent transition(s) of {d['num_draws']} draws"
                + (f"; {d['reason']}" if d["reason"] else "")
            )
        if self.method != "nuts":
            shown = "; ".join(f"{label}: {row.reason}" for label, row in bad.head(10).iterrows())
        else:
            shown = "; ".join(
                f"{label}: {row.status}{' (' + row.reason + ')' if row.reason else ''} "
                f"r̂={row.max_rhat:.3f} ESS={min(row.min_ess_bulk, row.min_ess_tail):.0f} "
                f"div={row.num_divergent}"
                for label, row in bad.head(10).iterrows()
            )
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        return (
            f"{len(diag) - len(bad)} of {len(diag)} fits of law {self.law.id!r} converged; "
            f"not converged: {shown}{more}"
        )

    def summary(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """One row per (fit, parameter): the fit's label (column named after the fit
        dimension), ``parameter``, ``mean``, ``sd`` and a column per quantile
        (:func:`quantile_column`: ``q5``, ``q50``, ``q95``).

        For a ``NUTS(keep=...)`` result the mean, sd and the quantiles in
        :data:`SUMMARY_QUANTILES` come from all draws (reduced chunk by chunk before the
        draws were thinned); other quantiles from the kept draws.
        """
        quantiles = quantile_list(quantiles)
        rows = []
        post = self._tree.posterior
        stored = self._tree[ALL_DRAWS].dataset if ALL_DRAWS in self._tree.children else None
        for name in self.parameter_names:
            x = post[name].transpose(self.dim, ...).values.reshape(len(self), -1)
            mean, sd = x.mean(axis=1), x.std(axis=1)
            qs = {quantile_column(q): np.quantile(x, q, axis=1) for q in quantiles}
            if stored is not None:
                mean, sd = stored[f"{name}_mean"].values, stored[f"{name}_sd"].values
                qs.update({c: stored[f"{name}_{c}"].values for c in qs if f"{name}_{c}" in stored})
            for i, label in enumerate(self.labels):
                row = {self.dim: label, "parameter": name, "mean": mean[i], "sd": sd[i]}
                row.update({c: v[i] for c, v in qs.items()})
                rows.append(row)
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ predictions
    def _prediction_inputs(self, new_data) -> tuple[pd.DataFrame, FitData, np.ndarray, list]:
        """The rows, their validated covariates, the index of each row's fit and the ``by``
        columns the rows carry (none when the result holds one fit and they are absent)."""
        frame = new_data if isinstance(new_data, pd.DataFrame) else pd.DataFrame(new_data)
        by = [] if self.by is None else [self.by] if isinstance(self.by, str) else list(self.by)
        missing = [b for b in by if b not in frame.columns]
        if len(self) == 1 and (self.by is None or len(missing) == len(by)):
            new = covariate_frame(self.law, frame, self.columns)
            return frame, new, np.zeros(len(frame), dtype=int), []
        if missing:
            raise DataError(f"prediction inputs need the group column(s) {missing}")
        keys = frame[by].astype(str).agg("/".join, axis=1)
        index = {str(label): i for i, label in enumerate(self.labels)}
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise DataError(
                f"prediction inputs name fit(s) {unknown[:5]} that are not in this result "
                f"(its {len(index)} fits include {self.labels[:5]})"
            )
        new = covariate_frame(self.law, frame.drop(columns=by), self.columns)
        return frame, new, keys.map(index).to_numpy(), by

    def _fitted_log_x(self) -> dict:
        """The fitted points' log covariates, ``(fit, point)`` (NaN: padding)."""
        const = self._tree.constant_data
        return {c: np.log(const[c].transpose(self.dim, ...).values) for c in self.law.covariates}

    def _log_draws(self, new: FitData, fit_index, kind: str, seed, law_error: float):
        seed = seed_int(seed)
        post = self._tree.posterior
        values = {k: post[k].transpose(self.dim, ...).values for k in self.parameter_names}
        fitted_log_y = None  # needed only to condition a discrepancy on the fitted residuals
        if self.posterior.discrepancy and kind == "observation":
            if "observed_data" not in self._tree.children:
                raise ValueError(
                    "predict(kind='observation') under a discrepancy conditions on the fitted "
                    "responses, and this result has no observed_data group (e.g. a pool of "
                    "imputed fits); use kind='mean', or fit without the discrepancy"
                )
            observed = self._tree.observed_data[self.law.response]
            fitted_log_y = np.log(observed.transpose(self.dim, ...).values)
        return log_prediction_draws(
            self.posterior, values, self._fitted_log_x(), new.log_x, fit_index, kind, seed,
            law_error, fitted_log_y=fitted_log_y,
        )  # fmt: skip

    @float64
    def extrapolation_distance(self, new_data) -> np.ndarray:
        """:math:`d(x) = \\sqrt{\\sum_c d_c(x)^2}` at each row of ``new_data``, :math:`d_c` the
        decades (log10) by which covariate :math:`c` lies beyond its fit's fitted range (0
        inside): the distance the opt-in ``law_error`` of :meth:`predict` scales with."""
        _, new, fit_index, _ = self._prediction_inputs(new_data)
        fitted = {c: v[fit_index] for c, v in self._fitted_log_x().items()}
        return extrapolation_distance(new.log_x, fitted)

    @float64
    def predict_draws(
        self, new_data, *, kind: str = "observation", seed: int = 0, law_error: float = 0.0
    ) -> np.ndarray:
        """Draws of the response at each row of ``new_data``, shape ``(chain, draw, row)``
        (arguments as in :meth:`predict`)."""
        _, new, fit_index, _ = self._prediction_inputs(new_data)
        return np.exp(self._log_draws(new, fit_index, kind, seed, law_error))

    @float64
    def predict(
        self,
        new_data,
        *,
        quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
        kind: str = "observation",
        seed: int = 0,
        law_error: float = 0.0,
    ) -> pd.DataFrame:
        """Posterior-predictive summary of the response at each row of ``new_data``.

        Parameters
        ----------
        new_data : DataFrame or dict
            Covariate values, under the law's names or the columns used in the fit; for a
            result of several fits also the ``by`` column(s), naming each row's fit (kept in
            the output, first).
        quantiles : sequence of float
            Each gives a column ``q<percent>`` (``q5``, ``q2.5`` ...).
        kind : {"observation", "mean"}
            ``"observation"``: what a new run would measure (noise included);
            ``"mean"``: the law itself, :math:`f(x;\\theta)`.
        seed : int
            Seed of the observation noise draws, in ``[0, 2**63)``
            (:func:`bayescale.data.seed_int`: ``TypeError``/``ValueError`` otherwise).
        law_error : float
            :math:`\\tau \\ge 0`, opt-in error of the law itself beyond the fitted range, in
            log response per decade of extrapolation: each observation draw gets an
            independent :math:`\\tau\\,d(x)\\,z`, :math:`z \\sim \\mathcal N(0, 1)`, with
            :math:`d(x)` the decades beyond the fitted range
            (:meth:`extrapolation_distance`), so that for normal noise

            .. math:: \\operatorname{Var}\\log y(x) = \\sigma_0^2 + \\tau^2 d(x)^2
                \\;(+\\text{ the posterior's own spread}).

            0 by default (and inside the fitted range).  Learn :math:`\\tau` out of sample,
            e.g. :meth:`bayescale.check.BacktestResult.with_law_error`.  ``kind="mean"`` is
            unaffected.

        Returns
        -------
        DataFrame
            Covariates, ``mean``, the quantile columns, ``decades_beyond`` (how many decades
            the point lies outside its fit's fitted range of its furthest covariate; 0
            inside) and ``extrapolation`` (``"interpolation"`` or which covariates, by how
            much), in the input's row order and index.  The draws are stored in the
            DataTree's ``predictions`` group.
        """
        qs = quantile_list(quantiles)
        frame, new, fit_index, by = self._prediction_inputs(new_data)
        draws = np.exp(self._log_draws(new, fit_index, kind, seed, law_error))
        fitted = {c: v[fit_index] for c, v in self._fitted_log_x().items()}
        out = prediction_table(new, draws, qs, fitted)
        if by:
            out = pd.concat([frame[by].reset_index(drop=True), out], axis=1)
            out.index = frame.index
        self._store_predictions(new, draws, kind)
        return out

    def _store_predictions(self, new: FitData, draws: np.ndarray, kind: str) -> None:
        point = np.arange(draws.shape[-1])
        pred = xr.Dataset(
            {self.law.response: (("chain", "draw", "prediction_point"), draws)},
            coords={
                "chain": self._tree.posterior.chain.values,
                "draw": self._tree.posterior.draw.values,
                "prediction_point": point,
            },
            attrs={"kind": kind},
        )
        const = xr.Dataset(
            {c: (("prediction_point",), np.exp(new.log_x[c])) for c in self.law.covariates},
            coords={"prediction_point": point},
        )
        self._tree["predictions"] = xr.DataTree(pred)
        self._tree["predictions_constant_data"] = xr.DataTree(const)

    # ------------------------------------------------------------------ persistence
    @float64
    def save(self, path: str | Path, *, full: bool = False) -> Path:
        """Write the DataTree (law, settings and ``by`` in its attributes) to compressed
        netCDF (HDF5, zlib level :data:`COMPRESSION_LEVEL` with byte shuffling; lossless,
        every number keeps its float64).

        By default the file holds what cannot be recomputed: ``posterior``,
        ``sample_stats``, the data groups, ``prior`` and the summaries of all draws.  Left
        out are the pointwise groups :data:`RECOMPUTED_GROUPS` (``log_likelihood``,
        ``posterior_predictive``, ``prior_predictive``: one number per draw and data point,
        most of the size), which :func:`load` recomputes from the draws, the data and the
        fit's seed, and the draws of the last :meth:`predict` (``predictions``,
        ``predictions_constant_data``), which are not kept.  A pointwise group is left out
        only when recomputing it here gives it back exactly (not so for a result spliced
        from fits of several seeds, e.g. by :func:`bayescale.check.backtest`); so ``save``
        costs one recomputation.  ``full=True`` writes every group as it is.

        Raises
        ------
        FileNotFoundError
            The folder of ``path`` does not exist (checked before anything is written).
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {str(path)!r}: folder {str(path.parent)!r} does not exist"
            )
        pending = "dropped_groups" in self._tree.attrs  # recomputable by construction
        dt = self._tree if pending and not full else self.datatree
        if pending and not full:
            dt = xr.DataTree.from_dict(
                {k: v.to_dataset() for k, v in dt.children.items() if k not in PREDICTION_GROUPS}
            )
            dt.attrs = dict(self._tree.attrs)
        elif not full:
            again = recompute_pointwise(dt, self.posterior, self.dim)
            dropped = [
                name
                for name in RECOMPUTED_GROUPS
                if name in dt.children and name in again and again[name].equals(dt[name].dataset)
            ]
            left_out = (*dropped, *PREDICTION_GROUPS)
            dt = xr.DataTree.from_dict(
                {k: v.to_dataset() for k, v in dt.children.items() if k not in left_out}
            )
            dt.attrs = {**self._tree.attrs, "dropped_groups": json.dumps(dropped)}
        encoding = {
            node.path: {
                name: {"zlib": True, "complevel": COMPRESSION_LEVEL, "shuffle": True}
                for name, var in node.dataset.data_vars.items()
                if var.dtype.kind in "biuf"
            }
            for node in dt.subtree
        }
        dt.to_netcdf(path, engine="h5netcdf", encoding=encoding)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a result written by :meth:`save` (see :func:`load`)."""
        return load(path)

    def __repr__(self) -> str:
        diag = self.diagnostics
        converged = int((diag["status"] == Status.converged.value).sum())
        return (
            f"<Result law={self.law.id!r} likelihood={self.likelihood!r} method={self.method} "
            f"fits={len(self)} converged={converged} chains={self.num_chains} "
            f"draws={self.num_draws} status={self.status.value}>"
        )


@float64
def load(path: str | Path) -> Result:
    """Read a result saved by :meth:`Result.save` (or by bayescale 0.1's ``FitResult.save``
    or ``BatchResult.save``); the pointwise groups that ``save`` left out are recomputed on
    first access of :attr:`Result.datatree` (:func:`bayescale.datatree.restore_pointwise`).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a saved bayescale result (not netCDF/HDF5, or without its
        attributes), naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved result at {str(path)!r}")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as opened:
            dt = opened.load()
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{str(path)!r} is not a saved bayescale result (not a readable netCDF/HDF5 file: "
            f"{err})"
        ) from None
    try:
        law = law_from_spec(json.loads(dt.attrs["law"]))
        likelihood = dt.attrs["likelihood"]
        columns = json.loads(dt.attrs["columns"])
    except KeyError as err:
        raise ValueError(f"{str(path)!r} is not a bayescale result (no {err} attribute)") from None
    by = json.loads(dt.attrs["by"]) if "by" in dt.attrs else None
    return Result(dt, law, likelihood, columns, by)


def _drop_fit(x: xr.DataArray, dim: str) -> xr.DataArray:
    return x.isel({dim: 0}, drop=True) if dim in x.dims else x


def __getattr__(name: str):
    """``FitResult`` and ``BatchResult`` (bayescale 0.1): deprecated names of :class:`Result`."""
    if name in ("FitResult", "BatchResult"):
        warnings.warn(
            f"bayescale.result.{name} is deprecated; use bayescale.Result",
            DeprecationWarning,
            stacklevel=2,
        )
        return Result
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
