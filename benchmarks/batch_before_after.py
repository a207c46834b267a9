"""One batched NUTS call, timed the same way on two checkouts (before/after a change).

``JAX_ENABLE_X64=1 PYTHONPATH=<checkout> python benchmarks/batch_before_after.py K``:
``K`` simulated ``kaplan_per_token`` curves (30 points each) fitted by one
``fit_batch(..., by="curve")`` call (1 chain, 500 + 500; the 0.1 spelling, which both 0.1 and
1.0 accept), twice (the first call compiles, cold: no persistent cache), with the wall and
CPU seconds and the convergence of the first.
"""

import os
import sys
import time
import warnings

import jax
import numpy as np
import pandas as pd

import bayescale
from bayescale.simulate import simulate

K = int(sys.argv[1])
rng = np.random.default_rng(0)
frames = []
for i in range(K):
    p = {"a": rng.uniform(2, 4), "b": rng.uniform(3, 6), "c": rng.uniform(0.4, 0.7)}
    frames.append(simulate("kaplan_per_token", params=p, seed=i).iloc[:30].assign(curve=i))
df = pd.concat(frames, ignore_index=True)
warnings.simplefilter("ignore")


def timed(seed: int):
    """One batched call: the result, its wall and CPU seconds."""
    t, c = time.perf_counter(), sum(os.times()[:2])
    result = bayescale.fit_batch(
        df, "kaplan_per_token", by="curve", num_chains=1, num_warmup=500, num_samples=500,
        seed=seed, warn=False, progress_bar=False,
    )  # fmt: skip
    return result, time.perf_counter() - t, sum(os.times()[:2]) - c


r, first, first_cpu = timed(0)  # compiles
_, second, _ = timed(1)
d = r.diagnostics
converged = int((d["status"] == "converged").sum())
n_steps = float(r.datatree.sample_stats["n_steps"].mean())
print(
    f"{bayescale.__file__}: K={K} devices={len(jax.devices())} first call {first:.1f} s "
    f"(cpu {first_cpu:.1f}), second call {second:.1f} s; converged {converged}/{K}, "
    f"median max r-hat {d['max_rhat'].median():.4f}, mean n_steps {n_steps:.1f}; "
    f"load {os.getloadavg()[0]:.2f}"
)
