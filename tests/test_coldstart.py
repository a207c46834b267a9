"""Compiling a fit: bayescale's CPU compiler options, and the persistent cache across processes."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from bayescale.infer import cache

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_programs_get_the_cpu_options_and_accelerators_xla_defaults():
    cpu, gpu = SimpleNamespace(platform="cpu"), SimpleNamespace(platform="gpu")
    assert cache.compiler_options([cpu, cpu]) == cache.CPU_COMPILER_OPTIONS
    assert cache.compiler_options([gpu]) is None
    assert cache.compiler_options([cpu, gpu]) is None
    expected = cache.CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    assert cache.compiler_options(None) == expected
    options = cache.compiler_options([cpu])
    options["changed"] = 1  # a copy: the module's options stay as they are
    assert "changed" not in cache.CPU_COMPILER_OPTIONS


def test_jit_with_the_cpu_options_computes_what_xla_defaults_compute():
    def f(x):  # a loop, a reduction and transcendental functions
        def body(carry):
            i, y = carry
            return i + 1, jnp.tanh(y) + jnp.log1p(jnp.exp(-jnp.abs(y))) * x

        return jax.lax.while_loop(lambda c: c[0] < 50, body, (0, x))[1].sum()

    x = jnp.linspace(-3.0, 3.0, 101)
    np.testing.assert_allclose(cache.jit(f)(x), jax.jit(f)(x), rtol=1e-6)


# Two fresh processes share one persistent cache folder: the second must load the sampler
# program from it (a cache hit) instead of compiling it, and draw the same numbers.
CHILD = """
import json, sys
import jax, jax.monitoring, numpy as np
import bayescale
bayescale.configure(cache_dir=sys.argv[1], cpu_devices=1)
hits = []
jax.monitoring.register_event_listener(
    lambda event, **_: hits.append(event) if event.endswith("/cache_hits") else None
)
x = np.geomspace(1e6, 1e9, 12)
y = 1.7 + 400.0 * x**-0.3 * np.exp(np.random.default_rng(0).normal(0, 0.01, x.size))
result = bayescale.fit(
    {"n_params": x, "loss": y}, "E + A * n_params**-alpha", seed=0,
    inference=bayescale.NUTS(num_chains=1, num_warmup=100, num_samples=100, progress_bar=False),
    warn=False,
)
print(json.dumps({"hits": len(hits), "alpha": result.draws(["alpha"])["alpha"].tolist()}))
"""


def test_a_second_process_loads_the_fit_program_from_the_persistent_cache(tmp_path):
    def child():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = child(), child()
    assert cold["hits"] == 0
    assert warm["hits"] >= 1
    assert np.array_equal(cold["alpha"], warm["alpha"])


def test_starts_one_after_another_end_where_the_vmapped_starts_end(float64):
    """``find_mode(vectorized=False)`` (the NUTS start's smaller program) runs the same
    optimisation of every start as the lock-step ``vmap``, up to rounding: the best start
    ends at the same mode.  (A start still far from converged after 40 steps may take
    another path once a line search decides differently in the last bit.)"""
    from bayescale.data import prepare
    from bayescale.infer.optimize import find_mode
    from bayescale.infer.parallel import stack
    from bayescale.laws import get_law
    from bayescale.model import Posterior
    from bayescale.simulate import simulate

    law = get_law("kaplan_per_token")
    frame = simulate(law, params={"a": 4.0, "b": 3.2, "c": 0.47}, seed=0)
    data = jax.tree.map(lambda x: x[0], stack([prepare(frame, law, None)]))
    posterior = Posterior(law, "student_t")
    key = jax.random.key(1)
    modes = [
        jax.jit(
            lambda k, d, v=v: find_mode(posterior, k, d, num_starts=6, num_steps=40, vectorized=v)
        )(key, data)
        for v in (True, False)
    ]
    together, apart = modes
    np.testing.assert_allclose(apart.potential, together.potential, rtol=1e-10)
    np.testing.assert_allclose(apart.z, together.z, rtol=1e-6, atol=1e-8)
    assert int(np.argmin(apart.start_potentials)) == int(np.argmin(together.start_potentials))
    assert int(apart.num_failed) == int(together.num_failed) == 0
