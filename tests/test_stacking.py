"""Law averaging by leave-future-out predictive performance: compare(data, laws=, cv=LFO())."""

import math

import numpy as np
import pytest
from conftest import ou_rw_kernel
from scipy import stats

import bayescale
from bayescale.compare import LFO, log_predictive_density
from bayescale.model import scales
from bayescale.simulate import simulate

# Laplace draws (no NUTS compile); the default discrepancy on, so LFO scores each later point
# given the fitted ones (compare.log_predictive_density)
FIT = dict(
    model=bayescale.Model(likelihood="normal"),
    inference=bayescale.Laplace(num_chains=2, num_samples=500),
)
LAWS = ["broken_power_law", "power_law_offset"]


@pytest.fixture(scope="module")
def broken_data():
    """40 points from the one-break law: slope 0.1 before x = 100, 0.6 after."""
    return simulate("broken_power_law", num_points=40, noise=0.01, seed=3)


@pytest.fixture(scope="module")
def lfo_comparison(broken_data):
    return bayescale.compare(broken_data, laws=LAWS, cv=LFO(start=0.5, num_origins=3), **FIT)


def test_lfo_options_and_origins():
    assert LFO(start=0.5, num_origins=3).origins(40) == [20, 30, 39]
    assert LFO(start=0.9, num_origins=10).origins(10) == [9]
    assert LFO(start=0.95).origins(10) == []
    for bad in (
        dict(start=0.0),
        dict(start=1),
        dict(start=True),
        dict(num_origins=0),
        dict(horizon=0),
        dict(horizon=1.5),
        dict(on=3),
    ):
        with pytest.raises(ValueError):
            LFO(**bad)


def test_log_predictive_density_by_hand(broken_data):
    """The density of new points is the mean over draws of the normal likelihood of log y
    (no discrepancy: the points are independent given the parameters)."""
    exact = {**FIT, "model": bayescale.Model(likelihood="normal", discrepancy=None)}
    result = bayescale.fit(broken_data.iloc[:25], "power_law_offset", seed=0, **exact)
    rows = broken_data.iloc[25:30]
    got = log_predictive_density(result, rows, None)
    d = result.draws()
    mu = np.log(
        d["E"][..., None] + d["A"][..., None] * rows["x"].to_numpy() ** -d["alpha"][..., None]
    )
    ll = stats.norm.logpdf(np.log(rows["y"].to_numpy()), mu, d["sigma"][..., None])
    expected = np.log(np.mean(np.exp(ll.reshape(-1, ll.shape[-1])), axis=0))
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)


def test_log_predictive_density_by_hand_under_the_discrepancy(broken_data):
    """Under the discrepancy each new point's density is its normal predictive given the
    fitted points: delta_new | r_fit from the dense Gaussian of the OU + random-walk kernel."""
    fitted, rows = broken_data.iloc[:25], broken_data.iloc[25:30]
    result = bayescale.fit(fitted, "power_law_offset", seed=0, **FIT)
    assert result.posterior.discrepancy == "ou_rw"
    got = log_predictive_density(result, rows, None)
    d = {k: v.reshape(-1) for k, v in result.draws().items()}
    x_fit, x_new = fitted["x"].to_numpy(), rows["x"].to_numpy()
    u_fit, u_new = (np.log10(x / x_fit.min()) for x in (x_fit, x_new))
    ll = np.empty((d["E"].size, x_new.size))
    for i in range(d["E"].size):
        f = lambda x, i=i: np.log(d["E"][i] + d["A"][i] * x ** -d["alpha"][i])  # noqa: E731
        (s, q), sigma = scales(d["delta_r"][i], d["delta_w"][i]), d["sigma"][i]
        cov = ou_rw_kernel(u_fit, u_fit, s, q) + sigma**2 * np.eye(x_fit.size)
        k_new = ou_rw_kernel(u_new, u_fit, s, q)
        mean = k_new @ np.linalg.solve(cov, np.log(fitted["y"].to_numpy()) - f(x_fit))
        var = np.diag(ou_rw_kernel(u_new, u_new, s, q) - k_new @ np.linalg.solve(cov, k_new.T))
        scale = np.sqrt(sigma**2 + var)
        ll[i] = stats.norm.logpdf(np.log(rows["y"].to_numpy()), f(x_new) + mean, scale)
    expected = np.log(np.mean(np.exp(ll), axis=0))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-8)


