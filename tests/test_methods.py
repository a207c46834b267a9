"""Fast path and robust likelihoods (issue 6): MAP, Laplace, Huber, fixed-nu Student-t."""

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.stats
from conftest import scaled

import bayescale
from bayescale import MAP, Laplace, Model
from bayescale.infer.optimize import GRAD_TOL
from bayescale.laws import get_law
from bayescale.model import HUBER_DELTA, Posterior, huber_logpdf, observation_noise

# DOMAIN.md: the plain Huber grid fit (delta 1e-3 on log residuals, no priors)
HUBER_GRID_FIT = {"A": 478.0, "B": 2144.0, "E": 1.817, "alpha": 0.347, "beta": 0.367}


def simulated_curves(num_curves, rng, *, num_points=40, noise=0.01):
    law = get_law("power_law_offset")
    truth = {
        "E": rng.uniform(1.5, 3.0, num_curves),
        "A": rng.uniform(2.0, 10.0, num_curves),
        "alpha": rng.uniform(0.3, 0.7, num_curves),
    }
    log_x = rng.uniform(0.0, np.log(1e4), (num_curves, num_points))
    with jax.enable_x64(True):
        log_mu = np.asarray(law.log_mean({k: v[:, None] for k, v in truth.items()}, {"x": log_x}))
    log_y = log_mu + noise * rng.standard_normal(log_mu.shape)
    return truth, log_x, log_y


def frame(log_x, log_y, offset=0):
    k, n = log_x.shape
    return pd.DataFrame(
        {
            "curve": np.repeat(np.arange(offset, offset + k), n),
            "x": np.exp(log_x).ravel(),
            "y": np.exp(log_y).ravel(),
        }
    )


def test_huber_map_reproduces_the_plain_huber_grid_fit(chinchilla_frame):
    """MAP of the Huber likelihood with flat priors = Hoffmann/Epoch's Huber objective."""
    result = bayescale.fit(
        chinchilla_frame,
        "chinchilla",
        columns={"n_params": "Model Size"},
        model=Model(likelihood="huber"),
        inference=MAP(flat_priors=True, num_starts=16),
    )
    assert result.method == "map" and result.status is bayescale.Status.converged
    draws = result.draws()
    assert draws["alpha"].shape == (1, 1)
    for name, reference in HUBER_GRID_FIT.items():
        value = float(draws[name].ravel()[0])
        assert value == pytest.approx(reference, rel=0.02), (name, value, reference)
    d = result.diagnostics.loc[0]
    assert d["map_failed_starts"] == 0 and d["map_agreeing_starts"] >= 2, d


def test_laplace_result_has_the_nuts_shape_and_predicts():
    rng = np.random.default_rng(11)
    truth, log_x, log_y = simulated_curves(1, rng)
    data = frame(log_x, log_y).drop(columns="curve")
    # test_compare.py's settings and data shape (40 points): one compiled program for both
    result = bayescale.fit(
        data, "power_law_offset", model=Model(likelihood="normal"),
        inference=Laplace(num_chains=2, num_samples=500), seed=0,
    )  # fmt: skip
    assert result.method == "laplace" and result.status is bayescale.Status.converged
    post = result.datatree.posterior
    assert dict(post.sizes)["chain"] == 2 and dict(post.sizes)["draw"] == 500
    assert result.datatree.log_likelihood["y"].shape == (1, 2, 500, 40)
    assert result.diagnostics.loc[0, "min_eigenvalue"] > 0
    pred = result.predict({"x": [1.0, 1e6]})
    assert (pred["q5"] < pred["q95"]).all()
    # the Laplace draws are centred on the truth within 4 posterior sd
    for name, value in truth.items():
        d = post[name].values.ravel()
        assert abs(np.median(d) - value[0]) < 4 * d.std(), (name, np.median(d), value[0])


def test_single_map_fit_reports_non_convergence():
    """A mode search stopped after 3 L-BFGS steps has not converged: the single fit's status
    says so (as each curve's does in a by= fit), with the numbers in the warning."""
    rng = np.random.default_rng(12)
    _, log_x, log_y = simulated_curves(1, rng)
    data = frame(log_x, log_y).drop(columns="curve")
    with pytest.warns(bayescale.ConvergenceWarning, match=r"did not converge in 3 steps") as rec:
        result = bayescale.fit(
            data, "power_law_offset", model=Model(likelihood="normal"),
            inference=MAP(num_steps=3, num_starts=2), seed=0,
        )  # fmt: skip
    d = result.diagnostics.loc[0]
    assert result.status is bayescale.Status.failed
    assert np.isfinite(d["map_potential"]) and not d["map_converged"]
    # neither criterion of find_mode holds: a large gradient, an objective still falling
    assert d["map_grad_norm"] > GRAD_TOL and d["map_last_change"] > 0, d
    message = str(rec[0].message)
    assert f"max |grad| {d['map_grad_norm']:.3g}" in message, message
    assert f"{d['map_failed_starts']} of 2 starts ended non-finite" in message, message


REPS, NUM_POINTS = scaled(60, 16), 40


