"""Writes tests/data/{fit,batch}-0.1.nc with bayescale 0.1 (commit 877f787), for the test
that 1.0 loads results saved by 0.1.  Run from a 0.1 checkout: ``python make_0_1.py``."""

import numpy as np
import pandas as pd

import bayescale

rng = np.random.default_rng(0)
frames = []
for i, (a, alpha) in enumerate([(5.0, 0.5), (4.0, 0.4)]):
    x = np.exp(rng.uniform(0, np.log(1e4), 12))
    y = (2 + a * x**-alpha) * np.exp(0.01 * rng.standard_normal(12))
    frames.append(pd.DataFrame({"x": x, "y": y, "curve": f"c{i}"}))
df = pd.concat(frames, ignore_index=True)
one = df[df.curve == "c0"].drop(columns="curve")
r = bayescale.fit(
    one, "power_law_offset", num_chains=1, num_warmup=50, num_samples=20, seed=1, warn=False
)
r.save("tests/data/fit-0.1.nc")
b = bayescale.fit_batch(df, "power_law_offset", by="curve", method="map", seed=2)
b.save("tests/data/batch-0.1.nc")
print(r.summary()[["mean"]], b.summary())
