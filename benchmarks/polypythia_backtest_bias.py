"""PolyPythia backtest with a learnt extrapolation bias (issue 7's error goal).

Run ``python benchmarks/polypythia_backtest_bias.py`` (full mode: 4 chains x 1000 warm-up +
1000 draws, as the backtests notebook's; ``--quick``: 2 x 500 + 500, the settings of the
README's earlier backtest rows).

The notebook's setup: the 20 PolyPythia logs from initialisation
(:func:`bayescale.datasets.polypythia`, steps from 1,440 — after Pythia's warm-up — thinned to
~40 log-spaced steps), each curve's first 20% of steps fitted with ``power_law_offset`` in
steps (Student-t on log loss), the rest held out.  Two fits: every curve on its own, and the
exponent alpha pooled across each size's seeds (``pooled=["alpha"], pool_by="model"``).  On
each, post hoc (no refit, :meth:`bayescale.check.BacktestResult.with_law_error`):

* no law error;
* tau only: the law error's scale learnt from the other curves (across all, or within size);
* mu + tau: also its mean, the extrapolation bias mu per decade, learnt from the other curves'
  held-out errors (across all curves, or within size: the other seeds of the same size) and
  applied to medians and bands;
* LS, LS + mu: the per-curve least-squares power law, plain and with the same leave-one-out
  bias correction learnt from its own errors, so a gain can be told apart: the correction
  or the Bayesian fit;
* other seeds' mean: no law at all, each held-out point predicted by the mean log loss of
  the other seeds of its size at the same step (what the finished runs alone would give).

Printed: final loss inside the 90% band (of 20), held-out points inside the 50% / 90% bands,
RMSE of the log loss (posterior median, or the least-squares prediction) over all held-out
points divided by the plain least-squares RMSE (goal <= 0.9), the RMS final-loss error, and
the ranges of tau and mu over the curves; then per size the mean final-loss error.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale import NUTS, Model, check, datasets

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
WARMUP_END = 1430  # Pythia's linear learning-rate warm-up (1% of 143k steps)
FIT_FRACTION = 0.2
BY = ["model", "seed"]
COLUMNS = {"x": "step", "y": "train_lm_loss"}


def summary(result: check.BacktestResult, *, prediction: str = "median") -> dict:
    """The table's figures; ``prediction`` names the predictions column scored (the
    posterior median, ``baseline`` or ``debiased_baseline``; bands only for the median)."""
    pred, table = result.predictions, result.table.drop(index="overall")
    log_obs = np.log(pred["observed"])
    rmse = float(np.sqrt(np.mean((np.log(pred[prediction]) - log_obs) ** 2)))
    ls = float(np.sqrt(np.mean((np.log(pred["baseline"]) - log_obs) ** 2)))
    final = pred.loc[pred.groupby("curve")["step"].idxmax()]
    final_err = np.log(final[prediction] / final["observed"])
    row = {"final in 90%": "—", "held-out in 50%": np.nan, "held-out in 90%": np.nan}
    if prediction == "median":
        inside_50 = (pred["q25"] <= pred["observed"]) & (pred["observed"] <= pred["q75"])
        inside_90 = (pred["q5"] <= pred["observed"]) & (pred["observed"] <= pred["q95"])
        row = {
            "final in 90%": f"{int(table['final_in_90'].sum())}/{len(table)}",
            "held-out in 50%": float(inside_50.mean()),
            "held-out in 90%": float(inside_90.mean()),
        }
    tau = result.law_error
    bias = result.law_bias
    mu_col = "baseline_bias" if prediction == "debiased_baseline" else "bias"
    return {
        **row,
        "RMSE / LS": rmse / ls,
        "final RMS error": float(np.sqrt(np.mean(final_err**2))),
        "tau / decade": "—" if tau is None or prediction != "median" else _range(tau),
        "mu / decade": "—" if bias is None or prediction == "baseline" else _range(bias[mu_col]),
    }


def other_seeds(result: check.BacktestResult) -> dict:
    """A reference that needs no law: each held-out point predicted by the mean log loss of
    the other seeds of its size at the same step (the finished runs the within-size bias
    is learnt from); scored on the points where the other seeds logged that step."""
    pred = result.predictions.assign(log_obs=lambda p: np.log(p["observed"]))
    total = pred.groupby(["model", "step"])["log_obs"].transform("sum")
    count = pred.groupby(["model", "step"])["log_obs"].transform("size")
    pred["reference"] = (total - pred["log_obs"]) / (count - 1)
    pred = pred[count > 1]
    err = pred["reference"] - pred["log_obs"]
    ls = np.log(pred["baseline"]) - pred["log_obs"]
    final = pred.groupby("curve")["step"].idxmax()
    return {
        "final in 90%": "—",
        "held-out in 50%": np.nan,
        "held-out in 90%": np.nan,
        "RMSE / LS": float(np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(ls**2))),
        "final RMS error": float(np.sqrt(np.mean(err[final] ** 2))),
        "tau / decade": "—",
        "mu / decade": f"({len(pred)}/{len(result.predictions)} points)",
    }


def _range(values: pd.Series) -> str:
    return f"{values.min():.3f} to {values.max():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 chains x 500 + 500 draws")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    settings = (
        {"num_chains": 2, "num_warmup": 500, "num_samples": 500}
        if args.quick
        else {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000}
    )
    curves = datasets.polypythia(args.data, min_step=WARMUP_END + 10)
    from_init = curves[curves["from_init"]].drop(columns="from_init")
    print(
        f"{from_init.groupby(BY).ngroups} curves from initialisation, first "
        f"{FIT_FRACTION:.0%} of steps fitted; NUTS {settings}, seed 0"
    )
    inference = NUTS(progress_bar=False, **settings)
    common = dict(by=BY, split=FIT_FRACTION, columns=COLUMNS, seed=0, inference=inference)
    fits, widened, rows = {}, {}, {}
    start = time.perf_counter()
    for name, pooling in [
        ("per curve", {}),
        ("alpha pooled per size", {"model": Model(pooled=["alpha"]), "pool_by": "model"}),
    ]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[name] = check.backtest(from_init, "power_law_offset", **common, **pooling)
        print(f"{name}: fitted in {time.perf_counter() - t0:.0f} s; {fits[name].overall['status']}")
    for name, plain in fits.items():
        variants = {
            "no law error": plain,
            "tau across curves": plain.with_law_error("curves"),
            "tau within size": plain.with_law_error("curves", by="model"),
            "mu + tau across curves": plain.with_law_error("curves", bias=True),
            "mu + tau within size": plain.with_law_error("curves", bias=True, by="model"),
        }
        widened[name] = variants
        for variant, result in variants.items():
            rows[(name, variant)] = summary(result)
    plain = fits["per curve"]
    rows[("least squares", "plain")] = summary(plain, prediction="baseline")
    for variant, by in [("mu across curves", None), ("mu within size", "model")]:
        debiased = plain.with_law_error("curves", bias=True, by=by)
        rows[("least squares", variant)] = summary(debiased, prediction="debiased_baseline")
    rows[("other seeds' mean", "same size, same step")] = other_seeds(plain)
    table = pd.DataFrame(rows).T
    table.index.names = ["fit", "law error"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    print("\nmean final-loss log error (prediction - observed) per size:")
    sizes = {}
    for label, result, column in [
        ("pooled alpha", fits["alpha pooled per size"], "median"),
        (
            "pooled alpha, mu within size",
            widened["alpha pooled per size"]["mu + tau within size"],
            "median",
        ),
        ("least squares", plain, "baseline"),
    ]:
        pred = result.predictions
        final = pred.loc[pred.groupby("curve")["step"].idxmax()]
        err = np.log(final[column] / final["observed"])
        sizes[label] = err.groupby(final["model"].to_numpy()).mean()
    print(pd.DataFrame(sizes).round(4).to_string())
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
