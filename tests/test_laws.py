"""The law catalogue, the safe formula parser, law resolution and the one log density.

Reference formulas are written out by hand in numpy from ``../shared/DOMAIN.md`` (they do
not go through the parser), so a parser bug cannot hide behind itself.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from numpyro.infer.util import potential_energy
from scipy.optimize import brentq

from bayescale.laws import (
    COVARIATE_NAMES,
    FormulaError,
    Law,
    LawError,
    Prior,
    catalogue,
    get_law,
    law_from_formula,
    law_from_spec,
    law_from_toml,
    parse_formula,
)
from bayescale.model import LIKELIHOODS, Posterior

pytestmark = pytest.mark.usefixtures("float64")  # tests call densities directly


# ----------------------------------------------------------------------------- catalogue

# id -> (parameter names, response, covariates)
EXPECTED = {
    "kaplan_n": (("alpha_N", "N_c"), "loss", ("n_params",)),
    "kaplan_d": (("alpha_D", "D_c"), "loss", ("n_tokens",)),
    "kaplan_c": (("alpha_C", "C_c"), "loss", ("flops",)),
    "kaplan_cmin": (("alpha_Cmin", "C_cmin"), "loss", ("flops_min",)),
    "kaplan_nd": (("alpha_N", "alpha_D", "N_c", "D_c"), "loss", ("n_params", "n_tokens")),
    "kaplan_ns": (("alpha_N", "alpha_S", "N_c", "S_c"), "loss", ("n_params", "steps")),
    "kaplan_bcrit": (("B_star", "alpha_B"), "critical_batch_size", ("loss",)),
    "mccandlish_steps": (("S_min", "E_min"), "steps", ("batch_size",)),
    "kaplan_frontier_n": (("N_e", "p_N"), "n_params", ("flops_min",)),
    "kaplan_frontier_s": (("S_e", "p_S"), "steps", ("flops_min",)),
    "kaplan_frontier_b": (("B_e", "p_B"), "batch_size", ("flops_min",)),
    "kaplan_frontier_d": (("D_e", "p_D"), "n_tokens", ("flops_min",)),
    "kaplan_per_token": (("a", "b", "c"), "loss", ("token_index",)),
    "chinchilla": (("E", "A", "B", "alpha", "beta"), "loss", ("n_params", "n_tokens")),
    "power_law": (("A", "alpha"), "y", ("x",)),
    "power_law_offset": (("E", "A", "alpha"), "y", ("x",)),
}

# Laws whose variables are the generic, dimensionless x and y.
GENERIC = {
    "power_law",
    "power_law_offset",
    "broken_power_law",
    "alabdulmohsin_m3",
    "alabdulmohsin_m4",
}


def scipy_prior(prior: Prior):
    """The scipy.stats twin of a prior (independent of bayescale's own distributions)."""
    a = prior.args
    return {
        "lognormal": lambda: st.lognorm(s=a[1], scale=math.exp(a[0])),
        "normal": lambda: st.norm(a[0], a[1]),
        "halfnormal": lambda: st.halfnorm(scale=a[0]),
        "uniform": lambda: st.uniform(a[0], a[1] - a[0]),
        "gamma": lambda: st.gamma(a[0], scale=1.0 / a[1]),
    }[prior.kind]()


def test_catalogue_has_the_expected_laws():
    laws = catalogue()
    missing = sorted(set(EXPECTED) - set(laws))
    assert not missing, f"catalogue lacks {missing}"
    for law_id, (params, response, covariates) in EXPECTED.items():
        law = laws[law_id]
        assert law.id == law_id
        assert law.parameter_names == params, law_id
        assert law.response == response, law_id
        assert law.covariates == covariates, law_id


@pytest.mark.parametrize("law_id", sorted(catalogue()))
def test_catalogue_law_is_documented(law_id):
    law = catalogue()[law_id]
    assert law.source.get("citation", "").strip(), f"{law_id} has no source citation"
    for var in (law.response, *law.covariates):
        assert var in law.units, f"{law_id}: no unit entry for {var!r}"
        if law_id not in GENERIC:
            assert law.units[var].strip(), f"{law_id}: empty unit for {var!r}"
    assert set(law.reference) == set(law.parameters), f"{law_id}: missing reference values"
    for cov in law.covariates:
        lo, hi = law.design[cov]
        assert 0 < lo < hi, (law_id, cov)
    assert int(law.design["num_points"]) > len(law.parameters) + 1
    assert float(law.design["noise"]) > 0


@pytest.mark.parametrize("law_id", sorted(catalogue()))
def test_reference_values_lie_in_central_99_percent_of_prior(law_id):
    law = catalogue()[law_id]
    for name, param in law.parameters.items():
        lo, hi = scipy_prior(param.prior).ppf([0.005, 0.995])
        assert lo < param.reference < hi, (
            f"{law_id}.{name}: reference {param.reference} outside the central 99% "
            f"[{lo:.3g}, {hi:.3g}] of its prior {param.prior}"
        )


def test_known_covariate_names_have_units():
    for name in ("n_params", "n_tokens", "flops", "flops_min", "steps", "loss"):
        assert COVARIATE_NAMES[name]


# ----------------------------------------------------------------------------- formulas vs numpy

# Each catalogue law written by hand (numpy, float64) from DOMAIN.md.
NUMPY_LAWS = {
    "kaplan_n": lambda p, x: (p["N_c"] / x["n_params"]) ** p["alpha_N"],
    "kaplan_d": lambda p, x: (p["D_c"] / x["n_tokens"]) ** p["alpha_D"],
    "kaplan_c": lambda p, x: (p["C_c"] / x["flops"]) ** p["alpha_C"],
    "kaplan_cmin": lambda p, x: (p["C_cmin"] / x["flops_min"]) ** p["alpha_Cmin"],
    "kaplan_nd": lambda p, x: (
        ((p["N_c"] / x["n_params"]) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / x["n_tokens"])
        ** p["alpha_D"]
    ),
    "kaplan_ns": lambda p, x: (
        (p["N_c"] / x["n_params"]) ** p["alpha_N"] + (p["S_c"] / x["steps"]) ** p["alpha_S"]
    ),
    "kaplan_bcrit": lambda p, x: p["B_star"] * x["loss"] ** (-1.0 / p["alpha_B"]),
    "mccandlish_steps": lambda p, x: p["S_min"] + p["E_min"] / x["batch_size"],
    "kaplan_frontier_n": lambda p, x: p["N_e"] * x["flops_min"] ** p["p_N"],
    "kaplan_frontier_s": lambda p, x: p["S_e"] * x["flops_min"] ** p["p_S"],
    "kaplan_frontier_b": lambda p, x: p["B_e"] * x["flops_min"] ** p["p_B"],
    "kaplan_frontier_d": lambda p, x: p["D_e"] * x["flops_min"] ** p["p_D"],
    "kaplan_per_token": lambda p, x: p["a"] + p["b"] * x["token_index"] ** -p["c"],
    "chinchilla": lambda p, x: (
        p["E"] + p["A"] * x["n_params"] ** -p["alpha"] + p["B"] * x["n_tokens"] ** -p["beta"]
    ),
    "power_law": lambda p, x: p["A"] * x["x"] ** -p["alpha"],
    "isoflop_parabola": lambda p, x: (
        p["L_star"] * np.exp(p["k"] * (np.log(x["n_params"]) - p["log_n_star"]) ** 2)
    ),
    "isoflop_quadratic": lambda p, x: np.exp(
        p["c0"] + p["c1"] * np.log(x["x"]) + p["c2"] * np.log(x["x"]) ** 2
    ),
    "power_law_offset": lambda p, x: p["E"] + p["A"] * x["x"] ** -p["alpha"],
    "lr_annealing": lambda p, x: (
        p["E"] + p["A"] * x["lr_area"] ** -p["alpha"] - p["C"] * x["lr_annealing_area"]
    ),
    "broken_power_law": lambda p, x: (
        p["a"]
        + p["b"]
        * x["x"] ** -p["c0"]
        * (1 + (x["x"] / p["d1"]) ** (1 / p["f1"])) ** (-p["c1"] * p["f1"])
    ),
    "alabdulmohsin_m3": lambda p, x: p["beta"] * (1 / x["x"] + p["gamma"]) ** p["c"],
    "alabdulmohsin_m4": lambda p, x: (
        p["E"]
        + np.array(
            [  # the root w in (0, D) of w = f (D - w)^alpha, f = beta x^-c
                brentq(lambda w, f=f: w - f * (p["D"] - w) ** p["alpha"], 0, p["D"], rtol=1e-15)
                for f in p["beta"] * x["x"] ** -p["c"]
            ]
        )
    ),
}

# Far extrapolation points per covariate (beyond every design range).
FAR = {
    "n_params": [1e13, 1e3],
    "n_tokens": [1e15, 1e5],
    "flops": [1e6, 1e-12],
    "flops_min": [1e6, 1e-12],
    "steps": [1e8, 2.0],
    "batch_size": [1e9, 1.0],
    "loss": [1.0, 20.0],
    "token_index": [1e9],
    "x": [1e9, 1e-3],
    "lr_area": [1e7, 1.0],
    "lr_annealing_area": [1e4, 1e-12],
}


def covariate_grid(law: Law) -> dict[str, np.ndarray]:
    """Design low/mid/high and far extrapolation for each covariate, one value per point."""
    cols = {}
    for cov in law.covariates:
        lo, hi = law.design[cov]
        cols[cov] = [lo, math.sqrt(lo * hi), hi, *FAR[cov]]
    n = max(len(v) for v in cols.values())
    # cycle shorter lists; shift the others so covariates vary independently across points
    return {
        c: np.array([v[(i + j) % len(v)] for i in range(n)], dtype=np.float64)
        for j, (c, v) in enumerate(cols.items())
    }


def test_numpy_twins_cover_the_catalogue():
    assert set(NUMPY_LAWS) == set(catalogue())


@pytest.mark.parametrize("law_id", sorted(NUMPY_LAWS))
def test_log_law_equals_log_of_direct_formula(law_id):
    law = catalogue()[law_id]
    params = law.reference
    x = covariate_grid(law)
    expected = np.log(NUMPY_LAWS[law_id](params, x))
    assert np.all(np.isfinite(expected))
    got = np.asarray(law.log_mean(params, {k: np.log(v) for k, v in x.items()}))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=law_id)


