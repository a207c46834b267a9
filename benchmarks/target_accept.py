"""NUTS's ``target_accept_prob`` on the two slow fits of ``notebooks/methods.ipynb``.

Run ``python benchmarks/target_accept.py pooled`` or ``... broken`` (options: ``--targets``,
``--seeds``, ``--warmup``, ``--samples``; 4 chains).

* ``pooled``: PolyPythia's seeds per model size (14m, 70m, 160m; logs from initialisation),
  ``fit(..., group="seed", pooled=["alpha"], likelihood="student_t(4)")`` as in the
  notebook's section 5;
* ``broken``: the Chinchilla law whose N-term breaks once (Caballero et al.'s form, the
  notebook's section 4 priors) on the 240 Chinchilla runs.

Printed per (fit, target, seed): wall time, divergences, mean tree size, the largest r-hat
and its site, and the smallest bulk ESS (pooled: also tau's r-hat and bulk ESS).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import arviz_stats as azs
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BROKEN = (
    "E + A * n_params**-alpha * (1 + (n_params / N_b)**(1 / f))**(-c * f) + B * n_tokens**-beta"
)
BROKEN_PRIORS = {
    "E": "lognormal(0.5, 0.5)",
    "A": "lognormal(6, 2)",
    "B": "lognormal(6.5, 2.5)",
    "alpha": "lognormal(-1.1, 0.5)",
    "beta": "lognormal(-1.1, 0.5)",
    "N_b": "lognormal(20.7, 1.5)",
    "c": "lognormal(-2.3, 1)",
    "f": "lognormal(-1, 1)",
}


def worst(rhat: dict[str, float]) -> str:
    site = max(rhat, key=rhat.get)
    return f"{rhat[site]:.3f} ({site})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["pooled", "broken"])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.95, 0.99])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    import bayescale
    from bayescale import datasets

    settings = dict(num_chains=4, num_warmup=args.warmup, num_samples=args.samples, warn=False)
    if args.which == "pooled":
        curves = datasets.polypythia(args.data)
        curves = curves[curves["from_init"]].drop(columns="from_init")
        jobs = {
            size: (
                curves[curves["model"] == size].drop(columns="model"),
                "power_law_offset",
                dict(
                    columns={"x": "step", "y": "train_lm_loss"},
                    likelihood="student_t(4)",
                    group="seed",
                    pooled=["alpha"],
                ),
            )
            for size in ("14m", "70m", "160m")
        }
    else:
        law = bayescale.laws.get_law(BROKEN, priors=BROKEN_PRIORS)
        jobs = {
            "broken N": (
                datasets.chinchilla(args.data),
                law,
                {"columns": {"n_params": "Model Size"}},
            )
        }
    print(f"{args.which}: 4 chains x {args.warmup} + {args.samples}")
    for name, (data, law, options) in jobs.items():
        for target in args.targets:
            for seed in args.seeds:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = bayescale.fit(
                        data, law, target_accept_prob=target, seed=seed, **options, **settings
                    )
                wall = time.perf_counter() - t0
                tree = res.datatree
                post = tree.posterior.to_dataset()[list(res.parameter_names)]
                rhat, ess = azs.rhat(post), azs.ess(post, method="bulk")
                stats = tree.sample_stats
                div = stats["diverging"].values
                div = div[0] if div.ndim == 3 else div  # pooled: one copy per group
                steps = stats["n_steps"].values
                line = (
                    f"{name:>8} target {target:.2f} seed {seed}: {wall:5.0f} s, divergent "
                    f"{int(div.sum()):3d} {div.sum(axis=-1)}, mean tree size {steps.mean():6.1f}"
                )
                if "population_diagnostics" in tree.attrs:
                    labels = res.labels
                    sites = {
                        f"{k}[{s}]": float(v)
                        for k in rhat
                        for s, v in zip(labels, rhat[k].values, strict=True)
                    }
                    population = json.loads(tree.attrs["population_diagnostics"])
                    sites.update({k: d["rhat"] for k, d in population.items()})
                    tau = population["alpha_pop_sd"]
                    line += (
                        f", max r-hat {worst(sites)}, tau r-hat {tau['rhat']:.3f} "
                        f"bulk ESS {tau['ess_bulk']:.0f}, min bulk ESS "
                        f"{min(float(np.min(ess[k].values)) for k in ess):.0f}"
                    )
                else:
                    sites = {k: float(rhat[k]) for k in rhat}
                    line += (
                        f", max r-hat {worst(sites)}, min bulk ESS "
                        f"{min(float(ess[k]) for k in ess):.0f}"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
