"""The 1.0 API shape (issue 16): fit(data, law, *, by, columns, model, inference, seed).

One result type for every option; option objects checked when made, an option that does
not apply to a method is not accepted; the 0.1 keywords warn with their new spelling and
give the same fit; results saved by 0.1 load.
"""

import dataclasses
import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import FIT_SETTINGS

import bayescale
from bayescale import MAP, NUTS, Laplace, Model, Result

DATA = Path(__file__).parent / "data"
LAW = "power_law_offset"


def _curves(num=3, n=30, seed=0):
    """``num`` curves of ``n`` points (the first one is test_fit.py's data)."""
    frames = []
    for i in range(num):
        rng = np.random.default_rng(seed + i)
        x = np.exp(rng.uniform(0, np.log(1e4), n))
        y = (2.0 + 5.0 * x ** -(0.5 - 0.05 * i)) * np.exp(0.01 * rng.standard_normal(n))
        frames.append(pd.DataFrame({"x": x, "y": y, "curve": f"c{i}"}))
    return pd.concat(frames, ignore_index=True)


def _one():
    return _curves(1).drop(columns="curve")


# ---------------------------------------------------------------------- option objects
def test_options_are_frozen_keyword_only_and_hashable():
    nuts = NUTS(num_chains=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        nuts.num_chains = 3
    with pytest.raises(TypeError):
        NUTS(2)
    assert NUTS(num_chains=2) == nuts and hash(NUTS(num_chains=2)) == hash(nuts)
    model = Model(priors={"alpha": "lognormal(-1, 0.5)"}, pooled=["alpha"])
    assert model.pooled == ("alpha",) and hash(model) == hash(Model(**dataclasses.asdict(model)))
    assert NUTS().step_target(pooled=False) == 0.8 and NUTS().step_target(pooled=True) == 0.99
    assert NUTS(target_accept_prob=0.9).step_target(pooled=True) == 0.9


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: NUTS(num_chains=0), ValueError, r"NUTS\(num_chains=0\)"),
        (lambda: NUTS(num_warmup=-1), ValueError, r"NUTS\(num_warmup=-1\)"),
        (lambda: NUTS(thin=1.5), ValueError, r"NUTS\(thin=1.5\)"),
        (lambda: NUTS(target_accept_prob=1.0), ValueError, r"target_accept_prob=1.0"),
        (lambda: NUTS(max_tree_depth=16), ValueError, r"max_tree_depth=16"),
        (lambda: NUTS(dense_mass="yes"), TypeError, r"dense_mass='yes'"),
        (lambda: NUTS(keep=3), ValueError, r"NUTS\(keep=3\)"),
        (lambda: NUTS(devices="cpu"), TypeError, r"devices='cpu'"),
        (lambda: MAP(num_steps=0), ValueError, r"MAP\(num_steps=0\)"),
        (lambda: MAP(flat_priors=1), TypeError, r"MAP\(flat_priors=1\)"),
        (lambda: Laplace(num_samples=True), ValueError, r"Laplace\(num_samples=True\)"),
        (lambda: Model(likelihood="cauchy"), ValueError, r"likelihood='cauchy'.*unknown"),
        (lambda: Model(noise="quadratic"), ValueError, r"noise='quadratic'"),
        (lambda: Model(priors={"alpha": "cauchy(1, 2)"}), ValueError, r"\{'alpha': 'cauchy"),
        (lambda: Model(priors="alpha"), TypeError, r"priors='alpha'"),
        (lambda: Model(pooled="alpha"), TypeError, r"pooled='alpha'"),
    ],
)
def test_options_checked_when_made(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: MAP(num_chains=2), "num_chains"),
        (lambda: MAP(thin=2), "thin"),
        (lambda: MAP(target_accept_prob=0.9), "target_accept_prob"),
        (lambda: MAP(keep=10), "keep"),
        (lambda: Laplace(flat_priors=True), "flat_priors"),
        (lambda: Laplace(dense_mass=False), "dense_mass"),
        (lambda: NUTS(num_steps=100), "num_steps"),
        (lambda: NUTS(flat_priors=True), "flat_priors"),
        (lambda: Model(num_chains=2), "num_chains"),
    ],
)
def test_an_option_that_does_not_apply_is_an_error_naming_it(make, name):
    with pytest.raises(TypeError, match=name):
        make()


