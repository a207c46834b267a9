"""Calibration checks (issue 7): simulation-based calibration and extrapolation backtests."""

import dataclasses
import json
import math
import os
import re

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import scaled
from scipy import stats

import bayescale
from bayescale import check, datasets
from bayescale.check import backtest, least_squares_fit, sbc
from bayescale.check.law_error import bias_and_se
from bayescale.check.sbc import chi2_uniform
from bayescale.data import DataError, prepare
from bayescale.laws import catalogue, get_law
from bayescale.model import Posterior, noise_model, with_noise
from bayescale.options import POOLED_TARGET_ACCEPT_PROB
from bayescale.simulate import simulate

# ------------------------------------------------------------------------- SBC
# Every catalogue law with >= 200 replications under BAYESCALE_FULL=1 (4 chains x 500 + 500:
# at 2 x 300 most replications were flagged high_rhat, at 4 x 500 ~96% converge; the
# non-converged are kept in the test and counted in the report); by default (CI) the cheapest
# law (two parameters + sigma + nu, and the discrepancy's delta_r, delta_w) with 30
# replications (5 bins of 20 ranks, 6 expected per bin: a gross miscalibration still fails
# it).  The model is the default one, the discrepancy on for every one-covariate law (the data
# simulated from it, delta drawn from its prior).  All sites of all laws tested are judged
# together: Bonferroni over laws x sites, each p-value > 0.01 / (number of (law, site) tests).
# BAYESCALE_SBC_LAWS=law1,law2 runs only those laws' fixtures (e.g. a law added to the
# catalogue) with the same statistics: the Bonferroni denominator stays the number of
# (law, site) tests over ALL the mode's laws, so each law is judged exactly as in the full run.
# Names must be catalogue laws that the mode runs (all under BAYESCALE_FULL=1, else kaplan_n).
SBC_ALL_LAWS = scaled(sorted(catalogue()), ["kaplan_n"])


def select_sbc_laws(value: str | None, laws: list[str]) -> list[str]:
    """The laws named in ``value`` (comma-separated, BAYESCALE_SBC_LAWS), in ``laws``' order;
    all of ``laws`` if ``value`` is unset or blank.  Unknown names raise ValueError."""
    if value is None or not value.strip():
        return list(laws)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(catalogue()))
    if unknown:
        raise ValueError(
            f"BAYESCALE_SBC_LAWS names unknown law(s) {unknown}; catalogue laws: "
            f"{', '.join(sorted(catalogue()))}"
        )
    outside = sorted(set(names) - set(laws))
    if outside:
        raise ValueError(
            f"BAYESCALE_SBC_LAWS names {outside}, which this mode's SBC does not run "
            f"(it runs {laws}); set BAYESCALE_FULL=1 for every catalogue law"
        )
    return [k for k in laws if k in names]


SBC_LAWS = select_sbc_laws(os.environ.get("BAYESCALE_SBC_LAWS"), SBC_ALL_LAWS)
SBC_REPLICATIONS = scaled(200, 30)
SBC_SETTINGS = scaled(
    {"num_chains": 4, "num_warmup": 500, "num_samples": 500},
    {"num_chains": 2, "num_warmup": 200, "num_samples": 200},
)
SBC_ALPHA = 0.01
# over ALL the mode's laws, whatever BAYESCALE_SBC_LAWS selects
# (the default model: the discrepancy's delta_r, delta_w are sites of every one-covariate law)
NUM_SBC_TESTS = sum(
    len(Posterior(get_law(k), bayescale.Model().observation).site_names) for k in SBC_ALL_LAWS
)


def test_sbc_law_selection():
    laws = ["kaplan_c", "kaplan_n", "power_law"]
    assert select_sbc_laws(None, laws) == laws and select_sbc_laws(" ", laws) == laws
    assert select_sbc_laws("power_law, kaplan_c", laws) == ["kaplan_c", "power_law"]
    with pytest.raises(ValueError, match=r"unknown law.*no_such_law"):
        select_sbc_laws("kaplan_n,no_such_law", laws)
    with pytest.raises(ValueError, match="BAYESCALE_FULL=1"):
        select_sbc_laws("chinchilla", laws)


def test_chi2_uniformity_test_accepts_uniform_and_rejects_skewed_ranks():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, 2000)
    assert chi2_uniform(uniform, 99, 20)["p_value"] > 1e-3
    # an overconfident posterior: true values pile up in the outer ranks
    skewed = np.concatenate([uniform[:1000], rng.integers(0, 10, 500), rng.integers(90, 100, 500)])
    out = chi2_uniform(skewed, 99, 20)
    assert out["p_value"] < 1e-10 and out["dof"] == 19


def test_sbc_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_replications"):
        sbc("kaplan_n", num_replications=3)
    with pytest.raises(ValueError, match="noise"):
        sbc("kaplan_n", num_replications=20, design={"noise": 0.1})
    with pytest.raises(ValueError, match="num_bins"):
        sbc("kaplan_n", num_replications=20, num_bins=7)


@pytest.fixture(scope="module", params=SBC_LAWS)
def sbc_result(request):
    return sbc(
        request.param,
        num_replications=SBC_REPLICATIONS,
        seed=2026,
        inference=bayescale.NUTS(progress_bar=False, **SBC_SETTINGS),
    )


@pytest.mark.slow
def test_sbc_ranks_uniform(sbc_result):
    r = sbc_result
    # nothing dropped: one rank per replication and site, non-converged fits included
    assert len(r.ranks) == SBC_REPLICATIONS
    assert list(r.ranks.columns) == list(r.batch.parameter_names)
    assert r.ranks.to_numpy().min() >= 0 and r.ranks.to_numpy().max() <= r.num_rank_draws
    assert r.num_not_converged == int((r.batch.diagnostics["status"] != "converged").sum())
    threshold = SBC_ALPHA / NUM_SBC_TESTS
    print(f"\n{r.report()}; threshold {threshold:.2g} over {NUM_SBC_TESTS} tests")
    assert r.passed(SBC_ALPHA, NUM_SBC_TESTS), (
        f"p-value below {threshold:.2g} (Bonferroni over {NUM_SBC_TESTS} tests): {r.report()}"
    )


