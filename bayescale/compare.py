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
one log density of :mod:`bayescale.model`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayescale.precision import float64
from bayescale.result import Result, quantile_column

__all__ = ["Comparison", "LooWarning", "compare"]

WEIGHT_METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


class LooWarning(UserWarning):
    """PSIS-LOO estimates that may be unreliable (Pareto k above the threshold)."""


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
    loo : dict of str to arviz_stats ELPDData
        Pointwise PSIS-LOO of each law.
    """

    def __init__(self, table: pd.DataFrame, results: dict, loo: dict):
        self.table = table
        self.results = dict(results)
        self.loo = dict(loo)
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
        return f"<Comparison best={self.best!r}>\n{self.table[cols].to_string()}"


@float64
def compare(
    results: Mapping[str, Result],
    *,
    method: str = "stacking",
    warn: bool = True,
) -> Comparison:
    """Compare fitted laws on the same observations by PSIS-LOO (arviz-stats).

    Parameters
    ----------
    results : dict of str to Result
        Two or more results of one fit each (:class:`~bayescale.options.NUTS` or
        :class:`~bayescale.options.Laplace`: posterior draws are needed) fitted to the same
        observed response values.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How the weights are computed (:func:`arviz_stats.compare`).
    warn : bool
        Emit a :class:`LooWarning` naming each law with Pareto :math:`\\hat k` above the
        threshold (those points' leave-one-out densities are unreliable; refit without
        them or use K-fold CV).

    Returns
    -------
    Comparison
        ``.table``, ``.weights``, ``.best``, ``.predict()``, ``.predict_draws()``.

    Raises
    ------
    ValueError
        Fewer than two results, a result without posterior draws, or results fitted to
        different observations.
    """
    import arviz_stats as azs

    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(WEIGHT_METHODS)}")
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
    loo = {name: azs.loo(r.datatree_of(), pointwise=True) for name, r in results.items()}
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