def test_fit_checks_how_options_combine():
    data = _curves()
    with pytest.raises(ValueError, match=r"NUTS\(chunk_size=2\).*single fit"):
        bayescale.fit(_one(), LAW, inference=NUTS(chunk_size=2))
    with pytest.raises(ValueError, match="by="):
        bayescale.fit(data, LAW, model=Model(pooled=("alpha",)))
    with pytest.raises(ValueError, match="NUTS"):
        bayescale.fit(data, LAW, by="curve", model=Model(pooled=("alpha",)), inference=MAP())
    with pytest.raises(ValueError, match="pooled= must name parameters"):
        bayescale.fit(data, LAW, by="curve", model=Model(pooled=("gamma",)))
    with pytest.raises(TypeError, match="inference must be"):
        bayescale.fit(data, LAW, inference=MAP)
    with pytest.raises(TypeError, match="model must be"):
        bayescale.fit(data, LAW, model={"likelihood": "normal"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_chain'"):
        bayescale.fit(data, LAW, num_chain=2)


# ---------------------------------------------------------------------- one result type
@pytest.fixture(scope="module")
def single_nuts():
    return bayescale.fit(_one(), LAW, seed=3, inference=NUTS(**FIT_SETTINGS), warn=False)


def test_fit_returns_one_type_for_every_option(single_nuts):
    data = _curves()
    small = NUTS(num_chains=2, num_warmup=100, num_samples=100)
    results = {
        "single nuts": single_nuts,
        "single map": bayescale.fit(_one(), LAW, inference=MAP()),
        "single laplace": bayescale.fit(_one(), LAW, inference=Laplace(num_samples=50)),
        "by map": bayescale.fit(data, LAW, by="curve", inference=MAP()),
        "by laplace": bayescale.fit(data, LAW, by="curve", inference=Laplace(num_samples=50)),
        "by nuts": bayescale.fit(data, LAW, by="curve", inference=small, warn=False),
        "pooled": bayescale.fit(
            data, LAW, by="curve", model=Model(pooled=("alpha",)), inference=small, warn=False
        ),
    }
    for name, r in results.items():
        assert type(r) is Result, name
        single = name.startswith("single")
        dim = "fit" if single else "curve"
        assert r.dim == dim and r.datatree.posterior["alpha"].dims[0] == dim, name
        assert len(r) == (1 if single else 3), name
        diag = r.diagnostics
        assert isinstance(diag, pd.DataFrame) and list(diag.index) == r.labels, name
        assert {"max_rhat", "min_ess_bulk", "num_divergent", "status", "reason"} <= set(diag)
        assert isinstance(r.status, bayescale.Status), name
        summary = r.summary()
        assert list(summary.columns[:2]) == [dim, "parameter"], name
        assert len(summary) == len(r) * len(r.parameter_names), name
        view = r[r.labels[-1]]
        assert type(view) is Result and len(view) == 1 and view.dim == dim, name
        assert view.datatree.posterior["alpha"].shape[1:] == r.datatree.posterior["alpha"].shape[1:]
    # pooled: the population's own draws, without a fit dimension
    assert results["pooled"].datatree.posterior["alpha_pop"].dims == ("chain", "draw")
    # every option's summary has the same columns (one convention)
    columns = {tuple(r.summary().columns[1:]) for r in results.values()}
    assert len(columns) == 1, columns


def test_single_fit_views_and_predictions(single_nuts):
    r = single_nuts
    assert r.labels == [0] and r[0].labels == [0]
    assert r.draws()["alpha"].shape == (FIT_SETTINGS["num_chains"], FIT_SETTINGS["num_samples"])
    pred = r.predict({"x": [10.0, 1e6]})
    assert list(pred.columns[:2]) == ["x", "mean"]
    beyond = 6 - np.log10(_one()["x"].max())
    np.testing.assert_allclose(r.extrapolation_distance({"x": [10.0, 1e6]}), [0, beyond])
    assert pred["decades_beyond"].iloc[1] == pytest.approx(beyond)
    with pytest.raises(ValueError, match="name one"):
        bayescale.fit(_curves(), LAW, by="curve", inference=MAP()).datatree_of()


# ---------------------------------------------------------------------- old keywords
EMPTY = {"x": [], "y": []}  # raises DataError after the keywords are mapped: no fit runs


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"likelihood": "normal"}, "use fit(..., model=Model(likelihood='normal'))"),
        ({"noise": "loglinear"}, "use fit(..., model=Model(noise='loglinear'))"),
        ({"priors": {"alpha": "lognormal(0, 1)"}}, "model=Model(priors={'alpha': "),
        ({"num_chains": 2},
         "fit(num_chains=2) is deprecated; use fit(..., inference=NUTS(num_chains=2))"),
        ({"num_warmup": 10}, "inference=NUTS(num_warmup=10)"),
        ({"num_samples": 10}, "inference=NUTS(num_samples=10)"),
        ({"thin": 2}, "inference=NUTS(thin=2)"),
        ({"dense_mass": False}, "inference=NUTS(dense_mass=False)"),
        ({"target_accept_prob": 0.9}, "inference=NUTS(target_accept_prob=0.9)"),
        ({"max_tree_depth": 8}, "inference=NUTS(max_tree_depth=8)"),
        ({"num_starts": 4}, "inference=NUTS(num_starts=4)"),
        ({"progress_bar": False}, "inference=NUTS(progress_bar=False)"),
        ({"method": "map"}, "fit(method='map') is deprecated; use fit(..., inference=MAP())"),
        ({"method": "laplace"}, "inference=Laplace()"),
        ({"method": "map", "map_steps": 50},
         "fit(map_steps=50) is deprecated; use fit(..., inference=MAP(num_steps=50))"),
        ({"method": "map", "flat_priors": True}, "inference=MAP(flat_priors=True)"),
        ({"method": "laplace", "map_steps": 50}, "inference=Laplace(num_steps=50)"),
    ],
)  # fmt: skip
def test_each_old_keyword_warns_with_its_new_spelling(old, new):
    with pytest.warns(DeprecationWarning) as record, pytest.raises(bayescale.DataError):
        bayescale.fit(EMPTY, LAW, **old)
    messages = [str(w.message) for w in record if w.category is DeprecationWarning]
    assert any(new in m for m in messages), messages
    assert all(w.filename == __file__ for w in record), [w.filename for w in record]


