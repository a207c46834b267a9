"""Hierarchical pooling (issue 6): fit(..., by=, model=Model(pooled=...)) on simulated grouped
data."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import MAP, NUTS, Laplace, Model
from bayescale.data import prepare
from bayescale.infer.optimize import choose_centring
from bayescale.infer.parallel import stack
from bayescale.laws import get_law
from bayescale.model import PooledPosterior, Posterior

pytestmark = pytest.mark.usefixtures("float64")  # some tests call the densities directly

NUM_GROUPS, NUM_POINTS = 6, 25
ALPHA_MEDIAN, ALPHA_SPREAD = 0.5, 0.05  # population of log(alpha): N(log 0.5, 0.05)


@pytest.fixture(scope="module")
def grouped():
    rng = np.random.default_rng(17)
    law = get_law("power_law_offset")
    alpha = np.exp(np.log(ALPHA_MEDIAN) + ALPHA_SPREAD * rng.standard_normal(NUM_GROUPS))
    rows = []
    for g in range(NUM_GROUPS):
        params = {"E": rng.uniform(1.5, 3.0), "A": rng.uniform(3.0, 8.0), "alpha": alpha[g]}
        log_x = rng.uniform(0.0, np.log(1e3), NUM_POINTS)  # short curves: alpha is uncertain
        log_y = np.asarray(law.log_mean(params, {"x": log_x})) + 0.02 * rng.standard_normal(
            NUM_POINTS
        )
        rows.append(pd.DataFrame({"seed": g, "x": np.exp(log_x), "y": np.exp(log_y)}))
    return pd.concat(rows, ignore_index=True), alpha


@pytest.fixture(scope="module")
def pooled_fit(grouped):
    data, _ = grouped
    return bayescale.fit(
        data, "power_law_offset", by="seed",
        model=Model(likelihood="normal", pooled=("alpha",)),
        inference=NUTS(num_chains=2, num_warmup=400, num_samples=400), seed=0, warn=False,
    )  # fmt: skip


def test_pooled_density_is_the_per_group_density_plus_population_terms(grouped):
    """The hierarchical density reuses the single-fit likelihood: with tau fixed, changing
    one group's free parameters changes it exactly as that group's log-likelihood."""
    data, _ = grouped
    law = get_law("power_law_offset")
    base = Posterior(law, "normal")
    fits = [prepare(rows.drop(columns="seed"), law) for _, rows in data.groupby("seed")]
    hier = PooledPosterior(base, ("alpha",), NUM_GROUPS)
    stacked = jax.tree.map(jnp.asarray, stack(fits))
    z = hier.prior_draws(jax.random.key(0), 1)[0]
    z2 = z.at[0].add(0.1)  # group 0's first free site (E)
    one = jax.tree.map(lambda x: x[0], stacked)

    @jax.jit  # one compiled program instead of hundreds of eagerly dispatched operations
    def both_sides(zs):
        pooled = jax.vmap(hier.log_density, (0, None))(zs, stacked)
        group_0 = jax.vmap(base.log_density, (0, None))(hier.group_z(zs)[:, 0], one)
        return pooled[1] - pooled[0], group_0[1] - group_0[0]

    lhs, rhs = both_sides(jnp.stack([z, z2]))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=1e-9)


@pytest.mark.parametrize("centred", [(False,), (True,)])
def test_sampler_coordinates_are_a_unit_jacobian_reparameterisation(grouped, centred):
    """Centred or not, the per-group shear maps z to w and back exactly, and group_z puts
    each group's pooled value where the base posterior expects it."""
    data, _ = grouped
    law = get_law("power_law_offset")
    base = Posterior(law, "normal")
    fits = [prepare(rows.drop(columns="seed"), law) for _, rows in data.groupby("seed")]
    stacked = jax.tree.map(jnp.asarray, stack(fits))
    hier = PooledPosterior(base, ("alpha",), NUM_GROUPS, centred)
    assert hier._sheared  # log A is sheared by alpha * mean(log x) in every group
    z = hier.prior_draws(jax.random.key(1), 1)[0]

    @jax.jit  # one compiled program instead of hundreds of eagerly dispatched operations
    def maps(z):
        w = hier.to_sampler(z, stacked)
        jac = jax.jacfwd(lambda v: hier.from_sampler(v, stacked))(w)
        alpha_z = hier.group_z(z)[:, base.site_names.index("alpha")]
        return w, hier.from_sampler(w, stacked), jnp.linalg.slogdet(jac)[1], alpha_z

    w, back, log_det, alpha_z = maps(z)
    assert not np.allclose(w, z)
    np.testing.assert_allclose(back, z, rtol=1e-12, atol=1e-12)
    assert float(log_det) == pytest.approx(0.0, abs=1e-10)
    _, mu, log_tau, eta = hier.split(z)
    expected = eta[:, 0] if centred[0] else mu[0] + jnp.exp(log_tau[0]) * eta[:, 0]
    np.testing.assert_allclose(alpha_z, expected, rtol=1e-12)


