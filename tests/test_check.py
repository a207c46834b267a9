"""Calibration checks (issue 7): simulation-based calibration and extrapolation backtests."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import scaled
from scipy import stats

import bayescale
from bayescale.check import _chi2_uniform, backtest, least_squares_fit, sbc
from bayescale.data import DataError, prepare
from bayescale.laws import catalogue, get_law
from bayescale.simulate import simulate

# ------------------------------------------------------------------------- SBC
# Every catalogue law with >= 200 replications under BAYESCALE_FULL=1; by default (CI) the
# cheapest law (two parameters + sigma + nu) with 30 replications (5 bins of 20 ranks, 6
# expected per bin: a gross miscalibration still fails it).  All sites of all laws tested
# are judged together: Bonferroni, each p-value > 0.01 / (number of (law, site) tests).
SBC_LAWS = scaled(sorted(catalogue()), ["kaplan_n"])
SBC_REPLICATIONS = scaled(200, 30)
SBC_SETTINGS = scaled(
    {"num_chains": 2, "num_warmup": 500, "num_samples": 500},
    {"num_chains": 2, "num_warmup": 200, "num_samples": 200},
)
SBC_ALPHA = 0.01
NUM_SBC_TESTS = sum(len(bayescale.model.Posterior(get_law(k)).site_names) for k in SBC_LAWS)


def test_chi2_uniformity_test_accepts_uniform_and_rejects_skewed_ranks():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, 2000)
    assert _chi2_uniform(uniform, 99, 20)["p_value"] > 1e-3
    # an overconfident posterior: true values pile up in the outer ranks
    skewed = np.concatenate([uniform[:1000], rng.integers(0, 10, 500), rng.integers(90, 100, 500)])
    out = _chi2_uniform(skewed, 99, 20)
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
        progress_bar=False,
        **SBC_SETTINGS,
    )


@pytest.mark.slow
def test_sbc_ranks_uniform(sbc_result):
    r = sbc_result
    # nothing dropped: one rank per replication and site, non-converged fits included
    assert len(r.ranks) == SBC_REPLICATIONS
    assert list(r.ranks.columns) == list(r.batch.parameter_names)
    assert r.ranks.to_numpy().min() >= 0 and r.ranks.to_numpy().max() <= r.num_rank_draws
    assert r.num_not_converged == int((r.batch.status != "converged").sum())
    threshold = SBC_ALPHA / NUM_SBC_TESTS
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
    law = get_law("chinchilla")
    data = prepare(simulate(law, noise=0.0, num_points=40, seed=3), law)
    theta = least_squares_fit(law, data)
    for name, value in law.reference.items():
        assert theta[name] == pytest.approx(value, rel=1e-4), name
    huber = least_squares_fit(law, data, loss="huber")
    for name, value in law.reference.items():
        assert huber[name] == pytest.approx(value, rel=1e-3), name


# -------------------------------------------------------------------- backtest
BT_SETTINGS = {"num_chains": 2, "num_warmup": 200, "num_samples": 200}
NUM_CURVES = 6


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    """Six saturating curves E + A x^-alpha with log-normal noise 0.01, 30 points each."""
    parts = []
    for i in range(NUM_CURVES):
        params = {"E": 2.0 + 0.1 * i, "A": 5.0, "alpha": 0.4 + 0.04 * i}
        df = simulate("power_law_offset", params=params, noise=0.01, seed=100 + i)
        parts.append(df.assign(run=f"r{i}").rename(columns={"x": "step", "y": "loss"}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def simulated_backtest(curves):
    return backtest(
        curves,
        "power_law_offset",
        by="run",
        split=0.1,
        columns={"x": "step", "y": "loss"},
        seed=0,
        progress_bar=False,
        **BT_SETTINGS,
    )


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
    """Data from the law itself, noise sd 0.01: extrapolating one decade from the first
    10% of the steps must cover like a calibrated band and err at the noise level."""
    t = simulated_backtest.table
    pred = simulated_backtest.predictions
    # final points: one per curve, independent curves; P(miss of a 90% band) ~ 0.1 each
    num_missed = int((~t.loc[t.index != "overall", "final_in_90"].astype(bool)).sum())
    assert stats.binom.sf(num_missed - 1, NUM_CURVES, 0.1) > 1e-3, t
    # the posterior median is as good as least squares on the correct law (both ~ noise)
    overall = t.loc["overall"]
    assert overall["rmse_log"] < 3 * 0.01, t
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
