"""The ``bayescale`` command line: list laws, fit a CSV, predict, plot, run a demo.

Examples
--------
::

    bayescale laws
    bayescale fit runs.csv --law chinchilla --column n_params=N --out fit.nc --plot fit.png
    bayescale fit runs.csv --law chinchilla --derive n_tokens="flops / (6 * n_params)" --out f.nc
    bayescale fit --tensorboard runs/ --tag loss --law power_law_offset --by run \
        --column x=step --column y=loss --out curves.nc
    bayescale predict fit.nc --at n_params=1e11,n_tokens=2e12 --kind mean
    bayescale plot fit.nc -o fit.pdf --x n_tokens
    bayescale demo --out-dir demo/
    bayescale plan fit.nc --flops 5.76e23
    bayescale plan fit.nc --target n_opt@1e22 --candidates runs.csv --budget 3e19 --k 3
    bayescale backtest runs.csv --law power_law_offset --by model --by seed \
        --column x=step --column y=loss --fit-fraction 0.2

Errors in the input (unknown law, bad column, missing file ...) are reported as one line
``error: ...`` on stderr with exit status 2. Tables are printed with 4 significant digits;
``--json`` prints one JSON object on stdout instead (full precision; NaN as null), for
scripts. Parsing the arguments imports neither JAX nor pandas: ``--help`` is immediate.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bayescale.cli_parser import build_parser

__all__ = ["build_parser", "main"]

_EXIT_USAGE = 2
DIGITS = 4  # significant digits of printed tables


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
    from bayescale.io import read_table

    return read_table(path)


def _read_data(args):
    """The table to fit: the CSV, or the curves of ``--tensorboard``/``--wandb`` (columns
    run, step and one per tag, steps below ``--min-step`` dropped), then ``--derive``."""
    from bayescale import io

    given = [
        o
        for o, v in (
            ("CSV", args.csv),
            ("--tensorboard", args.tensorboard),
            ("--wandb", args.wandb),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one data source: a CSV file, --tensorboard PATH or --wandb CSV "
            f"(got {', '.join(given) or 'none'})"
        )
    if args.step is not None and args.wandb is None:
        raise ValueError("--step applies to --wandb")
    if args.csv is None:
        long = (
            io.read_tensorboard(args.tensorboard, args.tag)
            if args.tensorboard
            else io.read_wandb(args.wandb, args.tag, step=args.step)
        )
        min_step = 1 if args.min_step is None else args.min_step
        frame = io.pivot(long[long["step"] >= min_step])
        if frame.empty:
            raise ValueError(f"no logged value at step >= {min_step:g} (--min-step)")
        args.report.line(
            f"read {len(long)} values of {', '.join(long['tag'].unique())} from "
            f"{long['run'].nunique()} run(s); {len(frame)} rows at step >= {min_step:g}"
        )
    else:
        for option in ("tag", "min_step"):
            if getattr(args, option) is not None:
                name = option.replace("_", "-")
                raise ValueError(f"--{name} applies to --tensorboard and --wandb")
        frame = _read_csv(args.csv)
    derived = {}
    for item in args.derive or ():
        name, _, expression = item.partition("=")
        if not name.strip() or not expression.strip():
            raise ValueError(f'--derive {item!r} must be of the form NAME="EXPRESSION"')
        derived[name.strip()] = expression.strip()
    return io.derive(frame, derived) if derived else frame


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


class _Report:
    """What a command prints: lines and tables as text (tables rounded to :data:`DIGITS`
    significant digits, counts as integers), or, with ``--json``, one JSON object of the
    same items at full precision, printed by :meth:`close`. Warnings go to stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.doc: dict = {}

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text)

    def value(self, key: str, value) -> None:
        self.doc[key] = value

    def table(self, key: str, frame, *, index: bool = False) -> None:
        frame = frame.reset_index() if index else frame
        self.doc[key] = json.loads(frame.to_json(orient="records", double_precision=15))
        if not self.as_json:
            print(_frame_text(frame))

    def saved(self, what: str, path) -> None:
        self.doc[what] = str(path)
        self.line(f"saved {what}: {path}")

    @staticmethod
    def warn(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr)

    def close(self) -> None:
        if self.as_json:
            print(json.dumps(self.doc, indent=1))


def _cell(value, integer: bool) -> str:
    """One table cell: :data:`DIGITS` significant digits, or an integer count."""
    import numpy as np

    if isinstance(value, bool | np.bool_) or not isinstance(value, float | np.floating):
        return str(value)
    if not np.isfinite(value):
        return "-" if np.isnan(value) else str(value)
    return f"{value:.0f}" if integer else f"{value:.{DIGITS}g}"