@pytest.mark.parametrize("law_id", sorted(NUMPY_LAWS))
def test_log_law_in_float32_is_finite_and_close(law_id):
    law = catalogue()[law_id]
    params = law.reference
    x = covariate_grid(law)
    expected = np.log(NUMPY_LAWS[law_id](params, x))
    got = law.log_mean(
        {k: np.float32(v) for k, v in params.items()},
        {k: np.log(v).astype(np.float32) for k, v in x.items()},
    )
    got = np.asarray(got)
    assert got.dtype == np.float32, f"{law_id}: float32 inputs promoted to {got.dtype}"
    assert np.all(np.isfinite(got)), law_id
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=law_id)


def test_chinchilla_far_extrapolation_does_not_overflow():
    law = catalogue()["chinchilla"]
    n = np.array([1e13, 1e15, 1e20])
    d = np.array([1e15, 1e18, 1e25])
    p = law.reference
    for dtype in (np.float64, np.float32):
        got = np.asarray(
            law.log_mean(
                {k: dtype(v) for k, v in p.items()},
                {"n_params": np.log(n).astype(dtype), "n_tokens": np.log(d).astype(dtype)},
            )
        )
        assert np.all(np.isfinite(got))
        # the loss approaches E from above
        assert np.all(got > math.log(p["E"]))
        assert got[-1] - math.log(p["E"]) < 1e-4