def test_old_group_pooled_and_fit_batch_keywords_warn():
    data = _curves().rename(columns={"curve": "seed"})
    with pytest.warns(DeprecationWarning) as record, pytest.raises(bayescale.DataError):
        bayescale.fit(data, LAW, group="run", pooled=["alpha"])  # no column "run"
    messages = [str(w.message) for w in record]
    assert "fit(group='run') is deprecated; use fit(..., by='run')" in messages
    assert "fit(pooled=['alpha']) is deprecated; use fit(..., model=Model(pooled=('alpha',)))" in (
        messages
    )
    for old, new in [
        ({}, "fit_batch(data, law, by=...) is deprecated; use fit(data, law, by=...)"),
        ({"chunk_size": 4},
         "fit_batch(chunk_size=4) is deprecated; use fit(..., inference=NUTS(chunk_size=4))"),
        ({"vectorized": True}, "inference=NUTS(vectorized=True)"),
        ({"group_size": 8}, "inference=NUTS(group_size=8)"),
        ({"keep": 10}, "inference=NUTS(keep=10)"),
        ({"devices": jax.devices()}, "inference=NUTS(devices=["),
        ({"method": "map", "devices": jax.devices()}, "inference=MAP(devices=["),
    ]:  # fmt: skip
        with pytest.warns(DeprecationWarning) as record, pytest.raises(bayescale.DataError):
            bayescale.fit_batch(data, LAW, by="run", **old)
        messages = [str(w.message) for w in record]
        assert any(new in m for m in messages), (old, messages)
        assert all(w.filename == __file__ for w in record), [w.filename for w in record]


