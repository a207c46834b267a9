"""The boundary: user data -> validated, mapped log-space arrays.

Every input error is raised here, before anything is traced, with a message that names the
law, the column, the offending value and its row.  Nothing downstream raises on data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.laws import Law

#: Warnings about the caller's data point at the caller's frame, past every bayescale frame.
PACKAGE_DIR = str(Path(__file__).parent)

__all__ = [
    "DataError",
    "DataWarning",
    "FitData",
    "as_frame",
    "covariate_frame",
    "nonnegative_number",
    "positive_array",
    "positive_column",
    "prepare",
    "seed_int",
    "split_curves",
    "thin_log_spaced",
]


class DataError(ValueError):
    """Input data that cannot be fitted as given."""


class DataWarning(UserWarning):
    """Input data that can be fitted but looks wrong (e.g. a value decades off its column)."""


#: A fitted value this many decades (or more) beyond the rest of its column, and further than
#: the rest of the column spans, draws a :class:`DataWarning`.
OUTLIER_DECADES = 3.0


@dataclass(frozen=True)
class FitData:
    """Validated data for one fit, in log space.

    Attributes
    ----------
    log_x : dict of str to ndarray
        Natural log of each covariate, keyed by the law's covariate names.
    log_y : ndarray or None
        Natural log of the response (None for prediction inputs).
    frame : DataFrame
        The validated columns, renamed to the law's variable names.
    columns : dict of str to str
        Law variable name -> source column name.
    """

    log_x: dict[str, np.ndarray]
    log_y: np.ndarray | None
    frame: pd.DataFrame
    columns: dict[str, str]

    @property
    def num_points(self) -> int:
        return len(self.frame)

    def arrays(self) -> dict:
        """The pytree handed to the sampler: log covariates, log response, mask."""
        n = self.num_points
        return {
            "log_x": dict(self.log_x),
            "log_y": self.log_y if self.log_y is not None else np.zeros(n),
            "mask": np.ones(n, dtype=bool),
        }


def nonnegative_number(value, name: str) -> float:
    """``value`` as a float, checked at the boundary: finite and >= 0 (``name`` in errors)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def seed_int(seed, name: str = "seed") -> int:
    """``seed`` as a Python int, checked at the boundary: an int (not a bool) in
    ``[0, 2**63)``, what numpy's and JAX's generators accept.

    Raises
    ------
    TypeError
        Not an int (a bool, a float, a string ...), naming ``name``.
    ValueError
        An int out of range, naming ``name`` and the value.
    """
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be an int in [0, 2**63), got {int(seed)}")
    return int(seed)


def positive_column(frame: pd.DataFrame, col: str, what: str) -> np.ndarray:
    """Column ``col`` of ``frame`` as float64, every value finite and > 0.

    Raises
    ------
    DataError
        A value that is not a finite number > 0 (non-numeric included), naming the column,
        ``what`` it holds, the first such row and value, and how many there are.
    """
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"column {col!r} ({what}) must be finite and > 0; row {frame.index[i]!r} holds "
            f"{frame[col].iloc[i]!r} ({int(bad.sum())} such value(s))"
        )
    return values


def positive_array(
    values, name: str, *, distinct: bool = False, error: type[Exception] = DataError
) -> np.ndarray:
    """``values`` flattened to float64: at least one, each finite and > 0 (and, with
    ``distinct``, no two equal).

    Raises
    ------
    error
        Naming ``name`` and the values.
    """
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size < 1 or not np.all(np.isfinite(out) & (out > 0)):
        raise error(f"{name} must be finite numbers > 0, got {list(out)}")
    if distinct and len(np.unique(out)) != out.size:
        raise error(f"{name} must be distinct, got {list(out)}")
    return out