@pytest.mark.slow
def test_sbc_plot_draws_ecdf_difference(sbc_result, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    pc = sbc_result.plot()
    fig = pc.viz["figure"].item()
    path = tmp_path / "sbc.png"
    fig.savefig(path)
    assert path.stat().st_size > 5000
    pit = sbc_result.datatree["prior_sbc"].dataset
    assert set(pit.data_vars) == set(sbc_result.ranks.columns)
    assert float(pit.to_array().min()) > 0 and float(pit.to_array().max()) < 1


# -------------------------------------------------------------------- baseline
def test_least_squares_recovers_exact_law():
    # the backtests' law: its jitted residuals are compiled once for this module
    law = get_law("power_law_offset")
    data = prepare(simulate(law, noise=0.0, num_points=40, seed=3), law)
    theta = least_squares_fit(law, data)
    for name, value in law.reference.items():
        assert theta[name] == pytest.approx(value, rel=1e-4), name
    huber = least_squares_fit(law, data, loss="huber")
    for name, value in law.reference.items():
        assert huber[name] == pytest.approx(value, rel=1e-3), name


# ------------------------------------------------------------------ noise model
def test_noise_model_names():
    assert with_noise("student_t") == "student_t"
    assert with_noise("student_t", "loglinear") == "student_t+loglinear"
    assert with_noise("student_t+loglinear", "loglinear") == "student_t+loglinear"
    assert noise_model("normal+loglinear") == "loglinear" and noise_model("normal") == "constant"
    with pytest.raises(ValueError, match="noise model"):
        with_noise("normal", "quadratic")
    with pytest.raises(ValueError, match="noise model"):
        Posterior(get_law("power_law"), "normal+wiggly")
    posterior = Posterior(get_law("chinchilla"), "student_t+loglinear")
    assert posterior.site_names[-2:] == ("gamma_n_params", "gamma_n_tokens")
    assert Posterior(get_law("chinchilla")).site_names[-1] == "nu"  # default: no slopes


@pytest.mark.usefixtures("float64")
def test_loglinear_density_equals_numpyro_density():
    """The one density with log sigma(x) = log sigma_0 + sum_c gamma_c u_c equals NumPyro's
    density of Posterior.model, and its covariate standardisation ignores masked points."""
    import jax.numpy as jnp
    from numpyro.infer.util import potential_energy

    law = get_law("chinchilla")
    likelihood = "student_t+loglinear"
    posterior = Posterior(law, likelihood)
    rng = np.random.default_rng(7)
    n = 25
    log_x = {c: rng.uniform(*np.log(law.design[c]), n) for c in law.covariates}
    log_y = np.asarray(law.log_mean(law.reference, log_x)) + 0.02 * rng.standard_normal(n)
    mask = np.arange(n) >= 3
    data = {"log_x": log_x, "log_y": log_y, "mask": mask}
    values = {**law.reference, "sigma": 0.02, "nu": 5.0, "gamma_n_params": 0.4}
    values["gamma_n_tokens"] = -0.3
    center = np.asarray(posterior.unconstrain(values))
    z = center + 0.3 * rng.standard_normal(posterior.dim)
    ours = float(posterior.log_density(jnp.asarray(z), data))
    params = {k: jnp.asarray(z[i]) for i, k in enumerate(posterior.site_names)}
    theirs = -float(potential_energy(posterior.model, (), data, params))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-8)
    # padding values are not part of the standardisation: the density of the kept points
    # alone is the same whatever the masked points hold
    kept = {"log_x": {c: v[3:] for c, v in log_x.items()}, "log_y": log_y[3:], "mask": mask[3:]}
    moved = {**data, "log_x": {c: np.where(mask, v, 0.0) for c, v in log_x.items()}}
    z = jnp.asarray(center)
    assert float(posterior.log_density(z, moved)) == pytest.approx(
        float(posterior.log_density(z, kept)), rel=1e-12
    )
    # gamma = 0 is the constant-noise model
    constant = Posterior(law, likelihood.partition("+")[0])
    flat = {**values, "gamma_n_params": 0.0, "gamma_n_tokens": 0.0}
    z0 = posterior.unconstrain(flat)
    assert float(posterior.log_likelihood(z0, data)) == pytest.approx(
        float(constant.log_likelihood(constant.unconstrain(flat), data)), rel=1e-12
    )


# -------------------------------------------------------------------- backtest
# One batched backtest serves the backtest tests and the noise-model recovery test: six
# saturating curves E + A x^-alpha (30 points on x in [1, 1e4]), fitted on x <= 0.1 max x with
# noise="loglinear".  Even curves are homoscedastic (gamma = 0, sigma 0.01); odd ones have
# log sigma(x) = log 0.01 + NOISE_SLOPE * u(x), u the log x standardised over the fitted points
# (the model's own standardisation), so their noise is ~15x larger at the last point.
BT_SETTINGS = {"num_chains": 2, "num_warmup": 200, "num_samples": 200}
NUM_CURVES = 6
NOISE_SLOPE = 1.0
BT_SPLIT = 0.1


