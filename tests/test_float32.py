"""A fit in a float32 process: bayescale computes in a scoped float64 and leaves the caller's
JAX setting as it was (issue 16)."""

import json
import math
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import jax
    import bayescale
    from bayescale.simulate import simulate
    before = bool(jax.config.jax_enable_x64)
    law = bayescale.laws.get_law("chinchilla")
    data = simulate(law, seed=11)
    r = bayescale.fit(data, law, seed=0, warn=False,
                      inference=bayescale.NUTS(num_chains=2, num_warmup=400, num_samples=400))
    draws = r.draws()
    pred = r.predict({"n_params": [1e12], "n_tokens": [1e14]}, kind="mean")
    print(json.dumps({
        "x64_before": before,
        "x64_after": bool(jax.config.jax_enable_x64),
        "float32_default": str(jax.numpy.ones(1).dtype),
        "dtype": str(np.asarray(r.datatree.sample_stats["lp"]).dtype),
        "finite": bool(all(np.isfinite(v).all() for v in draws.values())),
        "log_mean": {k: float(np.log(v).mean()) for k, v in draws.items()},
        "log_sd": {k: float(np.log(v).std()) for k, v in draws.items()},
        "ref": law.reference,
        "rhat": float(r.diagnostics.loc[0, "max_rhat"]),
        "pred": float(pred["q50"].iloc[0]),
    }))
    """
)


def test_fit_in_a_float32_process():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # the caller's float32 is untouched; the fit itself ran in float64
    assert res["x64_before"] is False and res["x64_after"] is False
    assert res["float32_default"] == "float32"
    assert res["dtype"] == "float64"
    assert res["finite"]
    assert res["rhat"] < 1.05
    # the simulating values lie within 4 posterior sd (log scale) of the posterior mean
    for name, ref in res["ref"].items():
        z = (math.log(ref) - res["log_mean"][name]) / res["log_sd"][name]
        assert abs(z) < 4, (name, ref, z)
    # far extrapolation (N = 1e12, D = 1e14) stays finite and above the asymptote
    assert 1.5 < res["pred"] < 2.5
