"""Simulation-based calibration (Talts et al. 2018) of the Bayesian fits.

Parameters are drawn from the prior, data simulated from the same observation model the fit
assumes, every replication fitted in one :func:`bayescale.fit` call (``by=``), and the rank of
each true value among (thinned) posterior draws tested for uniformity.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.api import fit, resolve_options
from bayescale.data import DataWarning
from bayescale.laws import Law, get_law
from bayescale.model import Posterior, decades_from_first, delta_draws, scales
from bayescale.options import MAP, NUTS, Laplace, Model
from bayescale.precision import float64
from bayescale.predict import noise_draws, prior_draws
from bayescale.result import Result, Status
from bayescale.simulate import simulate

__all__ = ["SBCResult", "chi2_uniform", "sbc"]

REPLICATION = "replication"
#: Expected count per bin of the chi-square test at least this large (Cochran's rule).
MIN_EXPECTED_PER_BIN = 5
MAX_BINS = 20
#: The fits of :func:`sbc` unless ``inference=`` says otherwise.
SBC_INFERENCE = NUTS(num_chains=2, num_warmup=500, num_samples=500)


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
        :attr:`Result.diagnostics`) and the true values drawn from the prior.
    batch : Result
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
    batch: Result = field(repr=False)
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


@float64
def sbc(
    law: str | Path | Law,
    *,
    num_replications: int,
    design: Mapping[str, object] | None = None,
    seed: int = 0,
    model: Model | None = None,
    inference: NUTS | MAP | Laplace | None = None,
    num_rank_draws: int = 99,
    num_bins: int | None = None,
    **deprecated,
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
    :func:`bayescale.fit` call (``by=``).  Of each fit's :math:`N` draws (chains concatenated),
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
    model : Model, optional
        The model both simulated from and fitted (default ``Model()``): its likelihood
        (``"student_t"``, ``"student_t(nu)"`` or ``"normal"``), its priors, and its noise
        model: with ``noise="loglinear"`` the slopes :math:`\\gamma_c` are drawn from their
        prior too and each point's noise has the scale :math:`\\sigma(x_{ri})` of the
        replication's own design; under its discrepancy (the default's ``"ou_rw"``, laws of
        one covariate) its sites ``delta_r``, ``delta_w`` are drawn from their hyperpriors
        and :math:`\\delta` from its prior along the design's points, added to the log mean.
    inference : NUTS, MAP or Laplace, optional
        The fits (default :data:`SBC_INFERENCE`, ``NUTS(num_chains=2, num_warmup=500,
        num_samples=500)``).
    num_rank_draws : int
        :math:`L \\le` the draws per fit (chains times samples).
    num_bins : int, optional
        :math:`B`; default as above.
    **deprecated : bayescale 0.1's fit keywords, warning (:func:`bayescale.api.resolve_options`)

    Returns
    -------
    SBCResult

    Raises
    ------
    ValueError
        Too few replications, ``design["noise"]``, an impossible ``num_rank_draws`` or
        ``num_bins``.
    """
    model, inference = resolve_options(
        "sbc", model, inference, deprecated, defaults=(Model(), SBC_INFERENCE)
    )
    law = get_law(law, priors=model.priors)
    design = dict(design or {})
    ranges = {**law.design, **design}  # one unit for every replication: where the design begins
    law = law.with_data_scales([{c: np.log(ranges[c][:1]) for c in law.covariates if c in ranges}])
    posterior = Posterior(law, model.observation_for(law))
    if isinstance(num_replications, bool) or not isinstance(num_replications, int | np.integer):
        raise ValueError(f"num_replications must be an integer, got {num_replications!r}")
    if num_replications < 10:
        raise ValueError(f"num_replications must be >= 10, got {num_replications}")
    if "noise" in design:
        raise ValueError(
            "design['noise'] is not used by sbc: the noise scale sigma is drawn from its prior "
            f"({law.sigma_prior}), as the fitted model assumes"
        )
    num_draws = getattr(inference, "num_chains", 1) * getattr(inference, "num_samples", 1)
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
    with warnings.catch_warnings():
        # replications drawn from the prior may span many decades by design
        warnings.simplefilter("ignore", DataWarning)
        batch = fit(
            frame, law, by=REPLICATION, model=model, inference=inference, seed=seed, warn=False
        )
    keep = np.linspace(0, num_draws - 1, num_rank_draws).round().astype(int)
    ranks = {}
    for name in posterior.site_names:
        draws = batch.group("posterior")[name].values.reshape(num_replications, -1)[:, keep]
        ranks[name] = (draws < truth[name][:, None]).sum(axis=1)
    ranks = pd.DataFrame(ranks, index=pd.Index(range(num_replications), name=REPLICATION))
    tests = pd.DataFrame(
        [chi2_uniform(ranks[n].to_numpy(), num_rank_draws, bins) for n in ranks.columns],
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
    candidates = prior_draws(posterior, num + spare, seed)
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
        noise = noise_draws(rng, posterior.likelihood, values, shape)
        if posterior.discrepancy:  # the law's own error, from its prior (the full model)
            (lx,) = (np.log(exact[cv].to_numpy(dtype=float)) for cv in law.covariates)
            u = decades_from_first(lx)
            noise = noise + delta_draws(rng, u, *scales(theta["delta_r"], theta["delta_w"]))[None]
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


def chi2_uniform(ranks: np.ndarray, num_rank_draws: int, num_bins: int) -> dict:
    """Pearson's chi-square test of ranks uniform on {0..L} over ``num_bins`` equal bins."""
    from scipy import stats

    counts = np.bincount(ranks * num_bins // (num_rank_draws + 1), minlength=num_bins)
    chi2, p = stats.chisquare(counts)
    return {"chi2": float(chi2), "dof": num_bins - 1, "num_bins": num_bins, "p_value": float(p)}