def _true_noise_slope(i: int) -> float:
    return NOISE_SLOPE if i % 2 else 0.0


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    """Six curves, log-normal noise 0.01, heteroscedastic (gamma = NOISE_SLOPE) if odd."""
    parts = []
    rng = np.random.default_rng(11)
    for i in range(NUM_CURVES):
        params = {"E": 2.0 + 0.1 * i, "A": 5.0, "alpha": 0.4 + 0.04 * i}
        df = simulate("power_law_offset", params=params, noise=0.0, num_points=30, seed=100 + i)
        log_x = np.log(df["x"].to_numpy())
        fitted = df["x"].to_numpy() <= BT_SPLIT * df["x"].max()
        u = (log_x - log_x[fitted].mean()) / log_x[fitted].std()
        sigma = 0.01 * np.exp(_true_noise_slope(i) * u)
        df["y"] = df["y"] * np.exp(sigma * rng.standard_normal(len(df)))
        parts.append(df.assign(run=f"r{i}").rename(columns={"x": "step", "y": "loss"}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def simulated_backtest(curves):
    return backtest(
        curves,
        "power_law_offset",
        by="run",
        split=BT_SPLIT,
        columns={"x": "step", "y": "loss"},
        # the model simulated from: normal log-linear noise, the law exact (no discrepancy;
        # Student-t fits cost ~1.5x the time)
        model=bayescale.Model(likelihood="normal", noise="loglinear", discrepancy=None),
        inference=bayescale.NUTS(progress_bar=False, **BT_SETTINGS),
        seed=0,
    )


def test_loglinear_noise_recovers_the_noise_slope(simulated_backtest):
    """gamma is recovered on heteroscedastic curves and ~0 on homoscedastic ones.

    Per curve the true gamma must lie in the central 99% posterior interval (six independent
    fits; the number of misses is checked against its binomial tail), and the slope of the
    heteroscedastic curves must be detected: the average of their posterior means exceeds
    3 standard errors (posterior sd / sqrt(3)); expected ~7 at ~22 fitted points per curve.
    """
    batch = simulated_backtest.batch
    draws = batch.datatree.posterior["gamma_x"]
    misses, means, sds = 0, [], []
    for i in range(NUM_CURVES):
        g = draws.sel(run=f"r{i}").values.ravel()
        lo, hi = np.quantile(g, [0.005, 0.995])
        misses += not lo <= _true_noise_slope(i) <= hi
        if _true_noise_slope(i) > 0:
            means.append(g.mean())
            sds.append(g.std())
    assert stats.binom.sf(misses - 1, NUM_CURVES, 0.01) > 1e-3, misses
    assert np.mean(means) > 3 * np.sqrt(np.mean(np.square(sds)) / len(sds)), (means, sds)


def test_backtest_bands_follow_the_noise_trend(simulated_backtest):
    """Predictions at held-out x draw their noise at sigma(x): the 90% band of the last point
    of a heteroscedastic curve (true sigma ~18x the fitted centre's) is several times that of
    a homoscedastic one (true ratio ~ e^{1.0 * 2.9} ~ 18 in noise sd)."""
    pred = simulated_backtest.predictions
    last = pred.loc[pred.groupby("curve")["step"].idxmax()].set_index("curve")
    width = np.log(last["q95"] / last["q5"])
    hetero = [f"r{i}" for i in range(NUM_CURVES) if _true_noise_slope(i) > 0]
    homo = [f"r{i}" for i in range(NUM_CURVES) if _true_noise_slope(i) == 0]
    assert width[hetero].min() > 3 * width[homo].max(), width


def test_backtest_splits_each_curve(simulated_backtest, curves):
    t = simulated_backtest.table
    assert list(t.index) == [f"r{i}" for i in range(NUM_CURVES)] + ["overall"]
    for i in range(NUM_CURVES):
        steps = curves.loc[curves["run"] == f"r{i}", "step"]
        early = int((steps <= 0.1 * steps.max()).sum())
        assert t.loc[f"r{i}", "num_fit"] == early
        assert t.loc[f"r{i}", "num_held_out"] == len(steps) - early
    pred = simulated_backtest.predictions
    assert len(pred) == t.loc["overall", "num_held_out"]
    assert (pred["q5"] <= pred["q25"]).all() and (pred["q75"] <= pred["q95"]).all()
    # the overall row pools the held-out points
    inside = (pred["q5"] <= pred["observed"]) & (pred["observed"] <= pred["q95"])
    assert t.loc["overall", "coverage_90"] == pytest.approx(inside.mean())
    err = np.log(pred["median"] / pred["observed"])
    assert t.loc["overall", "rmse_log"] == pytest.approx(math.sqrt(np.mean(err**2)))


def test_backtest_on_correct_model_is_calibrated_and_accurate(simulated_backtest):
    """Data from the law and noise model fitted: extrapolating one decade from the first
    10% of the steps must cover like a calibrated band and err at the noise level."""
    t = simulated_backtest.table
    pred = simulated_backtest.predictions
    # final points: one per curve, independent curves; P(miss of a 90% band) ~ 0.1 each
    num_missed = int((~t.loc[t.index != "overall", "final_in_90"].astype(bool)).sum())
    assert stats.binom.sf(num_missed - 1, NUM_CURVES, 0.1) > 1e-3, t
    # held-out points of the homoscedastic curves: the median errs at the noise level (0.01)
    homo = [f"r{i}" for i in range(NUM_CURVES) if _true_noise_slope(i) == 0]
    assert (t.loc[homo, "rmse_log"] < 3 * 0.01).all(), t
    # the posterior median is as good as least squares on the correct law
    overall = t.loc["overall"]
    assert overall["rmse_log"] < 1.5 * overall["baseline_rmse_log"], t
    assert len(pred) > 0 and np.isfinite(pred["baseline"]).all()


def test_backtest_absolute_threshold_and_one_curve():
    law = get_law("chinchilla")
    data = simulate(law, noise=0.0, num_points=30, seed=5)
    with pytest.raises(ValueError, match="on="):
        backtest(data, law, by=None, split=0.5)
    with pytest.raises(ValueError, match="fraction"):
        backtest(data, "power_law_offset", by=None, split=1.5)
    with pytest.raises(DataError, match="no held-out"):
        backtest(data, law, by=None, split={"n_params": 1e12})
    with pytest.raises(DataError, match="not in the data"):
        backtest(data, law, by="model", split={"n_params": 1e9})


# ----------------------------------------------- learning-rate schedule (annealing) law
def test_lr_schedule_areas_by_hand():
    """S1 and S2 of a six-step schedule (warm-up to the peak at step 2, then decay), by hand
    with lambda = 0.5: drops eta_{i-1} - eta_i after the peak 0.2, 0.3, 0; momentum
    m = 0.2, 0.5 * 0.2 + 0.3 = 0.4, 0.5 * 0.4 + 0 = 0.2."""
    eta = [0.0, 0.5, 1.0, 0.8, 0.5, 0.5]
    areas = datasets.lr_schedule_areas(eta, decay=0.5)
    np.testing.assert_allclose(areas["lr_area"], [0, 0.5, 1.5, 2.3, 2.8, 3.3])
    np.testing.assert_allclose(areas["lr_annealing_area"], [0, 0, 0, 0.2, 0.6, 0.8])
    # the double sum of the definition, sum_{i<=s} sum_{k<=i} (eta_{k-1} - eta_k) lam^(i-k),
    # over the decreasing part of a longer random schedule
    rng = np.random.default_rng(0)
    eta = np.concatenate([[0.0, 1.0], np.sort(rng.uniform(0.1, 1.0, 30))[::-1]])
    areas = datasets.lr_schedule_areas(eta, decay=0.9)
    drop = np.concatenate([[0, 0], eta[1:-1] - eta[2:]])
    by_definition = [
        sum(drop[k] * 0.9 ** (i - k) for i in range(1, s + 1) for k in range(1, i + 1))
        for s in range(len(eta))
    ]
    np.testing.assert_allclose(areas["lr_annealing_area"], by_definition, rtol=1e-12)
    with pytest.raises(DataError, match="learning_rate"):
        datasets.lr_schedule_areas([1.0, -0.5])
    with pytest.raises(ValueError, match="decay"):
        datasets.lr_schedule_areas([1.0, 0.5], decay=1.0)


def test_pythia_schedule_and_its_areas():
    steps = np.arange(143_001)
    eta = datasets.pythia_lr_schedule(steps)
    assert eta[0] == 0 and eta[715] == pytest.approx(0.5) and eta[1430] == pytest.approx(1.0)
    assert eta[-1] == pytest.approx(0.1) and eta[(1430 + 143_000) // 2] == pytest.approx(0.55)
    assert np.all(np.diff(eta[:1431]) > 0) and np.all(np.diff(eta[1430:]) <= 0)
    areas = datasets.lr_schedule_areas(eta)
    s1, s2 = areas["lr_area"].to_numpy(), areas["lr_annealing_area"].to_numpy()
    assert np.all(np.diff(s1[1:]) > 0)  # the forward area grows at every step
    assert np.all(s2[:1431] == 0) and np.all(np.diff(s2[1430:]) >= 0) and s2[1431] > 0
    # S2 lags the rate's drop (1 - eta) / (1 - lambda) by ~1/(1 - lambda) steps of decay
    assert s2[-1] == pytest.approx(0.9 / (1 - 0.999), rel=0.01)
    assert s1[-1] == pytest.approx(715 + 0.55 * (143_000 - 1430), rel=1e-3)


def test_polypythia_lr_area_columns(shared_data):
    curves = datasets.polypythia(shared_data, min_step=1440, lr_areas=True)
    known = curves[curves["from_init"]]
    areas = datasets.lr_schedule_areas(datasets.pythia_lr_schedule(np.arange(143_000)))
    np.testing.assert_allclose(
        known["lr_area"].to_numpy(), areas["lr_area"].to_numpy()[known["step"].to_numpy()]
    )
    assert (known["lr_annealing_area"] > 0).all()
    # restarted logs: where they sit on the schedule is unknown
    assert curves.loc[~curves["from_init"], ["lr_area", "lr_annealing_area"]].isna().all().all()
    law = get_law("lr_annealing")
    with pytest.raises(DataError, match="non-finite"):
        prepare(curves[~curves["from_init"]], law, {"loss": "train_lm_loss"})


# Two curves simulated from the law over all of Pythia's schedule (40 log-spaced steps from
# the end of warm-up, log-normal noise 0.005), and the first 20% of each, in one batch.  The
# annealing drops C * S2 at the last step, 0.09 and 0.18 nats, are large enough for a whole
# curve to identify C (Fisher sd of log C ~0.15; at a drop of 0.03 and noise 0.01 it is ~1,
# no better than the prior) and, on the first 20%, too small to (Fisher sd > 3).
ANNEALING_TRUTH = [
    {"E": 3.0, "A": 40.0, "alpha": 0.6, "C": 1e-4},
    {"E": 2.8, "A": 120.0, "alpha": 0.8, "C": 2e-4},
]
ANNEALING_NOISE = 0.005
ANNEALING_SETTINGS = {"num_chains": 2, "num_warmup": 300, "num_samples": 300}


def _annealing_curve(params, seed, noise=ANNEALING_NOISE):
    law = get_law("lr_annealing")
    steps = np.unique(np.geomspace(1440, 142_990, 40).round(-1)).astype(int)
    areas = datasets.lr_schedule_areas(datasets.pythia_lr_schedule(np.arange(143_000)))
    frame = areas.loc[steps].reset_index()
    log_x = {c: np.log(frame[c].to_numpy()) for c in law.covariates}
    with jax.enable_x64(True):
        log_mu = np.asarray(law.log_mean(params, log_x))
    rng = np.random.default_rng(seed)
    return frame.assign(loss=np.exp(log_mu + noise * rng.standard_normal(len(frame))))


@pytest.fixture(scope="module")
def annealing_fits():
    parts = []
    for i, params in enumerate(ANNEALING_TRUTH):
        curve = _annealing_curve(params, seed=40 + i)
        parts.append(curve.assign(curve=f"full{i}"))
        parts.append(curve[curve["step"] <= 0.2 * 142_990].assign(curve=f"early{i}"))
    return bayescale.fit(
        pd.concat(parts, ignore_index=True),
        "lr_annealing",
        by="curve",
        model=bayescale.Model(likelihood="normal"),
        inference=bayescale.NUTS(progress_bar=False, **ANNEALING_SETTINGS),
        seed=1,
        warn=False,
    )


def test_lr_annealing_law_recovers_its_parameters(annealing_fits):
    """On whole curves every true value lies in its central 98% interval (8 checks; the
    misses are judged against their binomial tail) and C is identified: the posterior sd of
    log C is under half the prior's (1.5)."""
    misses = 0
    for i, params in enumerate(ANNEALING_TRUTH):
        post = annealing_fits[f"full{i}"].draws()
        for name, value in params.items():
            lo, hi = np.quantile(post[name], [0.01, 0.99])
            misses += not lo <= value <= hi
        assert np.log(post["C"]).std() < 0.5 * 1.5, i
    assert stats.binom.sf(misses - 1, 8, 0.02) > 1e-3, misses


def test_annealing_term_is_weakly_identified_early(annealing_fits):
    """On the first 20% of the steps S2 reaches 8% of its final value: log C is informed
    mostly by its prior (posterior sd > 0.6 x the prior's), far less than on the whole
    curve."""
    for i in range(len(ANNEALING_TRUTH)):
        early = np.log(annealing_fits[f"early{i}"].draws()["C"]).std()
        full = np.log(annealing_fits[f"full{i}"].draws()["C"]).std()
        assert early > 0.6 * 1.5 and early > 2 * full, (i, early, full)


# -------------------------------------------------- law error beyond the fitted range
def test_law_error_scale_estimates_a_known_tau():
    """Simulated backtests of 20 curves x 10 held-out points, d in [0.1, 1] decades, a
    per-curve law error tau * d * z_curve (a systematic miss growing with d, as a wrong
    exponent gives) plus band noise of variance v: the moment estimate of tau^2 is unbiased
    (mean over 300 replications within 3 Monte Carlo standard errors of tau^2), and a single
    replication's tau lies within 40% of the truth in >= 90% of them (binomial bound)."""
    rng = np.random.default_rng(2026)
    tau, sd = 0.03, 0.01
    d = np.tile(np.linspace(0.1, 1.0, 10), 20)
    v = np.full(d.shape, sd**2)
    estimates = []
    for _ in range(300):
        z = np.repeat(rng.standard_normal(20), 10)
        e = tau * d * z + sd * rng.standard_normal(d.shape)
        estimates.append(check.law_error_scale(e, v, d))
    estimates = np.asarray(estimates)
    squared = estimates**2
    assert abs(squared.mean() - tau**2) < 3 * squared.std() / np.sqrt(len(squared))
    close = np.mean(np.abs(estimates / tau - 1) < 0.4)
    assert stats.binom.cdf(round(close * 300), 300, 0.9) > 1e-3, close
    assert check.law_error_scale([0.0, 0.0], [1e-4, 1e-4], [0.5, 1.0]) == 0.0  # clipped
    with pytest.raises(ValueError, match="beyond the fitted range"):
        check.law_error_scale([0.1], [0.01], [0.0])
    with pytest.raises(ValueError, match="one value per point"):
        check.law_error_scale([0.1, 0.2], [0.01], [1.0])


def test_law_error_leaves_each_curve_out(simulated_backtest):
    """tau of a curve is learnt from the other curves only: moving one curve's held-out
    observations changes every other curve's tau and not its own."""
    base = simulated_backtest.with_law_error("curves")
    assert list(base.law_error.index) == [f"r{i}" for i in range(NUM_CURVES)]
    assert np.all(np.isfinite(base.law_error)) and (base.law_error >= 0).all()
    pred = simulated_backtest.predictions.copy()
    moved = pred["curve"] == "r0"
    pred.loc[moved, "observed"] *= np.exp(0.3 * pred.loc[moved, "distance"])  # a 30%/decade miss
    shifted = dataclasses.replace(simulated_backtest, predictions=pred).with_law_error("curves")
    assert shifted.law_error["r0"] == pytest.approx(base.law_error["r0"], rel=1e-12)
    others = shifted.law_error.drop("r0") - base.law_error.drop("r0")
    assert (others > 0).all(), others
    # bands of the other curves widen where they extrapolate, not inside the fitted range
    assert (shifted.predictions["distance"] > 0).all()
    overall = shifted.table.loc["overall", "coverage_90"]
    assert overall >= simulated_backtest.table.loc["overall", "coverage_90"]


def test_predict_law_error_adds_tau_d_in_quadrature(simulated_backtest, curves):
    """Result.predict(law_error=tau): inside the fitted range the band is unchanged (the
    same noise draws); at d decades beyond it the band's normal-equivalent sd is
    sqrt(sd_0^2 + tau^2 d^2) (400 draws: 15% tolerance, ~3 Monte Carlo standard errors of a
    90% band's width)."""
    fit = simulated_backtest.batch["r0"]
    steps = curves.loc[curves["run"] == "r0", "step"]
    new = pd.DataFrame({"step": [steps.min() * 1.5, steps.max() * 10]})
    tau = 0.2
    plain = fit.predict(new)
    wide = fit.predict(new, law_error=tau)
    assert wide.loc[0, "q5"] == plain.loc[0, "q5"] and wide.loc[0, "q95"] == plain.loc[0, "q95"]
    d = fit.extrapolation_distance(new)
    assert d[0] == 0 and d[1] > 1
    sd0 = np.log(plain.loc[1, "q95"] / plain.loc[1, "q5"]) / (2 * 1.6449)
    sd = np.log(wide.loc[1, "q95"] / wide.loc[1, "q5"]) / (2 * 1.6449)
    assert sd == pytest.approx(np.hypot(sd0, tau * d[1]), rel=0.15)
    with pytest.raises(ValueError, match="law_error"):
        fit.predict(new, law_error=-0.1)


def test_law_error_in_range_uses_only_the_fitted_points(simulated_backtest):
    """law_error='in_range' refits each curve's first half of its fitted points (by the
    split covariate) and learns one tau from the second half, which lies inside the fitted
    range of the outer backtest; on the correct law the estimate is small (< 0.1 per decade,
    the noise being 0.01 at the fitted centre) and the bands never narrow."""
    wide = simulated_backtest.with_law_error("in_range")
    tau = wide.law_error
    assert tau.nunique() == 1 and np.isfinite(tau).all() and 0 <= tau.iloc[0] < 0.1, tau
    base = simulated_backtest.predictions
    width = np.log(wide.predictions["q95"] / wide.predictions["q5"])
    assert (width >= 0.9 * np.log(base["q95"] / base["q5"])).all()


# ------------------------------------------------------- pooled backtest (across seeds)
# Two "sizes" of three "seeds" each: alpha of seed g of size k is log-normal about the size's
# centre (sd 0.05 on the log scale, the population the pooled fit assumes), E and A per size.
POOL_CENTRES = {"s0": {"E": 2.0, "A": 5.0, "alpha": 0.5}, "s1": {"E": 2.5, "A": 8.0, "alpha": 0.7}}
POOL_SPREAD = 0.05
POOL_SEEDS = 3


@pytest.fixture(scope="module")
def pooled_curves() -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(21)
    parts, truth = [], {}
    for k, (size, centre) in enumerate(POOL_CENTRES.items()):
        for seed in range(POOL_SEEDS):
            alpha = centre["alpha"] * math.exp(POOL_SPREAD * rng.standard_normal())
            truth[f"{size}/{seed}"] = alpha
            params = {**centre, "alpha": alpha}
            df = simulate(
                "power_law_offset", params=params, noise=0.01, num_points=30, seed=[k, seed]
            )
            parts.append(df.assign(size=size, seed=seed))
    return pd.concat(parts, ignore_index=True), truth


@pytest.fixture(scope="module")
def pooled_backtest(pooled_curves):
    return backtest(
        pooled_curves[0],
        "power_law_offset",
        by=["size", "seed"],
        split=BT_SPLIT,
        model=bayescale.Model(likelihood="normal", pooled=["alpha"]),
        pool_by="size",
        inference=bayescale.NUTS(progress_bar=False, **BT_SETTINGS),
        seed=0,
    )


def test_pooled_backtest_fits_only_the_early_part_of_each_curve(pooled_backtest, pooled_curves):
    """Each curve's data in the pooled fit are exactly its rows with x <= split * max x (no
    held-out point of any curve enters any pool's fit), and every held-out row is scored."""
    frame = pooled_curves[0]
    batch, table = pooled_backtest.batch, pooled_backtest.table
    assert batch.labels == [f"{s}/{g}" for s in POOL_CENTRES for g in range(POOL_SEEDS)]
    for label in batch.labels:
        size, seed = label.split("/")
        x = frame.loc[(frame["size"] == size) & (frame["seed"] == int(seed)), "x"]
        early = np.sort(x[x <= BT_SPLIT * x.max()].to_numpy())
        fitted = batch.datatree.constant_data["x"].sel(size_seed=label).values
        np.testing.assert_allclose(np.sort(fitted[np.isfinite(fitted)]), early, rtol=1e-12)
        assert table.loc[label, "num_fit"] == len(early)
        assert table.loc[label, "num_held_out"] == len(x) - len(early)
    assert len(pooled_backtest.predictions) == len(frame) - table.loc["overall", "num_fit"]
    # each size is one population: its seeds share the population draws, sizes do not
    pop = batch.datatree.posterior["alpha_pop"]
    assert np.array_equal(pop.sel(size_seed="s0/0"), pop.sel(size_seed="s0/2"))
    assert not np.array_equal(pop.sel(size_seed="s0/0"), pop.sel(size_seed="s1/0"))
    assert set(json.loads(batch.datatree.attrs["population_diagnostics"])) == {"s0", "s1"}
    # the pooled fits' default, recorded
    assert batch.datatree.attrs["target_accept_prob"] == POOLED_TARGET_ACCEPT_PROB
    assert np.isfinite(pooled_backtest.predictions["pooled_baseline"]).all()


def test_pooled_backtest_recovers_the_truth(pooled_backtest, pooled_curves):
    """Each curve's alpha and each size's population centre lie in their central 98%
    posterior intervals (8 checks; misses judged against their binomial tail), the
    population sd is small (true 0.05 on the log scale: its posterior median is < 0.2, the
    prior HalfNormal(0.2)'s 67th percentile) and the held-out points are covered like a
    calibrated band (binomial bound on the 90% band's misses)."""
    post = pooled_backtest.batch.datatree.posterior
    misses = 0
    for label, alpha in pooled_curves[1].items():
        lo, hi = np.quantile(post["alpha"].sel(size_seed=label).values, [0.01, 0.99])
        misses += not lo <= alpha <= hi
    for size, centre in POOL_CENTRES.items():
        lo, hi = np.quantile(post["alpha_pop"].sel(size_seed=f"{size}/0").values, [0.01, 0.99])
        misses += not lo <= centre["alpha"] <= hi
        assert np.median(post["alpha_pop_sd"].sel(size_seed=f"{size}/0")) < 0.2
    assert stats.binom.sf(misses - 1, len(pooled_curves[1]) + 2, 0.02) > 1e-3, misses
    pred = pooled_backtest.predictions
    outside = int((~((pred["q5"] <= pred["observed"]) & (pred["observed"] <= pred["q95"]))).sum())
    assert stats.binom.sf(outside - 1, len(pred), 0.1) > 1e-3, outside


def test_pooled_backtest_passes_target_accept_prob_to_the_sampler(pooled_curves, monkeypatch):
    """backtest(..., model=Model(pooled=), inference=NUTS(target_accept_prob=)) reaches the
    pooled NUTS sampler (captured
    where the sampler is built, before any compilation) and is validated there."""
    import bayescale.infer.batch

    seen = []

    class Built(Exception):
        pass

    def build_sampler(posterior, options, **kwargs):
        seen.append(options.target_accept_prob)
        raise Built

    frame = pooled_curves[0]
    kwargs = dict(
        by=["size", "seed"], split=BT_SPLIT, model=bayescale.Model(pooled=["alpha"]), pool_by="size"
    )
    with pytest.raises(ValueError, match=r"target_accept_prob must lie in \(0, 1\)"):
        backtest(
            frame, "power_law_offset", inference=bayescale.NUTS(target_accept_prob=1.0), **kwargs
        )
    monkeypatch.setattr(bayescale.infer.batch, "build_sampler", build_sampler)
    with pytest.raises(Built):
        backtest(
            frame, "power_law_offset", inference=bayescale.NUTS(target_accept_prob=0.95), **kwargs
        )
    assert seen == [0.95]


def test_pooled_backtest_rejects_bad_pools(pooled_curves):
    frame = pooled_curves[0]
    kwargs = dict(by=["size", "seed"], split=BT_SPLIT)
    alpha = bayescale.Model(pooled=["alpha"])
    with pytest.raises(ValueError, match="pooled= must name parameters"):
        backtest(frame, "power_law_offset", model=bayescale.Model(pooled=["beta"]), **kwargs)
    with pytest.raises(ValueError, match=r"give model=Model\(pooled=\.\.\.\)"):
        backtest(frame, "power_law_offset", pool_by="size", **kwargs)
    with pytest.raises(DataError, match="not in the data"):
        backtest(frame, "power_law_offset", model=alpha, pool_by="model", **kwargs)
    with pytest.raises(DataError, match="vary within curve"):
        backtest(frame, "power_law_offset", model=alpha, pool_by="x", **kwargs)
    with pytest.raises(DataError, match=">= 2 curves per pool"):
        backtest(frame, "power_law_offset", model=alpha, pool_by=["size", "seed"], **kwargs)


def test_backtest_old_fit_keywords_warn_with_the_new_spelling(pooled_curves):
    """0.1's fit keywords (pooled= among them) map onto model=/inference= with a warning
    naming the new spelling (checked before any fit: the call then fails on its baseline);
    giving both spellings is a TypeError."""
    frame = pooled_curves[0]
    kwargs = dict(by=["size", "seed"], split=BT_SPLIT, baseline="none")
    for (key, value), new in (
        (("likelihood", "normal"), "model=Model(likelihood='normal')"),
        (("pooled", ["alpha"]), "model=Model(pooled=('alpha',))"),
        (("num_chains", 2), "inference=NUTS(num_chains=2)"),
        (("target_accept_prob", 0.95), "inference=NUTS(target_accept_prob=0.95)"),
    ):
        message = f"backtest({key}={value!r}) is deprecated; use backtest(..., {new})"
        with pytest.warns(DeprecationWarning, match=re.escape(message)):
            with pytest.raises(ValueError, match="baseline must be"):
                backtest(frame, "power_law_offset", **kwargs, **{key: value})
    with pytest.raises(TypeError, match="both model= and"):
        backtest(frame, "power_law_offset", model=bayescale.Model(), pooled=["alpha"], **kwargs)
    with pytest.raises(TypeError, match="both inference= and"):
        backtest(frame, "power_law_offset", inference=bayescale.NUTS(), num_chains=2, **kwargs)


def test_sbc_old_fit_keywords_warn_with_the_new_spelling():
    """sbc's own defaults (2 chains of 500 draws) take the old keywords; both spellings is a
    TypeError."""
    for (key, value), new in (
        (("likelihood", "normal"), "model=Model(likelihood='normal')"),
        (("num_chains", 4), "inference=NUTS(num_warmup=500, num_samples=500, num_chains=4)"),
    ):
        message = f"sbc({key}={value!r}) is deprecated; use sbc(..., {new})"
        with pytest.warns(DeprecationWarning, match=re.escape(message)):
            with pytest.raises(ValueError, match="num_replications"):
                sbc("kaplan_n", num_replications=3, **{key: value})
    with pytest.raises(TypeError, match="both model= and"):
        sbc("kaplan_n", num_replications=20, model=bayescale.Model(), noise="loglinear")
    with pytest.raises(TypeError, match="both inference= and"):
        sbc("kaplan_n", num_replications=20, inference=bayescale.NUTS(), num_samples=9)
    with pytest.raises(TypeError, match="unexpected keyword argument 'chains'"):
        sbc("kaplan_n", num_replications=20, chains=2)


# --------------------------------------------- extrapolation bias (the law error's mean)
def _simulated_errors(rng, mu, tau, sd, num_curves, num_points=10):
    """Held-out log errors of ``num_curves`` curves: mu * d + tau * d * z_curve + sd * eps,
    d in [0.1, 1] decades (a systematic miss shared by all curves plus one per curve)."""
    d = np.tile(np.linspace(0.1, 1.0, num_points), num_curves)
    curve = np.repeat(np.arange(num_curves), num_points)
    z = rng.standard_normal(num_curves)[curve]
    return mu * d + tau * d * z + sd * rng.standard_normal(d.shape), d, curve


def test_law_error_bias_estimates_a_known_mu():
    """Simulated backtests of 20 curves x 10 held-out points with a known bias mu and
    per-curve law error tau: mu-hat = sum(d e) / sum(d^2) is unbiased (mean over 300
    replications within 3 Monte Carlo standard errors of mu), and a new curve's final point
    (d = 1) lies in its 90% band mu-hat * d +- 1.645 sqrt(v + (tau-hat^2 + se^2) d^2), tau-hat
    from the residuals, in ~90% of the replications (binomial bound)."""
    rng = np.random.default_rng(2027)
    mu, tau, sd = 0.04, 0.03, 0.01
    estimates, inside = [], 0
    for _ in range(300):
        e, d, curve = _simulated_errors(rng, mu, tau, sd, 20)
        m, se = bias_and_se(e, d, curve)
        assert m == check.law_error_bias(e, d)
        t = check.law_error_scale(e - m * d, np.full(d.shape, sd**2), d, bias_curves=curve)
        estimates.append(m)
        new = mu + tau * rng.standard_normal() + sd * rng.standard_normal()  # at d = 1
        inside += abs(new - m) <= 1.6449 * math.sqrt(sd**2 + t**2 + se**2)
    estimates = np.asarray(estimates)
    assert abs(estimates.mean() - mu) < 3 * estimates.std() / np.sqrt(len(estimates))
    assert stats.binom.cdf(inside, 300, 0.9) > 1e-3 and stats.binom.sf(inside - 1, 300, 0.9) > 1e-3
    assert check.law_error_bias([0.1, 0.3], [1.0, 2.0]) == pytest.approx(0.7 / 5)
    with pytest.raises(ValueError, match="beyond the fitted range"):
        check.law_error_bias([0.1], [0.0])
    with pytest.raises(ValueError, match="one value per point"):
        check.law_error_bias([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        check.law_error_bias([0.1], [-1.0])


def test_law_error_scale_after_a_fitted_bias_is_unbiased_with_few_curves():
    """tau-hat^2 from the residuals e - mu-hat * d loses the variance mu-hat's fit absorbed
    (the law error being shared within a curve: about tau^2 / m with m alike curves, more when
    a few long curves dominate sum d^4).  At m = 5 curves of unequal lengths (4 to 12
    held-out points, up to 0.6 to 1.4 decades), 2000 replications of
    mu * d + tau * d * z_curve + sd * eps: the corrected tau-hat^2 (``bias_curves``) has mean
    within 3 Monte Carlo standard errors of tau^2, while the plain statistic on the same
    residuals is low by more than 5 of its standard errors and within 3 of the loss the
    leverage predicts (~40% low here; the clip at 0 acts in ~1.5% of replications and adds
    ~3e-4 tau^2).  With v = 0 and curves of one design, the correction is exactly the
    degrees-of-freedom factor m / (m - 1)."""
    rng = np.random.default_rng(2028)
    mu, tau, sd = 0.04, 0.03, 0.01
    sizes, reach = [4, 6, 8, 10, 12], [0.6, 0.8, 1.0, 1.2, 1.4]
    d = np.concatenate([np.linspace(0.1, r, n) for n, r in zip(sizes, reach, strict=True)])
    curve = np.repeat(np.arange(len(sizes)), sizes)
    v = np.full(d.shape, sd**2)
    corrected, plain = [], []
    for _ in range(2000):
        e = (
            mu * d
            + tau * d * rng.standard_normal(len(sizes))[curve]
            + sd * rng.standard_normal(d.shape)
        )
        r = e - check.law_error_bias(e, d) * d
        corrected.append(check.law_error_scale(r, v, d, bias_curves=curve) ** 2)
        plain.append(check.law_error_scale(r, v, d) ** 2)
    corrected, plain = np.asarray(corrected), np.asarray(plain)
    mcse = corrected.std() / np.sqrt(len(corrected))
    assert abs(corrected.mean() - tau**2) < 3 * mcse, (corrected.mean() / tau**2, mcse / tau**2)
    # the plain statistic's expected loss: the curve-level leverage of mu-hat (the docstring's
    # a and b against sum d^4 and sum d^2 v)
    w, s_all = d**2, np.sum(d**2)
    per_curve = np.bincount(curve, weights=w) / s_all
    a = np.sum(w**2 * (1 - 2 * per_curve[curve] + np.sum(per_curve**2)))
    b_loss = 2 * np.sum(w**2 * v) / s_all - np.sum(w**2) * np.sum(w * v) / s_all**2
    expected = (tau**2 * a - b_loss) / np.sum(w**2)
    plain_mcse = plain.std() / np.sqrt(len(plain))
    assert plain.mean() < tau**2 - 5 * plain_mcse, (plain.mean() / tau**2, plain_mcse / tau**2)
    assert abs(plain.mean() - expected) < 3 * plain_mcse, (plain.mean(), expected)
    # one design, no band variance: exactly m / (m - 1) on tau^2
    e, d5, curve5 = _simulated_errors(rng, mu, tau, 0.0, 5)
    r = e - check.law_error_bias(e, d5) * d5
    zero = np.zeros(d5.shape)
    assert check.law_error_scale(r, zero, d5, bias_curves=curve5) ** 2 == pytest.approx(
        5 / 4 * check.law_error_scale(r, zero, d5) ** 2, rel=1e-12
    )
    assert check.law_error_scale([0.0, 0.0], [1e-4, 1e-4], [0.5, 1.0], bias_curves=[0, 1]) == 0
    with pytest.raises(ValueError, match=">= 2 curves beyond the fitted range"):
        check.law_error_scale([0.1, 0.2], [0.01, 0.01], [0.5, 1.0], bias_curves=[0, 0])
    with pytest.raises(ValueError, match="one value per point"):
        check.law_error_scale([0.1, 0.2], [0.01, 0.01], [0.5, 1.0], bias_curves=[0])


def _shift_curve(result, label, per_decade):
    """The backtest with one curve's held-out observations moved by exp(per_decade * d)."""
    pred = result.predictions.copy()
    moved = pred["curve"] == label
    pred.loc[moved, "observed"] *= np.exp(per_decade * pred.loc[moved, "distance"])
    return dataclasses.replace(result, predictions=pred)


def test_law_bias_leaves_each_curve_out_and_shifts_its_predictions(pooled_backtest):
    """A curve's bias is learnt from the other curves only: moving one curve's held-out
    observations (a 30%/decade miss) changes every other curve's bias (and the baseline's
    bias) and not its own; the medians, bands and baseline are shifted by exp(bias * d)."""
    base = pooled_backtest.with_law_error("curves", bias=True)
    bias = base.law_bias
    assert list(bias.index) == pooled_backtest.batch.labels
    assert (bias["num_curves"] == len(bias) - 1).all()
    assert np.isfinite(bias.to_numpy(dtype=float)).all() and (bias["bias_se"] > 0).all()
    np.testing.assert_allclose(base.law_error, np.hypot(bias["tau"], bias["bias_se"]))
    label = "s0/0"
    shifted = _shift_curve(pooled_backtest, label, 0.3).with_law_error("curves", bias=True)
    for col in ("bias", "baseline_bias"):
        assert shifted.law_bias.loc[label, col] == pytest.approx(bias.loc[label, col], rel=1e-12)
        assert (shifted.law_bias[col].drop(label) > bias[col].drop(label)).all()
    # the shift itself: median and baseline times exp(mu * d) against the plain backtest
    plain, pred = pooled_backtest.predictions, base.predictions
    d, mu = pred["distance"], pred["curve"].map(bias["bias"])
    np.testing.assert_allclose(pred["median"], plain["median"] * np.exp(mu * d), rtol=1e-12)
    mu_ls = pred["curve"].map(bias["baseline_bias"])
    np.testing.assert_allclose(
        pred["debiased_baseline"], plain["baseline"] * np.exp(mu_ls * d), rtol=1e-12
    )
    # the baseline's bias by hand: its own log errors on the other curves
    others = plain[plain["curve"] != label]
    by_hand = check.law_error_bias(
        np.log(others["observed"] / others["baseline"]), others["distance"]
    )
    assert bias.loc[label, "baseline_bias"] == pytest.approx(by_hand, rel=1e-12)
    row = base.table.loc["overall"]
    err = np.log(pred["debiased_baseline"] / pred["observed"])
    assert row["debiased_baseline_rmse_log"] == pytest.approx(math.sqrt(np.mean(err**2)))


def test_law_bias_by_group_uses_only_the_group(pooled_backtest):
    """law_error_by='size': a curve's bias and tau come from the other seeds of its size;
    moving s0/0's observations changes the other s0 curves' bias, not s1's nor its own."""
    base = pooled_backtest.with_law_error("curves", bias=True, by="size")
    assert (base.law_bias["num_curves"] == POOL_SEEDS - 1).all()
    shifted = _shift_curve(pooled_backtest, "s0/0", 0.3).with_law_error(
        "curves", bias=True, by="size"
    )
    change = shifted.law_bias["bias"] - base.law_bias["bias"]
    s1 = [f"s1/{g}" for g in range(POOL_SEEDS)]
    assert change["s0/0"] == 0 and (change[s1] == 0).all() and (change[["s0/1", "s0/2"]] > 0).all()
    assert (shifted.law_error[s1] == base.law_error[s1]).all()
    # tau alone by group: the same grouping
    taus = _shift_curve(pooled_backtest, "s0/0", 0.3).with_law_error("curves", by="size")
    plain = pooled_backtest.with_law_error("curves", by="size")
    assert taus.law_bias is None and (taus.law_error[s1] == plain.law_error[s1]).all()


def test_law_bias_rejects_bad_arguments(pooled_backtest, pooled_curves):
    """Checked before any fit: law_bias and law_error_by need law_error='curves', a bool, an
    existing column constant within each curve, >= 3 curves per group."""
    frame = pooled_curves[0]
    kwargs = dict(by=["size", "seed"], split=BT_SPLIT)
    with pytest.raises(ValueError, match="law_bias=True is an option of the law error"):
        backtest(frame, "power_law_offset", law_bias=True, **kwargs)
    with pytest.raises(ValueError, match="law_error_by='size' is an option of the law error"):
        backtest(frame, "power_law_offset", law_error_by="size", **kwargs)
    with pytest.raises(ValueError, match="needs law_error='curves', got 'in_range'"):
        backtest(frame, "power_law_offset", law_error="in_range", law_bias=True, **kwargs)
    with pytest.raises(ValueError, match="law_bias must be True or False, got 'yes'"):
        backtest(frame, "power_law_offset", law_error="curves", law_bias="yes", **kwargs)
    with pytest.raises(DataError, match=r"law_error_by= names column\(s\) \['model'\]"):
        backtest(frame, "power_law_offset", law_error="curves", law_error_by="model", **kwargs)
    with pytest.raises(DataError, match="vary within curve"):
        backtest(frame, "power_law_offset", law_error="curves", law_error_by="x", **kwargs)
    with pytest.raises(ValueError, match="at least 3 curves"):
        backtest(
            frame, "power_law_offset", law_error="curves", law_error_by=["size", "seed"], **kwargs
        )
    with pytest.raises(ValueError, match="by must be a column name"):
        pooled_backtest.with_law_error("curves", by=3)
    with pytest.raises(ValueError, match="bias=True learns from the other curves"):
        pooled_backtest.with_law_error("in_range", bias=True)
    with pytest.raises(ValueError, match="already carry a law error"):
        pooled_backtest.with_law_error("curves").with_law_error("curves", bias=True)


def test_sbc_simulates_and_fits_in_one_unit_of_x():
    """A design far from x = 1 fixes the generic law's unit before anything is drawn, so the
    prior the data come from is the prior the fits use."""
    r = sbc(
        "power_law_offset",
        design={"x": [2e6, 2e10], "num_points": 12},
        num_replications=10,
        num_rank_draws=99,
        seed=1,
        model=bayescale.Model(discrepancy=None),
        inference=bayescale.Laplace(num_samples=100),
    )
    assert r.law.scales == r.batch.law.scales == {"x": 1e6}
    assert len(r.ranks) == 10 and {"E", "A", "alpha"} <= set(r.ranks.columns)
