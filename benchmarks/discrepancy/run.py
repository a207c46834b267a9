"""Leave-one-source-out calibration of candidate discrepancy models on the shipped corpus.

For every curve of ``bayescale/corpus``: fit the early part (split rules below), predict
the rest, score held-out coverage at 50-99%, MSCE, the 90% band's median width and mean
interval score (log response), the median absolute log error (ratio to least squares of
the same law, :func:`bayescale.check.least_squares_fit`) and the log predictive density.
Each kernel's hyperparameters are picked on a grid, for each source, by the mean held-out
log predictive density of the OTHER sources (each source weighted equally); ``tau_d``'s
tau by :func:`bayescale.check.law_error_scale` from the other sources' ``none`` errors
(today's opt-in).  Writes markdown tables to stdout and a CSV of every grid point.

Usage (from the worktree root)::

    nice -n 19 python benchmarks/discrepancy/run.py [--quick] [--grid K:A:B ...] [--out DIR]
        [--report-only]
        [--select lpd|msce|iscore90]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[2])]

import models  # noqa: E402
from bayescale.check import law_error_scale, least_squares_fit  # noqa: E402
from bayescale.data import prepare  # noqa: E402
from bayescale.laws import get_law  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "bayescale" / "corpus"
LEVELS = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
#: source -> (first x kept, split rule, parameter): "steps" fits x <= p * x_max (at least
#: MIN_FIT points); "points" fits the smallest ceil(p * n) points (at least MIN_FIT_SIZE).
SPLITS = {
    "polypythia": (1000.0, "steps", 0.2),
    "nanogpt_speedrun": (0.0, "steps", 0.3),
    "porian2024_frontier": (0.0, "points", 0.6),
    "timm_imagenet": (0.0, "points", 0.6),
    "pythia_evals": (0.0, "points", 0.6),
}
#: MIN_FIT_SIZE: every across-size fit keeps at least the 5 points a 3-parameter law needs
#: beside the noise scale (bayescale marks a fit with fewer ``failed``).
MIN_FIT, MIN_FIT_SIZE = 5, 5
#: Held-out log densities below this (or not finite) count as this in the mean (one wild
#: point must not decide a source's score).
LPD_FLOOR = -20.0
GRIDS = {
    "none": [(0.0, 1.0)],
    "ou": [(0.01, 1.0), (0.03, 1.0), (0.1, 1.0)],
    "rw": [(0.01, 1.0), (0.03, 1.0), (0.1, 1.0)],
    "irw": [(0.003, 1.0), (0.01, 1.0), (0.03, 1.0)],
    "se": [(0.03, 1.0)],
}
QUICK = {"none": GRIDS["none"], "ou": [(0.03, 1.0)], "rw": [(0.01, 1.0)]}


def split_curve(x: np.ndarray, source: str) -> np.ndarray:
    """Boolean mask of the fitted points of one curve (sorted by x)."""
    _, rule, p = SPLITS[source]
    if rule == "steps":
        fit = x <= p * x[-1]
        if fit.sum() < MIN_FIT:
            fit = np.arange(len(x)) < MIN_FIT
    else:
        fit = np.arange(len(x)) < max(int(np.ceil(p * len(x))), MIN_FIT_SIZE)
    return fit


def load_corpus() -> list[dict]:
    """Every curve with at least one held-out point, as fit/held-out arrays."""
    curves = []
    for source, (x_min, _, _) in SPLITS.items():
        frame = pd.read_csv(CORPUS / f"{source}.csv")
        for name, g in frame.groupby("curve", sort=True):
            g = g[g["x"] >= x_min].sort_values("x")
            x, y = g["x"].to_numpy(float), g["y"].to_numpy(float)
            fit = split_curve(x, source)
            if fit.all():
                continue
            curves.append({"source": source, "curve": name, "x": x, "y": y, "fit": fit})
    return curves


def stack(curves: list[dict]) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Padded arrays: fitted (log_x, log_y, mask, log_x0) and held-out (log_x, log_y, mask)."""
    nf = max(c["fit"].sum() for c in curves)
    nh = max((~c["fit"]).sum() for c in curves)
    n = len(curves)
    fit = {
        "log_x": np.zeros((n, nf)),
        "log_y": np.zeros((n, nf)),
        "mask": np.zeros((n, nf), bool),
        "log_x0": np.zeros(n),
    }
    hx, hy, hm = np.zeros((n, nh)), np.zeros((n, nh)), np.zeros((n, nh), bool)
    for i, c in enumerate(curves):
        lx, ly, f = np.log(c["x"]), np.log(c["y"]), c["fit"]
        k, m = f.sum(), (~f).sum()
        fit["log_x"][i, :k], fit["log_y"][i, :k], fit["mask"][i, :k] = lx[f], ly[f], True
        fit["log_x"][i, k:] = lx[f][-1]
        fit["log_y"][i, k:] = ly[f][-1]
        fit["log_x0"][i] = lx[f][0]
        hx[i, :m], hy[i, :m], hm[i, :m] = lx[~f], ly[~f], True
        hx[i, m:] = lx[~f][-1]
    return fit, hx, hy, hm


