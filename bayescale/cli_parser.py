"""The argument parser of the ``bayescale`` command (:mod:`bayescale.cli` runs the commands).

It imports nothing beyond the standard library, so ``bayescale --help`` and every argument
error answer at once, without importing JAX or pandas.
"""

from __future__ import annotations

import argparse

__all__ = ["DEMO_LAW", "build_parser"]

DEMO_LAW = "kaplan_n"  # two parameters: compiles and converges fast


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = argparse.ArgumentParser(
        prog="bayescale",
        description="Bayesian fits of neural scaling laws (JAX + NumPyro NUTS).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every command: --json
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (full precision, NaN as null) instead of text",
    )

    p = sub.add_parser("laws", parents=[common], help="list the catalogue of scaling laws")

    # what `fit` and `backtest` share: the law, the column mapping and the fit's options
    fitting = argparse.ArgumentParser(add_help=False, parents=[common])
    fitting.add_argument(
        "csv", nargs="?", help="CSV file, one row per observation (or --tensorboard, --wandb)"
    )
    fitting.add_argument(
        "--tensorboard",
        metavar="PATH",
        help="read the curves from TensorBoard event files (a file, a run folder or a folder "
        "of runs): columns run, step and one per tag",
    )
    fitting.add_argument(
        "--wandb",
        metavar="CSV",
        help="read the curves from a W&B CSV export (chart export or run history): "
        "columns run, step and one per metric",
    )
    fitting.add_argument(
        "--tag",
        action="append",
        metavar="TAG",
        help="with --tensorboard/--wandb: a metric to read (repeatable; default: all)",
    )
    fitting.add_argument(
        "--min-step",
        type=float,
        metavar="S",
        help="with --tensorboard/--wandb: drop values logged before step S (default 1: "
        "step 0 has no place on a log axis)",
    )
    fitting.add_argument(
        "--step",
        metavar="COLUMN",
        help="with --wandb: the x-axis column of a chart export (default: Step)",
    )
    fitting.add_argument(
        "--derive",
        action="append",
        metavar='NAME="EXPR"',
        help='add a column computed from others, e.g. n_tokens="flops / (6 * n_params)": '
        "the law formula syntax (+ - * / **, exp, log, sqrt); repeatable, in order",
    )
    fitting.add_argument(
        "--law", required=True, help="catalogue id, formula string or path to a law .toml file"
    )
    fitting.add_argument(
        "--column",
        action="append",
        metavar="LAW_VAR=CSV_COL",
        help="map a law variable to a CSV column (repeatable)",
    )
    fitting.add_argument(
        "--likelihood",
        default="student_t",
        help="student_t (default, nu fitted), student_t(NU) (nu fixed), normal or huber",
    )
    fitting.add_argument(
        "--noise",
        choices=("constant", "loglinear"),
        default="constant",
        help="noise scale: constant (default) or log-linear in the log covariates",
    )
    fitting.add_argument(
        "--discrepancy",
        choices=("ou_rw", "none"),
        default="ou_rw",
        help="the law's own error along the covariate: ou_rw (default; widens the bands "
        "beyond the data, one-covariate laws) or none (the law exact)",
    )
    fitting.add_argument("--chains", type=int, default=4)
    fitting.add_argument("--warmup", type=int, default=1000)
    fitting.add_argument("--samples", type=int, default=1000)
    fitting.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "fit",
        parents=[fitting],
        help="fit a law to a CSV file or training logs, save the posterior (netCDF)",
    )
    p.add_argument(
        "--method",
        choices=("nuts", "map", "laplace"),
        default="nuts",
        help="nuts (default), map (optimisation only) or laplace (Gaussian at the MAP)",
    )
    p.add_argument(
        "--by",
        action="append",
        metavar="COLUMN",
        help="fit one curve per group of rows (repeat for several columns): one batched call",
    )
    p.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="with --by: keep N draws per chain (diagnostics and summary from all draws)",
    )
    p.add_argument("--out", required=True, help="where to save the result (.nc)")
    p.add_argument("--plot", help="also save the bands plot (.png or .pdf)")

    p = sub.add_parser(
        "predict", parents=[common], help="posterior predictions from a saved result"
    )
    p.add_argument("result", help="result saved by 'bayescale fit' (.nc)")
    p.add_argument(
        "--at",
        action="append",
        required=True,
        metavar="COV=VALUE[,COV=VALUE]",
        help="covariate values of one point, e.g. n_params=1e11,n_tokens=2e12 (repeatable)",
    )
    p.add_argument(
        "--kind",
        choices=("observation", "mean"),
        default="observation",
        help="'observation': a new run, noise included (default); 'mean': the law itself",
    )
    p.add_argument("--fit", metavar="LABEL", help="for a batch result: the fit to predict with")

    p = sub.add_parser(
        "plot", parents=[common], help="plot data, posterior bands and extrapolation"
    )
    p.add_argument("result", help="result saved by 'bayescale fit' (.nc)")
    p.add_argument("-o", "--output", required=True, help="figure file (.png or .pdf)")
    p.add_argument("--x", help="covariate on the horizontal axis (default: the first)")
    p.add_argument("--extend", type=float, default=1.0, help="decades to extrapolate")
    p.add_argument(
        "--kind",
        choices=("both", "observation", "mean"),
        default="both",
        help="bands: 'observation' (a new run), 'mean' (the law) or 'both' (default)",
    )
    p.add_argument("--fit", metavar="LABEL", help="for a batch result: the fit to plot")

    p = sub.add_parser(
        "plan",
        parents=[common],
        help="compute-optimal allocation and the next runs that sharpen a target",
    )
    p.add_argument("result", help="result saved by 'bayescale fit' (.nc)")
    p.add_argument(
        "--flops",
        action="append",
        metavar="C",
        help="budget in FLOP for the compute-optimal allocation (repeatable)",
    )
    p.add_argument(
        "--target",
        help="quantity to sharpen: COV=VALUE[,COV=VALUE] (the response there) or "
        "QUANTITY@FLOPS with QUANTITY n_opt, d_opt, tokens_per_param or loss_opt",
    )
    p.add_argument(
        "--candidates",
        help="CSV of candidate runs: the law's covariates and a 'cost' column "
        "(default 6*n_params*n_tokens)",
    )
    p.add_argument("--budget", type=float, help="total cost allowed for the next runs")
    p.add_argument("--k", type=int, default=4, help="at most this many runs (default 4)")
    p.add_argument("--num-outer", type=int, default=128, help="simulated outcomes per design")
    p.add_argument(
        "--max-per-candidate",
        type=int,
        default=1,
        help="times one candidate may be chosen (replicates); 0: up to k (default 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the chosen runs as CSV")

    p = sub.add_parser(
        "demo", parents=[common], help="simulate data from a catalogue law, fit it, plot it"
    )
    p.add_argument(
        "--out-dir",
        default="bayescale-demo",
        help="folder for the output files, made if absent (default: bayescale-demo)",
    )
    p.add_argument("--law", default=DEMO_LAW, help=f"catalogue id (default: {DEMO_LAW})")
    p.add_argument("--seed", type=int, default=0)
    # hidden: smaller runs for tests
    p.add_argument("--chains", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--samples", type=int, default=1000, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "backtest",
        parents=[fitting],
        help="fit the early part of each curve, score predictions of the rest",
    )
    p.add_argument(
        "--by", action="append", metavar="COLUMN", help="column naming the curves (repeatable)"
    )
    p.add_argument(
        "--fit-fraction",
        type=float,
        help="fit the rows up to this fraction of each curve's largest covariate value",
    )
    p.add_argument(
        "--fit-below",
        metavar="COV=VALUE",
        help="fit the rows with the covariate below VALUE instead, e.g. n_params=1e9",
    )
    p.add_argument("--on", help="covariate --fit-fraction applies to (default: the only one)")
    p.add_argument("--baseline", choices=("least_squares", "huber"), default="least_squares")
    p.add_argument("--out", help="also save the table (.csv)")
    return parser
