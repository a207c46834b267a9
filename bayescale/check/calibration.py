"""Calibration of predictive bands: coverage by level, MSCE, interval score, sharpness.

:func:`calibration` scores the held-out predictions of :func:`bayescale.check.backtest` (or
any table of predictive quantiles and observations) at several central band levels
:math:`\\ell`.  With :math:`[l_i, u_i]` point :math:`i`'s central :math:`\\ell` band,
:math:`y_i` its observation and :math:`n` the points:

* **coverage** :math:`\\hat c_\\ell = \\tfrac1n \\sum_i 1\\{l_i \\le y_i \\le u_i\\}`, with the
  binomial standard error of a calibrated band, :math:`\\sqrt{\\ell(1-\\ell)/n}` (points of one
  curve are correlated, so this understates the real spread);
* **MSCE**, the mean squared calibration error :math:`\\tfrac1L\\sum_\\ell (\\hat c_\\ell -
  \\ell)^2` over the :math:`L` levels;
* the **interval score** (Gneiting & Raftery 2007, eq. 43) with :math:`\\alpha = 1 - \\ell`,
  on the log response (so curves of different scale are comparable; lower is better):

  .. math:: S_\\alpha = (\\log u - \\log l) + \\tfrac{2}{\\alpha}(\\log l - \\log y)_+
      + \\tfrac{2}{\\alpha}(\\log y - \\log u)_+,

  averaged over the points: it rewards narrow bands and penalises misses, so a band is
  judged honest *and* sharp;
* **median width** :math:`\\operatorname{median}_i(\\log u_i - \\log l_i)` (sharpness).

:func:`plot_reliability` draws nominal against actual coverage (matplotlib imported only
when called).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.check.scoring import BAND_LEVELS
from bayescale.predict import quantile_column

__all__ = ["Calibration", "band_columns", "calibration", "plot_reliability"]

OVERALL = "overall"


def band_columns(level: float) -> tuple[str, str]:
    """The quantile columns (``quantile_column``) of the central band at ``level``:
    0.9 -> ``("q5", "q95")``."""
    return quantile_column(round((1 - level) / 2, 6)), quantile_column(round((1 + level) / 2, 6))


@dataclass(frozen=True)
class Calibration:
    """Outcome of :func:`calibration` (frozen).

    Attributes
    ----------
    frame : DataFrame
        Indexed by (``group``, ``level``); columns ``num_points``, ``num_inside``,
        ``coverage``, ``se`` (binomial, of a calibrated band), ``gap`` (coverage - level),
        ``interval_score``, ``median_width`` (log response).  The group ``"overall"`` pools
        every point; the others are the values of ``by``.
    by : tuple of str
        The columns the points were grouped by (empty: overall only).
    """

    frame: pd.DataFrame
    by: tuple[str, ...] = ()

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.frame.loc[OVERALL].index)

    @property
    def groups(self) -> list:
        """The group labels, ``"overall"`` first."""
        return list(dict.fromkeys(self.frame.index.get_level_values("group")))

    def table(self, group=OVERALL) -> pd.DataFrame:
        """One group's rows, indexed by level (a copy); ``group=None``: every group."""
        if group is None:
            return self.frame.copy()
        if group not in self.groups:
            raise KeyError(f"no group {group!r}; the groups are {self.groups}")
        return self.frame.loc[group].copy()

    @property
    def msce(self) -> float:
        """Mean squared calibration error over the levels, all points pooled."""
        return self.msce_by_group()[OVERALL]

    def msce_by_group(self) -> pd.Series:
        """MSCE of every group (``"overall"`` first)."""
        gaps = self.frame["gap"] ** 2
        return gaps.groupby(level="group", sort=False).mean().rename("msce")

    def plot(self, group=OVERALL, ax=None):
        """:func:`plot_reliability` of one group."""
        return plot_reliability(self, group=group, ax=ax)

    def __repr__(self) -> str:
        shown = self.table()[["num_inside", "num_points", "coverage", "se", "interval_score",
                              "median_width"]]  # fmt: skip
        lines = [f"<Calibration msce={self.msce:.4g}" + (f" by={list(self.by)}>" if self.by
                 else ">"), shown.to_string(float_format=lambda v: f"{v:.4g}")]  # fmt: skip
        if self.by:
            msce = self.msce_by_group().drop(OVERALL)
            lines.append("MSCE by group: " + ", ".join(f"{k}: {v:.3g}" for k, v in msce.items()))
        return "\n".join(lines)


