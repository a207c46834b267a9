"""PolyPythia: pooled (hierarchical) vs unpooled exponents per model size.

Run ``python benchmarks/polypythia_pooled.py`` (``--quick``: 2 chains x 300 + 300).

For each model size, the seeds' training curves (prepared as in
``benchmarks/polypythia_exponents.py``: steps >= 100, ~40 log-spaced steps per curve, logs
that do not start at initialisation left out) are fitted with ``power_law_offset``
(``loss = E + A * step**-alpha``, Student-t on log loss) twice:

* unpooled: ``fit_batch(..., by="seed")``, every seed on its own;
* pooled: ``fit(..., group="seed", pooled=["alpha"])``, the seeds' exponents drawn from a
  population :math:`\\log\\alpha_s \\sim \\mathcal N(\\mu, \\tau)` (non-centred
  coordinates, bayescale's default), E, A, sigma and nu per seed.

Printed per size and seed: alpha median [5%, 95%] both ways, the interval widths, the
population centre exp(mu) and spread tau, the coordinates used, divergences and the largest
r-hat over the seeds' parameters and the population's (with its smallest ESS); at the end a
table per size: the mean 90% interval width of alpha, unpooled and pooled.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from polypythia_exponents import DATA, INIT_LOSS_MIN, SIZE_ORDER, log_spaced_curves

COLUMNS = {"x": "step", "y": "train_lm_loss"}


def q(x) -> tuple[float, float, float]:
    lo, med, hi = np.quantile(np.asarray(x).ravel(), [0.05, 0.5, 0.95])
    return float(med), float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    import bayescale

    settings = (
        {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
        if args.quick
        else {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000}
    )
    raw = pd.read_csv(args.data)
    first = raw.sort_values("step").groupby(["model", "seed"])["train_lm_loss"].first()
    from_init = first[first >= INIT_LOSS_MIN].index
    curves = log_spaced_curves(raw)
    curves = curves.set_index(["model", "seed"]).loc[from_init].reset_index()
    print(f"{len(from_init)} curves from initialisation; settings {settings}")
    common = dict(columns=COLUMNS, seed=0, warn=False, **settings)
    table = []
    for model in sorted(curves["model"].unique(), key=lambda m: SIZE_ORDER.get(m, 9)):
        rows = curves[curves["model"] == model].drop(columns="model")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unpooled = bayescale.fit_batch(rows, "power_law_offset", by="seed", **common)
            t1 = time.perf_counter()
            pooled = bayescale.fit(
                rows, "power_law_offset", group="seed", pooled=["alpha"], **common
            )
            t2 = time.perf_counter()
        pu, pp = unpooled.group("posterior"), pooled.group("posterior")
        centre, tau = q(pp["alpha_pop"].values), q(pp["alpha_pop_sd"].values)
        div = int(pooled.datatree.sample_stats["diverging"].values[0].sum())
        population = json.loads(pooled.datatree.attrs["population_diagnostics"])
        pop_rhat = max(d["rhat"] for d in population.values())
        pop_ess = min(min(d["ess_bulk"], d["ess_tail"]) for d in population.values())
        coords = "centred" if json.loads(pooled.datatree.attrs["centred"])[0] else "non-centred"
        print(
            f"\n== {model}: {len(unpooled)} seeds; unpooled {t1 - t0:.0f} s, "
            f"pooled {t2 - t1:.0f} s; "
            f"population exp(mu) {centre[0]:.4f} [{centre[1]:.4f}, {centre[2]:.4f}], "
            f"tau {tau[0]:.3f} [{tau[1]:.3f}, {tau[2]:.3f}]; pooled ({coords}) divergences "
            f"{div}, max r-hat {pooled.diagnostics['max_rhat'].max():.4f} (seeds), "
            f"{pop_rhat:.4f} (population, min ESS {pop_ess:.0f}) =="
        )
        widths = {"unpooled": [], "pooled": []}
        print(f"{'seed':>5} {'unpooled alpha':>28} {'width':>7} {'pooled alpha':>28} {'width':>7}")
        for label in unpooled.labels:
            u = q(pu["alpha"].sel(seed=label).values)
            p = q(pp["alpha"].sel(seed=label).values)
            print(
                f"{label:>5} {u[0]:9.4f} [{u[1]:.4f}, {u[2]:.4f}] {u[2] - u[1]:7.4f} "
                f"{p[0]:9.4f} [{p[1]:.4f}, {p[2]:.4f}] {p[2] - p[1]:7.4f}"
            )
            widths["unpooled"].append(u[2] - u[1])
            widths["pooled"].append(p[2] - p[1])
        table.append(
            (model, len(unpooled), np.mean(widths["unpooled"]), np.mean(widths["pooled"]), coords,
             div, max(pooled.diagnostics["max_rhat"].max(), pop_rhat))
        )  # fmt: skip
    print("\n== mean 90% interval width of alpha per size ==")
    print(f"{'size':>6} {'seeds':>5} {'unpooled':>9} {'pooled':>9} {'ratio':>6} coords div r-hat")
    for model, n, wu, wp, coords, div, rhat in table:
        print(f"{model:>6} {n:5d} {wu:9.4f} {wp:9.4f} {wp / wu:6.2f} {coords} {div:3d} {rhat:.4f}")


if __name__ == "__main__":
    main()
