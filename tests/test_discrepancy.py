"""The law's own error (bayescale.model.discrepancy): the Kalman forms against the dense GP,
the density with padding, the options, and fit -> predict."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import ou_rw_kernel as kernel
from conftest import scaled
from scipy.stats import multivariate_normal

import bayescale
from bayescale.families import get_likelihood
from bayescale.laws import Prior, get_law
from bayescale.model import (
    Posterior,
    decades_from_first,
    delta_conditional,
    delta_draws,
    discrepancy_model,
    kalman_log_likelihood,
    noise_model,
    observation_name,
    scales,
)


@pytest.fixture
def curve():
    """Unsorted points with a tie, two of them masked, first fitted point at u = 0."""
    rng = np.random.default_rng(0)
    u = np.sort(rng.uniform(0, 2, 12))
    u[0], u[4] = 0.0, u[3]
    perm = rng.permutation(12)
    mask = np.ones(12, bool)
    mask[[2, 7]] = False
    return {
        "u": u[perm],
        "r": rng.normal(0, 0.05, 12),
        "var": rng.uniform(0.01, 0.03, 12) ** 2,
        "mask": mask,
        "s": 0.03,
        "q": 0.05,
    }


def test_kalman_likelihood_is_the_dense_marginal(curve):
    c = curve
    normal = get_likelihood("normal")
    with jax.enable_x64(True):
        ll = kalman_log_likelihood(
            *(jnp.asarray(c[k]) for k in ("r", "u", "var", "mask")),
            c["s"], c["q"], lambda v, scale: normal.logpdf(v, scale),
        )  # fmt: skip
        ll = np.asarray(ll)
    m = c["mask"]
    cov = kernel(c["u"][m], c["u"][m], c["s"], c["q"]) + np.diag(c["var"][m])
    assert ll.sum() == pytest.approx(multivariate_normal(np.zeros(m.sum()), cov).logpdf(c["r"][m]))
    assert np.all(ll[~m] == 0)


def test_smoother_is_the_dense_conditional(curve):
    c = curve
    u_new = np.array([-0.5, 0.3, 1.0, 2.5, 4.0])  # before, inside and beyond the data
    mean, var = delta_conditional(c["r"], c["u"], c["var"], c["mask"], u_new, c["s"], c["q"])
    m = c["mask"]
    cov = kernel(c["u"][m], c["u"][m], c["s"], c["q"]) + np.diag(c["var"][m])
    k_new = kernel(u_new, c["u"][m], c["s"], c["q"])
    np.testing.assert_allclose(mean, k_new @ np.linalg.solve(cov, c["r"][m]), atol=1e-12)
    dense = np.diag(kernel(u_new, u_new, c["s"], c["q"]) - k_new @ np.linalg.solve(cov, k_new.T))
    np.testing.assert_allclose(var, dense, rtol=1e-9, atol=1e-15)
    assert var[-1] > var[-2] > var[2]  # grows beyond the data


def test_prior_draws_have_the_kernel_covariance():
    u = np.array([-0.5, 0.0, 0.3, 1.0, 2.5])
    s, q, n = 0.03, 0.05, 40_000
    draws = delta_draws(np.random.default_rng(1), np.broadcast_to(u, (n, 5)), s, q)
    target = kernel(u, u, s, q)
    # sd of a sample covariance entry: sqrt((K_ij^2 + K_ii K_jj) / n)
    se = np.sqrt((target**2 + np.outer(np.diag(target), np.diag(target))) / n)
    assert np.all(np.abs(np.cov(draws.T) - target) < 4.5 * se)


def test_tiny_scales_give_the_iid_likelihood(curve):
    c = curve
    t = get_likelihood("student_t")
    params = {"nu": 3.0}
    with jax.enable_x64(True):
        ll = kalman_log_likelihood(
            *(jnp.asarray(c[k]) for k in ("r", "u", "var", "mask")),
            1e-9, 1e-9, lambda v, scale: t.logpdf(v, scale, params),
        )  # fmt: skip
        iid = t.logpdf(jnp.asarray(c["r"]), jnp.sqrt(jnp.asarray(c["var"])), params)
        np.testing.assert_allclose(np.asarray(ll)[c["mask"]], np.asarray(iid)[c["mask"]])


def test_observation_names():
    assert observation_name("student_t", "constant", "ou_rw") == "student_t+ou_rw"
    assert observation_name("normal", "loglinear", "ou_rw") == "normal+loglinear+ou_rw"
    assert noise_model("normal+loglinear+ou_rw") == "loglinear"
    assert discrepancy_model("normal+loglinear+ou_rw") == "ou_rw"
    assert discrepancy_model("normal+loglinear") is None
    assert discrepancy_model("normal+ou_rw(-4, 0.5)") == "ou_rw(-4, 0.5)"
    with pytest.raises(ValueError, match="discrepancy"):
        observation_name("normal", "constant", "gp")
    with pytest.raises(ValueError, match="noise model or discrepancy"):
        Posterior(get_law("power_law_offset"), "normal+ou_rw+loglinear")


def test_model_option_checks():
    # on by default (issue 17); None is the way back to the exact law
    assert bayescale.Model().discrepancy == "ou_rw"
    assert bayescale.Model().observation == "student_t+ou_rw"
    assert bayescale.Model(discrepancy=None).observation == "student_t"
    # a law of several covariates is fitted, and recorded, without it
    assert bayescale.Model().observation_for(get_law("chinchilla")) == "student_t"
    assert bayescale.Model().observation_for(get_law("kaplan_n")) == "student_t+ou_rw"
    m = bayescale.Model(discrepancy="ou_rw(-4, 0.5)", noise="loglinear")
    assert m.observation == "student_t+loglinear+ou_rw(-4, 0.5)"
    with pytest.raises(ValueError, match=r"Model\(discrepancy='ar1'\)"):
        bayescale.Model(discrepancy="ar1")
    with pytest.raises(ValueError, match="sd_r > 0"):
        bayescale.Model(discrepancy="ou_rw(-4, 0)")
    with pytest.raises(ValueError, match="two finite numbers"):
        bayescale.Model(discrepancy="ou_rw(-4, 0.5, -5, 0.7)")
    with pytest.raises(TypeError, match="string or None"):
        bayescale.Model(discrepancy=True)


def test_a_fit_of_several_covariates_records_no_discrepancy():
    from bayescale.simulate import simulate

    r = bayescale.fit(simulate("chinchilla", seed=1), "chinchilla", inference=bayescale.MAP())
    assert r.likelihood == "student_t" and r.posterior.discrepancy is None
    assert "delta_r" not in r.posterior.site_names


def test_scales_split_the_roughness():
    """s and q of (r, w): 2 s^2 + q^2 = r^2 and q^2 / r^2 = w, numpy and JAX alike."""
    r, w = np.array([0.01, 0.03, 0.2]), np.array([0.0, 0.3, 1.0])
    s, q = scales(r, w)
    np.testing.assert_allclose(2 * s**2 + q**2, r**2, rtol=1e-12)
    np.testing.assert_allclose(q**2 / r**2, w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(scales(jnp.asarray(r), jnp.asarray(w)), (s, q), rtol=1e-6)


def test_sites_and_priors():
    post = Posterior(get_law("power_law_offset"), "student_t+ou_rw(-4, 0.5)")
    assert post.site_names[-2:] == ("delta_r", "delta_w")
    assert post.prior_specs["delta_r"].args == (-4.0, 0.5)
    assert post.prior_specs["delta_w"] == Prior("beta", (2.0, 2.0))
    # the discrepancy runs along one covariate: a law of two has none
    two = Posterior(get_law("chinchilla"), "student_t+ou_rw")
    assert two.discrepancy is None and "delta_r" not in two.site_names


def test_density_matches_numpyro_and_ignores_padding():
    from numpyro.infer.util import log_density

    post = Posterior(get_law("power_law_offset"), "student_t+ou_rw")
    rng = np.random.default_rng(2)
    x = np.geomspace(10, 1e4, 9)
    log_y = np.log(2 + 5 * x**-0.5) + 0.02 * rng.standard_normal(9)
    with jax.enable_x64(True):
        z = post.prior_draws(jax.random.PRNGKey(0), 1)[0]
        data = {"log_x": {"x": jnp.log(x)}, "log_y": jnp.asarray(log_y), "mask": jnp.ones(9, bool)}
        values = post.constrain(z)
        # NumPyro's density of the model (constrained) = priors + the filter's factor
        lp, _ = log_density(post.model, (data["log_x"], data["log_y"], data["mask"]), {}, values)
        priors = sum(float(post.priors[k].log_prob(v)) for k, v in values.items())
        assert float(lp) - priors == pytest.approx(float(post.log_likelihood(z, data)), rel=1e-10)
        # padded: three more points, masked, at arbitrary places
        pad = {
            "log_x": {"x": jnp.concatenate([jnp.log(x), jnp.array([0.0, 50.0, 3.0])])},
            "log_y": jnp.concatenate([data["log_y"], jnp.array([9.0, -9.0, 0.0])]),
            "mask": jnp.concatenate([data["mask"], jnp.zeros(3, bool)]),
        }
        assert float(post.log_density(z, pad)) == pytest.approx(
            float(post.log_density(z, data)), rel=1e-12
        )


def test_fit_predict_band_grows_beyond_the_data(tmp_path):
    rng = np.random.default_rng(3)
    x = np.geomspace(100, 1e4, 25)
    u = np.log10(x / x[0])
    delta = delta_draws(rng, u, 0.02, 0.02)
    y = (2 + 50 * x**-0.5) * np.exp(delta + 0.005 * rng.standard_normal(25))
    data = pd.DataFrame({"x": x, "y": y})
    new = {"x": np.array([5e3, 1e5, 1e7])}
    inference = bayescale.Laplace(num_samples=500)
    widths = {}
    for disc in (None, "ou_rw"):
        res = bayescale.fit(data, "power_law_offset", model=bayescale.Model(discrepancy=disc),
                            inference=inference, seed=0)  # fmt: skip
        p = res.predict(new, quantiles=(0.05, 0.95))
        widths[disc] = np.log(p["q95"] / p["q5"]).to_numpy()
    # a saved result keeps its discrepancy: the same predictions after loading
    loaded = bayescale.load(res.save(tmp_path / "fit.nc"))
    assert loaded.likelihood == "student_t+ou_rw"
    pd.testing.assert_frame_equal(loaded.predict(new, quantiles=(0.05, 0.95)), p)
    # beyond the data the band widens with the discrepancy, and with the distance
    assert np.all(widths["ou_rw"][1:] > 1.5 * widths[None][1:])
    assert widths["ou_rw"][2] > widths["ou_rw"][1] > widths["ou_rw"][0]
    # without the fitted responses (a pool of imputed fits has none) the observation band
    # cannot be conditioned: a clear error; the law's band needs no responses
    del loaded.datatree["observed_data"]
    with pytest.raises(ValueError, match="no observed_data group"):
        loaded.predict(new, kind="observation")
    assert np.isfinite(loaded.predict(new, kind="mean")["q50"]).all()


def test_decades_from_first():
    lx = np.log(np.array([1e3, 1e2, 1e4]))
    np.testing.assert_allclose(decades_from_first(lx), [1, 0, 2])
    np.testing.assert_allclose(decades_from_first(lx, np.array([True, False, True])), [0, -1, 1])


@pytest.mark.slow
def test_sbc_passes_with_the_discrepancy():
    """Data simulated from the full model (delta drawn from its prior): ranks uniform."""
    from bayescale.check import sbc

    num = scaled(200, 40)
    r = sbc(
        "power_law_offset",
        model=bayescale.Model(discrepancy="ou_rw"),
        num_replications=num,
        seed=2026,
        inference=bayescale.NUTS(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False),
    )
    print(f"\n{num} replications: {r.report()}")
    assert len(r.ranks) == num
    assert list(r.ranks.columns)[-2:] == ["delta_r", "delta_w"]
    assert r.passed(0.01, len(r.ranks.columns)), r.report()


def test_learn_discrepancy_prefers_the_walk_the_curves_show():
    from bayescale.learn import learn_discrepancy

    # curves whose deviation from the law is a random walk of scale q per sqrt decade:
    # 0.1 (3.5x the shipped centre) is predicted better by the larger walk, 0.003 by the
    # smaller one
    x = np.geomspace(100, 1e5, 16)
    u = np.log10(x / x[0])
    for q, better in ((0.1, 1), (0.003, 0)):
        rng = np.random.default_rng(5)
        frames = [
            pd.DataFrame({"curve": c, "x": x, "y": (2 + 60 * x**-0.4)
                          * np.exp(delta_draws(rng, u, 0.002, q) + 0.003 * rng.normal(size=16))})
            for c in range(6)
        ]  # fmt: skip
        # a short curve takes no part
        frames.append(pd.DataFrame({"curve": 9, "x": x[:5], "y": 3.0}))
        data = pd.concat(frames, ignore_index=True)
        choice, table = learn_discrepancy(
            data, "power_law_offset", by="curve", shifts=(-1.5, 1.5), tau=2.0
        )
        assert list(table["shift"]) == [-1.5, 1.5] and (table.curves == 6).all()
        assert table.log_score[better] > table.log_score[1 - better]
        assert choice == table.discrepancy[better]
        assert bayescale.Model(discrepancy=choice).discrepancy == choice
        np.testing.assert_allclose(
            table.objective, 6 * table.log_score - 0.5 * (table["shift"] / 2.0) ** 2
        )
    with pytest.raises(ValueError, match="no curve"):
        learn_discrepancy(data, "power_law_offset", by="curve", min_points=40)
    with pytest.raises(ValueError, match="one covariate"):
        learn_discrepancy(data, "chinchilla", by="curve")


def test_sorted_stack_gives_the_density_of_sorting_each_time():
    """stack(sort=True) sorts each curve's points along the covariate (padding last) and
    marks the layout; the filter, which then skips its own sort, has the density of the
    points in the data's order, for points in any order and curves of different lengths,
    with the noise-only model too (whose density ignores the order)."""
    from bayescale.data import prepare
    from bayescale.infer.parallel import stack

    law = get_law("power_law_offset")
    rng = np.random.default_rng(4)
    fits = []
    for n in (7, 12, 9):
        x = rng.permutation(np.geomspace(10, 1e4, n))
        y = (2 + 5 * x**-0.5) * np.exp(0.02 * rng.standard_normal(n))
        fits.append(prepare(pd.DataFrame({"x": x, "y": y}), law))
    data, unsorted = stack(fits, sort=True), stack(fits)
    assert "sorted" in data and "sorted" not in unsorted
    for f, x, m in zip(fits, data["log_x"]["x"], data["mask"], strict=True):
        assert m[: f.num_points].all() and not m[f.num_points :].any()  # padding last
        assert np.array_equal(x[m], np.sort(f.log_x["x"]))
    assert not np.array_equal(unsorted["log_x"]["x"][0][:7], np.sort(fits[0].log_x["x"]))
    for likelihood in ("student_t+ou_rw", "student_t"):
        post = Posterior(law, likelihood)
        with jax.enable_x64(True):
            z = post.prior_draws(jax.random.PRNGKey(1), 3)
            for i in range(3):
                one = jax.tree.map(lambda a, i=i: a[i], data)
                other = jax.tree.map(lambda a, i=i: a[i], unsorted)
                assert float(post.log_density(z[i], one)) == pytest.approx(
                    float(post.log_density(z[i], other)), rel=1e-12
                ), likelihood
