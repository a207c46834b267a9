"""The family registry: each prior and likelihood family against scipy or its closed form.

Statistical checks are seeded; means and variances are compared within 4 Monte Carlo
standard errors (estimated from the draws), distributions by a KS test at p > 1e-3.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats as st
from numpyro.distributions.transforms import biject_to
from scipy import special

from bayescale.families import (
    HUBER_DELTA,
    LIKELIHOOD_FAMILIES,
    NU_PRIOR,
    PRIOR_FAMILIES,
    StudentTLikelihood,
    get_likelihood,
    get_prior_family,
    parse_prior,
)
from bayescale.laws import LawError, Prior
from bayescale.model import observation_noise, observation_noise_jax

N = 20_000
Z = np.array([-2.3, -0.4, 0.0, 0.7, 1.9])

# prior text -> its scipy.stats twin (independent of bayescale's own distributions)
SCIPY_PRIORS = {
    "lognormal(0.5, 1.3)": st.lognorm(s=1.3, scale=math.exp(0.5)),
    "normal(-1, 2)": st.norm(-1.0, 2.0),
    "halfnormal(0.3)": st.halfnorm(scale=0.3),
    "uniform(-1, 4)": st.uniform(-1.0, 5.0),
    "gamma(2, 0.1)": st.gamma(2.0, scale=10.0),
    "gamma(0.7, 3)": st.gamma(0.7, scale=1.0 / 3.0),
    "beta(2, 2)": st.beta(2.0, 2.0),
    "beta(0.6, 3.5)": st.beta(0.6, 3.5),
}


pytestmark = pytest.mark.usefixtures("float64")  # tests call densities directly


def assert_moment(draws, expected, what):
    """Mean of ``draws`` within 4 Monte Carlo standard errors of ``expected``."""
    se = np.std(draws) / math.sqrt(draws.size)
    assert abs(np.mean(draws) - expected) < 4 * se, (what, np.mean(draws), expected, se)


def assert_mean_and_variance(draws, mean, var, what):
    assert_moment(draws, mean, f"{what} mean")
    assert_moment((draws - mean) ** 2, var, f"{what} variance")


# ---------------------------------------------------------------------------- registry
def test_registry_lists_every_family():
    assert list(PRIOR_FAMILIES) == ["lognormal", "normal", "halfnormal", "uniform", "gamma", "beta"]
    assert list(LIKELIHOOD_FAMILIES) == ["student_t", "normal", "huber"]
    for name, family in PRIOR_FAMILIES.items():
        assert family.name == name and get_prior_family(name) is family


def test_unknown_families_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown prior family 'cauchy'") as err:
        get_prior_family("cauchy")
    assert all(name in str(err.value) for name in PRIOR_FAMILIES)
    with pytest.raises(LawError, match="'cauchy\\(0, 1\\)' is not of the form") as err:
        Prior.parse("cauchy(0, 1)")
    assert all(name in str(err.value) for name in PRIOR_FAMILIES)
    for bad in ("cauchy", "student_t(-1)", "student_t(x)", "huber(2)"):
        with pytest.raises(ValueError, match="unknown likelihood") as err:
            get_likelihood(bad)
        assert bad in str(err.value)
        assert all(name in str(err.value) for name in LIKELIHOOD_FAMILIES)
        assert "student_t(nu)" in str(err.value)


# ---------------------------------------------------------------------------- priors
@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("normal(0, -1)", "-1"),
        ("lognormal(1, 0)", "0"),
        ("halfnormal(-0.5)", "-0.5"),
        ("uniform(2, 1)", "2"),
        ("uniform(3, 3)", "3"),
        ("gamma(2, -0.25)", "-0.25"),
        ("gamma(0, 1)", "0"),
        ("beta(2, 0)", "0"),
        ("beta(-1, 2)", "-1"),
    ],
)
def test_prior_argument_checks_name_the_text_and_the_value(text, bad):
    with pytest.raises(LawError, match="invalid scale or range") as err:
        Prior.parse(text)
    message = str(err.value)
    assert repr(text) in message
    assert f" {bad} " in message or message.endswith(f" {bad}"), message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("normal(0)", "normal takes 2 argument"),
        ("halfnormal(1, 2)", "takes 1 argument"),
        ("gamma(inf, 1)", "non-finite"),
        ("uniform(a, 1)", "non-numeric"),
    ],
)
def test_prior_arity_and_numbers(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prior(text)


@pytest.mark.parametrize("text", sorted(SCIPY_PRIORS))
def test_prior_density_on_the_unconstrained_scale(text):
    """log p(z) = log p_theta(g(z)) + log|g'(z)|, g = biject_to(support), against scipy."""
    prior = Prior.parse(text)
    value, log_value, log_density = (np.asarray(v) for v in prior.transform(jnp.asarray(Z)))
    bijector = biject_to(prior.distribution().support)
    np.testing.assert_allclose(value, np.asarray(bijector(jnp.asarray(Z))), rtol=1e-12)
    log_jac = np.asarray(bijector.log_abs_det_jacobian(jnp.asarray(Z), jnp.asarray(value)))
    expected = SCIPY_PRIORS[text].logpdf(value) + log_jac
    np.testing.assert_allclose(log_density, expected, rtol=1e-12, atol=1e-12)
    if prior.family.log_coordinate:
        np.testing.assert_array_equal(log_value, Z)  # exact, no exp-then-log round trip
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            np.testing.assert_allclose(log_value, np.log(value), rtol=1e-12)