def as_frame(data) -> pd.DataFrame:
    """The data as a DataFrame: a DataFrame as given, a CSV path read, a dict of
    one-dimensional arrays (or scalars) of equal length as columns.

    Raises
    ------
    DataError
        A missing file, a column of more than one dimension, columns of different lengths,
        or another type.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise DataError(f"data file {str(path)!r} does not exist")
        return pd.read_csv(path)
    if isinstance(data, Mapping):
        lengths = {}
        for key, value in data.items():
            arr = np.asarray(value)
            if arr.ndim > 1:
                raise DataError(f"column {key!r} must be one-dimensional, got shape {arr.shape}")
            lengths[key] = arr.size if arr.ndim == 1 else 1
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            raise DataError(f"columns have mismatched lengths ({shown})")
        return pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in data.items()})
    raise DataError(
        f"data must be a pandas DataFrame, a dict of arrays or a CSV path, "
        f"got {type(data).__name__}"
    )


def _resolve_columns(law: Law, frame: pd.DataFrame, columns, variables) -> dict[str, str]:
    if columns is not None and not isinstance(columns, Mapping):
        raise TypeError(
            f"columns= must be a mapping of law {law.id!r}'s variables to column names, e.g. "
            f"{{'n_params': 'Model Size'}}; got {type(columns).__name__} {columns!r}"
        )
    columns = dict(columns or {})
    for key, col in columns.items():
        if key not in (law.response, *law.covariates):
            raise DataError(
                f"columns= maps {key!r}, which is not a variable of law {law.id!r} "
                f"(its variables: {', '.join((law.response, *law.covariates))})"
            )
        if not isinstance(col, str):
            raise DataError(
                f"columns= must map law {law.id!r}'s variables to column names; {key!r} -> {col!r}"
            )
    duplicated = set(frame.columns[frame.columns.duplicated()])
    resolved = {}
    for name in variables:
        col = columns.get(name, name)
        if col not in frame.columns:
            hint = (
                f"column {col!r} (mapped from {name!r})"
                if name in columns
                else f"a column {name!r}"
            )
            raise DataError(
                f"law {law.id!r} needs {hint}; the data has columns "
                f"{list(map(str, frame.columns))}. Map one with columns={{{name!r}: '<column>'}}"
            )
        if col in duplicated:
            raise DataError(
                f"column {col!r} (for {name!r} of law {law.id!r}) appears more than once "
                f"in the data"
            )
        taken = [other for other, c in resolved.items() if c == col]
        if taken:
            raise DataError(
                f"law {law.id!r} variables {taken[0]!r} and {name!r} are both mapped to column "
                f"{col!r}; each variable needs its own column"
            )
        resolved[name] = col
    return resolved


def warn_outliers(values: np.ndarray, index, where: str) -> None:
    """Warn (:class:`DataWarning`) for the smallest or largest value of a positive column
    when it lies at least :data:`OUTLIER_DECADES` decades beyond the rest of the column and
    further than the rest spans: a likely typo (``1e308`` for ``1e8``), naming the column
    (``where``), the row and the value.  Columns of fewer than 3 values are not checked."""
    if values.size < 3:
        return
    log = np.log10(values)
    order = np.argsort(log)
    for end, rest in ((order[0], order[1:]), (order[-1], order[:-1])):
        lo, hi = log[rest].min(), log[rest].max()
        gap = max(lo - log[end], log[end] - hi)
        if gap >= OUTLIER_DECADES and gap > hi - lo:
            warnings.warn(
                f"{where}: row {index[end]!r} holds {float(values[end])!r}, {gap:.0f} decades "
                f"beyond the rest of the column ({10**lo:.3g} to {10**hi:.3g}); a typo?",
                DataWarning,
                skip_file_prefixes=(PACKAGE_DIR,),
            )


def column_name(law: Law, name: str, col: str) -> str:
    """How messages name data column ``col`` holding law variable ``name``."""
    return f"column {col!r}" + (f" ({name})" if col != name else "") + f" of law {law.id!r}"


def _validated(
    law: Law, frame: pd.DataFrame, name: str, col: str, *, check_outliers: bool
) -> np.ndarray:
    series = frame[col]
    where = column_name(law, name, col)
    dtype = series.dtype
    not_real = (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_complex_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
    )
    if not_real or not pd.api.types.is_numeric_dtype(series):
        coerced = series if not_real else pd.to_numeric(series, errors="coerce")
        bad = series[coerced.isna() & series.notna()]
        if not_real or len(bad):
            row, value = (
                (bad.index[0], bad.iloc[0]) if len(bad) else (series.index[0], series.iloc[0])
            )
            value = value.item() if isinstance(value, np.generic) else value
            raise DataError(
                f"{where} must be numeric; row {row} holds {value!r} (dtype {series.dtype})"
            )
        series = coerced
    values = series.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = list(series.index[bad][:5])
        raise DataError(
            f"{where} has {int(bad.sum())} non-finite value(s) (NaN or inf) at row(s) {rows}"
        )
    bad = values <= 0
    if bad.any():
        rows = list(series.index[bad][:5])
        raise DataError(
            f"{where} must be > 0 because the law is fitted in log space; "
            f"row {rows[0]} holds {float(values[bad][0])!r} "
            f"({int(bad.sum())} such value(s), rows {rows})"
        )
    if check_outliers:
        warn_outliers(values, series.index, where)
    return values


def prepare(
    data,
    law: Law,
    columns: Mapping[str, str] | None = None,
    *,
    require_response: bool = True,
    min_points: int | None = None,
    check_outliers: bool | None = None,
) -> FitData:
    """Validate ``data`` against ``law`` and return log-space arrays.

    Parameters
    ----------
    data : DataFrame, dict of array-like, or path to a CSV file
        One row per observation.
    law : Law
        The law whose variables are looked up.
    columns : dict, optional
        Law variable -> data column, e.g. ``{"n_params": "Model Size"}``.
    require_response : bool
        False for prediction inputs (covariates only).
    min_points : int, optional
        Fewest rows accepted; by default the number of law parameters + 2 (the noise
        scale and at least one residual degree of freedom).
    check_outliers : bool, optional
        Warn of outlying values (:func:`warn_outliers`); default: ``require_response``.

    Raises
    ------
    DataError
        Naming the law, the column, the value and the row of the first problem found; two
        variables mapped to one column, naming both.
    TypeError
        ``columns`` that is not a mapping.

    Warns
    -----
    DataWarning
        A fitted value many decades beyond the rest of its column (:func:`warn_outliers`).
    """
    try:
        frame = as_frame(data)
    except DataError as err:
        raise DataError(f"data for law {law.id!r}: {err}") from None
    if len(frame) == 0:
        raise DataError(f"data for law {law.id!r} is empty (no rows)")
    variables = (*law.covariates, law.response) if require_response else law.covariates
    resolved = _resolve_columns(law, frame, columns, variables)
    values = {
        name: _validated(
            law,
            frame,
            name,
            col,
            check_outliers=require_response if check_outliers is None else check_outliers,
        )
        for name, col in resolved.items()
    }
    if require_response:
        needed = len(law.parameters) + 2 if min_points is None else min_points
        if len(frame) < needed:
            raise DataError(
                f"law {law.id!r} has {len(law.parameters)} parameters plus a noise scale; "
                f"{len(frame)} data point(s) cannot constrain them (need at least {needed})"
            )
    out = pd.DataFrame(values, index=frame.index)
    return FitData(
        log_x={c: np.log(values[c]) for c in law.covariates},
        log_y=np.log(values[law.response]) if require_response else None,
        frame=out,
        columns=resolved,
    )


def split_curves(data, law: Law, by, columns):
    """Split ``data`` by the ``by`` column(s) into validated curves.

    Returns ``(fits, labels, reasons)``: one :class:`~bayescale.data.FitData` per curve, its
    label, and ``{label: why}`` for curves with too few points to constrain the law.
    """
    frame = as_frame(data)
    by_cols = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by_cols if b not in frame.columns]
    if missing or not by_cols:
        raise DataError(
            f"by= names column(s) {missing or by_cols} not in the data; it has columns "
            f"{list(map(str, frame.columns))}"
        )
    groups = frame.groupby(by_cols, sort=True).indices
    rows = frame.drop(columns=by_cols)
    try:  # validated once; an error is raised for the first curve that holds it
        whole = prepare(rows, law, columns, min_points=1, check_outliers=False)
    except DataError:
        for key, index in groups.items():
            try:
                prepare(rows.iloc[index], law, columns, min_points=1)
            except DataError as err:
                where = f"curve {curve_label(key, by)!r} ({', '.join(by_cols)})"
                raise DataError(f"{where}: {err}") from None
        raise
    fits, labels, reasons = [], [], {}
    needed = len(law.parameters) + 2
    for key, index in groups.items():
        label = curve_label(key, by)
        fit_data = _curve_rows(whole, law, index)
        if fit_data.num_points < needed:
            reasons[str(label)] = f"{fit_data.num_points} points < {needed} needed"
        fits.append(fit_data)
        labels.append(label.item() if isinstance(label, np.generic) else label)
    if not fits:
        raise DataError(f"data for law {law.id!r} is empty (no rows)")
    return fits, labels, reasons


def curve_label(key, by):
    """A curve's label: its ``by`` value, or its values joined by ``/`` for several."""
    key = key if isinstance(key, tuple) else (key,)
    return key[0] if isinstance(by, str) else "/".join(map(str, key))


