"""The ``bayescale`` command line: list laws, fit a CSV, predict, plot, run a demo.

Examples
--------
::

    bayescale laws
    bayescale fit runs.csv --law chinchilla --column n_params=N --out fit.nc --plot fit.png
    bayescale predict fit.nc --at n_params=1e11,n_tokens=2e12 --kind mean
    bayescale plot fit.nc -o fit.pdf --x n_tokens
    bayescale demo --out-dir demo/
    bayescale plan fit.nc --flops 5.76e23
    bayescale plan fit.nc --target n_opt@1e22 --candidates runs.csv --budget 3e19 --k 3
    bayescale backtest runs.csv --law power_law_offset --by model --by seed \
        --column x=step --column y=loss --fit-fraction 0.2

Errors in the input (unknown law, bad column, missing file ...) are reported as one line
``error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

DEMO_LAW = "kaplan_n"  # two parameters: compiles and converges fast
_EXIT_USAGE = 2


# ---------------------------------------------------------------------------- helpers
def _pairs(items: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``; a ValueError names a malformed item."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{option} {item!r} must be of the form NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _point(text: str) -> dict[str, float]:
    """``"n_params=1e11,n_tokens=2e12"`` -> ``{"n_params": 1e11, "n_tokens": 2e12}``."""
    out = {}
    for key, value in _pairs([p for p in text.split(",") if p.strip()], "--at").items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--at {text!r}: {key} = {value!r} is not a number") from None
    if not out:
        raise ValueError(f"--at {text!r} gives no covariate value")
    return out


def _read_csv(path: str):
    """The CSV file at ``path``; a ValueError names the file when it is empty (no columns or
    no rows) or malformed."""
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"no CSV file at {path!r}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read CSV file {path!r}: {err}") from None
    if frame.empty:
        raise ValueError(f"CSV file {path!r} has no rows (columns: {list(frame.columns)})")
    return frame


def _writable(path: str | None, option: str) -> None:
    """Refuse ``path`` (given as ``option``; None: not given) before any work when its folder
    does not exist or it is a folder itself."""
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{option} {path!r}: folder {str(folder)!r} does not exist")
    if Path(path).is_dir():
        raise IsADirectoryError(f"{option} {path!r} is a folder; give a file name")


def _figure_path(path: str, option: str) -> None:
    """Refuse a figure file name (given as ``option``) that :func:`~bayescale.plot.save_figure`
    cannot write, before any work."""
    from bayescale.plot import FIGURE_SUFFIXES

    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(
            f"{option} {path!r}: a figure file name must end in {' or '.join(FIGURE_SUFFIXES)}"
        )


def _use_agg() -> None:
    """The CLI only writes files: draw with the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")


def _save_bands(result, path: str, **kwargs) -> Path:
    _use_agg()
    import matplotlib.pyplot as plt

    from bayescale.plot import bands, root_figure, save_figure

    ax = bands(result, **kwargs)
    try:
        return save_figure(ax, path)
    finally:
        plt.close(root_figure(ax))


def _status_line(result) -> str:
    d = result.diagnostics.iloc[0]  # one fit
    return (
        f"status: {result.status.value} (max rhat {d['max_rhat']:.4f}, "
        f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f} "
        f"of {d['num_draws']} draws, {d['num_divergent']} divergent)"
    )


def _print_fit(result) -> None:
    print(f"law {result.law.id!r}: {result.law.response} = {result.law.formula.text}")
    print(
        f"{result.datatree.observed_data.sizes['point']} points, likelihood "
        f"{result.likelihood}, {result.num_chains} chains x {result.num_draws} draws"
    )
    print(_status_line(result))
    if result.status.value != "converged":
        print(
            f"warning: the fit did not converge ({result.status.value}); "
            "more --warmup/--samples may help",
            file=sys.stderr,
        )


def _frame_text(frame, **kwargs) -> str:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return frame.to_string(**kwargs)


# ---------------------------------------------------------------------------- commands
def _cmd_laws(args) -> int:
    from bayescale.laws import table

    print(_frame_text(table().drop(columns="source"), index=False))
    return 0


def _fit_objects(args, *, method: str = "nuts", keep: int | None = None) -> dict:
    """``columns``, ``model``, ``inference`` and ``seed`` of :func:`bayescale.fit`."""
    import bayescale

    model = bayescale.Model(likelihood=args.likelihood, noise=args.noise)
    if method == "nuts":
        inference = bayescale.NUTS(
            num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples, keep=keep
        )
    elif method == "laplace":
        inference = bayescale.Laplace(num_chains=args.chains, num_samples=args.samples)
    else:
        inference = bayescale.MAP()
    columns = _pairs(args.column, "--column") or None
    return {"columns": columns, "model": model, "inference": inference, "seed": args.seed}


