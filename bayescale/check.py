"""Calibration checks of the Bayesian fits: simulation-based calibration and backtests.

* :func:`sbc` — simulation-based calibration (Talts et al. 2018): parameters drawn from the
  prior, data simulated from the same observation model the fit assumes, every replication
  fitted in one :func:`bayescale.fit_batch` call, and the rank of each true value among
  (thinned) posterior draws tested for uniformity.
* :func:`backtest` — per curve, fit the early part (a fraction of the steps, or the runs
  below a size/budget threshold), predict the held-out later part and score the predictive
  intervals' coverage and the posterior median's error against a least-squares (or Huber)
  point fit of the same law; optionally the curves of a pool (e.g. one model size's seeds)
  fitted together, chosen parameters drawn from a population (``pooled=``, ``pool_by=``);
  optionally a law error beyond the fitted range learnt out of sample, its scale
  (:func:`law_error_scale`) and its mean, an extrapolation bias (:func:`law_error_bias`).

Both are consumers of :func:`bayescale.fit_batch` results: the one log density
(:meth:`bayescale.model.Posterior.log_density`) is used by every fit here; the point-fit
baseline evaluates the same law function (:meth:`bayescale.laws.Law.log_mean`).
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

from bayescale.api import fit, fit_batch
from bayescale.data import DataError, FitData, _as_frame, prepare
from bayescale.laws import Law, get_law
from bayescale.model import Posterior, check_pooled_names, with_noise
from bayescale.result import (
    BatchResult,
    Status,
    _extrapolation_distance,
    _noise,
    _prior_draws,
)
from bayescale.simulate import simulate

__all__ = [
    "LAW_ERROR_METHODS",
    "BacktestResult",
    "SBCResult",
    "backtest",
    "law_error_bias",
    "law_error_scale",
    "least_squares_fit",
    "sbc",
]

REPLICATION = "replication"
#: Expected count per bin of the chi-square test at least this large (Cochran's rule).
MIN_EXPECTED_PER_BIN = 5
MAX_BINS = 20
#: How :func:`backtest` learns the law-error scale tau out of sample (see there).
LAW_ERROR_METHODS = ("curves", "in_range")
#: Fewest curves whose errors estimate tau for the one left out (``law_error="curves"``).
MIN_OTHER_CURVES = 2
_Z90 = 1.6448536269514722  # standard normal 95% quantile: the 90% band is +-_Z90 sd


# ================================================================================= SBC
@dataclass
class SBCResult:
    """Outcome of :func:`sbc`.

    Attributes
    ----------
    law : Law
    likelihood : str
    ranks : DataFrame
        One row per replication, one column per latent site (law parameters, ``sigma``,
        ``nu``): the rank :math:`r \\in \\{0, \\dots, L\\}` of the true value among the
        :math:`L` thinned posterior draws.
    num_rank_draws : int
        :math:`L`.
    tests : DataFrame
        Per site: ``chi2``, ``dof``, ``num_bins``, ``p_value`` of the uniformity test.
    diagnostics : DataFrame
        Per replication: the fit's r̂, ESS, divergences, status (as
        :attr:`BatchResult.diagnostics`) and the true values drawn from the prior.
    batch : BatchResult
        The fits themselves.
    num_redrawn : int
        Prior draws replaced because their simulated responses left the float range.
    """

    law: Law
    likelihood: str
    ranks: pd.DataFrame
    num_rank_draws: int
    tests: pd.DataFrame
    diagnostics: pd.DataFrame
    batch: BatchResult = field(repr=False)
    num_redrawn: int = 0

    @property
    def num_replications(self) -> int:
        return len(self.ranks)

    @property
    def num_not_converged(self) -> int:
        """Replications whose fit did not converge (their ranks are kept in the test)."""
        return int((self.diagnostics["status"] != Status.converged.value).sum())

    @property
    def status_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.diagnostics["status"].value_counts().items()}

    @property
    def num_low_ess(self) -> int:
        """Replications whose smallest bulk ESS is below :math:`L` (ranking draws correlated)."""
        return int((self.diagnostics["min_ess_bulk"] < self.num_rank_draws).sum())

    def passed(self, alpha: float = 0.01, num_tests: int | None = None) -> bool:
        """True if every site's p-value exceeds ``alpha / num_tests`` (Bonferroni).

        ``num_tests`` defaults to the number of sites tested here; pass the total when
        several SBC runs are judged together.
        """
        m = len(self.tests) if num_tests is None else num_tests
        return bool((self.tests["p_value"] > alpha / m).all())

    def report(self) -> str:
        """One paragraph with the numbers: p-values, non-converged and low-ESS counts."""
        p = ", ".join(f"{k} {v:.3g}" for k, v in self.tests["p_value"].items())
        return (
            f"SBC of law {self.law.id!r} ({self.likelihood}): {self.num_replications} "
            f"replications, ranks among L={self.num_rank_draws} thinned draws; chi-square "
            f"p-values: {p}; not converged: {self.num_not_converged} "
            f"({self.status_counts}), min bulk ESS < L: {self.num_low_ess} "
            f"(all kept in the test); prior draws redrawn (data out of float range): "
            f"{self.num_redrawn}"
        )

    @property
    def datatree(self) -> xr.DataTree:
        """Ranks as PIT values in a ``prior_sbc`` group (``chain`` = 1, ``draw`` =
        replication), the layout :func:`arviz_plots.plot_ecdf_pit` reads.

        PIT :math:`= (r + 1/2) / (L + 1)`, the centre of the rank's cell in :math:`[0, 1]`.
        """
        pit = (self.ranks.to_numpy(dtype=float) + 0.5) / (self.num_rank_draws + 1)
        ds = xr.Dataset(
            {n: (("chain", "draw"), pit[None, :, j]) for j, n in enumerate(self.ranks.columns)},
            coords={"chain": [0], "draw": np.arange(len(self.ranks))},
        )
        return xr.DataTree.from_dict({"prior_sbc": ds})

    def plot(self, **kwargs):
        """ECDF-difference plot of the ranks with simultaneous bands
        (:func:`arviz_plots.plot_ecdf_pit`); returns its PlotCollection."""
        import arviz_plots as azp

        kwargs.setdefault("backend", "matplotlib")
        return azp.plot_ecdf_pit(self.datatree, **kwargs)


def sbc(
    law: str | Path | Law,
    *,
    num_replications: int,
    design: Mapping[str, object] | None = None,
    seed: int = 0,
    likelihood: str = "student_t",
    noise: str = "constant",
    priors: Mapping[str, str] | None = None,
    num_rank_draws: int = 99,
    num_bins: int | None = None,
    num_chains: int = 2,
    num_warmup: int = 500,
    num_samples: int = 500,
    **fit_options,
) -> SBCResult:
    """Simulation-based calibration of a law's posterior (Talts et al. 2018).

    For each replication :math:`r = 1 \\dots R`:

    .. math::

        \\tilde\\theta_r \\sim p(\\theta), \\quad
        (\\tilde\\sigma_r, \\tilde\\nu_r) \\sim p(\\sigma)\\,p(\\nu), \\quad
        \\log \\tilde y_{ri} = \\log f(x_{ri}; \\tilde\\theta_r) + \\tilde\\sigma_r\\,
        \\varepsilon_{ri}, \\quad \\varepsilon_{ri} \\sim t_{\\tilde\\nu_r}
        \\;(\\text{or } \\mathcal N(0, 1))

    with the covariates :math:`x_{ri}` drawn log-uniformly over the law's typical design
    (:func:`bayescale.simulate.simulate`), i.e. the data come from exactly the model
    :func:`bayescale.fit` assumes.  All replications are fitted in one
    :func:`bayescale.fit_batch` call.  Of each fit's :math:`N` draws (chains concatenated),
    :math:`L` equally spaced ones are kept — a spacing of :math:`N/L` draws, at least the
    autocorrelation length when the fit's bulk ESS is :math:`\\ge L` (Talts et al.'s
    thinning; replications below are counted in :attr:`SBCResult.num_low_ess`) — and the
    rank :math:`r = \\#\\{\\ell : \\theta^{(\\ell)} < \\tilde\\theta\\}` is recorded per site.

    If the posterior is calibrated, each site's rank is uniform on :math:`\\{0..L\\}`.
    Uniformity is tested per site with Pearson's chi-square test on :math:`B` equal bins
    of ranks (:math:`B` a divisor of :math:`L+1`, at most 20, with at least 5 expected
    counts per bin): :math:`X^2 = \\sum_b (n_b - R/B)^2 / (R/B)` against
    :math:`\\chi^2_{B-1}`.  :meth:`SBCResult.passed` applies a Bonferroni correction for the
    number of sites.  A prior draw whose simulated data leave the float range (possible
    for the Student-t at :math:`\\nu < 1`) is replaced by the next one and counted in
    :attr:`SBCResult.num_redrawn`.  Replications that did not converge are kept in the
    test (dropping them would bias it) and counted in :attr:`SBCResult.num_not_converged`.

    Parameters
    ----------
    law : str, Path or Law
    num_replications : int
        :math:`R \\ge 10`.
    design : dict, optional
        Overrides of the law's ``[design]`` (covariate ranges, ``num_points``) as in
        :func:`~bayescale.simulate.simulate`; the noise scale is drawn from its prior, so a
        ``noise`` entry is rejected.
    seed : int
        Seeds the prior draws, the simulated data and the fits.
    likelihood : {"student_t", "normal"}
    noise : {"constant", "loglinear"}
        Noise model (:func:`bayescale.fit`); with ``"loglinear"`` the slopes
        :math:`\\gamma_c` are drawn from their prior too and each point's noise has the scale
        :math:`\\sigma(x_{ri})` of the replication's own design.
    priors : dict, optional
        Replacement priors (both for drawing and fitting).
    num_rank_draws : int
        :math:`L`.
    num_bins : int, optional
        :math:`B`; default as above.
    num_chains, num_warmup, num_samples, **fit_options
        Passed to :func:`bayescale.fit_batch`.

    Returns
    -------
    SBCResult
    """
    law = get_law(law, priors=priors)
    posterior = Posterior(law, with_noise(likelihood, noise))
    if isinstance(num_replications, bool) or not isinstance(num_replications, int | np.integer):
        raise ValueError(f"num_replications must be an integer, got {num_replications!r}")
    if num_replications < 10:
        raise ValueError(f"num_replications must be >= 10, got {num_replications}")
    design = dict(design or {})
    if "noise" in design:
        raise ValueError(
            "design['noise'] is not used by sbc: the noise scale sigma is drawn from its prior "
            f"({law.sigma_prior}), as the fitted model assumes"
        )
    num_draws = num_chains * num_samples
    if not 1 <= num_rank_draws <= num_draws:
        raise ValueError(
            f"num_rank_draws must lie in [1, num_chains * num_samples = {num_draws}], "
            f"got {num_rank_draws}"
        )
    bins = _num_bins(num_rank_draws, num_replications) if num_bins is None else int(num_bins)
    if bins < 2 or (num_rank_draws + 1) % bins:
        raise ValueError(
            f"num_bins must be >= 2 and divide num_rank_draws + 1 = {num_rank_draws + 1}, "
            f"got {bins}"
        )

    frame, truth, num_redrawn = _simulate_replications(
        law, posterior, num_replications, design, seed
    )
    batch = fit_batch(
        frame,
        law,
        by=REPLICATION,
        likelihood=posterior.likelihood,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        warn=False,
        **fit_options,
    )
    keep = np.linspace(0, num_draws - 1, num_rank_draws).round().astype(int)
    ranks = {}
    for name in posterior.site_names:
        draws = batch.datatree.posterior[name].values.reshape(num_replications, -1)[:, keep]
        ranks[name] = (draws < truth[name][:, None]).sum(axis=1)
    ranks = pd.DataFrame(ranks, index=pd.Index(range(num_replications), name=REPLICATION))
    tests = pd.DataFrame(
        [_chi2_uniform(ranks[n].to_numpy(), num_rank_draws, bins) for n in ranks.columns],
        index=pd.Index(ranks.columns, name="parameter"),
    )
    diagnostics = batch.diagnostics.join(
        pd.DataFrame({f"true_{k}": v for k, v in truth.items()}, index=batch.diagnostics.index)
    )
    return SBCResult(
        law, posterior.likelihood, ranks, num_rank_draws, tests, diagnostics, batch, num_redrawn
    )


def _simulate_replications(law: Law, posterior: Posterior, num: int, design: dict, seed: int):
    """Prior draws and data of ``num`` replications: ``(frame, truth, num_redrawn)``.

    The covariates come from :func:`~bayescale.simulate.simulate` at the exact law
    (``noise=0``); the noise of the fitted likelihood (Student-t or normal, with each
    replication's own sigma and nu) is added in log space by the same helper that draws
    the posterior predictive.  A draw whose responses leave the float range (a heavy
    Student-t tail at nu < 1) cannot be fitted; it is replaced by the next prior draw and
    counted.
    """
    spare = num // 10 + 10
    candidates = _prior_draws(posterior, num + spare, seed)
    rng = np.random.default_rng([seed, 1])
    frames, kept = [], []
    for c in range(num + spare):
        if len(kept) == num:
            break
        theta = {k: v[c] for k, v in candidates.items()}
        exact = simulate(
            law,
            params={k: theta[k] for k in law.parameter_names},
            design=design,
            noise=0.0,
            seed=[seed, c],
        )
        shape = (1, len(exact))
        values = {k: np.asarray(v)[None] for k, v in theta.items()}
        if posterior.noise_slopes:  # the scale at each simulated point (loglinear noise)
            log_x = {c: np.log(exact[c].to_numpy(dtype=float)) for c in law.covariates}
            sigma = posterior.point_sigma({k: v[..., None] for k, v in values.items()}, log_x)
            values["sigma"] = np.asarray(sigma).reshape(shape)
        noise = _noise(rng, posterior.likelihood, values, shape)
        with np.errstate(over="ignore"):
            y = exact[law.response].to_numpy() * np.exp(noise[0])
        if not np.all(np.isfinite(y) & (y > 0)):
            continue
        exact[law.response] = y
        exact.insert(0, REPLICATION, len(kept))
        frames.append(exact)
        kept.append(c)
    if len(kept) < num:
        raise ValueError(
            f"prior draws of law {law.id!r} give responses outside the float range in "
            f"{num + spare - len(kept)} of {num + spare} replications: its priors reach "
            "beyond what can be simulated"
        )
    truth = {k: v[kept] for k, v in candidates.items()}
    return pd.concat(frames, ignore_index=True), truth, kept[-1] + 1 - num


def _num_bins(num_rank_draws: int, num_replications: int) -> int:
    cells = num_rank_draws + 1
    limit = min(MAX_BINS, num_replications // MIN_EXPECTED_PER_BIN)
    divisors = [b for b in range(2, cells + 1) if cells % b == 0 and b <= limit]
    if not divisors:
        raise ValueError(
            f"no bin count B >= 2 divides L + 1 = {cells} with >= {MIN_EXPECTED_PER_BIN} "
            f"expected ranks per bin at {num_replications} replications; "
            "give num_bins or more replications"
        )
    return max(divisors)


def _chi2_uniform(ranks: np.ndarray, num_rank_draws: int, num_bins: int) -> dict:
    """Pearson's chi-square test of ranks uniform on {0..L} over ``num_bins`` equal bins."""
    from scipy import stats

    counts = np.bincount(ranks * num_bins // (num_rank_draws + 1), minlength=num_bins)
    chi2, p = stats.chisquare(counts)
    return {"chi2": float(chi2), "dof": num_bins - 1, "num_bins": num_bins, "p_value": float(p)}


# ============================================================================ baseline
def least_squares_fit(
    law: str | Path | Law,
    data: FitData,
    *,
    loss: str = "linear",
    f_scale: float = 1e-3,
    num_starts: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """Point fit of a law's parameters in log space (the classical baseline).

    Minimises :math:`\\sum_i \\rho(\\log y_i - \\log f(x_i; \\theta))` with
    :func:`scipy.optimize.least_squares` over the unconstrained parameters (log of the
    positive ones), from ``num_starts`` prior draws; the best optimum is returned.
    ``loss="linear"`` is ordinary least squares; ``loss="huber"`` with ``f_scale=1e-3`` is
    Hoffmann et al.'s Huber fit (:math:`\\delta = 10^{-3}`).

    Returns
    -------
    dict
        Parameter name -> fitted value (NaN if no start gave a finite optimum).
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import least_squares

    law = get_law(law)
    posterior = Posterior(law, "normal")
    names = law.parameter_names
    k = len(names)
    res_fn, jac_fn = _residual_functions(posterior)
    log_x = {c: np.asarray(v) for c, v in data.log_x.items()}
    log_y = np.asarray(data.log_y)
    starts = np.asarray(posterior.prior_draws(jax.random.key(seed), num_starts))[:, :k]
    best, best_cost = None, np.inf
    for z0 in starts:
        if not np.all(np.isfinite(np.asarray(res_fn(z0, log_x, log_y)))):
            continue
        try:
            out = least_squares(
                lambda z: np.asarray(res_fn(z, log_x, log_y)),
                z0,
                jac=lambda z: np.asarray(jac_fn(z, log_x, log_y)),
                loss=loss,
                f_scale=f_scale,
                method="trf",
            )
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(out.cost) and out.cost < best_cost:
            best, best_cost = out.x, out.cost
    if best is None:
        return {n: math.nan for n in names}
    values = posterior.constrain(jnp.concatenate([jnp.asarray(best), jnp.zeros(posterior.dim - k)]))
    return {n: float(values[n]) for n in names}


_RESIDUALS: dict = {}


def _residual_functions(posterior: Posterior):
    """Jitted log-space residual and its Jacobian in the unconstrained law parameters."""
    import jax
    import jax.numpy as jnp

    key = json.dumps(posterior.law.to_spec(), sort_keys=True, default=str)
    if key not in _RESIDUALS:
        names = posterior.law.parameter_names
        k = len(names)

        def residual(z, log_x, log_y):
            values = posterior.constrain(jnp.concatenate([z, jnp.zeros(posterior.dim - k)]))
            return posterior.law.log_mean({n: values[n] for n in names}, log_x) - log_y

        _RESIDUALS[key] = (jax.jit(residual), jax.jit(jax.jacfwd(residual)))
    return _RESIDUALS[key]


# ============================================================================ backtest
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
        quantiles ``q5 q25 q50 q75 q95``, ``median`` (of the law), ``baseline``.
    batch : BatchResult
        The Bayesian fits of the early parts (with ``pooled=``: the pools' fits joined along
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
    batch: BatchResult = field(repr=False)
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

    def with_law_error(
        self, method: str = "curves", *, bias: bool = False, by: str | Sequence[str] | None = None
    ) -> BacktestResult:
        """The same fits, their held-out bands widened by a law error learnt out of sample.

        Each held-out point's predictive draws get an independent
        :math:`\\tau\\,d(x)\\,z` in log response (``law_error`` of
        :meth:`bayescale.result.FitResult.predict`), :math:`d(x)` the decades beyond the
        curve's fitted range, so :math:`\\sigma(x)^2 = \\sigma_0^2 + \\tau^2 d(x)^2`.
        :math:`\\tau` is estimated by :func:`law_error_scale` from errors that never include
        the curve's own held-out points:

        * ``"curves"`` (leave one curve out): from the held-out points of the *other*
          curves (needs >= 3 curves; with ``by``, >= 3 per group);
        * ``"in_range"``: from a backtest inside the fitted range — every curve's fitted
          points split in halves (by the split covariate), the first half fitted (one more
          :func:`bayescale.fit_batch` call), the second predicted — pooled over curves; uses
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

        Returns
        -------
        BacktestResult

        Raises
        ------
        ValueError
            An unknown ``method``, ``bias`` not a bool, ``bias`` or ``by`` with
            ``"in_range"``, too few curves (in a group), or a backtest whose bands already
            carry a law error.
        DataError
            ``by`` names a missing column or one that varies within a curve.
        """
        _check_law_error_options(method, bias, by, names=("method", "bias", "by"))
        if self.law_error is not None:
            raise ValueError(
                "this backtest's bands already carry a law error: call with_law_error on the "
                "backtest without one (backtest(..., law_error=None))"
            )
        ctx = self._context
        curves = [c for c in self.table.index if c != "overall"]
        if method == "in_range":
            tau = _tau_of(_finite_bands(_in_range_backtest(ctx).predictions))
            taus = pd.Series(dict.fromkeys(curves, tau), name="law_error")
            taus.index.name = "curve"
            table, pred = _predict_and_score(self.batch, ctx, taus)
            return dataclasses.replace(self, table=table, predictions=pred, law_error=taus)
        groups = _curve_groups(ctx["held"], ctx["held_keys"], by, argument="by")
        if groups is None:
            groups = pd.Series("all", index=pd.Index(curves))
        _check_enough_curves(groups.reindex(curves), by, argument="by")
        pred = _finite_bands(self.predictions)
        taus, rows = {}, {}
        for label in curves:
            others = pred[(pred["curve"] != label) & (pred["curve"].map(groups) == groups[label])]
            if not bias:
                taus[label] = _tau_of(others)
                continue
            e, d = _log_errors(others), others["distance"].to_numpy(dtype=float)
            mu, se = _bias_and_se(e, d, others["curve"].to_numpy())
            tau = law_error_scale(
                e - mu * d, _band_variance(others), d, bias_curves=others["curve"].to_numpy()
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
        table, pred = _predict_and_score(self.batch, ctx, taus, biases)
        return dataclasses.replace(
            self, table=table, predictions=pred, law_error=taus, law_bias=biases
        )


def _check_law_error_options(method, bias, by, *, names: tuple[str, str, str]) -> None:
    """Eager checks of the law-error options; ``names``: what the caller calls ``method``,
    ``bias``, ``by`` (``backtest``: law_error, law_bias, law_error_by)."""
    if not isinstance(bias, bool | np.bool_):
        raise ValueError(f"{names[1]} must be True or False, got {bias!r}")
    if method is None:
        if bias or by is not None:
            option = f"{names[1]}=True" if bias else f"{names[2]}={by!r}"
            raise ValueError(f"{option} is an option of the law error: give law_error='curves'")
        return
    if method not in LAW_ERROR_METHODS:
        raise ValueError(
            f"{names[0]} must be one of {', '.join(map(repr, LAW_ERROR_METHODS))}, got {method!r}"
        )
    if method != "curves" and (bias or by is not None):
        option = f"{names[1]}=True" if bias else f"{names[2]}={by!r}"
        raise ValueError(
            f"{option} learns from the other curves' held-out errors: it needs "
            f"{names[0]}='curves', got {method!r}"
        )


def _check_enough_curves(groups: pd.Series, by, *, argument: str) -> None:
    """``law_error="curves"`` learns a curve's law error from the other curves of its group
    (``groups``: each curve's group label; ``by``: what the caller grouped by, as given in
    ``argument``): every group needs ``MIN_OTHER_CURVES + 1`` curves."""
    sizes = groups.value_counts()
    if (sizes < MIN_OTHER_CURVES + 1).any():
        where = (
            "" if by is None else f" of each group of {argument}={by!r} (group {sizes.idxmin()!r})"
        )
        raise ValueError(
            f"law_error='curves' learns tau from the other curves: needs at least "
            f"{MIN_OTHER_CURVES + 1} curves{where}, this backtest has {sizes.min()}; use "
            "law_error='in_range'" + ("" if by is None else f" or a coarser {argument}=")
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


def backtest(
    data,
    law: str | Path | Law,
    *,
    by: str | Sequence[str] | None,
    split: float | Mapping[str, float] = 0.2,
    on: str | None = None,
    columns: Mapping[str, str] | None = None,
    baseline: str = "least_squares",
    likelihood: str = "student_t",
    noise: str = "constant",
    priors: Mapping[str, str] | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    law_error: str | None = None,
    law_bias: bool = False,
    law_error_by: str | Sequence[str] | None = None,
    pooled: Sequence[str] | None = None,
    pool_by: str | Sequence[str] | None = None,
    **fit_options,
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

    The early parts are fitted in one :func:`bayescale.fit_batch` call.  At each held-out
    point :math:`x_j` the posterior predictive of a new observation gives the central 50%
    and 90% intervals, and the posterior median of the law
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
    likelihood, noise, priors, num_chains, num_warmup, num_samples, seed, **fit_options
        Passed to :func:`bayescale.fit_batch` (with ``pooled``: to each pool's
        :func:`bayescale.fit`), e.g. ``target_accept_prob`` (keyword, in (0, 1); default
        0.8, and 0.99 for the pooled fits as in :func:`bayescale.fit`; recorded in
        ``.batch.datatree.attrs``): a higher NUTS acceptance target takes smaller steps, the
        remedy for fits flagged by a few divergences (as PolyPythia's pooled-alpha fits are
        at 0.8 and 0.95).  With ``noise="loglinear"`` the
        predictive intervals at held-out points use the noise scale :math:`\\sigma(x)`
        extrapolated there (covariates standardised by the fitted points).
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
    pooled : list of str, optional
        Fit the curves of a pool together, these law parameters drawn from a population
        across the pool's curves (:func:`bayescale.fit` with ``group=``, ``pooled=``;
        :class:`~bayescale.model.PooledPosterior`): for curve :math:`g` of a pool,
        :math:`z_{p,g} \\sim \\mathcal N(\\mu_p, \\tau_p)` on the unconstrained scale, every
        other parameter per curve.  Only the early part of every curve enters the pooled
        fit (no held-out point of any curve); each curve is then scored on its own held-out
        points exactly as without pooling.  ``None`` (default): independent fits
        (:func:`bayescale.fit_batch`).
    pool_by : str or list of str, optional
        Column(s), constant within a curve, whose values form the pools, e.g. ``"model"``:
        each model size's seeds pooled, sizes fitted separately (one NUTS run per pool).
        ``None`` with ``pooled``: all curves one pool.  Each pool needs >= 2 curves.  With
        pooling the result also carries a *pooled least-squares* baseline (one parameter
        vector per pool, fitted to the early parts of all its curves by
        :func:`least_squares_fit`): ``pooled_baseline`` in the predictions,
        ``pooled_baseline_rmse_log`` / ``pooled_baseline_final_error_log`` in the table.

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
    law = get_law(law, priors=priors)
    if baseline not in ("least_squares", "huber"):
        raise ValueError(f"baseline must be 'least_squares' or 'huber', got {baseline!r}")
    frame = _as_frame(data).reset_index(drop=True)
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
    _check_law_error_options(
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
    pools = _pools(frame, keys, law, pooled, pool_by)
    groups = _curve_groups(frame, keys, law_error_by, argument="law_error_by")
    if groups is not None:  # before any fit
        _check_enough_curves(groups, law_error_by, argument="law_error_by")
    fit_frame, held = frame[early], frame[~early]
    by_arg = by_cols[0] if len(by_cols) == 1 else by_cols
    settings = dict(
        columns=columns,
        likelihood=likelihood,
        noise=noise,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        **fit_options,
    )
    if pools is None:
        batch = fit_batch(fit_frame, law, by=by_arg, warn=False, **settings)
    else:
        batch = _fit_pools(fit_frame, keys[early], pools[early], law, by_arg, pooled, settings)

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
        "pooling": {"pooled": pooled, "pool_by": pool_by},
    }
    table, pred = _predict_and_score(batch, context, None)
    result = BacktestResult(table, pred, batch, baseline_table, _context=context)
    if law_error is None:
        return result
    return result.with_law_error(law_error, bias=law_bias, by=law_error_by)


def _pools(frame, keys, law, pooled, pool_by) -> pd.Series | None:
    """Each row's pool label (``None`` without pooling), validated: ``pooled`` names law
    parameters, ``pool_by`` columns exist and are constant within a curve, every pool has
    >= 2 curves."""
    if pooled is None:
        if pool_by is not None:
            raise ValueError("pool_by= groups curves for pooling: give pooled= too")
        return None
    pooled = [pooled] if isinstance(pooled, str) else list(pooled)
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


def _fit_pools(fit_frame, fit_keys, fit_pools, law, by, pooled, settings) -> BatchResult:
    """One pooled NUTS fit (:func:`bayescale.fit` with ``group=``, ``pooled=``) of the early
    parts of each pool's curves, the pools' results joined into one :class:`BatchResult`
    whose fit dimension and labels are those :func:`bayescale.fit_batch` gives for ``by``.

    The population draws ``<p>_pop``, ``<p>_pop_sd`` of a pool are repeated for each of its
    curves; ``attrs["population_diagnostics"]`` is keyed by pool.
    """
    by_cols = [by] if isinstance(by, str) else list(by)
    dim = "_".join(by_cols)
    parts, diagnostics, reasons = [], {}, {}
    for value, rows in fit_frame.groupby(fit_pools, sort=True):
        rows = rows.drop(columns=by_cols).assign(**{dim: fit_keys[rows.index].to_numpy()})
        part = fit(rows, law, group=dim, pooled=list(pooled), warn=False, **settings)
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
    return BatchResult(tree, law, first.likelihood, first.columns, by)


def _predict_and_score(
    batch: BatchResult, ctx: dict, taus: pd.Series | None, biases: pd.DataFrame | None = None
):
    """Predictive quantiles, law median, baseline and extrapolation distance at the held-out
    points (each curve's law error ``taus[curve]``, none when ``taus`` is None; with
    ``biases``, quantiles and median times exp(bias * d) and the baseline, as
    ``debiased_baseline``, times exp(baseline_bias * d)); the table."""
    law, held, by_cols = ctx["law"], ctx["held"], ctx["by_cols"]
    columns = ctx["settings"]["columns"] or {}
    seed = ctx["settings"]["seed"]
    cov_cols = [columns.get(c, c) for c in law.covariates]
    keys = ctx["held_keys"]
    tau = pd.Series(0.0, index=held.index) if taus is None else keys.map(taus).astype(float)
    quantiles = ("q5", "q25", "q50", "q75", "q95")
    obs = pd.DataFrame(index=held.index, columns=list(quantiles), dtype=float)
    for value, rows in held.groupby(tau, sort=True):  # one evaluation per law-error value
        out = batch.predict(
            rows[[*by_cols, *cov_cols]],
            quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
            kind="observation",
            seed=seed,
            law_error=value,
        )
        obs.loc[rows.index] = out[list(quantiles)].to_numpy()
    mean = batch.predict(held[[*by_cols, *cov_cols]], quantiles=(0.5,), kind="mean", seed=seed)
    distance = pd.Series(np.nan, index=held.index)
    fit_frame, fit_keys = ctx["fit_frame"], ctx["fit_keys"]
    for label, rows in held.groupby(keys, sort=True):
        fitted = fit_frame[fit_keys == label]
        log_x = {c: np.log(rows[c].to_numpy(dtype=float)) for c in cov_cols}
        fitted_log_x = {c: np.log(fitted[c].to_numpy(dtype=float)) for c in cov_cols}
        distance.loc[rows.index] = _extrapolation_distance(log_x, fitted_log_x)
    pred = held[list(dict.fromkeys([*by_cols, *cov_cols, ctx["x_col"]]))].assign(
        **{q: obs[q].to_numpy(dtype=float) for q in quantiles},
        curve=keys.to_numpy(),
        observed=held[columns.get(law.response, law.response)].to_numpy(dtype=float),
        median=mean["q50"].to_numpy(),
        baseline=held["_baseline"].to_numpy(),
        distance=distance.to_numpy(),
    )
    if "_pooled_baseline" in held:
        pred["pooled_baseline"] = held["_pooled_baseline"].to_numpy()
    pred = pred.reset_index(drop=True)
    if biases is not None:
        d = pred["distance"].to_numpy(dtype=float)
        shift = np.exp(pred["curve"].map(biases["bias"]).to_numpy(dtype=float) * d)
        for q in (*quantiles, "median"):
            pred[q] = pred[q].to_numpy(dtype=float) * shift
        base_mu = pred["curve"].map(biases["baseline_bias"]).to_numpy(dtype=float)
        pred["debiased_baseline"] = pred["baseline"].to_numpy(dtype=float) * np.exp(base_mu * d)
    status = pd.Series(batch.status.to_numpy(), index=[str(label) for label in batch.status.index])
    table = _score(pred, x_col=ctx["x_col"], fit_counts=ctx["fit_counts"], status=status)
    return table, pred


def _in_range_backtest(ctx: dict) -> BacktestResult:
    """Backtest inside the fitted range: per curve, fit the first half of the fitted points
    (in the split covariate) and predict the second half."""
    fit_frame = ctx["fit_frame"]
    x = pd.to_numeric(fit_frame[ctx["x_col"]])
    rank = x.groupby(ctx["fit_keys"]).rank(method="first")
    count = x.groupby(ctx["fit_keys"]).transform("size")
    inner = fit_frame.assign(_half=rank / count)
    return backtest(
        inner,
        ctx["law"],
        by=ctx["by"],
        split=0.5,
        on="_half",
        baseline=ctx["baseline"],
        progress_bar=False,
        **ctx.get("pooling", {}),
        **{k: v for k, v in ctx["settings"].items() if k != "progress_bar"},
    )


def _finite_bands(pred: pd.DataFrame) -> pd.DataFrame:
    """The held-out points whose 90% band is finite and positive (a draw beyond the float
    range, possible under wide priors, leaves a band that says nothing about tau)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(pred[["q5", "q50", "q95"]].to_numpy(dtype=float))
    ok = np.isfinite(log_q).all(axis=1)
    return pred[ok]


def _tau_of(pred: pd.DataFrame) -> float:
    return law_error_scale(_log_errors(pred), _band_variance(pred), pred["distance"])


def _log_errors(pred: pd.DataFrame) -> np.ndarray:
    """:math:`e = \\log y - \\log \\hat y`, the observed against the predictive median."""
    return np.log(pred["observed"].to_numpy()) - np.log(pred["q50"].to_numpy())


def _band_variance(pred: pd.DataFrame) -> np.ndarray:
    """Normal-equivalent variance of each predictive band: ((log q95 - log q5) / 3.29)^2."""
    return (np.log(pred["q95"] / pred["q5"]).to_numpy() / (2 * _Z90)) ** 2


def law_error_bias(errors, distances) -> float:
    """Least-squares estimate of the extrapolation bias :math:`\\mu` per decade.

    Model: a held-out log error :math:`e_i` (observed minus predictive median) at
    :math:`d_i` decades beyond the fitted range has a mean growing with the distance,

    .. math:: e_i = \\mu\\,d_i + \\tau\\,d_i\\,z_i + \\varepsilon_i, \\qquad
        \\mathrm E[z_i] = \\mathrm E[\\varepsilon_i] = 0,

    (the first moment of the law error whose second moment :func:`law_error_scale`
    estimates).  Least squares through the origin:

    .. math:: \\hat\\mu = \\frac{\\sum_i d_i\\,e_i}{\\sum_i d_i^2},

    unbiased for any correlation of the :math:`z_i` (e.g. one :math:`z` per curve), since
    :math:`\\mathrm E[\\hat\\mu] = \\mu \\sum_i d_i^2 / \\sum_i d_i^2`.  Points at
    :math:`d_i = 0` carry no information on :math:`\\mu`.

    Parameters
    ----------
    errors, distances : array-like
        :math:`e_i`, :math:`d_i \\ge 0`.

    Returns
    -------
    float
        :math:`\\hat\\mu` (log response per decade; positive: the observations lie above the
        extrapolation).

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values, negative distances, or no point beyond the
        fitted range.
    """
    e, d = (np.asarray(a, dtype=float).ravel() for a in (errors, distances))
    if len(e) != len(d):
        raise ValueError(
            f"errors, distances must have one value per point; got lengths {len(e)}, {len(d)}"
        )
    if not np.all(np.isfinite(e) & np.isfinite(d)):
        raise ValueError("errors and distances must be finite")
    if np.any(d < 0):
        raise ValueError("distances must be >= 0")
    if not np.any(d > 0):
        raise ValueError("no point lies beyond the fitted range (all distances 0): mu is unknown")
    return float(np.sum(d * e) / np.sum(d**2))


def _bias_and_se(errors, distances, curves) -> tuple[float, float]:
    """:func:`law_error_bias` and its cluster-robust standard error over curves.

    With :math:`r_i = e_i - \\hat\\mu d_i`, :math:`m` curves :math:`c` and
    :math:`S = \\sum_i d_i^2`: :math:`\\widehat{\\mathrm{Var}}(\\hat\\mu) =
    \\frac{m}{m-1} \\sum_c \\bigl(\\sum_{i \\in c} d_i r_i\\bigr)^2 / S^2` (errors correlated
    within a curve, independent between curves; the factor m/(m-1) the usual small-sample
    correction).
    """
    e = np.asarray(errors, dtype=float)
    d = np.asarray(distances, dtype=float)
    mu = law_error_bias(e, d)
    score = pd.Series(d * (e - mu * d)).groupby(np.asarray(curves)).sum()
    m = len(score)
    if m < 2:
        raise ValueError(f"the bias's standard error needs >= 2 curves, got {m}")
    var = m / (m - 1) * float(np.sum(score.to_numpy() ** 2)) / float(np.sum(d**2)) ** 2
    return mu, math.sqrt(var)


def law_error_scale(errors, variances, distances, *, bias_curves=None) -> float:
    """Method-of-moments estimate of the law-error scale :math:`\\tau` per decade.

    Model: a held-out log error :math:`e_i` (observed minus predictive median) at
    :math:`d_i` decades beyond the fitted range has

    .. math:: \\mathrm E[e_i^2] = v_i + \\tau^2 d_i^2,

    :math:`v_i` the variance the predictive band already carries (posterior and noise).
    Least squares of :math:`e_i^2 - v_i` on :math:`d_i^2` through the origin:

    .. math:: \\hat\\tau^2 = \\max\\Bigl(0,\\;
        \\frac{\\sum_i d_i^2 (e_i^2 - v_i)}{\\sum_i d_i^4}\\Bigr).

    **After a fitted bias** (``bias_curves``): the errors are residuals
    :math:`r_i = e_i - \\hat\\mu d_i`, :math:`\\hat\\mu` fitted by
    :func:`law_error_bias` to these same points, under its model
    :math:`e_i = \\mu d_i + \\tau d_i z_{c(i)} + \\varepsilon_i` with one
    :math:`z_c \\sim (0, 1)` per curve :math:`c` (the law error shared by a curve's points,
    independent between curves) and independent :math:`\\varepsilon_i \\sim (0, v_i)`.
    The fit of :math:`\\hat\\mu` absorbs part of the variance, so the plain statistic is
    biased low (by about :math:`\\tau^2/m` with :math:`m` alike curves, since the shared
    :math:`z_c` average over curves, not points).  With :math:`r = (I - H)\\,e`,
    :math:`H = d d^\\top / S`, :math:`S = \\sum_i d_i^2`, :math:`S_c = \\sum_{i \\in c} d_i^2`
    and :math:`Q = \\sum_c S_c^2`, the expectation of :math:`\\sum_i d_i^2 r_i^2` is linear in
    :math:`\\tau^2`:

    .. math:: \\mathrm E\\Bigl[\\sum_i d_i^2 r_i^2\\Bigr] = \\tau^2 a + b, \\quad
        a = \\sum_i d_i^4 \\Bigl(1 - \\frac{2 S_{c(i)}}{S} + \\frac{Q}{S^2}\\Bigr), \\quad
        b = \\sum_i d_i^2 v_i - \\frac{2}{S} \\sum_i d_i^4 v_i
            + \\frac{1}{S^2} \\sum_i d_i^4 \\sum_j d_j^2 v_j

    (the diagonal of :math:`(I - H)\\,\\mathrm{Cov}(e)\\,(I - H)`,
    :math:`\\mathrm{Cov}(e)_{ij} = \\tau^2 d_i d_j [c(i) = c(j)] + v_i [i = j]`), and
    :math:`\\hat\\tau^2 = \\max(0, (\\sum_i d_i^2 r_i^2 - b) / a)` is unbiased before the
    clip.  Without the fit (:math:`H = 0`) this is the plain estimate; for :math:`m` curves of
    the same design :math:`a = (1 - 1/m) \\sum_i d_i^4`, the cluster-level
    degrees-of-freedom factor :math:`m / (m - 1)` on the law-error part (the small-sample
    factor of the bias's cluster-robust standard error), here exact for curves of unequal
    lengths and distances too.  The leverage is a curve's, not a point's: with the :math:`z`
    independent per point the fit would absorb only about one point's share, :math:`\\tau^2/n`
    with :math:`n` points.  :math:`a > 0` (as :math:`Q/S^2 \\ge (S_c/S)^2`) needs >= 2
    curves beyond the fitted range.

    Parameters
    ----------
    errors, variances, distances : array-like
        :math:`e_i` (or, with ``bias_curves``, the residuals :math:`r_i`),
        :math:`v_i \\ge 0`, :math:`d_i \\ge 0` (points with :math:`d_i = 0` carry no
        information on :math:`\\tau`).
    bias_curves : array-like, optional
        Each point's curve, given when the errors are residuals after
        :func:`law_error_bias` was fitted to these same points: the estimate then corrects
        for what that fit absorbed (above).  ``None`` (default): no bias was fitted.

    Returns
    -------
    float
        :math:`\\hat\\tau \\ge 0`.

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values, no point beyond the fitted range, or (with
        ``bias_curves``) fewer than 2 curves beyond it.
    """
    e, v, d = (np.asarray(a, dtype=float).ravel() for a in (errors, variances, distances))
    if not (len(e) == len(v) == len(d)):
        raise ValueError(
            f"errors, variances, distances must have one value per point; got lengths "
            f"{len(e)}, {len(v)}, {len(d)}"
        )
    if not np.all(np.isfinite(e) & np.isfinite(v) & np.isfinite(d)):
        raise ValueError("errors, variances and distances must be finite")
    if np.any(v < 0) or np.any(d < 0):
        raise ValueError("variances and distances must be >= 0")
    d2 = d**2
    if not np.any(d2 > 0):
        raise ValueError("no point lies beyond the fitted range (all distances 0): tau is unknown")
    if bias_curves is None:
        tau2 = np.sum(d2 * (e**2 - v)) / np.sum(d2**2)
        return float(math.sqrt(max(tau2, 0.0)))
    curves = np.asarray(bias_curves).ravel()
    if len(curves) != len(e):
        raise ValueError(
            f"bias_curves must have one value per point; got length {len(curves)}, {len(e)} errors"
        )
    per_curve = pd.Series(d2).groupby(curves).sum()
    if (per_curve > 0).sum() < 2:
        raise ValueError(
            "tau after a fitted bias needs >= 2 curves beyond the fitted range, got "
            f"{int((per_curve > 0).sum())}"
        )
    s = float(np.sum(d2))
    share = per_curve.reindex(curves).to_numpy() / s  # S_c(i) / S
    q = float(np.sum((per_curve.to_numpy() / s) ** 2))  # Q / S^2
    a = float(np.sum(d2**2 * (1 - 2 * share + q)))
    b = float(np.sum(d2 * v) - 2 * np.sum(d2**2 * v) / s + np.sum(d2**2) * np.sum(d2 * v) / s**2)
    tau2 = (float(np.sum(d2 * e**2)) - b) / a
    return float(math.sqrt(max(tau2, 0.0)))


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


def _score(
    pred: pd.DataFrame, *, x_col: str, fit_counts: pd.Series, status: pd.Series
) -> pd.DataFrame:
    log_obs = np.log(pred["observed"])
    pred = pred.assign(
        in_50=(pred["q25"] <= pred["observed"]) & (pred["observed"] <= pred["q75"]),
        in_90=(pred["q5"] <= pred["observed"]) & (pred["observed"] <= pred["q95"]),
        err=np.log(pred["median"]) - log_obs,
        base_err=np.log(pred["baseline"]) - log_obs,
    )
    extra = [b for b in ("pooled_baseline", "debiased_baseline") if b in pred]
    for b in extra:
        pred[f"{b}_err"] = np.log(pred[b]) - log_obs
    rows = {}
    for label, g in pred.groupby("curve", sort=True):
        last = g.loc[g[x_col].idxmax()]
        rows[label] = {
            "num_fit": int(fit_counts.get(label, 0)),
            "num_held_out": len(g),
            "coverage_50": float(g["in_50"].mean()),
            "coverage_90": float(g["in_90"].mean()),
            "final_in_50": bool(last["in_50"]),
            "final_in_90": bool(last["in_90"]),
            "rmse_log": float(np.sqrt(np.mean(g["err"] ** 2))),
            "baseline_rmse_log": float(np.sqrt(np.mean(g["base_err"] ** 2))),
            "final_error_log": float(last["err"]),
            "baseline_final_error_log": float(last["base_err"]),
            "status": str(status.get(str(label), "")),
        }
        for b in extra:
            rows[label][f"{b}_rmse_log"] = float(np.sqrt(np.mean(g[f"{b}_err"] ** 2)))
            rows[label][f"{b}_final_error_log"] = float(last[f"{b}_err"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "curve"
    table = table.astype({"final_in_50": object, "final_in_90": object})
    num_converged = int((table["status"] == Status.converged.value).sum())
    overall = {
        "num_fit": int(table["num_fit"].sum()),
        "num_held_out": int(table["num_held_out"].sum()),
        "coverage_50": float(pred["in_50"].mean()),
        "coverage_90": float(pred["in_90"].mean()),
        "final_in_50": float(table["final_in_50"].mean()),
        "final_in_90": float(table["final_in_90"].mean()),
        "rmse_log": float(np.sqrt(np.mean(pred["err"] ** 2))),
        "baseline_rmse_log": float(np.sqrt(np.mean(pred["base_err"] ** 2))),
        "final_error_log": float(np.sqrt(np.mean(table["final_error_log"] ** 2))),
        "baseline_final_error_log": float(np.sqrt(np.mean(table["baseline_final_error_log"] ** 2))),
        "status": f"{num_converged}/{len(table)} converged",
    }
    for b in extra:
        overall[f"{b}_rmse_log"] = float(np.sqrt(np.mean(pred[f"{b}_err"] ** 2)))
        overall[f"{b}_final_error_log"] = float(
            np.sqrt(np.mean(table[f"{b}_final_error_log"] ** 2))
        )
    table.loc["overall"] = pd.Series(overall)
    return table
