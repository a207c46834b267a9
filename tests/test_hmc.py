"""ChEES-HMC (bayescale.infer.hmc): options, the kernel's pieces, agreement with NUTS, SBC."""

from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import scaled

import bayescale
from bayescale.check import sbc
from bayescale.infer.hmc import ChEESOptions, build_chees_sampler, halton
from bayescale.laws import get_law
from bayescale.model import Posterior
from bayescale.options import method_name

# laws whose posteriors NUTS samples well at these settings, so its MCSE is a valid scale
AGREEMENT_LAWS = ("kaplan_per_token", "power_law_offset", "kaplan_n")
AGREEMENT_CURVES = scaled(16, 8)
SBC_REPLICATIONS = scaled(200, 30)
SBC_ALPHA = 0.01


def test_options_are_checked():
    assert method_name(bayescale.ChEES()) == "chees"
    with pytest.raises(ValueError, match=r"ChEES\(num_chains=1\)"):
        bayescale.ChEES(num_chains=1)
    with pytest.raises(ValueError, match="target_accept_prob"):
        bayescale.ChEES(target_accept_prob=1.0)
    with pytest.raises(TypeError, match="dense_mass"):
        bayescale.ChEES(dense_mass=1)
    with pytest.raises(TypeError, match="max_tree_depth"):
        bayescale.ChEES(max_tree_depth=5)
    with pytest.raises(ValueError, match="keep"):
        bayescale.ChEES(keep=2)
    with pytest.raises(ValueError, match=r"ChEES\(trajectory_scale=0\)"):
        bayescale.ChEES(trajectory_scale=0)
    data = bayescale.simulate.simulate("kaplan_per_token", seed=0)
    with pytest.raises(ValueError, match=r"ChEES\(chunk_size=4\).*single fit"):
        bayescale.fit(data, "kaplan_per_token", inference=bayescale.ChEES(chunk_size=4))


def test_halton_is_van_der_corput():
    got = [float(halton(i, 8)) for i in range(7)]
    assert got == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


def test_lock_step_and_output_of_nuts(float64):
    """Every chain of every fit of a group runs the same leapfrog count per iteration; the
    output has the keys and shapes of NUTS's sampler; the jitter spans (0, 1) of the
    trajectory length; fits run one by one (``vectorized=False``) each run their own."""
    posterior = Posterior(get_law("kaplan_per_token"))
    fits = [
        bayescale.data.prepare(
            bayescale.simulate.simulate("kaplan_per_token", seed=s), posterior.law
        )
        for s in range(2)
    ]
    data = jax.tree.map(jax.numpy.asarray, bayescale.infer.parallel.stack(fits))
    o = ChEESOptions(num_chains=4, num_warmup=100, num_samples=60)
    out = build_chees_sampler(posterior, o)(jax.random.split(jax.random.key(1), 2), data)
    out = jax.tree.map(np.asarray, out)
    n = out["n_steps"]
    assert n.shape == (2, 4, 60)
    assert (n == n[:1, :1]).all()  # lock step across the group's fits and chains
    assert 1 <= n.min() and n.max() <= o.max_leapfrog_steps and n.max() > 2 * n.min()
    assert out["z"].shape == (2, 4, 60, posterior.dim)
    for k in ("diverging", "acceptance_rate", "lp", "energy", "step_size"):
        assert out[k].shape == (2, 4, 60), k
    assert out["inverse_mass_matrix"].shape == (2, 4, posterior.dim, posterior.dim)
    assert out["map_potential"].shape == (2,) and np.isfinite(out["map_potential"]).all()
    # after warm-up the step size is fixed per fit
    assert (out["step_size"] == out["step_size"][:, :1, :1]).all()
    keys = jax.random.split(jax.random.key(1), 2)
    n = np.asarray(
        build_chees_sampler(posterior, o._replace(vectorized=False))(keys, data)["n_steps"]
    )
    assert (n == n[:, :1]).all() and not (n[0] == n[1]).all()  # each fit its own count


@pytest.fixture(scope="module")
def agreement_module(pytestconfig):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import chees_agreement
    finally:
        sys.path.pop(0)
    return chees_agreement


@pytest.mark.slow
@pytest.mark.parametrize("law", AGREEMENT_LAWS)
def test_agrees_with_nuts_within_mcse(law, agreement_module):
    """Per-fit posterior means and 5%/95% quantiles of ChEES and NUTS on the same curves
    differ by no more than their Monte Carlo errors allow (seeded)."""
    data = agreement_module.curves(law, AGREEMENT_CURVES)
    nuts = bayescale.fit(
        data, law, by="curve", seed=3, warn=False,
        inference=bayescale.NUTS(num_chains=4, num_warmup=500, num_samples=500, progress_bar=False),
    )  # fmt: skip
    chees = bayescale.fit(
        data, law, by="curve", seed=3, warn=False, inference=bayescale.ChEES(progress_bar=False)
    )
    z = agreement_module.agreement(chees, nuts)
    every = np.concatenate([v.ravel() for v in z.values()])
    assert np.isfinite(every).all()
    # z ~ N(0, 1) when both target the same posterior: P(|z| > 4) ~ 6e-5 per comparison
    assert np.abs(every).max() < 4.0, {k: np.round(v, 2) for k, v in z.items()}
    assert np.mean(np.abs(every) > 2) <= 0.15, {k: np.round(v, 2) for k, v in z.items()}


@pytest.mark.slow
@pytest.mark.parametrize(("thin", "trajectory_scale"), [(1, 1.0), (2, 0.35)])
def test_sbc_passes_for_chees(thin, trajectory_scale):
    """SBC at ChEES's defaults and at the batch benchmark's shorter trajectories."""
    r = sbc(
        "kaplan_n",
        num_replications=SBC_REPLICATIONS,
        seed=2027,
        inference=bayescale.ChEES(
            num_chains=4,
            num_warmup=300,
            num_samples=scaled(250, 100),
            thin=thin,
            trajectory_scale=trajectory_scale,
            progress_bar=False,
        ),
    )
    assert len(r.ranks) == SBC_REPLICATIONS
    assert r.passed(SBC_ALPHA), r.report()
    # the thinned ranking draws are nearly independent: bulk ESS >= L in most fits
    assert r.num_low_ess <= SBC_REPLICATIONS // 10, r.report()