def _cmd_fit(args) -> int:
    import bayescale

    _writable(args.out, "--out")
    if args.plot:
        _figure_path(args.plot, "--plot")
    data = _read_csv(args.csv)
    if args.by:
        by = args.by[0] if len(args.by) == 1 else args.by
        options = _fit_objects(args, method=args.method, keep=args.keep)
        batch = bayescale.fit(data, args.law, by=by, warn=False, **options)
        diag = batch.diagnostics
        converged = len(batch) - len(batch.failed)
        print(f"law {batch.law.id}: {len(batch)} fits by {by}, {converged} converged")
        if batch.failed:
            print(f"warning: not converged: {batch.failed}", file=sys.stderr)
        print(_frame_text(diag))
        print(_frame_text(batch.summary(), index=False))
        out = batch.save(args.out)
        print(f"saved result: {out}")
        return 0
    if args.keep is not None:
        raise ValueError("--keep applies to batched fits (--by COLUMN)")
    result = bayescale.fit(data, args.law, warn=False, **_fit_objects(args, method=args.method))
    _print_fit(result)
    print(_frame_text(result.summary().drop(columns="fit"), index=False))
    out = result.save(args.out)
    print(f"saved result: {out}")
    if args.plot:
        print(f"saved plot: {_save_bands(result, args.plot)}")
    return 0


def _load(path: str, label: str | None = None):
    """The saved result at ``path``; for a batch, its fit ``label`` (``--fit``)."""
    from bayescale.result import load

    result = load(path)
    if result.by is None:
        if label is not None:
            raise ValueError(f"--fit applies to a batch of fits; {path!r} holds one fit")
        return result
    if label is None:
        raise ValueError(
            f"{path!r} holds {len(result)} fits by {result.dim}: choose one with --fit LABEL "
            f"(labels: {', '.join(map(str, result.labels[:5]))}{' ...' if len(result) > 5 else ''})"
        )
    match = [x for x in result.labels if str(x) == label]
    if not match:
        raise ValueError(f"--fit {label!r}: no such fit in {path!r}; labels: {result.labels[:5]}")
    return result[match[0]]


def _cmd_predict(args) -> int:
    result = _load(args.result, args.fit)
    points = [_point(text) for text in args.at]
    keys = list(points[0])
    for p in points[1:]:
        if set(p) != set(keys):
            raise ValueError(f"every --at must name the same covariates; got {keys} and {list(p)}")
    known = {*result.law.covariates, *(result.columns.get(c, c) for c in result.law.covariates)}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(
            f"--at names {', '.join(map(repr, unknown))}, not a covariate of law "
            f"{result.law.id!r} (its covariates: {', '.join(sorted(known))})"
        )
    import pandas as pd

    table = result.predict(pd.DataFrame(points), kind=args.kind)
    print(_frame_text(table, index=False, float_format=lambda v: f"{v:.5g}"))
    return 0


def _cmd_plot(args) -> int:
    _figure_path(args.output, "--output")
    result = _load(args.result, args.fit)
    path = _save_bands(result, args.output, x=args.x, extend=args.extend, kind=args.kind)
    print(f"saved plot: {path}")
    return 0


def _cmd_plan(args) -> int:
    from bayescale import plan

    _writable(args.out, "--out")
    result = _load(args.result)
    fmt = {"float_format": lambda v: f"{v:.5g}"}
    if args.flops:
        table = plan.allocate(result, [float(c) for c in args.flops])
        cost = "C = 6 N B_crit(L) S" if "steps" in result.law.covariates else "C = 6ND"
        print(f"compute-optimal allocation ({cost}), law {result.law.id!r}:")
        print(_frame_text(table, index=False, **fmt))
    if args.target is None:
        if not args.flops:
            raise ValueError("plan needs --flops (allocation) and/or --target (next runs)")
        return 0
    if args.candidates is None or args.budget is None:
        raise ValueError("--target needs --candidates CSV and --budget")
    design = plan.next_runs(
        result,
        target=args.target,
        candidates=_read_csv(args.candidates),
        budget=args.budget,
        k=args.k,
        num_outer=args.num_outer,
        max_per_candidate=args.max_per_candidate or None,
        seed=args.seed,
    )
    attrs = design.attrs
    print(
        f"next runs for target {attrs['target']} (posterior sd of its log now "
        f"{attrs['prior_variance'] ** 0.5:.4g}; greedy rule {attrs['rule']}):"
    )
    print(_frame_text(design, index=False, **fmt))
    if args.out:
        design.to_csv(args.out, index=False)
        print(f"saved design: {args.out}")
    return 0