def _frame_text(frame) -> str:
    """``frame`` as a text table without its index: floats to :data:`DIGITS` significant
    digits; ESS and ``num_*`` columns as integers; NaN as ``-``."""
    import pandas as pd

    shown = frame.copy()
    for c in shown.columns:
        integer = "ess" in str(c) or str(c).startswith("num_")
        shown[c] = [_cell(v, integer) for v in shown[c]]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return shown.to_string(index=False)


def _report_fit(report: _Report, result) -> None:
    """The law, the data, the status line and the diagnostics of a single fit."""
    d = result.diagnostics.iloc[0]
    n = result.group("observed_data").sizes["point"]
    report.value("law", result.law.id)
    report.value("formula", f"{result.law.response} = {result.law.formula.text}")
    report.value("num_points", n)
    report.value("likelihood", result.likelihood)
    report.value("method", result.method)
    report.value("status", result.status.value)
    report.doc["diagnostics"] = json.loads(d.to_json(double_precision=15))
    report.line(f"law {result.law.id!r}: {result.law.response} = {result.law.formula.text}")
    units = result.law.fixed_scales
    if units:  # the parameters are stated in these units of the covariates
        report.value("units", units)
        report.line("read in units of " + ", ".join(f"{c} = {s:g}" for c, s in units.items()))
    report.line(
        f"{n} points, likelihood {result.likelihood}, {result.method}"
        + (
            f", {result.num_chains} chains x {result.num_draws} draws"
            if result.method != "map"
            else ""
        )
    )
    if result.method == "nuts":
        report.line(
            f"status: {result.status.value} (max rhat {d['max_rhat']:.3f}, "
            f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f} "
            f"of {d['num_draws']} draws, {d['num_divergent']} divergent)"
        )
    else:
        report.line(f"status: {result.status.value}")
    if result.status.value != "converged":
        report.warn(
            f"the fit did not converge ({result.status.value}"
            + (f": {d['reason']}" if d["reason"] else "")
            + "); more --warmup/--samples may help"
        )


# ---------------------------------------------------------------------------- commands
def _cmd_laws(args) -> int:
    from bayescale.laws import table

    args.report.table("laws", table().drop(columns="source"))
    return 0


def _fit_objects(args, *, method: str = "nuts", keep: int | None = None) -> dict:
    """``columns``, ``model``, ``inference`` and ``seed`` of :func:`bayescale.fit`."""
    import bayescale

    model = bayescale.Model(
        likelihood=args.likelihood,
        noise=args.noise,
        discrepancy=None if args.discrepancy == "none" else args.discrepancy,
    )
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

    report = args.report
    _writable(args.out, "--out")
    if args.plot:
        _figure_path(args.plot, "--plot")
    if args.keep is not None and not args.by:
        raise ValueError("--keep applies to batched fits (--by COLUMN)")
    data = _read_data(args)
    if args.by:
        by = args.by[0] if len(args.by) == 1 else args.by
        options = _fit_objects(args, method=args.method, keep=args.keep)
        batch = bayescale.fit(data, args.law, by=by, warn=False, **options)
        failed = [str(label) for label in batch.failed]
        report.value("law", batch.law.id)
        report.value("by", by)
        report.value("num_fits", len(batch))
        report.value("failed", failed)
        report.line(
            f"law {batch.law.id}: {len(batch)} fits by {by}, {len(batch) - len(failed)} converged"
        )
        if failed:
            report.warn(f"not converged: {', '.join(failed)}")
        report.table("diagnostics", batch.diagnostics, index=True)
        report.table("summary", batch.summary())
        report.saved("result", batch.save(args.out))
        return 0
    result = bayescale.fit(data, args.law, warn=False, **_fit_objects(args, method=args.method))
    _report_fit(report, result)
    report.table("summary", result.summary().drop(columns="fit"))
    report.saved("result", result.save(args.out))
    if args.plot:
        report.saved("plot", _save_bands(result, args.plot))
    return 0