def test_log_space_formula_survives_where_direct_evaluation_overflows():
    # (C/x)^a with C = 1e300, x = 1e-300: the direct power overflows in float64, the log does not.
    law = law_from_formula("(C / x)**a")
    got = law.log_mean({"C": 1e300, "a": 2.0}, {"x": np.log(np.array([1e-300]))})
    np.testing.assert_allclose(np.asarray(got), 2.0 * (math.log(1e300) + math.log(1e300)))


def test_formula_functions_and_subtraction():
    law = law_from_formula("sqrt(A) * exp(-b * x) + log(c + x) - d", covariates=["x"])
    p = {"A": 4.0, "b": 0.5, "c": 3.0, "d": 0.25}
    x = np.array([0.5, 1.0, 2.0])
    expected = np.log(np.sqrt(4.0) * np.exp(-0.5 * x) + np.log(3.0 + x) - 0.25)
    got = np.asarray(law.log_mean(p, {"x": np.log(x)}))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # value form (not log) of the same formula
    f = parse_formula(law.formula.text)
    values = {**p, "x": x}
    logs = {k: np.log(v) for k, v in values.items()}
    np.testing.assert_allclose(np.asarray(f.value(values, logs)), np.exp(expected), rtol=1e-12)


def test_parsed_formula_names_and_exponent_names():
    f = parse_formula("E + A * n_params^-alpha + B * n_tokens**-beta")
    assert f.names == ("E", "A", "n_params", "alpha", "B", "n_tokens", "beta")
    assert f.exponent_names == {"alpha", "beta"}