@pytest.fixture(scope="module")
def outlier_curves():
    """``REPS`` simulated curves (labels ``0..REPS-1``) and the same curves with 5% of their
    points corrupted (+0.3 in log loss, a diverged run; labels ``REPS..2 REPS-1``)."""
    rng = np.random.default_rng(2024)
    truth, log_x, log_y = simulated_curves(REPS, rng, num_points=NUM_POINTS)
    bad = np.stack([rng.choice(NUM_POINTS, NUM_POINTS // 20, replace=False) for _ in range(REPS)])
    corrupted = log_y.copy()
    np.put_along_axis(corrupted, bad, np.take_along_axis(log_y, bad, 1) + 0.3, 1)
    both = pd.concat([frame(log_x, log_y), frame(log_x, corrupted, offset=REPS)])
    return truth, both


@pytest.fixture(scope="module")
def normal_maps(outlier_curves):
    """MAP (normal likelihood) of every clean and corrupted curve, one fit(..., by=) call."""
    _, both = outlier_curves
    return bayescale.fit(
        both, "power_law_offset", by="curve", model=Model(likelihood="normal"),
        inference=MAP(num_steps=200),
    )  # fmt: skip


def test_batched_map_recovers_each_curve(outlier_curves, normal_maps):
    truth, _ = outlier_curves
    result = normal_maps
    assert result.method == "map" and not result.failed
    alpha = result.datatree.posterior["alpha"].values.reshape(2 * REPS)[:REPS]  # clean curves
    # the noise is 1% on 40 points: every exponent within 10%, the median error under 3%
    rel = np.abs(alpha / truth["alpha"] - 1)
    assert rel.max() < 0.10 and np.median(rel) < 0.03, rel
    one = result[3]
    assert one.method == "map" and one.status is bayescale.Status.converged
    assert float(one.draws()["alpha"].ravel()[0]) == pytest.approx(alpha[3])


@pytest.mark.slow
def test_outliers_move_normal_exponents_but_not_student_t(normal_maps, outlier_curves):
    """5% of points corrupted (+0.3 in log loss, a diverged run): the Student-t exponent
    stays inside the clean-data 90% interval, the normal one leaves it.  Replicated
    (``scaled(60, 16)`` curves); the counts are checked against binomial bounds.

    The clean-data interval and the robust exponent are Laplace draws (Student-t, clean and
    corrupted curves in one fit(..., by=) call); the normal exponent is the MAP (the median of
    its Laplace draws, as the draws are symmetric about the mode in log alpha)."""
    _, both = outlier_curves
    robust = bayescale.fit(
        both, "power_law_offset", by="curve", model=Model(likelihood="student_t"),
        inference=Laplace(num_steps=150, num_chains=1, num_samples=1000), warn=False,
    )  # fmt: skip
    alpha_t = robust.datatree.posterior["alpha"].values.reshape(2 * REPS, -1)
    lo, hi = np.quantile(alpha_t[:REPS], [0.05, 0.95], axis=1)
    t_median = np.median(alpha_t[REPS:], axis=1)
    n_mode = normal_maps.datatree.posterior["alpha"].values.reshape(2 * REPS)[REPS:]
    t_inside = int(np.sum((t_median > lo) & (t_median < hi)))
    n_outside = int(np.sum((n_mode < lo) | (n_mode > hi)))
    # the robust fit of the corrupted data sits inside in (almost) every replicate: allow 10%
    # misses plus 3 binomial sd.  The normal fit leaves the interval in most replicates;
    # more often than not is required (P(fail) < 1e-3 at a rate of 0.8).
    p_miss = 0.10
    allowed = REPS * p_miss + 3 * np.sqrt(REPS * p_miss * (1 - p_miss))
    assert REPS - t_inside <= allowed, (t_inside, REPS)
    assert n_outside >= REPS / 2, (n_outside, REPS)


def test_huber_noise_draws_follow_the_huber_density():
    """observation_noise (used for posterior predictive draws) samples huber_logpdf."""
    rng = np.random.default_rng(0)
    for sigma in (2e-3, 0.05):
        draws = observation_noise(rng, "huber", {"sigma": np.array(sigma)}, (20_000,))
        grid = np.linspace(-40 * sigma**2 / HUBER_DELTA - 0.01, 40 * sigma**2 / HUBER_DELTA, 4001)
        dens = np.exp(np.asarray(huber_logpdf(grid, sigma)))
        assert scipy.integrate.trapezoid(dens, grid) == pytest.approx(1.0, abs=2e-3)
        cdf = scipy.integrate.cumulative_trapezoid(dens, grid, initial=0.0)
        p = scipy.stats.kstest(draws, lambda x, g=grid, c=cdf: np.interp(x, g, c)).pvalue
        assert p > 1e-3, (sigma, p)


def test_fixed_nu_and_bad_arguments():
    law = get_law("power_law_offset")
    assert Posterior(law, "student_t(4)").site_names == ("E", "A", "alpha", "sigma")
    assert "nu" in Posterior(law, "student_t").site_names
    for bad in ("cauchy", "student_t(-1)", "student_t(x)"):
        with pytest.raises(ValueError, match="unknown likelihood"):
            Posterior(law, bad)
    data = {"x": [1.0, 2, 3, 4, 5, 6], "y": [3.0, 2.5, 2.3, 2.2, 2.1, 2.05]}
    with pytest.raises(TypeError, match="inference must be NUTS"):
        bayescale.fit(data, law, inference="vi")
    with pytest.raises(TypeError, match="flat_priors"):
        Laplace(flat_priors=True)
