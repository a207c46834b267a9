"""Check that the family registry reproduces the code it replaced, bit for bit.

Loads ``bayescale/model.py`` and ``result._prior_draws`` as of commit 877f787 (before the
registry) beside the current package and compares prior densities, likelihood densities,
``Posterior.log_density``, and the JAX and numpy draws for the same seeds.  Run from the
repository root: ``PYTHONPATH=. python benchmarks/families_equivalence.py`` (so that this
checkout's ``bayescale`` is imported).
"""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import bayescale.model as new
from bayescale.laws import Prior, get_law

jax.config.update("jax_enable_x64", True)  # this script's own process
BASE = "877f787"
tmp = Path(tempfile.mkdtemp())
(tmp / "old_model.py").write_text(
    subprocess.run(
        ["git", "show", f"{BASE}:bayescale/model.py"], capture_output=True, text=True, check=True
    ).stdout
)
spec = importlib.util.spec_from_file_location("old_model", tmp / "old_model.py")
old = importlib.util.module_from_spec(spec)
sys.modules["old_model"] = old
spec.loader.exec_module(old)


def _prior_draws(posterior, num, seed):
    """result._prior_draws as of 877f787."""
    rng = np.random.default_rng(seed)
    samplers = {
        "lognormal": lambda a: rng.lognormal(a[0], a[1], num),
        "normal": lambda a: rng.normal(a[0], a[1], num),
        "halfnormal": lambda a: np.abs(rng.normal(0.0, a[0], num)),
        "uniform": lambda a: rng.uniform(a[0], a[1], num),
        "gamma": lambda a: rng.gamma(a[0], 1.0 / a[1], num),
    }
    return {name: samplers[prior.kind](prior.args) for name, prior in posterior.prior_specs.items()}


z = jnp.array([-2.3, -0.4, 0.0, 0.7, 1.9])
worst = 0
for text in [
    "lognormal(0.5, 1.3)",
    "normal(-1, 2)",
    "halfnormal(0.3)",
    "uniform(-1, 4)",
    "uniform(0.2, 3)",
    "gamma(2, 0.1)",
    "gamma(0.7, 3)",
]:
    p = Prior.parse(text)
    a = old.prior_term(p, z)
    b = p.transform(z)
    for x, y in zip(a, b, strict=True):
        d = np.nanmax(np.abs(np.asarray(x) - np.asarray(y)))
        worst = max(worst, d)
        assert np.array_equal(np.isnan(x), np.isnan(y))
print("prior_term max diff", worst)
r = jnp.array([-0.3, -1e-3, 0.0, 2e-4, 0.05, 1.2])
sig = jnp.array(0.04)
for lik in ["student_t", "student_t(4)", "normal", "huber", "student_t+loglinear"]:
    a = old.observation_logpdf(lik, r, 0.0 * r, sig, jnp.array(5.0))
    b = new.likelihood_family(lik).logpdf(r, sig, {"nu": jnp.array(5.0)})
    print(lik, float(jnp.max(jnp.abs(a - b))))
for law in ["chinchilla", "power_law_offset"]:
    for lik in ["student_t", "huber", "student_t(3)+loglinear"]:
        L = get_law(
            law,
            priors={"E": "uniform(0.5, 3)"}
            if law == "power_law_offset"
            else {"alpha": "gamma(3, 10)"},
        )
        po, pn = old.Posterior(L, lik), new.Posterior(L, lik)
        assert po.site_names == pn.site_names, (po.site_names, pn.site_names)
        k = jax.random.key(3)
        assert np.array_equal(po.prior_draws(k, 7), pn.prior_draws(k, 7))
        for s in po.site_names:
            assert type(po.priors[s]) is type(pn.priors[s]), s
            assert po.priors[s].log_prob(0.3) == pn.priors[s].log_prob(0.3), s
        # numpy prior draws
        a = _prior_draws(po, 50, 11)
        b = pn.prior_sample(50, 11)
        assert all(np.array_equal(a[s], b[s]) for s in a)
        # shears
        assert po.shears == pn.shears
        # numpy noise
        vals = {"sigma": np.full(4, 0.05), "nu": np.full(4, 4.0)}
        a = old.observation_noise(np.random.default_rng(1), lik, vals, (4, 9))
        b = new.observation_noise(np.random.default_rng(1), lik, vals, (4, 9))
        assert np.array_equal(a, b), lik
        rng = np.random.default_rng(5)
        log_x = {c: jnp.asarray(rng.uniform(1, 20, 12)) for c in L.covariates}
        data = {
            "log_x": log_x,
            "log_y": jnp.asarray(rng.normal(0.5, 0.2, 12)),
            "mask": jnp.arange(12) > 1,
        }
        for zz in pn.prior_draws(jax.random.key(9), 5):
            a, b = po.log_density(zz, data), pn.log_density(zz, data)
            assert np.array_equal(a, b) or (np.isnan(a) and np.isnan(b)), (a, b)
            vals = pn.constrain(zz[None])
            a = po.pointwise_log_likelihood(vals, log_x, data["log_y"])
            b = pn.pointwise_log_likelihood(vals, log_x, data["log_y"])
            assert np.array_equal(a, b, equal_nan=True)
        print(law, lik, "ok", pn.site_names)


# jax noise as plan does
def plan_old(likelihood, values, rng_key, shape):
    extra = (1,) * (len(shape) - 1)
    sigma = values["sigma"].reshape(-1, *extra)
    nu = values["nu"].reshape(-1, *extra) if likelihood == "student_t" else None
    d = old.observation_dist(likelihood, jnp.zeros(shape), sigma, nu)
    return d.sample(rng_key)


vals = {"sigma": jnp.full(4, 0.05), "nu": jnp.full(4, 4.0)}
for lik in ["student_t", "student_t(4)", "normal", "huber"]:
    for shape in [(4,), (4, 6)]:
        assert np.array_equal(
            plan_old(lik, vals, jax.random.key(2), shape),
            new.observation_noise_jax(lik, vals, jax.random.key(2), shape),
        ), lik
print("jax noise identical")