def test_positive_support():
    positive = {t: Prior.parse(t).positive for t in SCIPY_PRIORS}
    assert positive == {t: SCIPY_PRIORS[t].ppf(1e-9) >= 0 for t in SCIPY_PRIORS}
    assert Prior.parse("uniform(0, 1)").positive


@pytest.mark.parametrize("text", sorted(SCIPY_PRIORS))
def test_prior_numpy_draws_are_exact(text):
    draws = Prior.parse(text).sample(np.random.default_rng(0), N)
    assert draws.shape == (N,)
    assert st.kstest(draws, SCIPY_PRIORS[text].cdf).pvalue > 1e-3
    assert_moment(draws, SCIPY_PRIORS[text].mean(), text)


@pytest.mark.parametrize("text", sorted(SCIPY_PRIORS))
def test_prior_jax_starting_points(text):
    """Exact for every family but gamma, whose draws have the gamma's mean and variance of
    log X, and beta, whose have the beta's mean and variance of logit X."""
    prior = Prior.parse(text)
    eps = jax.random.normal(jax.random.key(1), (N,))
    z = prior.unconstrained_draws(eps)
    values = np.asarray(biject_to(prior.distribution().support)(z))
    twin = SCIPY_PRIORS[text]
    if prior.kind == "gamma":
        assert_mean_and_variance(np.log(values), *_lognormal_log_moments(twin), text)
    elif prior.kind == "beta":
        a, b = prior.args
        logit_mean = special.digamma(a) - special.digamma(b)
        logit_var = special.polygamma(1, a) + special.polygamma(1, b)
        assert_mean_and_variance(special.logit(values), logit_mean, logit_var, text)
    else:
        assert st.kstest(values, twin.cdf).pvalue > 1e-3
        assert_moment(values, twin.mean(), text)


def _lognormal_log_moments(twin):
    """Mean and variance of log X for the lognormal X with ``twin``'s mean and variance."""
    s2 = math.log1p(twin.var() / twin.mean() ** 2)
    return math.log(twin.mean()) - 0.5 * s2, s2


# ---------------------------------------------------------------------------- likelihoods
R = np.array([-0.3, -2e-3, -1e-3, 0.0, 2e-4, 0.05, 1.2])


def huber_closed_form(r, sigma, delta=HUBER_DELTA):
    """-rho(r)/sigma^2 - log(sigma Z(delta/sigma)), written out with math."""
    c = delta / sigma
    z = math.sqrt(2 * math.pi) * math.erf(c / math.sqrt(2)) + 2 / c * math.exp(-c * c / 2)
    rho = np.where(np.abs(r) <= delta, r * r / 2, delta * np.abs(r) - delta * delta / 2)
    return -rho / sigma**2 - math.log(sigma * z)


LIKELIHOOD_CASES = {  # text -> (params, scipy twin at unit scale or None)
    "student_t": ({"nu": 5.0}, st.t(5.0)),
    "student_t(2.5)": ({}, st.t(2.5)),
    "normal": ({}, st.norm()),
    "huber": ({}, None),
}


