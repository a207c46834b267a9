"""Training logs in: TensorBoard event files and W&B / CSV run exports as one tidy table.

Every reader returns the same long ("tidy") :class:`pandas.DataFrame`, one row per logged
value, with the columns

``run`` (str)
    the run's name: its folder relative to the folder read (TensorBoard), the run's name in
    the export (W&B), or the file's stem;
``tag`` (str)
    the metric, e.g. ``"loss"`` or ``"train/loss"``;
``step`` (int or float)
    the training step (or the export's x-axis column);
``value`` (float)
    the logged value, as logged (no smoothing);
``wall_time`` (float)
    seconds since the epoch when the value was written (NaN where the log has none).

:func:`pivot` turns it into what :func:`bayescale.fit` reads: one row per (run, step), one
column per tag; :func:`derive` adds columns computed from others (``n_tokens`` from
``flops`` and ``n_params``) with the law formula syntax. Reading TensorBoard files needs the
optional ``tensorboard`` package (``pip install 'bayescale[io]'``); the CSV readers need
only pandas. Every input error is a
:class:`FileNotFoundError` or :class:`ValueError` whose message names the file, the tag or
the column.

Example
-------
::

    from bayescale import fit, io

    curves = io.pivot(io.read_tensorboard("runs/", tags="train/loss"))
    curves = curves[curves["step"] > 0]
    result = fit(curves, "power_law_offset", by="run",
                 columns={"x": "step", "y": "train/loss"})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "derive",
    "pivot",
    "read_csv_log",
    "read_table",
    "read_tensorboard",
    "read_wandb",
]

COLUMNS = ("run", "tag", "step", "value", "wall_time")
_EVENT_MARK = "tfevents"  # TensorBoard event files are named events.out.tfevents.<time>.<host>...
_WANDB_SEPARATOR = " - "  # "<run> - <metric>" in a W&B chart export
_WANDB_HISTORY_STEP, _WANDB_HISTORY_TIME = "_step", "_timestamp"


def _tag_list(tags: str | Iterable[str] | None) -> list[str] | None:
    if tags is None:
        return None
    out = [tags] if isinstance(tags, str) else list(tags)
    if not out or not all(isinstance(t, str) and t for t in out):
        raise ValueError(f"tags must be a tag name or a list of tag names, got {tags!r}")
    return out


def _check_tags(wanted: list[str] | None, present: Iterable[str], where: str) -> None:
    """Refuse tags that ``where`` does not hold, listing those it does."""
    present = sorted(set(present))
    missing = [t for t in wanted or () if t not in present]
    if missing:
        raise ValueError(
            f"tag {', '.join(map(repr, missing))} not found in {where}; "
            f"its tags: {', '.join(present) or '(none)'}"
        )


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s :data:`COLUMNS` typed and sorted by run, tag, step (ties: as written)."""
    frame = frame[list(COLUMNS)].copy()
    frame["run"] = frame["run"].astype(str)
    frame["tag"] = frame["tag"].astype(str)
    frame["value"] = frame["value"].astype(float)
    frame["wall_time"] = frame["wall_time"].astype(float)
    return frame.sort_values(["run", "tag", "step"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------ TensorBoard
def _tensorboard():
    """The event-file loader and tensor decoder of the ``tensorboard`` package."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError:
        raise ImportError(
            "reading TensorBoard event files needs the 'tensorboard' package: "
            "pip install 'bayescale[io]' (or pip install tensorboard)"
        ) from None
    return EventFileLoader, make_ndarray


def _event_files(path: Path) -> list[tuple[str, Path]]:
    """``(run, file)`` for every event file at ``path`` (a file, a run folder, a folder of
    runs, searched recursively); the run is the file's folder relative to ``path``."""
    if path.is_file():
        return [(path.parent.name or ".", path)]
    if not path.is_dir():
        raise FileNotFoundError(f"no TensorBoard event file or folder at {str(path)!r}")
    files = sorted(p for p in path.rglob(f"*{_EVENT_MARK}*") if p.is_file())
    if not files:
        raise FileNotFoundError(
            f"no TensorBoard event files (names containing {_EVENT_MARK!r}) under {str(path)!r}"
        )
    runs = []
    for f in files:
        rel = f.parent.relative_to(path).as_posix()
        runs.append((path.name if rel == "." else rel, f))
    return runs


def _scalar(value, make_ndarray, file: Path) -> float | None:
    """The scalar of one summary value; None for a non-scalar summary (image, histogram ...);
    a ValueError names the tag and file of a scalar that is not a number."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor":
        return None
    plugin = value.metadata.plugin_data.plugin_name
    if plugin and plugin != "scalars":
        return None
    array = make_ndarray(value.tensor)
    if array.size != 1:
        return None
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(
            f"tag {value.tag!r} in {str(file)!r} holds a non-numeric value "
            f"({array.reshape(-1)[0]!r}, dtype {array.dtype})"
        )
    return float(array.reshape(-1)[0])


def read_tensorboard(path: str | Path, tags: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Scalar curves from TensorBoard event files, as a long table (see :mod:`bayescale.io`).

    Parameters
    ----------
    path : str or Path
        An event file (``events.out.tfevents.*``), a run folder holding event files, or a
        folder of runs (searched recursively). Each folder holding event files is one run,
        named by its path relative to ``path`` (``path``'s own name for files directly in it).
    tags : str or list of str, optional
        The scalar tags to read (default: every scalar tag). Scalars written as TensorBoard
        1.x ``simple_value`` and as TensorFlow 2 scalar tensors are both read; images,
        histograms and text are skipped.

    Returns
    -------
    pandas.DataFrame
        Columns ``run, tag, step, value, wall_time``, sorted by run, tag and step. A step
        logged twice (a restarted run) keeps both rows, in the order written.

    Raises
    ------
    ImportError
        Without the ``tensorboard`` package (the ``io`` extra).
    FileNotFoundError
        ``path`` does not exist, or holds no event file.
    ValueError
        A tag in ``tags`` is in no file (the message lists the tags present); a scalar that
        is not a number (the message names tag and file); a corrupt event file (named).
    """
    EventFileLoader, make_ndarray = _tensorboard()
    wanted = _tag_list(tags)
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    present: set[str] = set()
    for run, file in _event_files(Path(path)):
        try:
            events = list(EventFileLoader(str(file)).Load())
        except Exception as err:  # the loader's own errors (DataLossError, DecodeError ...)
            raise ValueError(f"cannot read TensorBoard event file {str(file)!r}: {err}") from None
        for event in events:
            for value in event.summary.value:
                scalar = _scalar(value, make_ndarray, file)
                if scalar is None:
                    continue
                present.add(value.tag)
                if wanted is not None and value.tag not in wanted:
                    continue
                for column, item in zip(
                    COLUMNS, (run, value.tag, event.step, scalar, event.wall_time), strict=True
                ):
                    rows[column].append(item)
    if not present:
        raise ValueError(f"the TensorBoard event files under {str(path)!r} hold no scalar")
    _check_tags(wanted, present, f"the TensorBoard scalars under {str(path)!r}")
    return _tidy(pd.DataFrame(rows).astype({"step": np.int64}))


# ------------------------------------------------------------------------------------ CSV
def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV file at ``path`` as it is (the command line's reader of every CSV).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        An empty file (no columns or no rows) or a malformed one; the message names it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no CSV file at {str(path)!r}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read CSV file {str(path)!r}: {err}") from None
    if frame.empty:
        raise ValueError(f"CSV file {str(path)!r} has no rows (columns: {list(frame.columns)})")
    return frame


def _numeric(column: pd.Series, path, name: str) -> pd.Series:
    """``column`` as floats (empty cells NaN); a ValueError names file, column, row, value."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        row = bad.idxmax()
        raise ValueError(
            f"column {name!r} of {str(path)!r} holds a non-numeric value {column[row]!r} "
            f"(row {row + 2} of the file, counting the header as row 1)"
        )
    return values.astype(float)


def _melt(
    frame: pd.DataFrame,
    path,
    *,
    step: str,
    runs: pd.Series | dict[str, pd.Series],
    metrics: dict[str, str],
    wall_time: str | None,
) -> pd.DataFrame:
    """Long form of a wide table: ``metrics`` maps a column to its tag; empty cells (a metric
    not logged at that step) are dropped. ``runs``: the run of each row, or of each metric
    column's rows."""
    steps = _numeric(frame[step], path, step)
    if steps.isna().any():
        row = int(steps.isna().to_numpy().argmax())
        raise ValueError(f"column {step!r} of {str(path)!r} is empty at row {row + 2}")
    times = _numeric(frame[wall_time], path, wall_time) if wall_time else np.nan
    parts = []
    for column, tag in metrics.items():
        part = pd.DataFrame(
            {
                "run": runs if isinstance(runs, pd.Series) else runs[column],
                "tag": tag,
                "step": steps,
                "value": _numeric(frame[column], path, column),
                "wall_time": times,
            }
        )
        parts.append(part[part["value"].notna()])
    long = pd.concat(parts, ignore_index=True)
    if (long["step"] == long["step"].round()).all():
        long["step"] = long["step"].astype(np.int64)
    return _tidy(long)


def read_csv_log(
    path: str | Path,
    *,
    step: str = "step",
    run: str | None = None,
    tags: str | Iterable[str] | None = None,
    wall_time: str | None = None,
) -> pd.DataFrame:
    """A wide CSV training log (one row per step, one column per metric) as a long table.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    step : str
        The column of training steps (default ``"step"``).
    run : str, optional
        A column naming the run of each row; without it every row is one run, named by the
        file's stem.
    tags : str or list of str, optional
        The metric columns to read (default: every other column, except ``wall_time``).
    wall_time : str, optional
        A column of seconds since the epoch.

    Returns
    -------
    pandas.DataFrame
        Columns ``run, tag, step, value, wall_time`` (see :mod:`bayescale.io`); empty cells
        (a metric not logged at that step) are dropped.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        An empty or malformed file; a ``step``, ``run``, ``wall_time`` or tag column it does
        not have (the message lists those it has); a non-numeric value (the message names
        the column and the row).
    """
    frame = read_table(path)
    wanted = _tag_list(tags)
    given = {"step": step, "run": run, "wall_time": wall_time}
    special = [c for c in given.values() if c is not None]
    for option, name in given.items():
        if name is not None and name not in frame.columns:
            raise ValueError(
                f"{option} column {name!r} not in {str(path)!r}; its columns: "
                f"{', '.join(map(str, frame.columns))}"
            )
    metrics = [str(c) for c in frame.columns if c not in special]
    _check_tags(wanted, metrics, f"the columns of {str(path)!r}")
    runs = frame[run].astype(str) if run else pd.Series(Path(path).stem, index=frame.index)
    chosen = {m: m for m in (wanted or metrics)}
    return _melt(frame, path, step=step, runs=runs, metrics=chosen, wall_time=wall_time)


def read_wandb(
    path: str | Path, tags: str | Iterable[str] | None = None, *, step: str | None = None
) -> pd.DataFrame:
    """A Weights & Biases CSV export as a long table (see :mod:`bayescale.io`).

    Two forms are recognised:

    * **a chart export** from the W&B web page: an x-axis column (``Step``, or another such
      as ``trainer/global_step``) and one column ``"<run> - <metric>"`` per run, with
      ``__MIN``/``__MAX`` companions (the range of a downsampled bucket), which are dropped;
    * **a run's history**, ``run.history().to_csv(...)``: the ``_step`` column, ``_timestamp``
      (the wall time) and one column per metric; the run is named by the file's stem.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    tags : str or list of str, optional
        The metrics to read (default: all).
    step : str, optional
        The x-axis column of a chart export (default: ``Step`` if present, else its only
        column without ``" - "``). Ignored for a history, whose step is ``_step``.

    Returns
    -------
    pandas.DataFrame
        Columns ``run, tag, step, value, wall_time``; empty cells are dropped.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A file of neither form; an unknown tag (the message lists the metrics present); a
        non-numeric value (the message names the column and row).
    """
    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    series = [c for c in columns if _WANDB_SEPARATOR in c]
    if not series and _WANDB_HISTORY_STEP in columns:
        wall = _WANDB_HISTORY_TIME if _WANDB_HISTORY_TIME in columns else None
        drop = [c for c in columns if c.startswith("_")]
        wanted = _tag_list(tags)
        metrics = [c for c in columns if c not in drop]
        _check_tags(wanted, metrics, f"the W&B history {str(path)!r}")
        runs = pd.Series(Path(path).stem, index=frame.index)
        chosen = {m: m for m in (wanted or metrics)}
        return _melt(
            frame, path, step=_WANDB_HISTORY_STEP, runs=runs, metrics=chosen, wall_time=wall
        )
    axes = [c for c in columns if _WANDB_SEPARATOR not in c]
    if not series:
        raise ValueError(
            f"{str(path)!r} is not a W&B export: no '<run> - <metric>' columns and no "
            f"'{_WANDB_HISTORY_STEP}' column (columns: {', '.join(columns)}); "
            "read other CSV logs with read_csv_log"
        )
    if step is None:
        step = "Step" if "Step" in axes else (axes[0] if len(axes) == 1 else None)
        if step is None:
            raise ValueError(
                f"{str(path)!r}: choose the step column among {', '.join(axes) or '(none)'}"
            )
    elif step not in axes:
        raise ValueError(
            f"step column {step!r} not in {str(path)!r}; its columns: {', '.join(axes)}"
        )
    pairs = {}
    for c in series:
        if c.endswith(("__MIN", "__MAX")):
            continue
        name, _, metric = c.partition(_WANDB_SEPARATOR)
        pairs[c] = (name, metric)
    wanted = _tag_list(tags)
    _check_tags(wanted, {m for _, m in pairs.values()}, f"the W&B export {str(path)!r}")
    chosen = {c: m for c, (_, m) in pairs.items() if wanted is None or m in wanted}
    runs = {c: pd.Series(pairs[c][0], index=frame.index) for c in chosen}
    return _melt(frame, path, step=step, runs=runs, metrics=chosen, wall_time=None)


# ---------------------------------------------------------------------------------- pivot
def pivot(frame: pd.DataFrame, tags: str | Iterable[str] | None = None) -> pd.DataFrame:
    """The long table of a reader as :func:`bayescale.fit` reads it: one row per (run, step),
    columns ``run``, ``step`` and one per tag (named as the tag), sorted by run and step.

    Parameters
    ----------
    frame : pandas.DataFrame
        A table with the columns of :data:`COLUMNS` (a reader's output).
    tags : str or list of str, optional
        The tags to keep (default: all). A step at which some tag was not logged holds NaN
        there; a step logged twice in one run keeps the value written last.

    Raises
    ------
    ValueError
        ``frame`` lacks a column of :data:`COLUMNS`, or a tag of ``tags`` is not in it (the
        message lists the tags present).
    """
    missing = [c for c in ("run", "tag", "step", "value") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"pivot needs the columns run, tag, step, value (a reader's output); "
            f"missing: {', '.join(missing)}"
        )
    wanted = _tag_list(tags)
    _check_tags(wanted, frame["tag"].unique(), "the table")
    if wanted is not None:
        frame = frame[frame["tag"].isin(wanted)]
    wide = frame.pivot_table(
        index=["run", "step"], columns="tag", values="value", aggfunc="last", sort=True
    )
    wide.columns.name = None
    return wide[wanted or list(wide.columns)].reset_index()


# --------------------------------------------------------------------------------- derive
def derive(frame: pd.DataFrame, expressions: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``frame`` with a column per ``{name: expression}``, computed row by row in
    order (a later expression may use an earlier one's column).

    An expression is parsed by the law formula parser (:func:`bayescale.laws.parse_formula`:
    numbers, column names, ``+ - * / **``, ``exp``, ``log``, ``sqrt``; never ``eval``), e.g.
    ``{"n_tokens": "flops / (6 * n_params)"}``. Values are computed in float64.

    Raises
    ------
    bayescale.FormulaError
        An expression the parser refuses (the message quotes it).
    ValueError
        A name that is not an identifier; an expression naming a column ``frame`` lacks
        (the message names the expression, the column and lists the columns) or a
        non-numeric column; a result that is not finite (NaN or inf, e.g. a division by a
        zero entry) where the inputs are, at a row the message names.
    """
    from bayescale.laws import parse_formula
    from bayescale.precision import float64

    out = frame.copy()
    for name, text in expressions.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"derived column name {name!r} must be an identifier")
        formula = parse_formula(text)
        where = f"derived column {name} = {text!r}"
        missing = [n for n in formula.names if n not in out.columns]
        if missing:
            raise ValueError(
                f"{where}: unknown column {', '.join(map(repr, missing))}; columns: "
                f"{', '.join(map(str, out.columns))}"
            )
        values = {}
        for n in formula.names:
            column = pd.to_numeric(out[n], errors="coerce")
            if column.isna().any() and not out[n].isna().equals(column.isna()):
                row = out.index[int((column.isna() & out[n].notna()).to_numpy().argmax())]
                raise ValueError(
                    f"{where}: column {n!r} holds a non-numeric value {out[n][row]!r} at row {row}"
                )
            values[n] = column.to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logs = {n: np.log(v) for n, v in values.items()}
            result = np.asarray(float64(formula.value)(values, logs), dtype=float)
        result = np.broadcast_to(result, (len(out),))
        inputs_finite = np.all([np.isfinite(v) for v in values.values()], axis=0)
        bad = ~np.isfinite(result) & inputs_finite
        if bad.any():
            i = int(bad.argmax())
            shown = ", ".join(f"{n}={values[n][i]:.6g}" for n in values)
            raise ValueError(f"{where} is {result[i]} at row {out.index[i]} ({shown})")
        out[name] = result
    return out