def _curve_rows(whole: FitData, law: Law, index: np.ndarray) -> FitData:
    """The rows ``index`` of validated data as one curve's, its outliers warned of."""
    frame = whole.frame.iloc[index]
    for name in (*law.covariates, law.response):
        col = whole.columns[name]
        warn_outliers(frame[name].to_numpy(), frame.index, column_name(law, name, col))
    return FitData(
        log_x={c: v[index] for c, v in whole.log_x.items()},
        log_y=whole.log_y[index],
        frame=frame,
        columns=whole.columns,
    )


def covariate_frame(law: Law, new_data, columns: Mapping[str, str] | None = None) -> FitData:
    """Validate prediction inputs: each covariate under its mapped column or its own name."""
    try:
        frame = as_frame(new_data)
    except DataError as err:
        raise DataError(f"prediction inputs for law {law.id!r}: {err}") from None
    mapping = {}
    for name in law.covariates:
        mapped = (columns or {}).get(name, name)
        if mapped in frame.columns:
            mapping[name] = mapped
        elif name not in frame.columns:
            raise DataError(
                f"prediction inputs for law {law.id!r} need covariate {name!r}"
                + (f" (fitted from column {mapped!r})" if mapped != name else "")
                + f"; they have columns {list(map(str, frame.columns))}"
            )
    return prepare(frame, law, mapping, require_response=False)