def calibration(
    backtest,
    levels: Sequence[float] = BAND_LEVELS,
    *,
    by: str | Sequence[str] | None = None,
) -> Calibration:
    """Coverage, MSCE, interval score and band width of predictive bands at ``levels``.

    Parameters
    ----------
    backtest : BacktestResult or DataFrame
        A :func:`bayescale.check.backtest` result (its ``predictions`` carry the bands of
        the levels 0.5, 0.6, 0.7, 0.8, 0.9, 0.95 and 0.99), or a table with an ``observed``
        column and the quantile columns of each level (:func:`band_columns`: ``q5``/``q95``
        for 0.9), e.g. bands of another method scored the same way.
    levels : sequence of float
        Central band levels in (0, 1) (default 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99).
    by : str or list of str, optional
        Column(s) of the predictions to break the scores down by (e.g. ``"curve"``, or a
        source column the backtest's ``by=`` carried); ``None``: overall only.

    Returns
    -------
    Calibration
        ``.table()``, ``.msce``, ``.msce_by_group()``, ``.plot()``.

    Raises
    ------
    ValueError
        A level outside (0, 1), no level, or a level whose band columns are missing.
    KeyError
        ``by`` names a missing column.

    Points whose band is not finite and positive, or whose observation is not positive,
    are left out (counted in no level).
    """
    pred = backtest if isinstance(backtest, pd.DataFrame) else backtest.predictions
    levels = [float(v) for v in levels]
    if not levels or not all(0 < v < 1 for v in levels):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels}")
    levels = sorted(set(levels))
    missing = [v for v in levels if not set(band_columns(v)) <= set(pred.columns)]
    if missing:
        raise ValueError(
            f"the predictions carry no band for level(s) {missing}: columns "
            f"{[c for v in missing for c in band_columns(v)]} are missing"
        )
    by_cols = [] if by is None else [by] if isinstance(by, str) else list(by)
    absent = [c for c in by_cols if c not in pred.columns]
    if absent:
        raise KeyError(f"by= names column(s) {absent} not in the predictions: {list(pred)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.log(pred["observed"].to_numpy(dtype=float))
        logs = {
            v: tuple(np.log(pred[c].to_numpy(dtype=float)) for c in band_columns(v)) for v in levels
        }
    ok = np.isfinite(log_y)
    for lo, hi in logs.values():
        ok &= np.isfinite(lo) & np.isfinite(hi)
    groups = [(OVERALL, ok)]
    if by_cols:
        labels = pred[by_cols].astype(str).agg("/".join, axis=1).to_numpy()
        groups += [(g, ok & (labels == g)) for g in dict.fromkeys(labels[ok])]
    rows = {}
    for group, mask in groups:
        for v in levels:
            lo, hi = logs[v][0][mask], logs[v][1][mask]
            rows[(group, v)] = _scores(log_y[mask], lo, hi, v)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["group", "level"])
    return Calibration(frame, tuple(by_cols))


def _scores(log_y: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> dict:
    n = int(log_y.size)
    inside = int(np.sum((lo <= log_y) & (log_y <= hi)))
    alpha = 1 - level
    width = hi - lo
    score = width + 2 / alpha * (np.maximum(lo - log_y, 0) + np.maximum(log_y - hi, 0))
    return {
        "num_points": n,
        "num_inside": inside,
        "coverage": inside / n if n else math.nan,
        "se": math.sqrt(level * (1 - level) / n) if n else math.nan,
        "gap": inside / n - level if n else math.nan,
        "interval_score": float(np.mean(score)) if n else math.nan,
        "median_width": float(np.median(width)) if n else math.nan,
    }


def plot_reliability(calibration: Calibration, *, group=OVERALL, ax=None, label=None):
    """Reliability diagram: actual against nominal coverage, with :math:`\\pm 2` binomial
    standard errors of a calibrated band (:math:`2\\sqrt{\\ell(1-\\ell)/n}`) and the diagonal.

    Returns the matplotlib Axes (a new figure's when ``ax`` is None).
    """
    import matplotlib.pyplot as plt

    table = calibration.table(group)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    nominal = table.index.to_numpy(dtype=float)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", zorder=0)
    ax.errorbar(
        nominal,
        table["coverage"].to_numpy(dtype=float),
        yerr=2 * table["se"].to_numpy(dtype=float),
        fmt="o-",
        capsize=3,
        label=label
        if label is not None
        else f"{group} (MSCE {calibration.msce_by_group()[group]:.3g})",
    )
    ax.set_xlim(min(0.4, nominal.min() - 0.05), 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("actual coverage")
    ax.legend(loc="upper left", fontsize="small")
    return ax