def _load(path: str, label: str | None = None):
    """The saved result at ``path``; for a batch, its fit ``label`` (``--fit``)."""
    from bayescale.result import load

    result = load(path)
    if result.by is None:
        if label is not None:
            raise ValueError(f"--fit applies to a batch of fits; {path!r} holds one fit")
        return result
    labels = [str(x) for x in result.labels]
    if label is None:
        raise ValueError(
            f"{path!r} holds {len(result)} fits by {result.dim}: choose one with --fit LABEL "
            f"(labels: {', '.join(labels[:5])}{' ...' if len(result) > 5 else ''})"
        )
    if label not in labels:
        raise ValueError(
            f"--fit {label!r}: no such fit in {path!r}; labels: {', '.join(labels[:5])}"
            + (" ..." if len(labels) > 5 else "")
        )
    return result[result.labels[labels.index(label)]]


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

    args.report.table("predictions", result.predict(pd.DataFrame(points), kind=args.kind))
    return 0


def _cmd_plot(args) -> int:
    _figure_path(args.output, "--output")
    result = _load(args.result, args.fit)
    path = _save_bands(result, args.output, x=args.x, extend=args.extend, kind=args.kind)
    args.report.saved("plot", path)
    return 0


def _cmd_plan(args) -> int:
    from bayescale import plan

    report = args.report
    _writable(args.out, "--out")
    result = _load(args.result)
    if args.flops:
        table = plan.allocate(result, [float(c) for c in args.flops])
        cost = "C = 6 N B_crit(L) S" if "steps" in result.law.covariates else "C = 6ND"
        report.line(f"compute-optimal allocation ({cost}), law {result.law.id!r}:")
        report.table("allocation", table)
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
    report.value("target", attrs["target"])
    report.value("prior_sd", attrs["prior_variance"] ** 0.5)
    report.line(
        f"next runs for target {attrs['target']} (posterior sd of its log now "
        f"{attrs['prior_variance'] ** 0.5:.4g}; greedy rule {attrs['rule']}):"
    )
    report.table("design", design)
    if args.out:
        design.to_csv(args.out, index=False)
        report.saved("design", args.out)
    return 0


def _cmd_demo(args) -> int:
    import bayescale
    from bayescale.simulate import simulate

    report = args.report
    law = bayescale.laws.get_law(args.law)
    data = simulate(law, seed=args.seed)
    noise = law.design.get("noise")
    report.line(
        f"demo: {len(data)} points simulated from law {law.id!r} ({law.title}) at its "
        f"reference values, log-noise sd {noise}, seed {args.seed}"
    )
    inference = bayescale.NUTS(
        num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples
    )
    result = bayescale.fit(data, law, inference=inference, seed=args.seed, warn=False)
    _report_fit(report, result)
    summary = result.summary().drop(columns="fit")
    reference = {**law.reference, "sigma": noise}
    summary.insert(1, "true", [reference.get(n, float("nan")) for n in summary["parameter"]])
    report.table("summary", summary)
    report.line(_frame_text(result.diagnostics))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.line(f"writing into folder {out_dir.resolve()}")
    data_path = out_dir / "demo_data.csv"
    data.to_csv(data_path, index=False)
    report.saved("data", data_path)
    report.saved("result", result.save(out_dir / "demo_result.nc"))
    report.saved("plot", _save_bands(result, str(out_dir / "demo_fit.png")))
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
        _read_data(args),
        args.law,
        by=by,
        split=split,
        on=args.on,
        baseline=args.baseline,
        **_fit_objects(args),
    )
    report = args.report
    report.line(
        f"backtest of law {result.batch.law.id!r}: split {split!r}, "
        f"baseline {args.baseline} point fit; one row per curve, then overall"
    )
    report.table("table", result.table, index=True)
    report.value("error_ratio", result.error_ratio)
    report.line(f"posterior-median RMSE / baseline RMSE (log response): {result.error_ratio:.3f}")
    if args.out:
        result.table.to_csv(args.out)
        report.saved("table", args.out)
    return 0


_COMMANDS = {
    "laws": _cmd_laws,
    "fit": _cmd_fit,
    "predict": _cmd_predict,
    "plot": _cmd_plot,
    "plan": _cmd_plan,
    "demo": _cmd_demo,
    "backtest": _cmd_backtest,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayescale`` command; returns the exit status (0 ok, 2 input error)."""
    args = build_parser().parse_args(argv)
    from bayescale.settings import configure

    configure()  # the command line opts in: all CPU cores as devices, persistent cache
    args.report = _Report(args.json)
    try:
        code = _COMMANDS[args.command](args)
    except (OSError, ValueError) as err:
        # DataError, LawError and FormulaError are ValueErrors; FileNotFoundError an OSError.
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return _EXIT_USAGE
    args.report.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
