"""Calibration checks of the Bayesian fits: simulation-based calibration and backtests.

* :func:`sbc` (:mod:`~bayescale.check.sbc`) — simulation-based calibration (Talts et al.
  2018): parameters drawn from the prior, data simulated from the same observation model the
  fit assumes, every replication fitted in one :func:`bayescale.fit` call (``by=``), and the rank
  of each true value among (thinned) posterior draws tested for uniformity.
* :func:`backtest` (:mod:`~bayescale.check.backtest`) — per curve, fit the early part (a
  fraction of the steps, or the runs below a size/budget threshold), predict the held-out
  later part and score the predictive intervals' coverage and the posterior median's error
  (:mod:`~bayescale.check.scoring`) against a least-squares (or Huber) point fit of the same
  law (:func:`least_squares_fit`, :mod:`~bayescale.check.baseline`); optionally the curves of
  a pool (e.g. one model size's seeds) fitted together, chosen parameters drawn from a
  population (``model=Model(pooled=...)``, ``pool_by=``); optionally a law error beyond the
  fitted range learnt out of sample, its scale (:func:`law_error_scale`) and its mean, an
  extrapolation bias (:func:`law_error_bias`) (:mod:`~bayescale.check.law_error`).

* :func:`calibration` (:mod:`~bayescale.check.calibration`) — the bands of a backtest (or
  any predictive quantiles) scored at several levels: coverage with its binomial standard
  error, MSCE, the interval score (Gneiting & Raftery 2007), the median band width, and a
  reliability plot (:func:`plot_reliability`).

All are consumers of :func:`bayescale.fit` results: the one log density
(:meth:`bayescale.model.Posterior.log_density`) is used by every fit here; the point-fit
baseline evaluates the same law function (:meth:`bayescale.laws.Law.log_mean`).
"""

from bayescale.check.backtest import BacktestResult, backtest
from bayescale.check.baseline import least_squares_fit
from bayescale.check.calibration import Calibration, calibration, plot_reliability
from bayescale.check.law_error import LAW_ERROR_METHODS, law_error_bias, law_error_scale
from bayescale.check.sbc import SBCResult, sbc

__all__ = [
    "LAW_ERROR_METHODS",
    "BacktestResult",
    "Calibration",
    "SBCResult",
    "backtest",
    "calibration",
    "law_error_bias",
    "law_error_scale",
    "least_squares_fit",
    "plot_reliability",
    "sbc",
]