# ----------------------------------------------------------------------------- get_law

USER_TOML = """
id = "my_law"
title = "a user law"
formula = "E + A * n_params**-alpha"
response = "loss"

[source]
citation = "me"

[variables]
loss = { unit = "nats/token" }
n_params = { unit = "parameters" }

[parameters.E]
prior = "lognormal(0.5, 0.5)"
reference = 1.7

[parameters.A]
prior = "lognormal(5, 2)"
reference = 400.0

[parameters.alpha]
prior = "lognormal(-1.1, 0.5)"
reference = 0.34

[design]
n_params = [1e7, 1e10]
num_points = 20
noise = 0.02
"""


def test_get_law_by_id_returns_the_catalogue_law():
    assert get_law("chinchilla") is catalogue()["chinchilla"]


def test_get_law_by_path_and_str_path(tmp_path):
    path = tmp_path / "my_law.toml"
    path.write_text(USER_TOML)
    for spec in (path, str(path)):
        law = get_law(spec)
        assert law.id == "my_law"
        assert law.parameter_names == ("E", "A", "alpha")
        assert law.covariates == ("n_params",)
        assert law.response == "loss"
        assert law.reference == {"E": 1.7, "A": 400.0, "alpha": 0.34}
        assert law.parameters["A"].prior == Prior("lognormal", (5.0, 2.0))


def test_get_law_missing_toml_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(LawError, match="does not exist") as err:
        get_law(str(missing))
    assert "nope.toml" in str(err.value)


def test_get_law_formula_string():
    law = get_law("E + A * n_params**-alpha")
    assert law.parameter_names == ("E", "A", "alpha")
    assert law.covariates == ("n_params",)
    assert law.response == "loss"
    # an exponent-only parameter gets the exponent prior, a coefficient the wide one
    assert law.parameters["alpha"].prior.kind == "lognormal"
    assert law.parameters["alpha"].prior.args[0] < 0
    assert law.parameters["A"].prior.args[1] >= law.parameters["alpha"].prior.args[1]


