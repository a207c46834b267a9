"""One fit end to end: reproducibility, predictions, diagnostics, persistence."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FIT_SETTINGS

import bayescale
from bayescale import NUTS
from bayescale.result import quantile_column


def _data(seed=0, n=30):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.uniform(0, np.log(1e4), n))
    y = (2.0 + 5.0 * x**-0.5) * np.exp(0.01 * rng.standard_normal(n))
    return pd.DataFrame({"steps": x, "train_loss": y})


def _fit(seed=3):
    return bayescale.fit(
        _data(),
        "power_law_offset",
        columns={"x": "steps", "y": "train_loss"},
        seed=seed,
        inference=NUTS(**FIT_SETTINGS),
    )


@pytest.fixture(scope="module")
def result():
    return _fit()


def test_same_seed_same_draws(result):
    again = _fit()
    for name in result.parameter_names:
        np.testing.assert_array_equal(result.draws()[name], again.draws()[name])


def test_other_seed_other_draws(result):
    other = _fit(seed=4)
    assert not np.array_equal(result.draws()["alpha"], other.draws()["alpha"])


def test_datatree_groups_and_dims(result):
    dt = result.datatree
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood", "prior"):
        assert group in dt.children, group
    for name in ("E", "A", "alpha", "sigma", "nu"):
        assert dt.posterior[name].dims == ("fit", "chain", "draw")
    chains, draws = FIT_SETTINGS["num_chains"], FIT_SETTINGS["num_samples"]
    assert dt.posterior.sizes["chain"] == chains and dt.posterior.sizes["draw"] == draws
    assert dt.posterior.sizes["fit"] == 1 and len(result) == 1 and result.labels == [0]
    assert dt.log_likelihood["y"].shape == (1, chains, draws, 30)
    np.testing.assert_allclose(dt.observed_data["y"].values[0], _data()["train_loss"].values)
    assert dt.prior["alpha"].dims == ("chain", "draw")
    assert dt.prior_predictive["y"].dims == ("fit", "chain", "draw", "point")
    # a plain fit keeps NUTS's usual step-size target (pooled fits default to 0.99)
    assert dt.attrs["target_accept_prob"] == 0.8


def test_arviz_stats_work_unchanged(result):
    import arviz_stats as azs

    summary = result.summary()
    assert set(result.parameter_names) <= set(summary["parameter"])
    assert (summary["fit"] == 0).all() and {"mean", "sd", "q5", "q50", "q95"} <= set(summary)
    one = result.datatree_of()
    assert one.posterior["alpha"].dims == ("chain", "draw")
    rhat = azs.rhat(one.posterior.dataset[list(result.parameter_names)])
    max_rhat = max(float(v) for v in rhat.data_vars.values())
    assert result.diagnostics.loc[0, "max_rhat"] == pytest.approx(max_rhat, rel=1e-9)
    loo = azs.loo(one)
    assert np.isfinite(loo.elpd)


def test_save_load_identical(result, tmp_path):
    path = result.save(tmp_path / "fit.nc")
    loaded = bayescale.load(path)
    assert type(loaded) is bayescale.Result
    assert loaded.datatree.identical(result.datatree)
    assert loaded.law.formula.text == result.law.formula.text
    assert loaded.columns == result.columns
    pd.testing.assert_frame_equal(
        loaded.predict({"steps": [1e5]}), result.predict({"steps": [1e5]})
    )


def test_predict_columns_and_bands(result):
    new = pd.DataFrame({"steps": [10.0, 1e3, 1e5, 1e7]})
    obs = result.predict(new, quantiles=(0.025, 0.05, 0.25, 0.5, 0.75, 0.95))
    for col in ("steps", "mean", "q2.5", "q5", "q25", "q50", "q75", "q95", "extrapolation"):
        assert col in obs.columns, col
    assert (obs["q5"] <= obs["q50"]).all() and (obs["q50"] <= obs["q95"]).all()
    mean_pred = result.predict(new, kind="mean")
    # under the default discrepancy the law and delta trade off inside the data, so the law's
    # band need not be narrower than a new run's; a new run's band grows beyond the data
    width = (obs["q95"] - obs["q5"]).to_numpy()
    assert width[1] < width[2] < width[3], width
    # far extrapolation (3 decades beyond the data) is flagged with its distance
    assert obs["extrapolation"].iloc[1] == "interpolation"
    assert obs["decades_beyond"].iloc[1] == 0
    assert obs["decades_beyond"].iloc[3] == pytest.approx(7 - np.log10(_data()["steps"].max()))
    assert "steps +" in obs["extrapolation"].iloc[3]
    # the asymptote: far out the law tends to E
    e_median = np.median(result.draws()["E"])
    assert mean_pred["q50"].iloc[3] == pytest.approx(e_median, rel=0.01)
    assert "predictions" in result.datatree.children
    shape = (FIT_SETTINGS["num_chains"], FIT_SETTINGS["num_samples"], 4)
    assert result.datatree.predictions["y"].shape == shape


def test_quantile_column_names():
    assert quantile_column(0.05) == "q5"
    assert quantile_column(0.025) == "q2.5"
    assert quantile_column(0.5) == "q50"


def test_non_convergence_warns_with_numbers():
    with pytest.warns(bayescale.ConvergenceWarning, match=r"max r̂ = \d") as record:
        r = bayescale.fit(
            _data(),
            "power_law_offset",
            columns={"x": "steps", "y": "train_loss"},
            inference=NUTS(num_chains=2, num_warmup=5, num_samples=20),
            seed=1,
        )
    assert r.status is not bayescale.Status.converged
    messages = [str(w.message) for w in record if w.category is bayescale.ConvergenceWarning]
    assert "ESS" in messages[0] and "divergent" in messages[0]


def _formula_fit(**kwargs):
    """A user formula fitted at fit's default draws (4 x 1000 + 1000) under the model the
    data are drawn from (the law exact: no discrepancy): one compiled program for the two
    tests below."""
    df = _data().rename(columns={"steps": "n_tokens", "train_loss": "loss"})
    model = bayescale.Model(discrepancy=None)
    return bayescale.fit(df, "E + A * n_tokens**-alpha", seed=0, model=model, **kwargs)


def test_converged_fit_does_not_warn():
    # at fit's default draws: the strict r̂ <= 1.01 needs them (benchmarks/RESULTS.md)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayescale.ConvergenceWarning)
        r = _formula_fit()
    assert r.status is bayescale.Status.converged


def test_formula_string_law():
    r = _formula_fit()
    assert set(r.parameter_names) >= {"E", "A", "alpha"}
    assert abs(np.median(r.draws()["alpha"]) - 0.5) < 0.1


def test_single_chain_rhat_splits_the_chain():
    """One chain per fit (large batches) still gets an r̂: that of its two halves."""
    import arviz_stats as azs
    import xarray as xr

    from bayescale.convergence import rhat as split_rhat

    rng = np.random.default_rng(0)
    draws = np.stack([rng.normal(size=(1, 1000)), np.cumsum(rng.normal(size=(1, 1000)), -1)])
    ds = xr.Dataset({"theta": (("fit", "chain", "draw"), draws)}, coords={"fit": ["iid", "walk"]})
    rhat = split_rhat(ds)["theta"].values
    assert rhat[0] < 1.01  # independent draws: the halves agree
    assert rhat[1] > 1.1  # a random walk: the halves disagree
    two = xr.Dataset({"theta": (("chain", "draw"), rng.normal(size=(2, 500)))})
    assert float(split_rhat(two)["theta"]) == float(azs.rhat(two)["theta"])  # >= 2 chains: as is


def test_pointwise_groups_made_on_access_equal_an_eager_build(monkeypatch):
    """fit and group("posterior") leave log_likelihood and the predictive groups to the
    first access of datatree, which computes them once; they are the groups build_datatree
    computes at once from the same draws, data and seed."""
    import jax

    import bayescale.result
    from bayescale.data import prepare
    from bayescale.datatree import POINTWISE_GROUPS, build_datatree

    calls = []
    restore = bayescale.result.restore_pointwise
    monkeypatch.setattr(
        bayescale.result, "restore_pointwise", lambda *a: calls.append(1) or restore(*a)
    )
    fresh = _fit()
    assert set(fresh.group("posterior").data_vars) >= set(fresh.parameter_names)
    assert not calls  # neither fit nor a stored group computed them
    post = fresh.posterior
    values = {k: v[None] for k, v in fresh.draws().items()}  # (fit, chain, draw)
    fits = [prepare(_data(), post.law, {"x": "steps", "y": "train_loss"})]
    with jax.enable_x64(True):  # as inside fit
        z = np.asarray(post.unconstrain(values))
        samples = {"z": z, "lp": np.zeros(z.shape[:3])}
        eager = build_datatree(post, fits, [0], None, samples, seed=3, attrs={}, pointwise=True)
    for name in POINTWISE_GROUPS:
        np.testing.assert_allclose(
            fresh.datatree[name].dataset["y"].values,
            eager[name].dataset["y"].values,
            rtol=1e-9,
            err_msg=name,
        )
    assert "dropped_groups" not in fresh.datatree.attrs
    assert len(calls) == 1  # computed once, on the first access
    with pytest.raises(KeyError, match="no group 'posteriors'"):
        fresh.group("posteriors")


def test_generic_law_priors_do_not_depend_on_the_unit_of_x():
    """The same curve in steps and in thousands of steps gives the same posterior of the
    unit-free parameters and the same predictions: the law reads x in a unit chosen from the
    data (a power of ten), so A is the reducible term where the data begin in both."""
    data = _data()
    settings = dict(columns={"x": "steps", "y": "train_loss"}, seed=3,
                    inference=bayescale.MAP())  # fmt: skip
    small = bayescale.fit(data, "power_law_offset", **settings)
    big = bayescale.fit(data.assign(steps=data.steps * 1e3), "power_law_offset", **settings)
    assert small.law.scales == {"x": 1.0} and big.law.scales == {"x": 1e3}
    a, b = small.group("posterior"), big.group("posterior")
    for name in ("E", "A", "alpha", "sigma"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6)
    np.testing.assert_allclose(
        small.predict({"steps": [3e4]})["q50"], big.predict({"steps": [3e7]})["q50"], rtol=1e-6
    )


def test_the_chosen_unit_survives_save_and_load(tmp_path):
    data = _data()
    result = bayescale.fit(
        data.assign(steps=data.steps * 1e9), "power_law_offset",
        columns={"x": "steps", "y": "train_loss"}, seed=3, inference=bayescale.MAP(),
    )  # fmt: skip
    assert result.law.scales == {"x": 1e9}
    loaded = bayescale.load(result.save(tmp_path / "fit.nc"))
    assert loaded.law.scales == {"x": 1e9}
    pd.testing.assert_frame_equal(
        loaded.predict({"steps": [1e14]}), result.predict({"steps": [1e14]})
    )