def least_squares_medians(curves, hx) -> np.ndarray:
    """Least-squares prediction (log) of every held-out point, same law, fitted points only."""
    law = get_law("power_law_offset")
    out = np.zeros(hx.shape)
    for i, c in enumerate(curves):
        data = prepare(
            pd.DataFrame({"x": c["x"][c["fit"]], "y": c["y"][c["fit"]]}),
            law,
            min_points=MIN_FIT_SIZE,
        )
        p = least_squares_fit(law, data)
        out[i] = np.log(p["E"] + p["A"] * np.exp(hx[i]) ** -p["alpha"])
    return out


def score(mean, sd, hx, hy, hm, fit_log_x_max) -> dict:
    """Per held-out point: PIT, log density, median, 90% band, decades beyond the fit."""
    pit, lpd, qs = _score(mean, sd, hy)
    qs = np.asarray(qs)
    return {
        "pit": np.asarray(pit),
        "lpd": np.asarray(lpd),
        "lo": qs[:, 0],
        "med": qs[:, 1],
        "hi": qs[:, 2],
        "dist": np.maximum(hx - fit_log_x_max[:, None], 0) / np.log(10),
    }


@jax.jit
def _score(mean, sd, hy):
    def one(m, s, y):
        return (
            models.mixture_cdf(y, m, s),
            models.mixture_logpdf(y, m, s),
            models.mixture_quantiles(jnp.array([0.05, 0.5, 0.95]), m, s),
        )

    return jax.vmap(one)(mean, sd, jnp.asarray(hy))


def _floored(lpd):
    return np.where(np.isfinite(lpd), np.maximum(lpd, LPD_FLOOR), LPD_FLOOR)


def summarise(s: dict, hy, hm, lsq, rows: np.ndarray) -> dict:
    """Source-level numbers over the held-out points of the curves ``rows``."""
    m = hm[rows]
    pit, y = s["pit"][rows][m], hy[rows][m]
    lo, med, hi = s["lo"][rows][m], s["med"][rows][m], s["hi"][rows][m]
    cover = np.array([np.mean(np.abs(pit - 0.5) <= q / 2) for q in LEVELS])
    last = np.array([np.flatnonzero(r)[-1] for r in hm[rows]])
    pit_last = s["pit"][rows][np.arange(len(last)), last]
    width = hi - lo
    iscore = width + 20 * np.maximum(lo - y, 0) + 20 * np.maximum(y - hi, 0)
    err = np.abs(y - med)
    err_lsq = np.abs(y - lsq[rows][m])
    curve_lpd = np.nanmean(np.where(m, _floored(s["lpd"][rows]), np.nan), axis=1)
    return {
        "curves": len(rows),
        "points": int(m.sum()),
        "cov50": cover[0],
        "cov90": cover[4],
        "cov90_last": np.mean(np.abs(pit_last - 0.5) <= 0.45),
        "msce": np.mean((cover - LEVELS) ** 2),
        "width90": np.median(width),
        "iscore90": np.mean(iscore),
        "err_ratio": np.median(err) / np.median(err_lsq),
        "lpd": np.mean(curve_lpd),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one hyper value per kernel")
    parser.add_argument(
        "--grid",
        nargs="+",
        metavar="KERNEL:A:B",
        help="score only these kernels and hyperparameters (e.g. rw:0.03:1)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/discrepancy/results"))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="the tables from OUT/grid.csv and OUT/tau_d.csv, no fits",
    )
    parser.add_argument(
        "--select",
        choices=["lpd", "msce", "iscore90"],
        default="lpd",
        help="criterion on the other sources that picks the hyperparameters",
    )
    args = parser.parse_args(argv)
    if not args.report_only:
        grids = QUICK if args.quick else GRIDS
        if args.grid:
            grids = {}
            for item in args.grid:
                kernel, a, b = item.split(":")
                grids.setdefault(kernel, []).append((float(a), float(b)))
        fit_grid(args.out, grids)
    grid, tau_d = pd.read_csv(args.out / "grid.csv"), pd.read_csv(args.out / "tau_d.csv")
    loso = choose_loso(grid, tau_d, args.select)
    loso.to_csv(args.out / f"loso_{args.select}.csv", index=False)
    report(loso, grid)