def test_get_law_formula_string_with_response():
    law = get_law("y = A * x**-alpha")
    assert law.parameter_names == ("A", "alpha")
    assert law.covariates == ("x",)
    assert law.response == "y"
    np.testing.assert_allclose(
        np.asarray(law.log_mean({"A": 3.0, "alpha": 0.5}, {"x": np.log(np.array([4.0]))})),
        [math.log(3.0 * 4.0**-0.5)],
    )


def test_get_law_accepts_a_law_and_applies_priors():
    law = catalogue()["power_law"]
    assert get_law(law) is law
    changed = get_law(law, priors={"alpha": "lognormal(-1, 0.25)", "sigma": "halfnormal(0.3)"})
    assert changed.parameters["alpha"].prior == Prior("lognormal", (-1.0, 0.25))
    assert changed.sigma_prior == Prior("halfnormal", (0.3,))
    assert law.parameters["alpha"].prior == Prior("lognormal", (-1.2, 1.0))  # not mutated


def test_prior_for_unknown_parameter_names_it():
    with pytest.raises(LawError, match=r"'gamma'.*not a parameter of law 'chinchilla'"):
        get_law("chinchilla", priors={"gamma": "normal(0, 1)"})


def test_unknown_id_lists_catalogue_ids():
    with pytest.raises(LawError, match="unknown law 'no_such_law'") as err:
        get_law("no_such_law")
    for law_id in catalogue():
        assert law_id in str(err.value)


def test_unknown_id_close_to_a_family_lists_that_family():
    with pytest.raises(LawError, match="unknown law 'kaplan_q'") as err:
        get_law("kaplan_q")
    assert "kaplan_n" in str(err.value) and "kaplan_bcrit" in str(err.value)


def test_get_law_rejects_other_types():
    with pytest.raises(LawError, match="got int"):
        get_law(3)


# (formula, text the message must contain)
BAD_FORMULAS = [
    ("E + * n_params", "not a valid expression"),
    ("E + A * (n_params", "not a valid expression"),
    ("__import__('os')", "'__import__' is not allowed"),
    ("__import__('os').system('true') + n_params", "is not allowed"),
    ("n_params.real", "Attribute"),
    ("A * n_params.__class__", "Attribute"),
    ("foo(n_params)", "function 'foo' is not allowed"),
    ("(lambda: 1)() + n_params", "is not allowed"),
    ("lambda n_params: n_params", "Lambda"),
    ("n_params[0]", "Subscript"),
    ("'abc' + n_params", "constant 'abc' is not a number"),
    ("True * n_params", "constant True is not a number"),
    ("n_params < 3", "Compare"),
    ("n_params == 3", "Compare"),
    ("_A * n_params", "'_A' may not start with an underscore"),
    ("A * n_params % 2", "Mod"),
    ("exp * n_params", "'exp' is a function and must be called"),
    ("log(n_params, 2)", "log() takes exactly one argument"),
    ("A if n_params else B", "IfExp"),
    ("[n_params]", "List"),
    ("", "non-empty"),
    ("n_params" + " + n_params" * 1000, "limit"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FORMULAS)
def test_parser_rejects_with_a_message_naming_the_problem(text, message):
    with pytest.raises(FormulaError) as err:
        parse_formula(text)
    assert message in str(err.value)


@pytest.mark.parametrize(("text", "message"), BAD_FORMULAS)
def test_get_law_rejects_bad_formula_as_law_error(text, message):
    with pytest.raises(LawError) as err:
        get_law(text)
    assert message in str(err.value)


def test_parser_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(FormulaError):
        parse_formula(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert not marker.exists()


def test_formula_without_covariate_is_rejected():
    with pytest.raises(LawError, match="has no covariate"):
        get_law("A * z**-alpha")


def test_formula_with_bad_response_name():
    with pytest.raises(LawError, match="not a name"):
        law_from_formula("1y = A * x**-alpha")


def test_toml_unknown_formula_name_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(USER_TOML.replace("A * n_params**-alpha", "A * n_params**-alpha * mystery"))
    with pytest.raises(LawError) as err:
        get_law(path)
    msg = str(err.value)
    assert "'mystery'" in msg and "my_law" in msg


def test_toml_declared_variable_is_accepted(tmp_path):
    text = USER_TOML.replace("A * n_params**-alpha", "A * n_params**-alpha * width").replace(
        'n_params = { unit = "parameters" }',
        'n_params = { unit = "parameters" }\nwidth = { unit = "units" }',
    )
    law = law_from_toml(text)
    assert law.covariates == ("n_params", "width")
    assert law.units["width"] == "units"


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        ("lognorml(0, 1)", "is not of the form"),
        ("normal(0)", "takes 2 argument"),
        ("normal(0, -1)", "invalid scale"),
        ("uniform(2, 1)", "invalid scale or range"),
        ("normal(a, 1)", "non-numeric"),
        ("normal(nan, 1)", "non-finite"),
        ("normal 0 1", "is not of the form"),
    ],
)
def test_toml_bad_prior_text(tmp_path, prior, message):
    path = tmp_path / "bad_prior.toml"
    path.write_text(USER_TOML.replace('prior = "lognormal(5, 2)"', f'prior = "{prior}"'))
    with pytest.raises(LawError) as err:
        get_law(path)
    msg = str(err.value)
    assert message in msg and "'A'" in msg and prior in msg