def test_old_keyword_beside_its_new_spelling_is_an_error():
    with pytest.raises(TypeError, match="both model= and"):
        bayescale.fit(EMPTY, LAW, model=Model(), likelihood="normal")
    with pytest.raises(TypeError, match="both inference= and"):
        bayescale.fit(EMPTY, LAW, inference=MAP(), num_starts=4)
    with pytest.raises(TypeError, match="both by='a' and"):
        bayescale.fit(EMPTY, LAW, by="a", group="b")
    with pytest.raises(ValueError, match="flat_priors"), pytest.warns(DeprecationWarning):
        bayescale.fit(EMPTY, LAW, method="laplace", flat_priors=True)


def _same(a: Result, b: Result):
    assert type(a) is type(b) is Result
    for name in a.parameter_names:
        np.testing.assert_array_equal(a.datatree.posterior[name], b.datatree.posterior[name])
    assert a.datatree.attrs == b.datatree.attrs
    pd.testing.assert_frame_equal(a.diagnostics, b.diagnostics)


def test_old_keywords_give_the_fit_of_the_new_spelling(single_nuts):
    data = _curves()
    with pytest.warns(DeprecationWarning):
        old = bayescale.fit(_one(), LAW, seed=3, warn=False, **FIT_SETTINGS)
    _same(old, single_nuts)
    with pytest.warns(DeprecationWarning):
        old = bayescale.fit(
            _one(), LAW, method="map", likelihood="normal", map_steps=200, flat_priors=True,
            num_starts=4, seed=1,
        )  # fmt: skip
    new = bayescale.fit(
        _one(), LAW, model=Model(likelihood="normal"),
        inference=MAP(num_steps=200, flat_priors=True, num_starts=4), seed=1,
    )  # fmt: skip
    _same(old, new)
    with pytest.warns(DeprecationWarning):
        old = bayescale.fit_batch(
            data, LAW, by="curve", method="laplace", num_chains=2, num_samples=50, seed=2
        )
    new = bayescale.fit(
        data, LAW, by="curve", inference=Laplace(num_chains=2, num_samples=50), seed=2
    )
    _same(old, new)
    small = {"num_chains": 2, "num_warmup": 100, "num_samples": 100}
    with pytest.warns(DeprecationWarning):
        old = bayescale.fit(data, LAW, group="curve", pooled=["alpha"], seed=0, warn=False, **small)
    new = bayescale.fit(
        data, LAW, by="curve", model=Model(pooled=("alpha",)), inference=NUTS(**small), seed=0,
        warn=False,
    )  # fmt: skip
    _same(old, new)
    assert new.datatree.attrs["target_accept_prob"] == 0.99


# ---------------------------------------------------------------------- seeds
def test_a_key_seed_is_recorded_whole():
    key = jax.random.key(3)
    with_key = bayescale.fit(_one(), LAW, inference=Laplace(num_samples=50), seed=key)
    with_int = bayescale.fit(_one(), LAW, inference=Laplace(num_samples=50), seed=3)
    data = np.asarray(jax.random.key_data(key)).ravel().tolist()
    assert json.loads(with_key.datatree.attrs["seed"]) == data == [0, 3]
    assert with_int.datatree.attrs["seed"] == 3
    # the same key: the same draws
    np.testing.assert_array_equal(
        with_key.datatree.posterior["alpha"], with_int.datatree.posterior["alpha"]
    )
    with pytest.raises(TypeError, match="seed must be"):
        bayescale.fit(_one(), LAW, inference=MAP(), seed=1.5)


