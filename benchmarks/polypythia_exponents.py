"""Data-scaling exponents of the PolyPythia training curves, every curve in one call.

Run ``python benchmarks/polypythia_exponents.py`` (a few minutes on a 2-core CPU; ``--quick``
for the test's settings).

Fits ``loss = E + A * step**-alpha`` (catalogue id ``power_law_offset``, Student-t on log
loss with nu fixed at 4 unless ``--likelihood`` says otherwise, the law's default priors)
to every (model size, seed) training curve of
``../shared/data/polypythia_train_lm_loss_every10steps.csv`` in ONE ``bayescale.fit_batch``
call with bayescale's full defaults (4 chains x 1000 warm-up + 1000 draws), and prints per
model size the exponent alpha and the asymptote E: posterior median and 90% interval
pooled over the size's seeds (draws of every seed put together, each seed weighing alike),
then per seed, with each curve's convergence status.

Preparation is :func:`bayescale.datasets.polypythia`'s: steps >= 100 only (the first ~100
steps leave the initialisation plateau by warm-up dynamics, not a power law), each curve
thinned to ~40 logged steps nearest log-spaced targets.  Logs whose loss at step 0 is
already far below the initialisation plateau (~10.8 nats) restart their step counter on a
resumed run; they are marked ``resumed`` and left out of the pooled figures (their steps are
not steps since initialisation, so their alpha is not the curve's exponent).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale import datasets
from bayescale.data import thin_log_spaced

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / datasets.POLYPYTHIA_FILE
MIN_STEP = 100
NUM_STEPS = 40
BY = ["model", "seed"]
COLUMNS = {"x": "step", "y": "train_lm_loss"}
INIT_LOSS_MIN = datasets.INIT_LOSS_MIN
SIZE_ORDER = {"14m": 0, "70m": 1, "160m": 2, "410m": 3}


def log_spaced_curves(raw: pd.DataFrame, min_step=MIN_STEP, num=NUM_STEPS) -> pd.DataFrame:
    """:func:`bayescale.datasets.polypythia`'s thinning applied to a raw log."""
    return thin_log_spaced(raw, "step", by=BY, num=num, min_value=min_step).reset_index(drop=True)


def interval(x) -> str:
    lo, med, hi = np.quantile(np.asarray(x).ravel(), [0.05, 0.5, 0.95])
    return f"{med:7.3f} [{lo:6.3f}, {hi:6.3f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 chains x 300 + 300")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--likelihood",
        default="student_t(4)",
        help="nu fixed at 4 by default: 40 points per curve do not identify nu, and with nu "
        "fitted the (sigma, nu) ridge mixes slowly (see tests/test_polypythia.py)",
    )
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is absent (see ../shared/data/README.md)")
    import bayescale

    settings = (
        {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
        if args.quick
        else {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000}
    )
    raw = pd.read_csv(args.data)
    start = (
        raw.sort_values("step")
        .groupby(BY)
        .agg(
            first_step=("step", "first"),
            first_loss=("train_lm_loss", "first"),
            last_step=("step", "last"),
        )
    )
    curves = log_spaced_curves(raw)
    last_loss = curves.sort_values("step").groupby(BY)["train_lm_loss"].last()
    cache = os.environ.get("BAYESCALE_CACHE_DIR")
    print(
        f"PolyPythia: {len(start)} curves, {len(curves)} points after thinning (steps >= "
        f"{MIN_STEP}, ~{NUM_STEPS} log-spaced per curve); law power_law_offset "
        f"E + A*step^-alpha, likelihood {args.likelihood} on log loss; "
        f"{settings['num_chains']} chains x "
        f"{settings['num_warmup']} warm-up + {settings['num_samples']} draws per curve; "
        f"persistent compilation cache {'off' if cache == '' else 'on (may hold the program)'}",
        flush=True,
    )
    t0 = time.perf_counter()
    result = bayescale.fit_batch(
        curves,
        "power_law_offset",
        columns=COLUMNS,
        by=BY,
        likelihood=args.likelihood,
        seed=0,
        warn=False,
        **settings,
    )
    wall = time.perf_counter() - t0
    diag = result.diagnostics
    post = result.group("posterior")
    dim = result.dim
    print(
        f"fit_batch wall time {wall:.1f} s for {len(result)} curves ({wall / len(result):.2f} "
        f"s/curve); converged {int((diag['status'] == 'converged').sum())}/{len(diag)}\n",
        flush=True,
    )

    rows = []
    for (model, seed), info in start.iterrows():
        label = f"{model}/{seed}"
        sel = {dim: label}
        rows.append(
            {
                "model": model,
                "seed": seed,
                "label": label,
                "alpha": post["alpha"].sel(sel).values,
                "E": post["E"].sel(sel).values,
                "status": diag.loc[label, "status"],
                "rhat": diag.loc[label, "max_rhat"],
                "ess": min(diag.loc[label, "min_ess_bulk"], diag.loc[label, "min_ess_tail"]),
                "div": int(diag.loc[label, "num_divergent"]),
                "resumed": info.first_loss < INIT_LOSS_MIN,
                "first_loss": info.first_loss,
                "last_step": int(info.last_step),
                "last_loss": last_loss[(model, seed)],
            }
        )
    rows.sort(key=lambda r: (SIZE_ORDER.get(r["model"], 9), r["seed"]))

    print(
        "Pooled over each size's seeds (median [5%, 95%]); 'init' = the seeds whose log starts "
        "at initialisation, 'all' = every seed (resumed logs included):"
    )
    print(f"{'size':>5} {'which':>5} {'seeds':>18} {'alpha':>26} {'E':>26}")
    for model in sorted({r["model"] for r in rows}, key=lambda m: SIZE_ORDER.get(m, 9)):
        mine = [r for r in rows if r["model"] == model]
        for which, use in (("init", [r for r in mine if not r["resumed"]]), ("all", mine)):
            if which == "all" and len(use) == len(mine) and not any(r["resumed"] for r in mine):
                continue  # the same as 'init'
            seeds = ",".join(str(r["seed"]) for r in use) or "(none)"
            if not use:
                print(f"{model:>5} {which:>5} {seeds:>18}")
                continue
            alpha = np.concatenate([r["alpha"].ravel() for r in use])
            e = np.concatenate([r["E"].ravel() for r in use])
            print(f"{model:>5} {which:>5} {seeds:>18} {interval(alpha):>26} {interval(e):>26}")

    print("\nPer curve (median [5%, 95%]):")
    print(
        f"{'size':>5} {'seed':>4} {'alpha':>26} {'E':>26} {'last loss':>9} {'last step':>9} "
        f"{'loss@0':>7} {'status':>11} {'r-hat':>6} {'ESS':>6} {'div':>4}  note"
    )
    for r in rows:
        print(
            f"{r['model']:>5} {r['seed']:>4} {interval(r['alpha']):>26} {interval(r['E']):>26} "
            f"{r['last_loss']:>9.3f} {r['last_step']:>9d} {r['first_loss']:>7.2f} "
            f"{r['status']:>11} {r['rhat']:>6.3f} {r['ess']:>6.0f} {r['div']:>4d}  "
            f"{'resumed (not from initialisation)' if r['resumed'] else ''}"
        )
    print(f"\nwall time {wall:.1f} s")


if __name__ == "__main__":
    main()
