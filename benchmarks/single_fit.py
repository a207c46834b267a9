"""One Chinchilla fit, three ways: bayescale NUTS, emcee, and Epoch AI's scipy recipe.

Run ``python benchmarks/single_fit.py`` (a few minutes on a laptop CPU) or with ``--quick``
for a smoke run with fewer draws, starts and refits.

Data
----
``../shared/data/chinchilla_epoch_svg_extracted.csv``: the points Besiroglu et al. (2024,
Epoch AI) extracted from Hoffmann et al. (2022) Fig. 4.  As Epoch did, the 5 highest-loss
rows are dropped (240 remain); tokens are ``D = C / (6 N)``.  The law is
``L = E + A / N**alpha + B / D**beta`` (catalogue id ``chinchilla``).

Peers
-----
(a) **bayescale NUTS** — ``bayescale.fit(df, "chinchilla", columns=...)`` with its defaults
    (Student-t likelihood on log loss, 4 chains x 1000 warm-up x 1000 draws, MAP start,
    dense mass matrix).  Called twice: the first call includes XLA compilation (the
    persistent compilation cache is switched off with ``BAYESCALE_CACHE_DIR=""`` before
    bayescale is imported, so nothing from an earlier run is reused); the second call has
    the same shapes and runs the compiled program.  Efficiency is min ESS (the smaller of
    bulk and tail ESS over all parameters, sigma and nu included, from
    ``result.diagnostics``) per second of the second call.
(b) **emcee** — the affine-invariant ensemble sampler (32 walkers, ``vectorize=True``, a
    vectorised numpy version of the same density, checked equal to bayescale's) on
    the *same* posterior: ``Posterior(law).log_density`` jitted and vmapped over walkers in
    the same unconstrained space, started in a small ball around the MAP.  The first
    quarter of each walker is discarded as burn-in; ESS is computed by arviz-stats with
    walkers as chains (walkers are not independent, so if anything this flatters emcee).
    Compile time of the log density is reported separately and not charged to emcee.
(c) **Epoch's scipy recipe** — Huber loss (delta = 1e-3) on residuals of
    ``log L = LSE(a - alpha log N, b - beta log D, e)`` (A = e^a, B = e^b, E = e^e),
    minimised by L-BFGS-B with tight tolerances from a grid of starts; uncertainty from
    bootstrap refits.  Epoch used 4,500 starts and 4,000 refits; here a sub-grid of their
    grid is timed and scaled to 4,500, and a sample of bootstrap refits (each started from
    the full-data optimum) is timed and scaled to 4,000.  Their intervals are shown next
    to the NUTS posterior 95% intervals.

Timings are wall-clock on whatever machine runs this; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

os.environ["BAYESCALE_CACHE_DIR"] = ""  # must precede the bayescale import: time the compile

import emcee
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import minimize
from scipy.special import huber

import bayescale
from bayescale.data import prepare
from bayescale.infer.optimize import multi_start_map
from bayescale.laws import get_law
from bayescale.model import Posterior

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch_svg_extracted.csv"
)
COLUMNS = {"n_params": "Model Size"}
PARAMS = ("A", "B", "E", "alpha", "beta")

# Besiroglu et al. 2024, Table 1: estimate [95% bootstrap CI] (../shared/DOMAIN.md)
EPOCH = {
    "A": (482.01, 285.2, 743.6),
    "B": (2085.43, 1042.4, 5810.3),
    "E": (1.817, 1.769, 1.871),
    "alpha": (0.348, 0.317, 0.373),
    "beta": (0.366, 0.331, 0.415),
}

SETTINGS = {
    # NUTS warm-up/draws per chain, emcee steps per walker, grid values per axis, refits
    "full": {"warmup": 1000, "draws": 1000, "emcee_steps": 30_000, "grid": 3, "refits": 200},
    "quick": {"warmup": 300, "draws": 300, "emcee_steps": 4_000, "grid": 2, "refits": 20},
}
NUM_WALKERS = 32
EPOCH_STARTS, EPOCH_REFITS = 4500, 4000
HUBER_DELTA = 1e-3
LBFGS = {"ftol": 1e-12, "gtol": 1e-12, "maxiter": 100_000, "maxfun": 100_000}


def load_data(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df.drop(df["loss"].nlargest(5).index).reset_index(drop=True)
    df["n_tokens"] = df["Training FLOP"] / (6 * df["Model Size"])
    return df


def min_ess(samples: dict[str, np.ndarray]) -> tuple[float, float]:
    """Min bulk and min tail ESS over ``{name: (chain, draw)}`` arrays (arviz-stats)."""
    import arviz_stats as azs

    ds = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in samples.items()})
    bulk = azs.ess(ds, method="bulk")
    tail = azs.ess(ds, method="tail")
    return min(float(bulk[k]) for k in samples), min(float(tail[k]) for k in samples)


def interval(x: np.ndarray) -> tuple[float, float, float]:
    lo, med, hi = np.percentile(np.asarray(x).ravel(), [2.5, 50, 97.5])
    return float(med), float(lo), float(hi)


# ----------------------------------------------------------------------------- (a) NUTS


def run_nuts(df: pd.DataFrame, cfg: dict) -> dict:
    kwargs = {
        "columns": COLUMNS,
        "num_warmup": cfg["warmup"],
        "num_samples": cfg["draws"],
        "progress_bar": False,
    }
    times, results = [], []
    for seed in (0, 1):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
            result = bayescale.fit(df, "chinchilla", seed=seed, **kwargs)
        times.append(time.perf_counter() - t0)
        results.append(result)
    result = results[1]
    d = result.diagnostics
    draws = result.draws()
    return {
        "first_s": times[0],
        "second_s": times[1],
        "ess_bulk": d["min_ess_bulk"],
        "ess_tail": d["min_ess_tail"],
        "max_rhat": d["max_rhat"],
        "divergent": d["num_divergent"],
        "status": result.status.value,
        "num_draws": d["num_draws"],
        "intervals": {k: interval(draws[k]) for k in PARAMS},
    }


# ----------------------------------------------------------------------------- (b) emcee


def numpy_log_prob(posterior: Posterior, data: dict):
    """The Chinchilla Student-t posterior in vectorised numpy (emcee's natural peer).

    Same unconstrained parameters, priors (with Jacobians) and likelihood as
    ``Posterior.log_density``; walkers are vectorised, no JAX call per move.
    """
    from scipy.special import gammaln

    specs = list(posterior.prior_specs.values())
    log_n, log_d = data["log_x"]["n_params"], data["log_x"]["n_tokens"]
    log_y = data["log_y"]

    def log_prob(z):  # (walkers, dim) -> (walkers,)
        lp = np.zeros(len(z))
        for i, prior in enumerate(specs):
            a, zi = prior.args, z[:, i]
            if prior.kind == "lognormal":
                lp += -0.5 * ((zi - a[0]) / a[1]) ** 2 - np.log(a[1]) - 0.5 * np.log(2 * np.pi)
            elif prior.kind == "halfnormal":
                x = np.exp(zi)
                lp += (
                    np.log(2) - 0.5 * (x / a[0]) ** 2 - np.log(a[0]) - 0.5 * np.log(2 * np.pi) + zi
                )
            elif prior.kind == "gamma":
                lp += a[0] * np.log(a[1]) - gammaln(a[0]) + a[0] * zi - a[1] * np.exp(zi)
            else:
                raise NotImplementedError(prior.kind)
        log_e, log_a, log_b, alpha, beta, sigma, nu = (
            z[:, 0:1],
            z[:, 1:2],
            z[:, 2:3],
            np.exp(z[:, 3:4]),
            np.exp(z[:, 4:5]),
            np.exp(z[:, 5:6]),
            np.exp(z[:, 6:7]),
        )
        terms = np.stack(
            [
                np.broadcast_to(log_e, (len(z), log_n.size)),
                log_a - alpha * log_n,
                log_b - beta * log_d,
            ]
        )
        m = terms.max(axis=0)
        mu = m + np.log(np.exp(terms - m).sum(axis=0))
        r = (log_y - mu) / sigma
        ll = (
            gammaln(0.5 * (nu + 1))
            - gammaln(0.5 * nu)
            - 0.5 * np.log(nu * np.pi)
            - np.log(sigma)
            - 0.5 * (nu + 1) * np.log1p(r * r / nu)
        )
        out = lp + ll.sum(axis=1)
        return np.where(np.isfinite(out), out, -np.inf)

    return log_prob


def run_emcee(df: pd.DataFrame, cfg: dict) -> dict:
    law = get_law("chinchilla")
    posterior = Posterior(law)  # the same (law, likelihood) as bayescale.fit's default
    data = jax.tree.map(jnp.asarray, prepare(df, law, COLUMNS).arrays())

    t0 = time.perf_counter()
    log_prob_jax = jax.jit(jax.vmap(lambda z: -posterior.potential(z, data)))
    mode = jax.jit(lambda key: multi_start_map(posterior, key, data))(jax.random.key(0))
    rng = np.random.default_rng(0)
    sd = np.sqrt(np.diag(np.asarray(mode.covariance)))
    start = np.asarray(mode.z) + 1e-2 * sd * rng.standard_normal((NUM_WALKERS, posterior.dim))
    log_prob_jax(jnp.asarray(start)).block_until_ready()
    compile_s = time.perf_counter() - t0

    log_prob = numpy_log_prob(
        posterior,
        {k: np.asarray(v) for k, v in prepare(df, law, COLUMNS).arrays().items() if k != "log_x"}
        | {"log_x": {c: np.asarray(v) for c, v in data["log_x"].items()}},
    )
    # the numpy density is the same posterior: checked against bayescale's at the start points
    np.testing.assert_allclose(
        log_prob(start), np.asarray(log_prob_jax(jnp.asarray(start))), rtol=1e-9
    )

    sampler = emcee.EnsembleSampler(NUM_WALKERS, posterior.dim, log_prob, vectorize=True)
    sampler.random_state = np.random.RandomState(0).get_state()  # reproducible moves
    steps = cfg["emcee_steps"]
    t0 = time.perf_counter()
    sampler.run_mcmc(start, steps, progress=False)
    run_s = time.perf_counter() - t0

    burn = steps // 4
    chain = sampler.get_chain(discard=burn)  # (draw, walker, dim)
    values = posterior.constrain(jnp.asarray(np.moveaxis(chain, 1, 0)))  # (walker, draw)
    values = {k: np.asarray(v) for k, v in values.items()}
    ess_bulk, ess_tail = min_ess(values)
    tau = sampler.get_autocorr_time(discard=burn, quiet=True)
    return {
        "compile_s": compile_s,
        "run_s": run_s,
        "steps": steps,
        "burn": burn,
        "ess_bulk": ess_bulk,
        "ess_tail": ess_tail,
        "max_tau": float(np.max(tau)),
        "acceptance": float(np.mean(sampler.acceptance_fraction)),
        "intervals": {k: interval(values[k]) for k in PARAMS},
    }


# ----------------------------------------------------------------------------- (c) Epoch


def huber_objective(theta, log_n, log_d, log_l):
    """Sum of Huber losses of log-space residuals, and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    r = top + np.log(total) - log_l  # LSE(...) - log L
    weights = w / total  # d LSE / d term
    dr = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # d huber / d r
    grad = np.array(
        [
            dr @ weights[0],
            dr @ weights[1],
            dr @ weights[2],
            -(dr * weights[0]) @ log_n,
            -(dr * weights[1]) @ log_d,
        ]
    )
    return huber(HUBER_DELTA, r).sum(), grad


def lbfgs(theta0, log_n, log_d, log_l):
    return minimize(
        huber_objective,
        np.asarray(theta0, dtype=float),
        args=(log_n, log_d, log_l),
        jac=True,
        method="L-BFGS-B",
        options=LBFGS,
    )


def epoch_grid(points_per_axis: int) -> list[tuple[float, ...]]:
    """A sub-grid of Epoch's 6 x 6 x 5 x 5 x 5 grid (a, b, e, alpha, beta), ends included."""
    full = {
        "a": np.arange(0, 30, 5.0),
        "b": np.arange(0, 30, 5.0),
        "e": np.arange(-1, 1.5, 0.5),
        "alpha": np.arange(0, 2.5, 0.5),
        "beta": np.arange(0, 2.5, 0.5),
    }
    axes = [
        v[np.linspace(0, len(v) - 1, points_per_axis).round().astype(int)] for v in full.values()
    ]
    return list(itertools.product(*axes))


def to_params(theta) -> dict[str, float]:
    a, b, e, alpha, beta = theta
    return {"A": np.exp(a), "B": np.exp(b), "E": np.exp(e), "alpha": alpha, "beta": beta}


def run_epoch(df: pd.DataFrame, cfg: dict) -> dict:
    log_n = np.log(df["Model Size"].to_numpy())
    log_d = np.log(df["n_tokens"].to_numpy())
    log_l = np.log(df["loss"].to_numpy())

    grid = epoch_grid(cfg["grid"])
    t0 = time.perf_counter()
    fits = [lbfgs(start, log_n, log_d, log_l) for start in grid]
    grid_s = time.perf_counter() - t0
    best = min(fits, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf)

    rng = np.random.default_rng(0)
    n = len(log_l)
    refits = []
    t0 = time.perf_counter()
    for _ in range(cfg["refits"]):
        i = rng.integers(0, n, n)
        refits.append(lbfgs(best.x, log_n[i], log_d[i], log_l[i]).x)
    boot_s = time.perf_counter() - t0
    boot = [to_params(t) for t in refits]
    return {
        "starts": len(grid),
        "grid_s": grid_s,
        "grid_epoch_s": grid_s / len(grid) * EPOCH_STARTS,
        "best": to_params(best.x),
        "refits": cfg["refits"],
        "boot_s": boot_s,
        "boot_epoch_s": boot_s / cfg["refits"] * EPOCH_REFITS,
        "intervals": {k: interval([b[k] for b in boot]) for k in PARAMS},
    }


# ----------------------------------------------------------------------------- report


def fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


def report(nuts: dict, mc: dict, ep: dict, cfg: dict, mode: str) -> None:
    nuts_rate = min(nuts["ess_bulk"], nuts["ess_tail"]) / nuts["second_s"]
    mc_rate = min(mc["ess_bulk"], mc["ess_tail"]) / mc["run_s"]
    rows = [
        ("NUTS, first call (with compile)", nuts["first_s"], "", ""),
        (
            f"NUTS, second call (4 x {cfg['warmup']}+{cfg['draws']})",
            nuts["second_s"],
            f"{nuts['ess_bulk']:.0f} / {nuts['ess_tail']:.0f}",
            f"{nuts_rate:.1f}",
        ),
        ("emcee: jit + MAP start (not charged)", mc["compile_s"], "", ""),
        (
            f"emcee ({NUM_WALKERS} walkers x {mc['steps']} steps)",
            mc["run_s"],
            f"{mc['ess_bulk']:.0f} / {mc['ess_tail']:.0f}",
            f"{mc_rate:.1f}",
        ),
        (f"scipy grid, {ep['starts']} starts", ep["grid_s"], "", ""),
        (f"  scaled to Epoch's {EPOCH_STARTS} starts", ep["grid_epoch_s"], "", ""),
        (f"bootstrap, {ep['refits']} refits", ep["boot_s"], "", ""),
        (f"  scaled to Epoch's {EPOCH_REFITS} refits", ep["boot_epoch_s"], "", ""),
    ]
    print(f"\n== Chinchilla single fit ({mode}; 240 points; {jax.devices()[0].platform}) ==")
    print(f"{'peer':44s} {'wall s':>9s} {'min ESS bulk/tail':>18s} {'min-ESS/s':>10s}")
    for name, sec, ess, rate in rows:
        print(f"{name:44s} {sec:9.2f} {ess:>18s} {rate:>10s}")
    print(
        f"\nNUTS: status {nuts['status']}, max r-hat {nuts['max_rhat']:.4f}, "
        f"{nuts['divergent']} divergent of {nuts['num_draws']} draws"
    )
    print(
        f"emcee: burn-in {mc['burn']} steps discarded, acceptance {mc['acceptance']:.2f}, "
        f"max integrated autocorrelation time {mc['max_tau']:.0f} steps"
    )
    ratios = [
        ("NUTS min-ESS/s / emcee min-ESS/s", nuts_rate / mc_rate),
        (
            f"bootstrap-{EPOCH_REFITS} time / NUTS fit time (compiled)",
            ep["boot_epoch_s"] / nuts["second_s"],
        ),
        (
            f"bootstrap-{EPOCH_REFITS} time / NUTS fit time (first call)",
            ep["boot_epoch_s"] / nuts["first_s"],
        ),
        (
            f"(grid-{EPOCH_STARTS} + bootstrap-{EPOCH_REFITS}) time / NUTS first call",
            (ep["grid_epoch_s"] + ep["boot_epoch_s"]) / nuts["first_s"],
        ),
    ]
    print("\nratios")
    for name, value in ratios:
        print(f"  {name:56s} {value:8.2f}")

    print("\nmedian [95% interval]")
    header = [
        "NUTS posterior",
        "emcee posterior",
        f"bootstrap ({ep['refits']})",
        "Epoch 2024 est. [CI]",
    ]
    print(f"{'':6s} " + " ".join(f"{h:>28s}" for h in header) + f" {'scipy best':>10s}")
    for k in PARAMS:
        cells = [
            nuts["intervals"][k],
            mc["intervals"][k],
            ep["intervals"][k],
            EPOCH[k],
        ]
        text = [f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]" for m, lo, hi in cells]
        print(f"{k:6s} " + " ".join(f"{t:>28s}" for t in text) + f" {fmt(ep['best'][k]):>10s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws, starts and refits")
    parser.add_argument("--data", type=Path, default=DATA, help="Epoch's extracted CSV")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    cfg = SETTINGS[mode]
    df = load_data(args.data)
    print(
        f"{len(df)} points from {args.data.name}; jax {jax.__version__}, emcee {emcee.__version__}"
    )
    nuts = run_nuts(df, cfg)
    print(f"NUTS done: {nuts['first_s']:.1f} s, {nuts['second_s']:.1f} s", flush=True)
    mc = run_emcee(df, cfg)
    print(f"emcee done: {mc['run_s']:.1f} s", flush=True)
    ep = run_epoch(df, cfg)
    print(f"scipy done: grid {ep['grid_s']:.1f} s, bootstrap {ep['boot_s']:.1f} s", flush=True)
    report(nuts, mc, ep, cfg, mode)


if __name__ == "__main__":
    main()