def test_lfo_weights_the_law_that_extrapolates(lfo_comparison, broken_data):
    cmp = lfo_comparison
    assert cmp.cv == "lfo"
    assert set(cmp.weights) == set(LAWS)
    assert math.isclose(sum(cmp.weights.values()), 1.0, abs_tol=1e-6)
    # the true (broken) law predicts the later points better than the single power law
    assert cmp.best == "broken_power_law"
    assert cmp.weights["broken_power_law"] > 0.5, cmp.table
    # every later point is scored from every origin: (40-20) + (40-30) + (40-39)
    for elpd in cmp.loo.values():
        assert elpd.n_data_points == 31
        assert elpd.elpd == pytest.approx(float(elpd.elpd_i.sum()))
    assert "cv='lfo'" in repr(cmp)
    # the results are the fits to all the data
    for name, result in cmp.results.items():
        assert result.law.id == name
        observed = result.datatree_of().observed_data["y"].values
        assert observed.size == len(broken_data)


def test_stacked_prediction_mixes_the_laws_beyond_the_data(lfo_comparison):
    """Beyond the data the stacked predictive is the laws' mixture by weight: its mean is the
    weighted mean of the laws' predictive means (the same draws, seed for seed)."""
    cmp = lfo_comparison
    new = {"x": np.array([1e6, 1e7])}
    stacked = cmp.predict_draws(new, num_draws=4000, seed=1)
    assert stacked.shape == (4000, 2)
    per_law = {n: r.predict_draws(new, seed=1).reshape(-1, 2) for n, r in cmp.results.items()}
    w = cmp.weights
    # the stacked mean is the weighted mean of the laws' means (Monte Carlo error ~ sd/sqrt(n))
    expected = sum(w[n] * per_law[n].mean(axis=0) for n in per_law)
    spread = max(per_law[n].std(axis=0).max() for n in per_law)
    assert np.allclose(stacked.mean(axis=0), expected, atol=5 * spread / math.sqrt(4000) + 1e-12)


def test_lfo_rejects_bad_inputs(broken_data):
    with pytest.raises(ValueError, match="laws="):
        bayescale.compare({"a": None, "b": None}, cv=LFO())
    with pytest.raises(ValueError, match="cv must be"):
        bayescale.compare(broken_data, laws=LAWS, cv="kfold")
    with pytest.raises(ValueError, match="at least two laws"):
        bayescale.compare(broken_data, laws=["power_law"], cv=LFO())
    with pytest.raises(ValueError, match="MAP"):
        bayescale.compare(broken_data, laws=LAWS, cv=LFO(), inference=bayescale.MAP())
    with pytest.raises(ValueError, match="noise"):
        bayescale.compare(
            broken_data, laws=LAWS, cv=LFO(), model=bayescale.Model(noise="loglinear")
        )
    with pytest.raises(ValueError, match="common covariate"):
        bayescale.compare(broken_data, laws=["power_law", "chinchilla"], cv=LFO())
    with pytest.raises(bayescale.DataError, match="no forecast origin"):
        bayescale.compare(broken_data.iloc[:12], laws=LAWS, cv=LFO(start=0.5, num_origins=1))
    with pytest.raises(ValueError, match="give laws"):
        bayescale.compare({"a": None, "b": None}, model=bayescale.Model())


def test_loo_of_laws_fitted_to_data(broken_data):
    """laws= with the default cv="loo": each law fitted to the data, then PSIS-LOO."""
    cmp = bayescale.compare(broken_data, laws=LAWS, warn=False, **FIT)
    assert cmp.cv == "loo"
    assert set(cmp.weights) == set(LAWS)
    assert math.isclose(sum(cmp.weights.values()), 1.0, abs_tol=1e-6)
    assert cmp.table["max_pareto_k"].notna().all()