def fit_grid(out: Path, grids: dict) -> None:
    """Score every kernel and grid value on every curve into OUT/grid.csv (rows already
    there are kept, not refitted; rewritten after each run, so a cut-short run keeps what it
    did), and tau_d from the ``none`` fit into OUT/tau_d.csv: tau from the other sources'
    errors (method of moments, today's opt-in), added to the ``none`` mixture's variance as
    (tau d)^2."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    curves = load_corpus()
    sources = np.array([c["source"] for c in curves])
    fit, hx, hy, hm = stack(curves)
    fit_max = np.array([np.log(c["x"][c["fit"]][-1]) for c in curves])
    print(
        f"{len(curves)} curves: " + ", ".join(f"{s} {np.sum(sources == s)}" for s in SPLITS),
        file=sys.stderr,
    )
    lsq = least_squares_medians(curves, hx)
    print(f"least squares done {time.time() - t0:.0f}s", file=sys.stderr)
    old = pd.read_csv(out / "grid.csv") if (out / "grid.csv").exists() else None
    records = [] if old is None else old.to_dict("records")
    done = set() if old is None else set(zip(old.kernel, old.a, old.b, strict=True))
    for kernel, grid in grids.items():
        for hyper in grid:
            if (kernel, *hyper) in done:
                continue
            mean, sd, _ = models.batch_fit_predict(kernel, hyper, 0.0, fit, hx)
            s = score(mean, sd, hx, hy, hm, fit_max)
            bad = ~np.all(np.isfinite(s["lpd"]) | ~hm, axis=1)
            if bad.any():
                print(
                    f"{kernel} {hyper}: non-finite predictions for "
                    f"{[curves[i]['curve'] for i in np.flatnonzero(bad)]}",
                    file=sys.stderr,
                )
            for src in SPLITS:
                rows = np.flatnonzero(sources == src)
                records.append(
                    {
                        "kernel": kernel,
                        "a": hyper[0],
                        "b": hyper[1],
                        "source": src,
                        **summarise(s, hy, hm, lsq, rows),
                    }
                )
            pd.DataFrame(records).to_csv(out / "grid.csv", index=False)
            print(f"{kernel} {hyper} done {time.time() - t0:.0f}s", file=sys.stderr)
            if kernel == "none":
                tau_d_table(s, mean, sd, sources, hx, hy, hm, fit_max, lsq).to_csv(
                    out / "tau_d.csv", index=False
                )


def tau_d_table(s0, mean, sd, sources, hx, hy, hm, fit_max, lsq) -> pd.DataFrame:
    rows_out = []
    for src in SPLITS:
        other = (sources != src)[:, None] & hm
        e = (hy - s0["med"])[other]
        v = (((s0["hi"] - s0["lo"]) / (2 * 1.6449)) ** 2)[other]
        tau = law_error_scale(e, v, s0["dist"][other])
        extra = (tau * s0["dist"])[:, None, :] ** 2
        s = score(mean, np.sqrt(np.asarray(sd) ** 2 + extra), hx, hy, hm, fit_max)
        rows = np.flatnonzero(sources == src)
        rows_out.append(
            {
                "kernel": "tau_d",
                "a": tau,
                "b": np.nan,
                "source": src,
                **summarise(s, hy, hm, lsq, rows),
            }
        )
    return pd.DataFrame(rows_out)


def choose_loso(grid: pd.DataFrame, tau_d: pd.DataFrame, select: str = "lpd") -> pd.DataFrame:
    """Per source and kernel, the grid value with the best mean ``select`` (highest log
    density, or lowest MSCE or interval score) over the OTHER sources (each weighted
    equally), scored on this source; tau_d as it comes."""
    loso = [tau_d]
    for src in SPLITS:
        for kernel in grid.kernel.unique():
            g = grid[(grid.kernel == kernel) & (grid.source != src)]
            # a grid value with non-finite scores on another source cannot be chosen
            means = g.groupby(["a", "b"])[select].agg(lambda v: v.mean(skipna=False)).dropna()
            if means.empty:
                continue
            best = means.idxmax() if select == "lpd" else means.idxmin()
            row = grid[
                (grid.kernel == kernel)
                & (grid.source == src)
                & (grid.a == best[0])
                & (grid.b == best[1])
            ]
            loso.append(row)
    return pd.concat(loso, ignore_index=True)


def markdown(frame: pd.DataFrame) -> str:
    """A markdown table (3 significant digits), without the optional ``tabulate``."""
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def report(loso: pd.DataFrame, grid: pd.DataFrame) -> None:
    """Markdown: one table per source (LOSO-chosen hyperparameters), a ranking over sources,
    and each kernel's best grid value per source (the spread a hyperprior must cover)."""
    cols = [
        "kernel",
        "a",
        "b",
        "curves",
        "points",
        "cov50",
        "cov90",
        "cov90_last",
        "msce",
        "width90",
        "iscore90",
        "err_ratio",
        "lpd",
    ]
    for src in SPLITS:
        print(f"\n### {src} (hyperparameters chosen on the other sources)\n")
        print(markdown(loso[loso.source == src][cols]))
    rank = loso.assign(gap50=(loso.cov50 - 0.5).abs(), gap90=(loso.cov90 - 0.9).abs())
    rank = rank.groupby("kernel")[["gap50", "gap90", "msce", "iscore90", "err_ratio", "lpd"]]
    print("\n### Ranking (mean over the 4 sources, LOSO)\n")
    print(markdown(rank.mean().sort_values("lpd", ascending=False).reset_index()))
    best = grid.loc[grid.groupby(["kernel", "source"])["lpd"].idxmax()]
    print("\n### Each source's own best grid value (in-sample; spread across sources)\n")
    print(markdown(best[["kernel", "source", "a", "b", "cov50", "cov90", "msce", "lpd"]]))


if __name__ == "__main__":
    main()
