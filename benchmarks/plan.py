"""Design of the next runs: timing of ``plan.score_candidates`` and simulated campaigns.

Run ``python benchmarks/plan.py`` (all parts), or ``--part timing`` / ``--part campaigns``.

Timing
------
Scores 1,000 candidate runs (a grid of model sizes x tokens per parameter, costed 6ND)
against 4,000 posterior draws (a Chinchilla fit, 4 chains x 1,000 draws, of 60 runs simulated
from Epoch's constants) in one call, ``num_outer=128`` simulated outcomes per candidate:
1,000 x 128 x 4,000 = 5.1e8 pointwise log-likelihoods.  Printed: the first call (with
compilation) and the best of three further calls.

Campaigns
---------
``plan.simulate_campaigns`` (the one implementation, also used by tests/test_plan.py):
``--campaigns`` (default 50) seeded campaigns; truth: Epoch's Chinchilla constants
(E, A, B, alpha, beta) = (1.817, 482.01, 2085.43, 0.348, 0.366), log-normal noise 0.02.
Each starts from small isoFLOP sweeps (budgets 1e17, 3e17, 1e18, 3e18 FLOP, 5 sizes each)
fitted in one ``fit_batch`` call; the target is N_opt at 1e22 FLOP.  Then compute is spent on
(a) the ``k=3`` runs ``plan.next_runs`` chooses within 3e19 FLOP among 62 candidates on the
iso-FLOP curves of 1e19 and 3e19 FLOP (``plan.isoflop_candidates``: 31 per budget, 0.1 to
3,000 tokens per parameter), a candidate may be repeated (``--max-per-candidate``, default
up to k); (b) 3 random candidates and (c) a uniform grid (3 log-spaced sizes at 20 tokens per
parameter), (b) and (c) scaled to the cost of (a) (``--baselines``); and, with
``simple-scaling-laws`` importable (``pip install --target /tmp/ssl simple-scaling-laws``,
``PYTHONPATH=/tmp/ssl:.``), (d) the 3 runs its ``suggest_runs`` chooses (bootstrap fit of
the same start, separable power law, 200 bootstrap draws, target budget 1e22, the same
candidate budgets 1e19 and 3e19, cost 6ND, replicates allowed: its defaults).  Every design
is refitted (one ``fit_batch`` call, 4 chains x 500 + 500 draws, target acceptance 0.95)
and scored by the width of the target's 90% interval; printed: the runs chosen, the
effective sample size of the importance weights, r-hat counts, median width ratios, wins
and the coverage of the truth.

Measured (2-core CPU shared with other jobs, load ~14; so the times are upper bounds)
--------------------------------------------------------------------------------------
``python benchmarks/plan.py --part timing``: the fit took 74 s (status ``low_ess``);
scoring 1,000 candidates x 4,000 draws x 128 outer draws in one call: 24.0 s first call
(with compilation), 16.5 s best of three.

``PYTHONPATH=/tmp/ssl:. python benchmarks/plan.py --part campaigns --campaigns 50
--baselines none`` (session 3; load 12-17, random and grid left out to fit the machine's
time)::

    50 campaigns: start fits 185 s, designs 864 s (17.3 s per campaign), refits 757 s
    importance weights of the chosen designs: ESS median 861, min 570 (of the posterior's draws)
       next runs: log10 tokens/param quantiles [-0.85, -0.55, 3.33], cost per campaign
                  median 3e+19, campaigns with a repeated run 30/50
        ssl runs: log10 tokens/param quantiles [-0.44, 0.06, 3.18], cost per campaign
                  median 3e+19, campaigns with a repeated run 45/50
    converged fits (r-hat < 1.01, ESS, no divergences): {'high_rhat': 69, 'converged': 40,
                  'low_ess': 32, 'divergences': 9}
    fits with r-hat < 1.01 per design: {'next': 34, 'ssl': 24, 'start': 23} of 50
    truth log N_opt(1e22) = 22.926
       next: median 90% width 1.149, coverage 0.96
        ssl: median 90% width 1.180, coverage 0.88
      start: median 90% width 1.644, coverage 0.94
    width ratio next/ssl: median 0.974, next narrower in 33/50

Against ``suggest_runs`` with the same candidate budgets and the same number of runs (both
spend 3e19 FLOP in every campaign) ``next_runs`` is narrower in 33 of 50 campaigns
(one-sided sign test p = 0.016), median width ratio 0.974, and covers the truth more often
(0.96 against 0.88).  What changed since session 2 (ratio 1.024, 22/50): candidates along
the peer's iso-FLOP curves reaching 0.1 and 3,000 tokens per parameter instead of a grid
of 2..200, and replicates allowed; both designs now pick runs far from the Chinchilla ratio
on both sides and repeat them (the importance weights keep an ESS of 570 or more of 2,000
draws, so the criterion did not degenerate).  Convergence: at 4 chains x 500 + 500 draws
r-hat < 1.01 in 34/50 ``next_runs`` refits, 24/50 peer refits and 23/50 starting fits
(the 20-run starts have a B-beta ridge).  The first 16 campaigns again with ``FIT`` at
4 chains x 1,000 + 1,000 (``campaigns(16, True, None, [])``)::

    16 campaigns: start fits 99 s, designs 375 s (23.4 s per campaign), refits 209 s
    importance weights of the chosen designs: ESS median 1667, min 1255
    converged fits: {'converged': 24, 'divergences': 21, 'high_rhat': 3}
    fits with r-hat < 1.01 per design: {'next': 15, 'ssl': 14, 'start': 16} of 16
       next: median 90% width 1.121, coverage 1.00
        ssl: median 90% width 1.129, coverage 0.88
    width ratio next/ssl: median 0.974, next narrower in 12/16

so r-hat < 1.01 for nearly all fits needs 1,000 kept draws per chain; the 50 campaigns at
that size did not fit in this session's machine time (2 cores shared by 5 agents).

Session 2 (66 grid candidates, no replicates, 2 chains x 300 fits, r-hat > 1.01 in most):
next/random median 0.825 (48/50), next/grid 0.758 (48/50), next/ssl at the same cost
1.024 (22/50).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale import plan
from bayescale.simulate import simulate

TRUE = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.348, "beta": 0.366}
NOISE = 0.02
TARGET_FLOPS = 1e22
BUDGET = 3e19
CANDIDATE_FLOPS = (1e19, 3e19)
K = 3
FIT = dict(num_chains=4, num_warmup=500, num_samples=500, target_accept_prob=0.95)


def isoflop_start(budgets=(1e17, 3e17, 1e18, 3e18), sizes=5, spread=(0.2, 5.0)):
    """Small isoFLOP sweeps: per budget, ``sizes`` model sizes around 20 tokens/parameter."""
    n = np.array([f * math.sqrt(c / 120) for c in budgets for f in np.geomspace(*spread, sizes)])
    c = np.repeat(budgets, sizes)
    return pd.DataFrame({"n_params": n, "n_tokens": c / (6 * n)})


def timing() -> None:
    data = simulate("chinchilla", params=TRUE, num_points=60, noise=NOISE, seed=0)
    t0 = time.perf_counter()
    result = bayescale.fit(data, "chinchilla", likelihood="normal", num_chains=4, seed=0)
    print(f"fit (4 x 1000 draws): {time.perf_counter() - t0:.1f} s, status {result.status.value}")
    n = np.geomspace(1e7, 1e10, 40)
    ratio = np.geomspace(1, 1000, 25)
    cands = pd.DataFrame([(a, a * r) for a in n for r in ratio], columns=["n_params", "n_tokens"])
    assert len(cands) == 1000 and result.num_chains * result.num_draws == 4000
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        scores = plan.score_candidates(result, ("n_opt", TARGET_FLOPS), cands, num_outer=128)
        times.append(time.perf_counter() - t0)
    print(
        f"score_candidates: 1000 candidates x 4000 draws x 128 outer draws in one call: "
        f"first call {times[0]:.2f} s (with compilation), best of 3 more {min(times[1:]):.2f} s"
    )
    best = scores.sort_values("variance_reduction", ascending=False).head(3)
    print(best.to_string(float_format=lambda v: f"{v:.4g}"))


CHINCHILLA_FLOPS = 5.76e23  # Chinchilla's (and Gopher's) budget: 70e9 parameters, 1.4e12 tokens
REFERENCES = {  # tokens per parameter at 5.76e23 FLOP (DOMAIN.md)
    "Hoffmann et al. (Chinchilla, 70e9 x 1.4e12)": 1.4e12 / 70e9,
    "Hoffmann et al.'s fitted parameters": None,  # computed from the closed form below
    "Besiroglu et al. (Epoch AI)": 25.7,
}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def allocation(data_folder: str) -> None:
    """The Chinchilla allocation at 5.76e23 FLOP from Epoch's extraction of Hoffmann et al.'s
    Fig. 4 (240 runs): the default fit (Student-t, 4 chains x 1,000 + 1,000) and its 90% and
    95% bands of N_opt, D_opt and tokens per parameter, against Hoffmann et al. and Epoch."""
    from bayescale import datasets

    frame = datasets.chinchilla(data_folder)
    t0 = time.perf_counter()
    result = bayescale.fit(frame, "chinchilla", columns={"n_params": "Model Size"}, seed=0)
    print(f"fit of {len(frame)} runs: {time.perf_counter() - t0:.0f} s, {result}")
    table = plan.allocate(result, CHINCHILLA_FLOPS, quantiles=(0.025, 0.05, 0.5, 0.95, 0.975))
    print(table.drop(columns="flops").to_string(float_format=lambda v: f"{v:.4g}"))
    a, b = HOFFMANN["alpha"], HOFFMANN["beta"]
    g = (a * HOFFMANN["A"] / (b * HOFFMANN["B"])) ** (1 / (a + b))
    hoffmann_ratio = g**-2 * (CHINCHILLA_FLOPS / 6) ** ((a - b) / (a + b))
    tpp = plan.allocation_draws(result, CHINCHILLA_FLOPS)["tokens_per_param"].ravel()
    for name, ratio in REFERENCES.items():
        ratio = hoffmann_ratio if ratio is None else ratio
        print(f"{name}: {ratio:.1f} tokens/param, posterior quantile {np.mean(tpp <= ratio):.3f}")


def ssl_design(frame: pd.DataFrame, result, seed: int) -> pd.DataFrame:
    """The 3 runs simple-scaling-laws' ``suggest_runs`` picks from a campaign's start."""
    import polars as pl
    import simple_scaling_laws as ssl

    rows = pl.DataFrame(
        {
            "training_run_id": [f"run{i}" for i in range(len(frame))],
            "model_size__n_params": frame["n_params"].to_numpy(),
            "dataset_size__n_tokens": frame["n_tokens"].to_numpy(),
            "test_loss__cross_entropy": frame["loss"].to_numpy(),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ssl.fit(rows, n_draws=200, seed=seed)
        runs = ssl.suggest_runs(
            model,
            target_budgets=[TARGET_FLOPS],
            cost=ssl.cost_model("power", k=6.0, a=1.0, b=1.0),
            n=K,
            candidate_budgets=list(CANDIDATE_FLOPS),
        )
    n_col = next(c for c in runs.columns if c.startswith("model_size"))
    d_col = next(c for c in runs.columns if c.startswith("dataset_size"))
    return pd.DataFrame(
        {
            "n_params": runs[n_col].to_numpy().astype(float),
            "n_tokens": runs[d_col].to_numpy().astype(float),
        }
    )


def campaigns(
    num: int,
    use_ssl: bool,
    max_per_candidate: int | None,
    baselines,
    out_path: str = "",
    num_samples: int = 500,
) -> None:
    warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
    out = plan.simulate_campaigns(
        "chinchilla",
        TRUE,
        start=isoflop_start(),
        candidates=plan.isoflop_candidates(CANDIDATE_FLOPS),
        target=("n_opt", TARGET_FLOPS),
        budget=BUDGET,
        k=K,
        num_campaigns=num,
        noise=NOISE,
        baselines=baselines,
        others={"ssl": ssl_design} if use_ssl else None,
        fit_options={**FIT, "num_warmup": num_samples, "num_samples": num_samples},
        design_options={"num_outer": 128, "max_per_candidate": max_per_candidate},
    )
    sec = out.attrs["seconds"]
    print(
        f"{num} campaigns: start fits {sec['start_fits']:.0f} s, designs {sec['designs']:.0f} s "
        f"({sec['designs'] / num:.1f} s per campaign), refits {sec['refits']:.0f} s"
    )
    runs = out.attrs["runs"]
    nxt = runs[runs.design == "next"]
    print(
        f"importance weights of the chosen designs: ESS median {nxt.ess.median():.0f}, "
        f"min {nxt.ess.min():.0f} (of the posterior's draws)"
    )
    for name, group in runs.groupby("design"):
        ratio = np.log10(group.n_tokens / group.n_params)
        per = group.groupby("campaign_index")
        repeats = per.apply(lambda g: len(g) - len(g.drop_duplicates(["n_params", "n_tokens"])))
        cost = per.apply(lambda g: (6 * g.n_params * g.n_tokens).sum())
        print(
            f"{name:>7} runs: log10 tokens/param quantiles "
            f"{np.round(np.quantile(ratio, [0.1, 0.5, 0.9]), 2).tolist()}, "
            f"cost per campaign median {cost.median():.3g}, "
            f"campaigns with a repeated run {int((repeats > 0).sum())}/{num}"
        )
    criteria = design_criteria(out)
    attrs = dict(out.attrs)
    out = out.merge(criteria, on=["campaign", "design"], how="left")
    out.attrs = attrs
    if out_path:
        out.to_csv(out_path, index=False)
        runs.to_csv(out_path.replace(".csv", "_runs.csv"), index=False)
        print(f"per-campaign table written to {out_path}")
    summarize(out)


def design_criteria(out: pd.DataFrame, num_outer: int = 512) -> pd.DataFrame:
    """Every design scored by ``next_runs``' own criterion under its campaign's starting
    posterior: the expected sd of log N_opt once its runs are observed, over the current sd
    (``expected_sd_ratio``).  Fresh outer draws (seed ``10_000 + campaign``), so the
    ``next`` design is not scored on the draws it was chosen with; one seed per campaign, so
    the designs of a campaign share them (common random numbers)."""
    start, runs, target = out.attrs["start_fits"], out.attrs["runs"], out.attrs["target"]
    rows = []
    for (s, name), new in runs.groupby(["campaign_index", "design"]):
        fit = start[int(s)]
        new = new[["n_params", "n_tokens"]].reset_index(drop=True)
        scores = plan.score_candidates(
            fit, target, new.iloc[-1:], chosen=new.iloc[:-1], num_outer=num_outer, seed=10_000 + s
        )
        sd = np.std(np.log(plan.target_draws(fit, target)))
        ratio = math.sqrt(float(scores["expected_variance"].iloc[0])) / sd
        rows.append({"campaign": int(s), "design": name, "criterion_sd_ratio": ratio})
    return pd.DataFrame(rows)


def summarize(out: pd.DataFrame) -> None:
    """Per design: status counts, r-hat, median width, coverage of the truth (Clopper-Pearson
    95% interval); per baseline: wins of ``next``, median width ratio, one-sided sign test."""
    from scipy import stats

    num = out.campaign.nunique()
    table = out.pivot(index="campaign", columns="design", values="width")
    print(f"truth log N_opt(1e22) = {out.attrs.get('truth', float('nan')):.3f}")
    for name, group in out.groupby("design"):
        covered = int(group.covered.sum())
        ci = stats.binomtest(covered, len(group)).proportion_ci(0.95)
        print(
            f"{name:>7}: median 90% width {group.width.median():.3f}, coverage "
            f"{covered}/{len(group)} = {covered / len(group):.2f} "
            f"[95% CI {ci.low:.2f}, {ci.high:.2f}]; r-hat < 1.01 in "
            f"{int((group.max_rhat < 1.01).sum())}/{len(group)}; "
            f"status {group.status.value_counts().to_dict()}"
        )
    if "num_nonfinite" in out and out.num_nonfinite.any():
        bad = out[out.num_nonfinite > 0]
        print(f"fits with non-finite target draws: {bad[['campaign', 'design']].values.tolist()}")
    crit = None
    if "criterion_sd_ratio" in out:
        crit = out.pivot(index="campaign", columns="design", values="criterion_sd_ratio")
        print(
            "criterion (expected sd ratio under the start posterior, fresh outer draws): "
            + ", ".join(f"{d} {crit[d].median():.3f}" for d in crit.columns if d != "start")
        )
    others = [d for d in ("random", "grid", "ssl") if d in table]
    for other in others:
        r = table["next"] / table[other]
        wins = int((r < 1).sum())
        p = stats.binomtest(wins, num, 0.5, alternative="greater").pvalue
        print(
            f"width ratio next/{other}: median {r.median():.3f} "
            f"(quartiles {r.quantile(0.25):.3f}, {r.quantile(0.75):.3f}), "
            f"next narrower in {wins}/{num}, one-sided sign test p = {p:.2g}"
        )
        if crit is not None:
            c = crit["next"] / crit[other]
            rho = stats.spearmanr(c, r).statistic
            print(
                f"    criterion next/{other}: median {c.median():.3f}, next better in "
                f"{int((c < 1).sum())}/{num}; rank correlation with the realised ratio {rho:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part", choices=("all", "timing", "allocation", "campaigns"), default="all"
    )
    parser.add_argument(
        "--data", default="../shared/data", help="folder of chinchilla_epoch_svg_extracted.csv"
    )
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument(
        "--baselines", default="random,grid", help="comma-separated: random, grid, or none"
    )
    parser.add_argument(
        "--max-per-candidate", type=int, default=0, help="0: up to k (replicates allowed)"
    )
    parser.add_argument("--out", default="", help="write the per-campaign table to this CSV")
    parser.add_argument(
        "--num-samples", type=int, default=500, help="warm-up and kept draws per chain of fits"
    )
    args = parser.parse_args()
    if args.part in ("all", "timing"):
        timing()
    if args.part in ("all", "allocation"):
        allocation(args.data)
    if args.part in ("all", "campaigns"):
        try:
            import simple_scaling_laws  # noqa: F401

            use_ssl = True
        except ImportError:
            print("simple-scaling-laws not importable: its designs are left out")
            use_ssl = False
        baselines = [b for b in args.baselines.split(",") if b and b != "none"]
        campaigns(
            args.campaigns,
            use_ssl,
            args.max_per_candidate or None,
            baselines,
            args.out,
            args.num_samples,
        )


if __name__ == "__main__":
    main()
