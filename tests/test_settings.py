"""Importing bayescale and fitting leave the caller's JAX configuration as it was."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax

    jax.config.update("jax_enable_x64", sys.argv[1] == "1")

    def state():
        return {
            "x64": bool(jax.config.jax_enable_x64),
            "cache_dir": jax.config.jax_compilation_cache_dir,
            "num_cpu_devices": jax.config.jax_num_cpu_devices,
        }

    before = state()
    import bayescale
    from bayescale.simulate import simulate

    after_import = state()
    data = simulate("kaplan_n", seed=0, num_points=12)
    result = bayescale.fit(
        data, "kaplan_n", inference=bayescale.NUTS(num_chains=1, num_warmup=50, num_samples=50),
        warn=False,
    )
    pred = result.predict({"n_params": [1e12]})
    print(json.dumps({
        "before": before, "after_import": after_import, "after_fit": state(),
        "devices": len(jax.devices()),
        "draw_dtype": str(result.draws()["alpha_N"].dtype),
        "prediction_dtype": str(pred["q50"].dtype),
    }))
    """
)


@pytest.mark.parametrize("x64", [False, True], ids=["caller float32", "caller float64"])
def test_import_and_fit_leave_jax_configuration_alone(x64):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "BAYESCALE_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(int(x64))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"]["x64"] is x64
    assert out["after_import"] == out["before"]
    assert out["after_fit"] == out["before"]
    assert out["devices"] == 1  # JAX's own default on a CPU: no split into one per core
    # the fit itself computed in float64 whatever the caller chose
    assert out["draw_dtype"] == "float64"
    assert out["prediction_dtype"] == "float64"


def test_configure_is_the_explicit_opt_in(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, jax, bayescale
        done = bayescale.configure(cpu_devices=2, cache_dir={str(tmp_path)!r})
        print(json.dumps({{"done": done, "devices": len(jax.devices()),
                          "cache_dir": jax.config.jax_compilation_cache_dir}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "BAYESCALE_"))}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["cache_dir"] == str(tmp_path)
    assert out["done"] == {"cpu_devices": 2, "cache_dir": str(tmp_path)}


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True])
def test_configure_rejects_a_bad_device_count(bad):
    import bayescale

    with pytest.raises(ValueError, match="cpu_devices"):
        bayescale.configure(cpu_devices=bad)