def test_bad_prior_text_in_priors_argument():
    with pytest.raises(LawError, match="is not of the form"):
        get_law("chinchilla", priors={"E": "lognormal[0, 1]"})


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('formula = "E + A * n_params**-alpha"', "", "lacks the key 'formula'"),
        ('formula = "E + A * n_params**-alpha"', 'formula = "E + A * n_params**-"', "valid"),
        ("[parameters.E]", "[parameters.F]\nprior = 'normal(0, 1)'\n[parameters.E]", "'F'"),
        ('response = "loss"', 'response = "n_params"', "also appears in the formula"),
        ("n_params = [1e7, 1e10]", "n_params = [1e10, 1e7]", "design range"),
        ('title = "a user law"', 'title = "a user law', "not valid TOML"),
    ],
)
def test_toml_malformed_law(old, new, message):
    text = USER_TOML.replace(old, new)
    assert text != USER_TOML
    with pytest.raises(LawError, match=message):
        law_from_toml(text)


def test_catalogue_laws_round_trip_through_their_spec():
    from bayescale.laws import law_from_spec

    for law in catalogue().values():
        again = law_from_spec(law.to_spec())
        assert again.parameter_names == law.parameter_names
        assert again.covariates == law.covariates
        assert again.reference == law.reference
        assert again.sigma_prior == law.sigma_prior


# ----------------------------------------------------------------------------- log density

# The hand-written log density must equal NumPyro's density of the twin model.  Priors are
# varied so that every prior transform (lognormal, normal, halfnormal, uniform, gamma) is hit.
DENSITY_LAWS = {
    "chinchilla": lambda: catalogue()["chinchilla"],
    "kaplan_nd": lambda: catalogue()["kaplan_nd"],
    "kaplan_bcrit": lambda: catalogue()["kaplan_bcrit"],
    "kaplan_frontier_s": lambda: catalogue()["kaplan_frontier_s"],  # normal prior on p_S
    "chinchilla_other_priors": lambda: catalogue()["chinchilla"].with_priors(
        {
            "E": "uniform(0.5, 3)",
            "A": "halfnormal(1000)",
            "alpha": "gamma(4, 12)",
            "sigma": "gamma(2, 40)",
        }
    ),
}