def test_astronomical_potential_reads_as_infinite(grouped):
    """Far out in log tau (tau = e^3, one eta = 10) the pooled alpha is e^200 and the shear
    moves that group's log A by alpha * mean(log x): the potential is finite but beyond
    1e100, and its gradient overflows NUTS's kinetic energy to -inf, a state NumPyro accepts
    and never leaves.  The pooled
    potential reads such a state as +inf (a divergence, rejected) and is unchanged at
    typical points."""
    data, _ = grouped
    law = get_law("power_law_offset")
    fits = [prepare(rows.drop(columns="seed"), law) for _, rows in data.groupby("seed")]
    stacked = jax.tree.map(jnp.asarray, stack(fits))
    hier = PooledPosterior(Posterior(law, "normal"), ("alpha",), NUM_GROUPS)
    g, f = NUM_GROUPS, len(hier.free_sites)

    @jax.jit
    def potentials(z):
        w = hier.to_sampler(z, stacked)
        far = w.at[g * f + 1].set(3.0).at[g * f + 2].set(10.0)  # log tau, group 0's eta
        raw = -hier.log_density(hier.from_sampler(far, stacked), stacked)
        return (
            raw,
            hier.sampler_potential(far, stacked),
            -hier.log_density(z, stacked),
            hier.sampler_potential(w, stacked),
        )

    raw, capped, typical_raw, typical = potentials(hier.prior_draws(jax.random.key(2), 1)[0])
    assert np.isfinite(float(raw)) and float(raw) > 1e100, raw
    assert float(capped) == np.inf
    assert np.isfinite(float(typical))
    np.testing.assert_allclose(float(typical), float(typical_raw), rtol=1e-12)


def test_centring_follows_how_informative_each_group_is():
    """Short noisy curves from a tight population: non-centred.  Long precise curves from a
    wide population: centred (each group's alpha pinned down far more tightly than the
    groups differ)."""
    law = get_law("power_law_offset")
    base = Posterior(law, "normal")
    keys = jax.random.split(jax.random.key(0), NUM_GROUPS)
    rng = np.random.default_rng(3)

    def groups(spread, x_max, noise):
        fits = []
        for _ in range(NUM_GROUPS):
            alpha = float(np.exp(np.log(0.5) + spread * rng.normal()))
            log_x = np.linspace(0.0, np.log(x_max), NUM_POINTS)
            log_y = np.asarray(law.log_mean({"E": 2.0, "A": 5.0, "alpha": alpha}, {"x": log_x}))
            y = np.exp(log_y + noise * rng.normal(size=NUM_POINTS))
            fits.append(prepare(pd.DataFrame({"x": np.exp(log_x), "y": y}), law))
        return stack(fits)

    weak = groups(spread=0.01, x_max=10.0, noise=0.05)
    assert choose_centring(base, keys, weak, ("alpha",)) == (False,)
    strong = groups(spread=0.3, x_max=1e5, noise=1e-3)
    assert choose_centring(base, keys, strong, ("alpha",)) == (True,)


def test_population_recovered_and_no_funnel(pooled_fit, grouped):
    _, alpha = grouped
    post = pooled_fit.datatree.posterior
    centre = post["alpha_pop"].values.ravel()
    lo, hi = np.quantile(centre, [0.005, 0.995])
    assert lo < ALPHA_MEDIAN < hi, (lo, hi)
    # every group's alpha inside its 99% interval
    per_group = post["alpha"].values.reshape(NUM_GROUPS, -1)
    q = np.quantile(per_group, [0.005, 0.995], axis=1)
    assert np.all((q[0] < alpha) & (alpha < q[1])), (q, alpha)
    # non-centred: (almost) no divergent transitions
    div = int(pooled_fit.datatree.sample_stats["diverging"].values[0].sum())
    assert div <= 0.01 * post.sizes["chain"] * post.sizes["draw"], div
    assert float(np.max(pooled_fit.diagnostics["max_rhat"])) < 1.05
    attrs = pooled_fit.datatree.attrs
    assert json.loads(attrs["centred"]) == [0]  # non-centred by default
    # the population's own r-hat and ESS are computed and folded into each group's status
    population = json.loads(attrs["population_diagnostics"])
    assert set(population) == {"alpha_pop", "alpha_pop_sd"}
    assert all(d["rhat"] < 1.05 and d["ess_bulk"] > 50 for d in population.values()), population


def test_pooled_fit_defaults_to_smaller_steps(pooled_fit):
    """Without ``target_accept_prob`` a pooled fit runs NUTS at 0.99, not the plain fit's
    0.8 (which left divergent transitions in all nine PolyPythia size x seed pooled fits,
    benchmarks/target_accept.py), and records the target it ran at."""
    assert pooled_fit.datatree.attrs["target_accept_prob"] == 0.99


def test_pooling_narrows_the_exponent_intervals(pooled_fit, grouped):
    """Pooled NUTS intervals are narrower on average than each seed's own (unpooled)
    posterior, here its Laplace approximation (the program of the outlier test in
    test_methods.py, shared when the suite runs in one process)."""
    data, _ = grouped
    unpooled = bayescale.fit(
        data, "power_law_offset", by="seed", model=Model(likelihood="normal"),
        inference=Laplace(num_steps=150, num_chains=1, num_samples=1000), seed=0, warn=False,
    )  # fmt: skip
    assert not unpooled.failed

    def widths(result):
        x = result.datatree.posterior["alpha"].values.reshape(NUM_GROUPS, -1)
        q = np.quantile(x, [0.05, 0.95], axis=1)
        return q[1] - q[0]

    assert np.mean(widths(pooled_fit)) < np.mean(widths(unpooled))


def test_pooling_arguments_are_checked(grouped):
    data, _ = grouped
    with pytest.raises(ValueError, match="pooled"):
        bayescale.fit(data, "power_law_offset", by="seed", model=Model(pooled=("gamma",)))
    with pytest.raises(ValueError, match="by="):
        bayescale.fit(data, "power_law_offset", model=Model(pooled=("alpha",)))
    with pytest.raises(ValueError, match="NUTS"):
        bayescale.fit(
            data, "power_law_offset", by="seed", model=Model(pooled=("alpha",)), inference=MAP()
        )