# ---------------------------------------------------------------------- persistence
def test_results_saved_by_0_1_load():
    """``tests/data/*-0.1.nc`` were written by bayescale 0.1 (commit 877f787): a NUTS
    ``FitResult`` (1 chain x 20 draws of curve c0 of ``tests/data/make_0_1.py``) and a MAP
    ``BatchResult`` of two curves."""
    one = bayescale.load(DATA / "fit-0.1.nc")
    assert type(one) is Result and one.dim == "fit" and one.labels == [0] and one.by is None
    assert one.datatree.posterior["alpha"].dims == ("fit", "chain", "draw")
    assert one.draws()["alpha"].shape == (1, 20)
    # the 0.1 summary's posterior mean of E (printed when the file was made)
    assert one.summary().set_index("parameter").loc["E", "mean"] == pytest.approx(
        1.998451, abs=1e-6
    )
    diag = one.diagnostics.loc[0]
    assert diag["num_draws"] == 20 and diag["status"] == "high_rhat"  # 20 draws: not converged
    assert one.predict({"x": [1e5]})["q50"].iloc[0] > 1.9
    batch = bayescale.load(DATA / "batch-0.1.nc")
    assert type(batch) is Result and batch.dim == "curve" and batch.labels == ["c0", "c1"]
    assert batch.method == "map" and batch.status is bayescale.Status.converged
    alpha = batch.summary().set_index(["curve", "parameter"])["mean"]
    assert alpha[("c0", "alpha")] == pytest.approx(0.504633, abs=1e-6)
    assert alpha[("c1", "alpha")] == pytest.approx(0.401496, abs=1e-6)
    assert (batch.diagnostics["map_failed_starts"] == 0).all()
    assert batch["c1"].draws()["alpha"].shape == (1, 1)


def test_save_load_round_trip(tmp_path):
    r = bayescale.fit(_curves(), LAW, by="curve", inference=Laplace(num_samples=50), seed=0)
    loaded = bayescale.load(r.save(tmp_path / "r.nc"))
    assert loaded.datatree.identical(r.datatree) and loaded.by == "curve"
    pd.testing.assert_frame_equal(loaded.diagnostics, r.diagnostics)


def test_old_result_names_are_deprecated_aliases():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert bayescale.FitResult is Result and bayescale.BatchResult is Result
    assert any("use bayescale.Result" in str(w.message) for w in record)


def test_convergence_warning_points_at_the_caller():
    with pytest.warns(bayescale.ConvergenceWarning, match="did not converge in 3 steps") as rec:
        bayescale.fit(_curves(), LAW, by="curve", inference=MAP(num_steps=3, num_starts=2))
    assert all(w.filename == __file__ for w in rec), [w.filename for w in rec]
    with pytest.warns(bayescale.ConvergenceWarning) as rec:
        bayescale.fit(_one(), LAW, inference=MAP(num_steps=3, num_starts=2))
    assert all(w.filename == __file__ for w in rec), [w.filename for w in rec]


def test_options_from_keywords_maps_0_1_settings_silently():
    """For functions whose own signatures take 0.1-style settings (backtest, workflows)."""
    from bayescale.api import options_from_keywords

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        out = options_from_keywords(
            likelihood="normal", num_chains=2, seed=3, columns={"x": "t"}, group="run"
        )
        laplace = options_from_keywords(method="laplace", map_steps=50, thin=2)
    assert out == {
        "columns": {"x": "t"},
        "seed": 3,
        "model": Model(likelihood="normal"),
        "inference": NUTS(num_chains=2),
        "by": "run",
    }
    assert laplace == {"model": Model(), "inference": Laplace(num_steps=50)}  # thin never applied
    with pytest.raises(TypeError, match="unexpected keyword argument 'chains'"):
        options_from_keywords(chains=2)
    with pytest.raises(ValueError, match=r"NUTS\(num_chains=0\)"):
        options_from_keywords(num_chains=0)