def simulated_data(law: Law, rng: np.random.Generator, n: int = 25, masked: int = 3):
    log_x = {}
    for cov in law.covariates:
        lo, hi = law.design[cov]
        log_x[cov] = rng.uniform(math.log(lo), math.log(hi), n)
    log_mean = np.asarray(law.log_mean(law.reference, log_x))
    log_y = log_mean + 0.05 * rng.standard_t(4, n)
    mask = np.ones(n, dtype=bool)
    mask[:masked] = False  # padded points must contribute nothing, in both densities
    return {"log_x": log_x, "log_y": log_y, "mask": mask}


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("law_key", sorted(DENSITY_LAWS))
def test_log_density_equals_numpyro_density(law_key, likelihood):
    law = DENSITY_LAWS[law_key]()
    posterior = Posterior(law, likelihood)
    rng = np.random.default_rng(zlib.crc32(f"{law_key}/{likelihood}".encode()))
    data = simulated_data(law, rng)
    center = np.asarray(posterior.unconstrain({**law.reference, "sigma": 0.05, "nu": 5.0}))
    assert np.all(np.isfinite(center))
    log_density = jax.jit(posterior.log_density)
    for _ in range(4):
        z = center + 0.3 * rng.standard_normal(posterior.dim)
        ours = float(log_density(jnp.asarray(z), data))
        params = {name: jnp.asarray(z[i]) for i, name in enumerate(posterior.site_names)}
        theirs = -float(potential_energy(posterior.model, (), data, params))
        assert np.isfinite(ours), (law_key, likelihood, z)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-8, err_msg=str(z))


def test_mask_removes_points_from_the_density():
    law = catalogue()["power_law"]
    posterior = Posterior(law, "normal")
    rng = np.random.default_rng(0)
    data = simulated_data(law, rng, n=10, masked=0)
    z = np.asarray(posterior.unconstrain({**law.reference, "sigma": 0.05}))
    full = float(posterior.log_density(z, data))
    drop = {**data, "mask": np.arange(10) >= 4}
    kept = {
        "log_x": {"x": data["log_x"]["x"][4:]},
        "log_y": data["log_y"][4:],
        "mask": np.ones(6, dtype=bool),
    }
    assert float(posterior.log_density(z, drop)) == pytest.approx(
        float(posterior.log_density(z, kept)), rel=1e-12
    )
    assert float(posterior.log_density(z, drop)) != pytest.approx(full)


def test_constrain_inverts_unconstrain():
    law = DENSITY_LAWS["chinchilla_other_priors"]()
    posterior = Posterior(law, "student_t")
    values = {**law.reference, "sigma": 0.05, "nu": 5.0}
    back = posterior.constrain(posterior.unconstrain(values))
    for k, v in values.items():
        assert float(back[k]) == pytest.approx(v, rel=1e-12)


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="unknown likelihood 'cauchy'"):
        Posterior(catalogue()["power_law"], "cauchy")


def test_path_objects_are_laws_not_ids(tmp_path):
    # a file named like a catalogue id is read from disk, not from the catalogue
    path = tmp_path / "chinchilla.toml"
    path.write_text(USER_TOML)
    assert get_law(Path(path)).id == "my_law"


def test_power_terms_found_in_the_formula():
    terms = parse_formula("E + A * n**-alpha + n2**beta * B + C / m**gamma").power_terms
    found = {(t.coefficient, t.base, tuple(sorted(t.exponent_names))) for t in terms}
    assert found == {("A", "n", ("alpha",)), ("B", "n2", ("beta",)), ("C", "m", ("gamma",))}
    by_coef = {t.coefficient: t for t in terms}
    env = ({"alpha": 0.3, "beta": 0.5, "gamma": 0.7}, {})
    assert by_coef["A"].exponent(env) == pytest.approx(-0.3)  # n**-alpha
    assert by_coef["B"].exponent(env) == pytest.approx(0.5)
    assert by_coef["C"].exponent(env) == pytest.approx(-0.7)  # divided by m**gamma
    assert parse_formula("(N_c / n)**alpha").power_terms == ()


