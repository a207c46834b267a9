"""bayescale.simulate: shapes, names, determinism, parameters, design, noise, validation."""

import numpy as np
import pandas as pd
import pytest

from bayescale.laws import get_law
from bayescale.simulate import simulate


def test_columns_and_shape_follow_the_law_and_its_design():
    df = simulate("chinchilla")
    law = get_law("chinchilla")
    assert list(df.columns) == ["n_params", "n_tokens", "loss"]
    assert len(df) == law.design["num_points"] == 60
    for c in law.covariates:
        lo, hi = law.design[c]
        assert df[c].between(lo, hi).all()
    assert np.isfinite(df.to_numpy()).all() and (df.to_numpy() > 0).all()


def test_response_first_is_not_assumed():
    # kaplan_bcrit: the covariate is the loss, the response the critical batch size
    df = simulate("kaplan_bcrit", num_points=7)
    assert list(df.columns) == ["loss", "critical_batch_size"]
    assert df.shape == (7, 2)


def test_same_seed_same_data_other_seed_other_data():
    a = simulate("kaplan_nd", seed=3)
    b = simulate("kaplan_nd", seed=3)
    c = simulate("kaplan_nd", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_noise_zero_gives_the_law_exactly_at_reference_values():
    df = simulate("kaplan_n", noise=0.0, num_points=50, seed=1)
    ref = get_law("kaplan_n").reference
    expected = (ref["N_c"] / df["n_params"]) ** ref["alpha_N"]
    np.testing.assert_allclose(df["loss"], expected, rtol=1e-12)


def test_params_override_reference_values():
    df = simulate("chinchilla", params={"E": 3.0}, noise=0.0, num_points=40, seed=2)
    r = {**get_law("chinchilla").reference, "E": 3.0}
    expected = (
        r["E"] + r["A"] * df["n_params"] ** -r["alpha"] + r["B"] * df["n_tokens"] ** -r["beta"]
    )
    np.testing.assert_allclose(df["loss"], expected, rtol=1e-12)
    assert df["loss"].min() > 3.0  # the irreducible loss moved from 1.69 to 3


def test_formula_law_with_params_and_design():
    df = simulate(
        "y = A * x**-alpha",
        params={"A": 2.0, "alpha": 0.5},
        design={"x": (10.0, 1000.0)},
        num_points=30,
        noise=0.0,
    )
    assert list(df.columns) == ["x", "y"]
    assert df["x"].between(10.0, 1000.0).all()
    np.testing.assert_allclose(df["y"], 2.0 * df["x"] ** -0.5, rtol=1e-12)


def test_covariates_are_log_uniform_and_noise_has_the_requested_sd():
    n = 20000
    df = simulate("power_law", num_points=n, noise=0.1, seed=5)
    log_x = np.log10(df["x"])  # design x in [1, 1e4]: log10 x ~ U(0, 4)
    assert abs(log_x.mean() - 2.0) < 0.05
    assert abs(log_x.std() - 4 / np.sqrt(12)) < 0.05
    ref = get_law("power_law").reference
    resid = np.log(df["y"]) - np.log(ref["A"] * df["x"] ** -ref["alpha"])
    assert abs(resid.mean()) < 0.005
    assert abs(resid.std() - 0.1) < 0.005


def test_design_may_carry_num_points_and_noise():
    df = simulate("kaplan_n", design={"num_points": 5, "noise": 0.0})
    ref = get_law("kaplan_n").reference
    assert len(df) == 5
    np.testing.assert_allclose(df["loss"], (ref["N_c"] / df["n_params"]) ** ref["alpha_N"])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"params": {"gamma": 1.0}}, "gamma"),
        ({"params": {"E": float("nan")}}, "E="),
        ({"design": {"n_params": (1e9, 1e8)}}, "n_params"),
        ({"design": {"n_params": (0.0, 1e8)}}, "n_params"),
        ({"design": {"n_layers": (1, 10)}}, "n_layers"),
        ({"design": {"n_tokens": "wide"}}, "n_tokens"),
        ({"num_points": 0}, "num_points"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        simulate("chinchilla", **kwargs)


def test_missing_parameters_and_ranges_are_named():
    with pytest.raises(ValueError, match=r"\['E', 'A', 'alpha'\]"):
        simulate("E + A * n_params**-alpha", design={"n_params": (1e6, 1e9)})
    with pytest.raises(ValueError, match=r"no reference value.*\['alpha'\]"):
        simulate("E + A * n_params**-alpha", params={"E": 1.0, "A": 10.0})
    with pytest.raises(ValueError, match=r"no design range.*\['n_params'\]"):
        simulate("E + A * n_params**-alpha", params={"E": 1.0, "A": 10.0, "alpha": 0.3})


def test_unknown_law_is_a_value_error():
    with pytest.raises(ValueError, match="unknown law"):
        simulate("no_such_law")


def test_moved_names_warn_with_their_new_location():
    """Simulators and constants moved out of bayescale.simulate stay importable from it for
    one release: the same object, with a DeprecationWarning naming where it lives now."""
    import bayescale.simulate as sim
    from bayescale.units import PF_DAY
    from bayescale.workflows.isoflop_sim import simulate_isoflop

    with pytest.warns(DeprecationWarning, match=r"bayescale\.workflows\.isoflop_sim\.simulate"):
        assert sim.simulate_isoflop is simulate_isoflop
    with pytest.warns(DeprecationWarning, match=r"bayescale\.units\.PF_DAY"):
        assert sim.PF_DAY == PF_DAY
    with pytest.raises(AttributeError, match="no_such_name"):
        sim.no_such_name  # noqa: B018


def test_simulate_with_the_discrepancy():
    """discrepancy=(s, q) adds delta drawn after the noise: (0, 0) leaves the data as they
    were; a positive scale moves the log responses by a path that is smooth along x."""
    plain = simulate("power_law_offset", num_points=200, noise=0.0, seed=5)
    zero = simulate("power_law_offset", num_points=200, noise=0.0, discrepancy=(0, 0), seed=5)
    pd.testing.assert_frame_equal(plain, zero)
    moved = simulate("power_law_offset", num_points=200, noise=0.0, discrepancy=(0.05, 0), seed=5)
    delta = np.log(moved["y"] / plain["y"]).to_numpy()[np.argsort(plain["x"].to_numpy())]
    assert 0.01 < delta.std() < 0.2  # the OU scale s = 0.05, give or take its path's spread
    # neighbours along x are close: an OU path, not independent noise of the same size
    assert np.abs(np.diff(delta)).mean() < 0.5 * delta.std()
    with pytest.raises(ValueError, match="several"):
        simulate("chinchilla", discrepancy=(0.01, 0.01))
    with pytest.raises(ValueError, match="discrepancy"):
        simulate("power_law_offset", discrepancy=(0.01,))
    with pytest.raises(ValueError, match="discrepancy"):
        simulate("power_law_offset", discrepancy=(-0.01, 0.01))