@pytest.mark.parametrize("sigma", [2e-3, 0.05])
@pytest.mark.parametrize("text", sorted(LIKELIHOOD_CASES))
def test_likelihood_density(text, sigma):
    likelihood = get_likelihood(text)
    params, twin = LIKELIHOOD_CASES[text]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    ours = np.asarray(likelihood.logpdf(jnp.asarray(R), jnp.asarray(sigma), params))
    if twin is None:
        expected = huber_closed_form(R, sigma)
    else:
        expected = twin.logpdf(R / sigma) - math.log(sigma)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    as_dist = likelihood.distribution(jnp.asarray(0.1), jnp.asarray(sigma), params)
    np.testing.assert_allclose(np.asarray(as_dist.log_prob(jnp.asarray(R + 0.1))), ours, rtol=1e-12)


def test_huber_density_integrates_to_one():
    for sigma in (2e-3, 0.05):
        tail = 60 * sigma**2 / HUBER_DELTA

        def density(r, sigma=sigma):
            return math.exp(huber_closed_form(np.array(r), sigma))

        total = sum(
            scipy.integrate.quad(density, lo, hi, epsabs=0, epsrel=1e-11, limit=200)[0]
            for lo, hi in [(-tail, -HUBER_DELTA), (-HUBER_DELTA, HUBER_DELTA), (HUBER_DELTA, tail)]
        )
        assert total == pytest.approx(1.0, abs=1e-9)


def test_extra_sites_and_their_priors():
    assert get_likelihood("student_t").extra_priors == {"nu": ("gamma", NU_PRIOR)}
    assert get_likelihood("student_t(4)") == StudentTLikelihood(4.0)
    for text in ("student_t(4)", "normal", "huber"):
        assert get_likelihood(text).extra_priors == {}
    for kind, args in get_likelihood("student_t").extra_priors.values():
        assert get_prior_family(kind).problem(args) is None


def huber_moments(sigma):
    """Variance of the Huber residual at scale ``sigma`` by quadrature (its mean is 0)."""
    tail = 80 * sigma**2 / HUBER_DELTA
    var = sum(
        scipy.integrate.quad(
            lambda r: r * r * math.exp(huber_closed_form(np.array(r), sigma)), lo, hi, limit=200
        )[0]
        for lo, hi in [(-tail, -HUBER_DELTA), (-HUBER_DELTA, HUBER_DELTA), (HUBER_DELTA, tail)]
    )
    return 0.0, var


NOISE_CASES = {  # text -> (values besides sigma, exact (mean, variance) at scale sigma)
    "student_t": ({"nu": 10.0}, lambda s: (0.0, s * s * 10 / 8)),
    "student_t(10)": ({}, lambda s: (0.0, s * s * 10 / 8)),
    "normal": ({}, lambda s: (0.0, s * s)),
    "huber": ({}, huber_moments),
}


@pytest.mark.parametrize("sigma", [2e-3, 0.05])
@pytest.mark.parametrize("text", sorted(NOISE_CASES))
def test_likelihood_numpy_and_jax_draws(text, sigma):
    extra, moments = NOISE_CASES[text]
    mean, var = moments(sigma)
    values = {"sigma": np.full(4, sigma), **{k: np.full(4, v) for k, v in extra.items()}}
    shape = (4, N // 4)
    numpy_draws = observation_noise(np.random.default_rng(2), text, values, shape)
    jax_values = {k: jnp.asarray(v) for k, v in values.items()}
    jax_draws = np.asarray(observation_noise_jax(text, jax_values, jax.random.key(2), shape))
    logpdf = get_likelihood(text).logpdf
    grid = np.linspace(
        -60 * sigma**2 / HUBER_DELTA - 20 * sigma, 60 * sigma**2 / HUBER_DELTA + 20 * sigma, 20_001
    )
    params = {k: jnp.asarray(v) for k, v in extra.items()}
    dens = np.exp(np.asarray(logpdf(jnp.asarray(grid), jnp.asarray(sigma), params)))
    cdf = scipy.integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    for name, draws in (("numpy", numpy_draws), ("jax", jax_draws)):
        assert draws.shape == shape
        assert_mean_and_variance(draws.ravel(), mean, var, f"{text} {name}")
        p = st.kstest(draws.ravel(), lambda x, g=grid, c=cdf: np.interp(x, g, c)).pvalue
        assert p > 1e-3, (text, name, p)