def thin_log_spaced(
    data, column: str, *, by=None, num: int = 40, min_value: float | None = None
) -> pd.DataFrame:
    """Keep about ``num`` rows per curve, log-spaced in ``column`` (e.g. training steps).

    Training logs record the loss every few steps, so a power law in steps fitted to every
    logged point weighs the long tail (most points) far above the early, fast part.  For each
    curve (the groups of ``by``; the whole frame when ``None``) the rows with
    ``column >= min_value`` are kept, and of those the row nearest each of ``num`` targets
    log-spaced between the curve's first and last value (duplicates dropped, so a curve may
    keep fewer than ``num``).

    Parameters
    ----------
    data : DataFrame or dict of arrays
    column : str
        The positive, log-spaced covariate (``"step"``, ``"n_tokens"``, ...).
    by : str or list of str, optional
        Column(s) splitting ``data`` into curves.
    num : int
        Targets per curve.
    min_value : float, optional
        Rows below it are dropped first (e.g. the warm-up steps of a training run).

    Returns
    -------
    DataFrame
        The kept rows, curves in sorted order of ``by``, each sorted by ``column``.
    """
    frame = as_frame(data)
    if column not in frame.columns:
        raise DataError(f"thin_log_spaced: no column {column!r}; the data has {list(frame)}")
    if not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    kept = frame if min_value is None else frame[frame[column] >= min_value]
    values = kept[column].to_numpy(dtype=float)
    if not np.all(np.isfinite(values) & (values > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(values) & (values > 0)))[0])
        raise DataError(
            f"thin_log_spaced: column {column!r} must be finite and > 0 to be log-spaced; "
            f"row {kept.index[bad]!r} has {values[bad]!r}"
        )
    groups = [((), kept)] if by is None else kept.groupby(by, sort=True)
    parts = []
    for _, curve in groups:
        curve = curve.sort_values(column)
        x = curve[column].to_numpy(dtype=float)
        if len(x) < 2:
            parts.append(curve)
            continue
        targets = np.geomspace(x[0], x[-1], num)
        right = np.clip(np.searchsorted(x, targets), 1, len(x) - 1)
        nearer_left = targets - x[right - 1] <= x[right] - targets
        parts.append(curve.iloc[np.unique(np.where(nearer_left, right - 1, right))])
    return pd.concat(parts) if parts else kept.iloc[:0]
