"""float32 safety: a whole fit with JAX's default single precision (BAYESCALE_X64=0)."""

import json
import math
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import bayescale, jax
    from bayescale.simulate import simulate
    law = bayescale.laws.get_law("chinchilla")
    data = simulate(law, seed=11)
    r = bayescale.fit(data, law, seed=0, warn=False,
                      inference=bayescale.NUTS(num_chains=2, num_warmup=400, num_samples=400))
    draws = r.draws()
    pred = r.predict({"n_params": [1e12], "n_tokens": [1e14]}, kind="mean")
    print(json.dumps({
        "x64": bool(jax.config.jax_enable_x64),
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


def test_fit_in_float32():
    env = dict(os.environ, BAYESCALE_X64="0")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["x64"] is False and res["dtype"] == "float32"
    assert res["finite"]
    assert res["rhat"] < 1.05
    # the simulating values lie within 4 posterior sd (log scale) of the posterior mean
    for name, ref in res["ref"].items():
        z = (math.log(ref) - res["log_mean"][name]) / res["log_sd"][name]
        assert abs(z) < 4, (name, ref, z)
    # far extrapolation (N = 1e12, D = 1e14) stays finite and above the asymptote
    assert 1.5 < res["pred"] < 2.5