def _cmd_demo(args) -> int:
    import bayescale
    from bayescale.simulate import simulate

    law = bayescale.laws.get_law(args.law)
    data = simulate(law, seed=args.seed)
    noise = law.design.get("noise")
    print(
        f"demo: {len(data)} points simulated from law {law.id!r} ({law.title}) at its "
        f"reference values, log-noise sd {noise}, seed {args.seed}"
    )
    inference = bayescale.NUTS(
        num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples
    )
    result = bayescale.fit(data, law, inference=inference, seed=args.seed, warn=False)
    _print_fit(result)
    summary = result.summary().drop(columns="fit")
    reference = {**law.reference, "sigma": noise}
    summary.insert(
        1, "true", [f"{reference[n]:.4g}" if n in reference else "-" for n in summary["parameter"]]
    )
    print(_frame_text(summary, index=False))
    print("diagnostics:")
    for key, value in result.diagnostics.iloc[0].items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"writing into folder {out_dir.resolve()}")
    data_path = out_dir / "demo_data.csv"
    data.to_csv(data_path, index=False)
    result_path = result.save(out_dir / "demo_result.nc")
    plot_path = _save_bands(result, str(out_dir / "demo_fit.png"))
    print(f"data:   {data_path}")
    print(f"result: {result_path}")
    print(f"plot:   {plot_path}")
    return 0


def _cmd_backtest(args) -> int:
    from bayescale.check import backtest

    _writable(args.out, "--out")
    if (args.fit_fraction is None) == (args.fit_below is None):
        raise ValueError("give exactly one of --fit-fraction and --fit-below")
    if args.fit_below is not None:
        split = {k: float(v) for k, v in _pairs([args.fit_below], "--fit-below").items()}
    else:
        split = args.fit_fraction
    by = None if not args.by else (args.by[0] if len(args.by) == 1 else args.by)
    result = backtest(
        _read_csv(args.csv),
        args.law,
        by=by,
        split=split,
        on=args.on,
        baseline=args.baseline,
        **_fit_objects(args),
    )
    print(
        f"backtest of law {result.batch.law.id!r}: split {split!r}, "
        f"baseline {args.baseline} point fit; one row per curve, then overall"
    )
    print(_frame_text(result.table, float_format=lambda v: f"{v:.4g}"))
    print(f"posterior-median RMSE / baseline RMSE (log response): {result.error_ratio:.3f}")
    if args.out:
        result.table.to_csv(args.out)
        print(f"saved table: {args.out}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = argparse.ArgumentParser(
        prog="bayescale",
        description="Bayesian fits of neural scaling laws (JAX + NumPyro NUTS).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("laws", help="list the catalogue of scaling laws")
    p.set_defaults(func=_cmd_laws)

    # what `fit` and `backtest` share: the law, the column mapping and the fit's options
    fitting = argparse.ArgumentParser(add_help=False)
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
    fitting.add_argument("--chains", type=int, default=4)
    fitting.add_argument("--warmup", type=int, default=1000)
    fitting.add_argument("--samples", type=int, default=1000)
    fitting.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "fit", parents=[fitting], help="fit a law to a CSV file, save the posterior (netCDF)"
    )
    p.add_argument("csv", help="CSV file, one row per run")
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
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="posterior predictions from a saved result")
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
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("plot", help="plot data, posterior bands and extrapolation")
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
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "plan", help="compute-optimal allocation and the next runs that sharpen a target"
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
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("demo", help="simulate data from a catalogue law, fit it, plot it")
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
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "backtest",
        parents=[fitting],
        help="fit the early part of each curve, score predictions of the rest",
    )
    p.add_argument("csv", help="CSV file, one row per observation")
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
    p.set_defaults(func=_cmd_backtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayescale`` command; returns the exit status (0 ok, 2 input error)."""
    args = build_parser().parse_args(argv)
    from bayescale.settings import configure

    configure()  # the command line opts in: all CPU cores as devices, persistent cache
    try:
        return args.func(args)
    except (OSError, ValueError) as err:
        # DataError, LawError and FormulaError are ValueErrors; FileNotFoundError an OSError.
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return _EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