@pytest.mark.parametrize("law_key", sorted(DENSITY_LAWS))
def test_sampler_coordinates_are_a_unit_jacobian_shear(law_key):
    """The sampler's centred coordinates carry the same density, invertibly, |J| = 1."""
    law = DENSITY_LAWS[law_key]()
    posterior = Posterior(law, "student_t")
    data = simulated_data(law, np.random.default_rng(zlib.crc32(law_key.encode())))
    data = jax.tree.map(jnp.asarray, data)
    z = posterior.prior_draws(jax.random.key(1), 3)
    w = posterior.to_sampler(z, data)
    np.testing.assert_allclose(posterior.from_sampler(w, data), z, rtol=0, atol=1e-12)
    for zi, wi in zip(z, w, strict=True):
        assert float(posterior.sampler_potential(wi, data)) == pytest.approx(
            float(posterior.potential(zi, data)), rel=1e-12
        )
        jac = jax.jacfwd(posterior.from_sampler)(wi, data)
        assert float(jnp.linalg.det(jac)) == pytest.approx(1.0, abs=1e-12)
    centred = {t.coefficient for _, t in posterior.shears}
    moved = {posterior.site_names[i] for i in np.flatnonzero(np.any(np.abs(w - z) > 0, 0))}
    assert moved == centred
    expected = {
        t.coefficient
        for t in law.formula.power_terms
        if t.base in law.covariates and law.parameters[t.coefficient].prior.kind != "uniform"
    }
    assert centred == expected


# ----------------------------------------------------------------------------- units of x


def test_generic_families_read_x_in_a_unit_chosen_from_the_data():
    generic = {"power_law", "power_law_offset", "broken_power_law", "alabdulmohsin_m3",
               "alabdulmohsin_m4"}  # fmt: skip
    for law_id, law in catalogue().items():
        assert (law.scales == {"x": "data"}) == (law_id in generic), law_id
    law = get_law("power_law_offset")
    # the median of the fits' first x is 3e9: read in units of 1e9, the power of 1000 below
    firsts = [2e8, 3e9, 5e9]
    fixed = law.with_data_scales([{"x": np.log([f, 10 * f])} for f in firsts])
    assert fixed.scales == {"x": 1e9}
    assert "x in units of 1e+09" in repr(fixed)
    params = {"E": 2.0, "A": 5.0, "alpha": 0.5}
    # at one unit, x**-alpha is 1 whatever the unit
    assert float(jnp.exp(fixed.log_mean(params, {"x": jnp.log(1e9)}))) == pytest.approx(7.0)
    assert float(jnp.exp(law.log_mean(params, {"x": jnp.log(1.0)}))) == pytest.approx(7.0)
    for first, unit in [(1e9, 1e9), (9.9e8, 1e6), (100.0, 1.0), (0.01, 1e-3)]:
        assert law.with_data_scales([{"x": np.log([first])}]).scales == {"x": unit}, first
    assert fixed.with_data_scales([{"x": np.log([1.0])}]) is fixed  # a fixed unit stays
    assert get_law("chinchilla").with_data_scales([{"n_params": np.log([1e9])}]).scales == {}


def test_a_law_file_may_fix_the_unit_of_a_covariate():
    text = get_law("power_law").toml.replace('scale = "data"', "scale = 1e6")
    law = law_from_toml(text)
    assert law.scales == {"x": 1e6}
    params = {"A": 3.0, "alpha": 0.5}
    assert float(jnp.exp(law.log_mean(params, {"x": jnp.log(4e6)}))) == pytest.approx(1.5)
    assert law_from_spec(law.to_spec()).scales == {"x": 1e6}


@pytest.mark.parametrize("scale", ["-1", "0", '"tokens"', "true", "inf"])
def test_a_bad_scale_is_rejected_naming_the_covariate(scale):
    text = get_law("power_law").toml.replace('scale = "data"', f"scale = {scale}")
    with pytest.raises(LawError, match="scale of 'x' must be a positive number"):
        law_from_toml(text)
