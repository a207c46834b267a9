"""Model comparison (issue 6): PSIS-LOO table, stacking weights, stacked predictive."""

import numpy as np
import pandas as pd
import pytest
from conftest import ou_rw_kernel

import bayescale
from bayescale.compare import Comparison, loo_tree
from bayescale.result import Result
from bayescale.simulate import simulate

# Laplace draws keep the test fast (no NUTS compile); PSIS-LOO needs only posterior draws.
# test_methods.py's Laplace test uses these settings on 40 points too: one program for both.
# The data are drawn from the exact law, so the laws are fitted as that model (no discrepancy);
# the LOO terms under the discrepancy are tested against the dense Gaussian below.
FIT = dict(
    model=bayescale.Model(likelihood="normal", discrepancy=None),
    inference=bayescale.Laplace(num_chains=2, num_samples=500),
    warn=False,
)


@pytest.fixture(scope="module")
def broken_data():
    """40 points from the one-break law: slope 0.1 before x = 100, 0.6 after."""
    return simulate("broken_power_law", num_points=40, noise=0.01, seed=3)


@pytest.fixture(scope="module")
def comparison(broken_data):
    results = {
        "broken_power_law": bayescale.fit(broken_data, "broken_power_law", seed=0, **FIT),
        "power_law_offset": bayescale.fit(broken_data, "power_law_offset", seed=0, **FIT),
    }
    return bayescale.compare(results, warn=False)


def test_true_law_wins_against_a_wrong_one(comparison):
    """Data drawn from the broken power law: it ranks first, by more than 4 SE of the
    difference, and takes almost all the stacking weight."""
    table = comparison.table
    assert comparison.best == "broken_power_law"
    diff = table.loc["power_law_offset", "elpd_diff"]  # negative: below the best
    dse = table.loc["power_law_offset", "dse"]
    assert -diff > 4 * dse, table[["elpd", "se", "elpd_diff", "dse", "weight"]]
    assert comparison.weights["broken_power_law"] > 0.9, comparison.weights
    assert sum(comparison.weights.values()) == pytest.approx(1.0)


def test_table_columns_and_pareto_k(comparison):
    table = comparison.table
    for col in ("elpd", "se", "elpd_diff", "dse", "weight", "max_pareto_k", "num_high_pareto_k"):
        assert col in table.columns
    assert table["se"].gt(0).all()
    # elpd_loo can not exceed the in-sample log predictive density of the same terms
    for name, result in comparison.results.items():
        ll = loo_tree(result).log_likelihood[result.law.response].values
        lppd = np.sum(np.log(np.mean(np.exp(ll), axis=(0, 1))))
        assert table.loc[name, "elpd"] < lppd


def test_stacked_predictive_mixes_laws_by_weight(comparison, broken_data):
    new = pd.DataFrame({"x": [10.0, 1e6]})
    draws = comparison.predict_draws(new, num_draws=2000, seed=1)
    assert draws.shape == (2000, 2)
    table = comparison.predict(new, num_draws=2000, seed=1)
    assert list(table.columns[:1]) == ["x"]
    assert (table["q5"] < table["q50"]).all() and (table["q50"] < table["q95"]).all()
    # the stacked predictive follows the winner: its median lies in the winner's 5-95% band
    winner = comparison.results[comparison.best].predict(new)
    assert ((table["q50"] > winner["q5"]) & (table["q50"] < winner["q95"])).all()


def test_compare_rejects_bad_inputs(comparison, broken_data):
    one = comparison.results["broken_power_law"]
    with pytest.raises(ValueError, match="at least two"):
        bayescale.compare({"a": one})
    moved = broken_data.copy()
    moved.loc[moved.index[0], "y"] *= 1.01  # one observation moved; same shape, same program
    other = bayescale.fit(moved, "power_law_offset", **FIT)
    with pytest.raises(ValueError, match="different observations"):
        bayescale.compare({"a": one, "b": other})
    point = other.datatree.copy()
    point.attrs["method"] = "map"
    point = Result(point, other.law, other.likelihood, other.columns)
    with pytest.raises(ValueError, match="point estimate"):
        bayescale.compare({"a": one, "b": point})
    two = pd.concat([broken_data.assign(run="a"), moved.assign(run="b")])
    several = bayescale.fit(two, "power_law_offset", by="run", **FIT)
    with pytest.raises(ValueError, match=r"not the Result of one fit .*result\[label\]"):
        bayescale.compare({"a": one, "b": several})
    bayescale.compare({"a": one, "b": several["a"]}, warn=False)  # one curve of it: fine
    assert isinstance(comparison, Comparison)


def test_loo_terms_under_the_discrepancy_match_the_dense_gaussian():
    """Under the discrepancy PSIS-LOO weights by log p(y_i | y_-i, theta): for normal noise
    the conditional of the dense Gaussian, y ~ N(log f, K + sigma^2 I), K the OU + random-walk
    kernel, p(y_i | y_-i) = N(y_i - g_i / c_ii, 1 / c_ii), g = Sigma^-1 r, c = diag(Sigma^-1)."""
    from bayescale.laws import get_law
    from bayescale.model import Posterior, scales
    from bayescale.precision import float64
    from bayescale.predict import leave_one_out_log_density

    post = Posterior(get_law("power_law_offset"), "normal+ou_rw")
    rng = np.random.default_rng(0)
    x = np.sort(10 ** rng.uniform(0, 3, 12))
    values = {"E": 0.5, "A": 2.0, "alpha": 0.3, "sigma": 0.02, "delta_r": 0.06, "delta_w": 0.4}
    values = {k: np.array([v, 1.3 * v]) for k, v in values.items()}  # two draws
    log_y = np.log(0.5 + 2.0 * x**-0.3) + 0.05 * rng.standard_normal(x.size)
    got = float64(leave_one_out_log_density)(post, values, {"x": np.log(x)}, log_y)
    assert got.shape == (2, x.size)
    u = np.log10(x / x[0])
    for d in range(2):
        v = {k: a[d] for k, a in values.items()}
        r = log_y - np.log(v["E"] + v["A"] * x ** -v["alpha"])
        cov = ou_rw_kernel(u, u, *scales(v["delta_r"], v["delta_w"]))
        prec = np.linalg.inv(cov + v["sigma"] ** 2 * np.eye(x.size))
        g, c = prec @ r, np.diag(prec)
        want = -0.5 * np.log(2 * np.pi / c) - 0.5 * g**2 / c
        np.testing.assert_allclose(got[d], want, rtol=1e-6)
