"""Sharpness beside coverage: are the bands honest, not merely wide? (issue 17)

Run ``python benchmarks/sharpness.py`` (``--max-curves N``: at most N curves per source,
``--sources a,b``: a subset, ``--out PATH``: where the table goes, default
``benchmarks/results/sharpness.md``).

Sources: the shipped calibration corpus (``bayescale/corpus/*.csv``; its ``polypythia.csv`` is
PolyPythia from ``../shared/data`` thinned to 60 log-spaced steps per log).  Per curve the
early part is fitted (learning curves: the first 20% of the steps; across-size curves, the
Porian frontier and the timm families: the points below 30% of the largest x) and the rest
predicted; curves with fewer than 9 fitted points are left out (the same curves for every
arm).  Four ways of making a band, each scored by :func:`bayescale.check.calibration` (coverage
at 50-99%, MSCE, the 90% interval score and median width in log response):

a. ``default``: :func:`bayescale.check.backtest` of ``power_law_offset`` with the default
   model (the discrepancy on) and ``Laplace()`` posteriors (``--inference nuts``: NUTS
   2 x (300 + 300)); ``none``: the same with ``Model(discrepancy=None)``, the exact law;
b. ``tau*d``: the ``none`` fits, bands widened by the opt-in law error learnt from the other
   curves of the source (``with_law_error("curves")``);
c. ``LS bootstrap``: per curve, ``B`` pairs-bootstrap resamples of the fitted points, each fitted
   by least squares (:func:`bayescale.check.least_squares_fit`, 4 starts), plus a residual of
   the full least-squares fit resampled per draw (a predictive band, not only a confidence band);
d. ``stacked``: :func:`bayescale.compare` with ``laws=`` power_law_offset, broken_power_law,
   alabdulmohsin_m3, alabdulmohsin_m4 and ``cv=LFO(start=0.5, num_origins=3)`` on the fitted
   part (Laplace), the stacked predictive at the held-out points.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale
from bayescale import check
from bayescale.check.scoring import BAND_QUANTILES
from bayescale.data import prepare
from bayescale.laws import get_law
from bayescale.predict import quantile_column

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bayescale" / "corpus"
SPLITS = {"polypythia": 0.2, "nanogpt_speedrun": 0.2, "porian2024_frontier": 0.3,
          "timm_imagenet": 0.3}  # fmt: skip
LAW = "power_law_offset"
STACKED = ["power_law_offset", "broken_power_law", "alabdulmohsin_m3", "alabdulmohsin_m4"]
MIN_FIT = 9  # the stacked arm's refits need 8 points (broken_power_law) at an origin
INFERENCE = bayescale.Laplace()
NUTS = bayescale.NUTS(num_chains=2, num_warmup=300, num_samples=300)  # --inference nuts
QCOLS = [quantile_column(q) for q in BAND_QUANTILES]


def load(source: str, max_curves: int | None) -> tuple[pd.DataFrame, float]:
    frame = pd.read_csv(CORPUS / f"{source}.csv")
    split = SPLITS[source]
    limit = frame.groupby("curve")["x"].transform("max") * split
    early = frame["x"] <= limit
    counts = early.groupby(frame["curve"]).agg(["sum", "size"])
    keep = counts.index[(counts["sum"] >= MIN_FIT) & (counts["size"] > counts["sum"])]
    keep = sorted(keep)[:max_curves] if max_curves else sorted(keep)
    return frame[frame["curve"].isin(keep)].reset_index(drop=True), split


def split_parts(frame: pd.DataFrame, split: float):
    early = frame["x"] <= frame.groupby("curve")["x"].transform("max") * split
    return frame[early], frame[~early]


def bootstrap_bands(frame: pd.DataFrame, split: float, num_boot: int, seed: int = 0):
    """Predictive quantiles of a pairs bootstrap of least squares at the held-out points."""
    law = get_law(LAW)
    rng = np.random.default_rng(seed)
    fitted, held = split_parts(frame, split)
    rows = []
    for curve, part in fitted.groupby("curve"):
        data = prepare(part[["x", "y"]], law)
        theta = check.least_squares_fit(law, data, num_starts=4, seed=seed)
        resid = np.asarray(data.log_y) - np.asarray(law.log_mean(theta, data.log_x))
        target = held[held["curve"] == curve]
        log_x = {"x": np.log(target["x"].to_numpy(dtype=float))}
        draws = []
        for b in range(num_boot):
            idx = rng.integers(0, len(part), len(part))
            boot = prepare(part.iloc[idx][["x", "y"]], law)
            tb = check.least_squares_fit(law, boot, num_starts=4, seed=seed + b)
            if not np.all(np.isfinite(list(tb.values()))):
                continue
            mu = np.asarray(law.log_mean(tb, log_x), dtype=float)
            noise = rng.choice(resid, size=(50, len(target)))
            draws.append(mu[None, :] + noise)
        log_draws = np.concatenate(draws)
        q = np.exp(np.quantile(log_draws, BAND_QUANTILES, axis=0))
        out = target[["curve", "x"]].assign(observed=target["y"].to_numpy())
        for col, values in zip(QCOLS, q, strict=True):
            out[col] = values
        rows.append(out)
    return pd.concat(rows, ignore_index=True)


def stacked_bands(frame: pd.DataFrame, split: float, seed: int = 0):
    fitted, held = split_parts(frame, split)
    rows, weights = [], []
    for curve, part in fitted.groupby("curve"):
        cmp = bayescale.compare(
            part[["x", "y"]], laws=STACKED, cv=bayescale.LFO(start=0.5, num_origins=3),
            inference=INFERENCE, seed=seed,
        )  # fmt: skip
        weights.append(cmp.weights)
        target = held[held["curve"] == curve]
        pred = cmp.predict(target[["x"]], quantiles=BAND_QUANTILES, seed=seed)
        out = target[["curve", "x"]].assign(observed=target["y"].to_numpy())
        for col in QCOLS:
            out[col] = pred[col].to_numpy()
        rows.append(out)
    return pd.concat(rows, ignore_index=True), pd.DataFrame(weights)


def summary(cal: check.Calibration, pred: pd.DataFrame, seconds: float) -> dict:
    t = cal.table()
    last = pred.loc[pred.groupby("curve")["x"].idxmax()]
    final = ((last["q5"] <= last["observed"]) & (last["observed"] <= last["q95"])).mean()
    return {
        "points": int(t.loc[0.9, "num_points"]),
        "cov50": t.loc[0.5, "coverage"],
        "cov90": t.loc[0.9, "coverage"],
        "cov99": t.loc[0.99, "coverage"],
        "final90": final,
        "MSCE": cal.msce,
        "IS90": t.loc[0.9, "interval_score"],
        "width90": t.loc[0.9, "median_width"],
        "width50": t.loc[0.5, "median_width"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-curves", type=int, default=None)
    parser.add_argument("--sources", default=",".join(SPLITS))
    parser.add_argument("--num-boot", type=int, default=20)
    out = ROOT / "benchmarks" / "results" / "sharpness.md"
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--inference", choices=["laplace", "nuts"], default="laplace",
                        help="posteriors of the default, none and tau*d arms")  # fmt: skip
    parser.add_argument("--no-stacked", action="store_true", help="skip arm d")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows, weight_rows, skipped = [], [], []
    for source in args.sources.split(","):
        frame, split = load(source, args.max_curves)
        n = frame["curve"].nunique()
        print(f"{source}: {n} curves, split {split}", flush=True)
        if n < 3:  # tau*d learns from the other curves of the source
            print(f"{source}: skipped, fewer than 3 curves with >= {MIN_FIT} fitted points")
            skipped.append(source)
            continue
        inference = NUTS if args.inference == "nuts" else INFERENCE
        arms, backtests = {}, {}
        for arm, model in (("default", bayescale.Model()),
                           ("none", bayescale.Model(discrepancy=None))):  # fmt: skip
            start = time.perf_counter()
            backtests[arm] = check.backtest(frame, LAW, by="curve", split=split, model=model,
                                            inference=inference, seed=0)  # fmt: skip
            arms[arm] = (backtests[arm].predictions, time.perf_counter() - start)
        start = time.perf_counter()  # the opt-in law error on the exact law's fits
        tau_d = backtests["none"].with_law_error("curves")
        arms["tau*d"] = (tau_d.predictions, time.perf_counter() - start)
        start = time.perf_counter()
        arms["LS bootstrap"] = (bootstrap_bands(frame, split, args.num_boot),
                                time.perf_counter() - start)  # fmt: skip
        if not args.no_stacked:
            start = time.perf_counter()
            pred, weights = stacked_bands(frame, split)
            arms["stacked"] = (pred, time.perf_counter() - start)
            weight_rows.append(weights.mean().rename(source))
        for arm, (pred, seconds) in arms.items():
            row = {"source": source, "curves": n, "arm": arm,
                   **summary(check.calibration(pred), pred, seconds)}  # fmt: skip
            rows.append(row)
            print({k: round(float(v), 3) if isinstance(v, float) else v
                   for k, v in row.items()}, flush=True)  # fmt: skip
        write(args.out, rows, weight_rows, skipped)
    write(args.out, rows, weight_rows, skipped)


def write(out: Path, rows: list, weight_rows: list, skipped: list) -> None:
    table = pd.DataFrame(rows)
    weights = pd.DataFrame(weight_rows)
    text = [
        "# Sharpness beside coverage (issue 17; branch calib)",
        "",
        f"Command: `python benchmarks/sharpness.py {' '.join(_argv())}`; posteriors: NUTS 2 x "
        "(300 + 300) with `--inference nuts`, else Laplace (the stacked arm: Laplace); "
        "coverage = share of held-out "
        "points inside the central band; final90 = last held-out point inside the 90% band "
        "(share of curves); IS90 = mean 90% interval score and width = median band width, "
        "both in log response (lower is sharper); MSCE over the levels 50-99%.",
        "",
        "<!-- sharpness -->",
        markdown(table, ".3f"),
        "<!-- sharpness -->",
        "",
        "Mean LFO stacking weights per source (arm d):",
        "",
        markdown(weights.reset_index(names="source"), ".2f") if len(weights) else "(not run)",
        "",
        f"Sources skipped (fewer than 3 curves with >= {MIN_FIT} fitted points): "
        f"{', '.join(skipped) or 'none'}.",
        "",
    ]
    out.write_text("\n".join(text))
    print(f"wrote {out}")


def markdown(frame: pd.DataFrame, fmt: str) -> str:
    """A pipe table (pandas' to_markdown needs tabulate)."""
    cells = [[format(v, fmt) if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]  # fmt: skip
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]  # fmt: skip
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
