"""MAP and Laplace fits: time against the scipy L-BFGS grid, batched MAP, Laplace vs NUTS.

Run ``python benchmarks/map_fit.py`` (``--quick``: smaller grid, 1,000 curves, fewer draws).

1. **Chinchilla MAP vs Epoch's recipe** (same run, same data: Epoch's extraction, 5
   highest-loss rows dropped).  ``bayescale.fit(..., method="map", likelihood="huber",
   flat_priors=True)`` minimises Hoffmann's Huber objective (delta 1e-3 on log residuals)
   by optax L-BFGS from prior draws, vmapped; the peer is the scipy L-BFGS-B grid of
   ``benchmarks/single_fit.py`` (the same function, a sub-grid of Epoch's 4,500 starts,
   scaled to 4,500).  Both estimates are printed against DOMAIN.md's plain Huber grid fit.
2. **Batched MAP** (``--batch K``, default 10,000): K simulated ``kaplan_per_token`` curves
   (``benchmarks/batched.py``'s campaign, 30 points each) in one
   ``fit_batch(..., method="map")`` call; time per curve with and without compile (first and
   second call), failed curves (no finite mode, or the mode search did not converge: see
   ``bayescale.infer.optimize.find_mode``) and the peak RSS.
3. **Laplace vs NUTS** on Chinchilla (Student-t likelihood, the default): 95% intervals side
   by side.
4. **NUTS initialised at the MAP vs from a prior draw** (``SamplerOptions.init``), Chinchilla,
   4 chains, short warm-up (300) and long (1000): r-hat, ESS, divergences, wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax
import numpy as np
import pandas as pd
from single_fit import (  # sets BAYESCALE_CACHE_DIR='' before bayescale loads
    COLUMNS,
    DATA,
    PARAMS,
    epoch_grid,
    lbfgs,
    load_data,
    to_params,
)

import bayescale
from bayescale.laws import get_law

DOMAIN_HUBER = {"A": 478.0, "B": 2144.0, "E": 1.817, "alpha": 0.347, "beta": 0.367}
EPOCH_STARTS = 4500


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def chinchilla_map(df: pd.DataFrame, grid_points: int) -> None:
    kwargs = dict(
        columns=COLUMNS, method="map", likelihood="huber", flat_priors=True, num_starts=16
    )
    _, first_s = timed(bayescale.fit, df, "chinchilla", seed=0, **kwargs)
    result, second_s = timed(bayescale.fit, df, "chinchilla", seed=1, **kwargs)
    ours = {k: float(v.ravel()[0]) for k, v in result.draws(PARAMS).items()}

    log_n = np.log(df["Model Size"].to_numpy())
    log_d = np.log(df["n_tokens"].to_numpy())
    log_l = np.log(df["loss"].to_numpy())
    grid = epoch_grid(grid_points)
    fits, grid_s = timed(lambda: [lbfgs(s, log_n, log_d, log_l) for s in grid])
    best = to_params(min(fits, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf).x)
    per_start = grid_s / len(grid)

    d = result.diagnostics
    print("\n== 1. Chinchilla MAP (Huber, delta 1e-3, flat priors) vs scipy L-BFGS grid ==")
    print(
        f"{'':8s}{'bayescale MAP':>15s}{'scipy grid':>15s}{'DOMAIN.md':>12s}{'MAP/DOMAIN-1':>14s}"
    )
    for k in PARAMS:
        rel = ours[k] / DOMAIN_HUBER[k] - 1
        print(f"{k:8s}{ours[k]:15.5g}{best[k]:15.5g}{DOMAIN_HUBER[k]:12.5g}{rel:+14.2%}")
    print(
        f"MAP: {d['num_starts']} starts, {d['map_agreeing_starts']} agree with the best, "
        f"{d['map_failed_starts']} failed, max |grad| {d['map_grad_norm']:.2g}"
    )
    print(f"bayescale MAP, first call (compile included)   {first_s:8.2f} s")
    print(f"bayescale MAP, second call (compiled)          {second_s:8.2f} s")
    print(f"scipy grid, {len(grid)} starts                       {grid_s:8.2f} s")
    print(
        f"scipy grid scaled to Epoch's {EPOCH_STARTS} starts      {per_start * EPOCH_STARTS:8.2f} s"
    )
    print(f"ratio scipy-{len(grid)} / MAP (compiled)              {grid_s / second_s:8.2f}")
    print(f"ratio scipy-{len(grid)} / MAP (first call)            {grid_s / first_s:8.2f}")
    print(
        f"ratio scipy-{EPOCH_STARTS} / MAP (first call)          "
        f"{per_start * EPOCH_STARTS / first_s:8.2f}"
    )


def batched_map(num_curves: int) -> None:
    """``fit(..., by="curve", inference=MAP(...))`` on ``num_curves`` simulated per-token
    curves, one call.

    The curves are ``benchmarks/batched.py``'s campaign (``kaplan_per_token``, 30 points
    each, simulated with ``bayescale.simulate``; imported, not copied).  Two calls with
    different seeds: the first includes compilation, the second is compiled.
    """
    import tempfile

    from batched import LAW, NUM_POINTS, load_curves, peak_rss_gib, simulate_curves

    with tempfile.TemporaryDirectory(prefix="bayescale-map-") as tmp:
        path = Path(tmp) / "curves.npz"
        t0 = time.perf_counter()
        simulate_curves(num_curves, path)
        sim_s = time.perf_counter() - t0
        tokens, losses = load_curves(path, num_curves)
        with np.load(path) as f:
            truth = f["params"][:num_curves]
    df = pd.DataFrame(
        {
            "curve": np.repeat(np.arange(num_curves), NUM_POINTS),
            "token_index": tokens.ravel(),
            "loss": losses.ravel(),
        }
    )
    num_starts, map_steps = 4, 100
    inference = bayescale.MAP(num_starts=num_starts, num_steps=map_steps)
    kwargs = dict(by="curve", inference=inference, warn=False)
    rss_before = peak_rss_gib()
    _, first_s = timed(bayescale.fit, df, LAW, seed=0, **kwargs)
    result, second_s = timed(bayescale.fit, df, LAW, seed=1, **kwargs)
    diag = result.diagnostics
    c = result.group("posterior")["c"].values.reshape(num_curves)
    rel = np.abs(c / truth[:, 2] - 1)
    print(
        f"\n== 2. Batched MAP: {num_curves} {LAW} curves x {NUM_POINTS} points, one "
        f"fit(by=) call ({num_starts} starts x {map_steps} L-BFGS steps per curve; simulated in "
        f"{sim_s:.0f} s) =="
    )
    print(
        f"first call (compile included)  {first_s:8.2f} s  "
        f"({first_s / num_curves * 1e3:.3f} ms/curve)"
    )
    print(
        f"second call (compiled)         {second_s:8.2f} s  "
        f"({second_s / num_curves * 1e3:.3f} ms/curve)"
    )
    print(
        f"failed curves: {len(result.failed)} of {num_curves} "
        f"(not converged: {int((~diag['map_converged'].astype(bool)).sum())}; "
        f"max |grad| median {diag['map_grad_norm'].median():.2g}, "
        f"max {diag['map_grad_norm'].max():.2g}; starts agreeing with the best: median "
        f"{diag['map_agreeing_starts'].median():.0f} of {num_starts})"
    )
    print(
        f"c |relative error| against the simulated truth: median {np.median(rel):.2%}, "
        f"95th percentile {np.quantile(rel, 0.95):.2%}"
    )
    print(
        f"peak RSS {peak_rss_gib():.2f} GiB (before the fits {rss_before:.2f} GiB); "
        f"{len(jax.devices())} JAX device(s), load average {os.getloadavg()[0]:.2f}"
    )


def laplace_vs_nuts(df: pd.DataFrame, num_samples: int) -> None:
    laplace = bayescale.Laplace(num_chains=4, num_samples=num_samples)
    lap, lap_s = timed(bayescale.fit, df, "chinchilla", columns=COLUMNS, inference=laplace)
    nuts_options = bayescale.NUTS(
        num_chains=4, num_warmup=500, num_samples=num_samples, progress_bar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        nuts, nuts_s = timed(
            bayescale.fit, df, "chinchilla", columns=COLUMNS, inference=nuts_options
        )
    print("\n== 3. Chinchilla, Student-t likelihood: Laplace vs NUTS, median [95% interval] ==")
    print(
        f"Laplace {lap_s:.1f} s (compile included); NUTS {nuts_s:.1f} s, status {nuts.status.value}"
    )
    names = [*PARAMS, "sigma", "nu"]
    ld, nd = lap.draws(names), nuts.draws(names)
    for k in names:
        cells = []
        for d in (ld, nd):
            lo, med, hi = np.percentile(d[k], [2.5, 50, 97.5])
            cells.append(f"{med:9.4g} [{lo:9.4g}, {hi:9.4g}]")
        print(f"{k:6s} Laplace {cells[0]}   NUTS {cells[1]}")


def nuts_init(df: pd.DataFrame, num_samples: int) -> None:
    from bayescale.data import prepare
    from bayescale.infer.nuts import SamplerOptions, build_sampler
    from bayescale.infer.parallel import stack
    from bayescale.model import Posterior
    from bayescale.result import Result

    law = get_law("chinchilla")
    posterior = Posterior(law)
    fit_data = prepare(df, law, COLUMNS)
    devices = jax.devices()[:2] if len(jax.devices()) >= 2 else None
    print("\n== 4. NUTS start: MAP (default) vs a prior draw; Chinchilla, 4 chains ==")
    print(f"{'init':>6} {'warm-up':>8} {'wall s':>7} {'max r-hat':>10} {'min ESS':>8} {'div':>5}")
    for warmup in (300, 1000):
        for init in ("map", "prior"):
            options = SamplerOptions(num_warmup=warmup, num_samples=num_samples, init=init)
            run = build_sampler(posterior, options, devices=devices, shard="chains")
            out, wall = timed(
                lambda r=run: jax.device_get(r(jax.random.key(0)[None], stack([fit_data])))
            )
            result = Result.from_samples(
                posterior, [fit_data], [0], None, out, seed=0, attrs={"num_warmup": warmup}
            )
            d = result.diagnostics.iloc[0]
            ess = min(d["min_ess_bulk"], d["min_ess_tail"])
            print(
                f"{init:>6} {warmup:>8} {wall:7.1f} {d['max_rhat']:10.4f} {ess:8.0f} "
                f"{d['num_divergent']:5d}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--only", choices=("1", "2", "3", "4"), default=None)
    parser.add_argument(
        "--batch", type=int, default=None, metavar="K", help="curves of part 2 (10,000)"
    )
    args = parser.parse_args()
    df = load_data(args.data)
    print(f"jax {jax.__version__}, {len(jax.devices())} device(s), {len(df)} Chinchilla points")
    if args.only in (None, "1"):
        chinchilla_map(df, grid_points=2 if args.quick else 3)
    if args.only in (None, "2"):
        batched_map(args.batch or (1000 if args.quick else 10_000))
    if args.only in (None, "3"):
        laplace_vs_nuts(df, 300 if args.quick else 1000)
    if args.only in (None, "4"):
        nuts_init(df, 300 if args.quick else 1000)


if __name__ == "__main__":
    main()
