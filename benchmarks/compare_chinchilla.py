"""Kaplan vs Chinchilla on the same Chinchilla data: PSIS-LOO table and stacked prediction.

Run ``python benchmarks/compare_chinchilla.py`` (``--quick``: 2 chains x 300 + 300).

Both laws (catalogue ids ``chinchilla``, ``kaplan_nd``) are fitted by NUTS with the default
Student-t likelihood to Epoch's extraction of Hoffmann et al.'s points (5 highest-loss rows
dropped), compared with ``bayescale.compare`` (PSIS-LOO, stacking), and the stacked
posterior predictive is printed at a few (N, D) far beyond the data next to each law's own.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd
from single_fit import COLUMNS, DATA, load_data

import bayescale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    settings = (
        {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
        if args.quick
        else {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000}
    )
    df = load_data(args.data)
    results = {}
    for law in ("chinchilla", "kaplan_nd"):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
            results[law] = bayescale.fit(
                df, law, columns=COLUMNS, seed=0, inference=bayescale.NUTS(**settings)
            )
        d = results[law].diagnostics.iloc[0]
        print(
            f"{law}: {time.perf_counter() - t0:.0f} s, status {results[law].status.value}, "
            f"max r-hat {d['max_rhat']:.3f}, {d['num_divergent']} divergent"
        )
    comparison = bayescale.compare(results)
    cols = ["elpd", "se", "p", "elpd_diff", "dse", "weight", "max_pareto_k", "num_high_pareto_k"]
    with pd.option_context("display.width", 200, "display.precision", 4):
        print("\nPSIS-LOO comparison (elpd on log loss; stacking weights):")
        print(comparison.table[cols].to_string())
        new = pd.DataFrame({"Model Size": [7e10, 1e12], "n_tokens": [1.4e12, 2e13]})
        print("\nLoss at Chinchilla (70B, 1.4T) and at 1T params x 20T tokens: median [5%, 95%]")
        for name, result in comparison.results.items():
            p = result.predict(new, quantiles=(0.05, 0.5, 0.95))
            print(
                f"  {name:12s}",
                [f"{m:.4f} [{a:.4f}, {b:.4f}]" for a, m, b in p[["q5", "q50", "q95"]].values],
            )
        p = comparison.predict(new, quantiles=(0.05, 0.5, 0.95))
        print(
            f"  {'stacked':12s}",
            [f"{m:.4f} [{a:.4f}, {b:.4f}]" for a, m, b in p[["q5", "q50", "q95"]].values],
        )


if __name__ == "__main__":
    main()
