"""Bad input through the public ``bayescale.fit``: every case raises before anything compiles.

Each test asserts the exception type, that the message names what the user must fix (the
column, the offending value or row, and the law), and that the caller's data is untouched.

Cases the current code gets only partly right are kept as strict ``xfail`` tests that state
the intended behaviour; they turn into failures (and the marker must go) once fixed.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import DataError, LawError
from bayescale.data import prepare
from bayescale.laws import catalogue, get_law

COLUMNS = {"n_params": "Model Size"}


def small_frame(n: int = 10, index=None) -> pd.DataFrame:
    """A small valid Chinchilla-style frame; ``n_params`` lives under ``"Model Size"``."""
    return pd.DataFrame(
        {
            "Model Size": np.geomspace(7e7, 1.6e10, n),
            "n_tokens": np.geomspace(5e9, 5e11, n),
            "loss": np.linspace(3.5, 2.1, n),
            "color": ["#faebdd"] * n,  # an unrelated column, as in the Epoch CSV
        },
        index=index,
    )


def fit_fails(data, law="chinchilla", error=DataError, **kwargs) -> str:
    """Call ``bayescale.fit``; assert it raises ``error`` and leaves ``data`` unchanged."""
    kwargs.setdefault("columns", COLUMNS)
    before = data.copy(deep=True) if isinstance(data, pd.DataFrame) else copy.deepcopy(data)
    with pytest.raises(error) as err:
        bayescale.fit(data, law, **kwargs)
    if isinstance(data, pd.DataFrame):
        pd.testing.assert_frame_equal(data, before)
    elif isinstance(data, dict):
        assert data.keys() == before.keys()
        for k in data:
            np.testing.assert_array_equal(np.asarray(data[k]), np.asarray(before[k]))
    return str(err.value)


def assert_names(message: str, *parts: str) -> None:
    missing = [p for p in parts if p not in message]
    assert not missing, f"message {message!r} does not name {missing}"


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [
        ("loss", 3, np.nan),
        ("Model Size", 5, np.nan),
        ("n_tokens", 4, np.inf),
        ("loss", 0, -np.inf),
    ],
)
def test_non_finite_value(column, row, value):
    df = small_frame()
    df.loc[row, column] = value
    msg = fit_fails(df)
    assert_names(msg, f"column {column!r}", f"[{row}]", "'chinchilla'", "non-finite", "NaN or inf")
    if column == "Model Size":
        assert_names(msg, "n_params")  # the law variable it was mapped from


def test_non_finite_rows_are_named_by_index_label():
    df = small_frame(index=[f"run_{i}" for i in range(10)])
    df.loc["run_7", "loss"] = np.nan
    df.loc["run_2", "loss"] = np.nan
    msg = fit_fails(df)
    assert_names(msg, "column 'loss'", "2 non-finite", "'run_2'", "'run_7'", "'chinchilla'")


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [
        ("n_tokens", 2, 0.0),
        ("Model Size", 5, -1e9),
        ("loss", 7, -2.0),
        ("loss", 0, 0.0),
    ],
)
def test_non_positive_value_where_a_log_is_taken(column, row, value):
    df = small_frame()
    df.loc[row, column] = value
    msg = fit_fails(df)
    assert_names(
        msg, f"column {column!r}", f"row {row}", repr(float(value)), "> 0", "log", "'chinchilla'"
    )


def test_non_positive_values_are_counted():
    df = small_frame()
    df.loc[[1, 4, 6], "n_tokens"] = [0.0, -1.0, 0.0]
    msg = fit_fails(df)
    assert_names(msg, "column 'n_tokens'", "3 such value(s)", "[1, 4, 6]", "'chinchilla'")


def test_non_positive_covariate_of_a_formula_law():
    df = small_frame()
    df.loc[2, "Model Size"] = 0.0
    msg = fit_fails(df, law="E + A * n_params**-alpha")
    assert_names(msg, "column 'Model Size'", "n_params", "row 2", "> 0")


# ----------------------------------------------------------------------------- shape


def test_mismatched_lengths_in_a_dict():
    data = {"n_params": [1e8, 1e9, 1e10], "n_tokens": [1e10, 1e11], "loss": [3.0, 2.6, 2.2]}
    msg = fit_fails(data, columns=None)
    assert_names(msg, "mismatched lengths", "'n_params': 3", "'n_tokens': 2", "'loss': 3")


def test_too_few_points_for_the_parameters():
    msg = fit_fails(small_frame(n=4))
    assert_names(msg, "'chinchilla'", "5 parameters", "4 data point(s)", "at least 7")


def test_too_few_points_for_a_two_parameter_law():
    data = {"x": [1.0, 2.0, 3.0], "y": [1.0, 0.8, 0.7]}
    msg = fit_fails(data, law="power_law", columns=None)
    assert_names(msg, "'power_law'", "2 parameters", "3 data point(s)", "at least 4")


def test_empty_dataframe():
    df = small_frame().iloc[:0]
    msg = fit_fails(df)
    assert_names(msg, "'chinchilla'", "empty", "no rows")


def test_empty_dict():
    msg = fit_fails({}, columns=None)
    assert_names(msg, "'chinchilla'", "empty")


def test_two_dimensional_column():
    data = {"n_params": np.ones((10, 2)), "n_tokens": np.ones(10), "loss": np.ones(10)}
    msg = fit_fails(data, columns=None)
    assert_names(msg, "column 'n_params'", "one-dimensional", "(10, 2)")


def test_data_of_an_unsupported_type():
    msg = fit_fails(np.ones((10, 3)), columns=None)
    assert_names(msg, "DataFrame", "dict", "CSV", "ndarray")


def test_csv_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "no_such_runs.csv"
    for data in (missing, str(missing)):
        msg = fit_fails(data)
        assert_names(msg, str(missing), "does not exist")


# ----------------------------------------------------------------------------- laws


def test_unknown_law_id_lists_close_ids():
    msg = fit_fails(small_frame(), law="chinchila", error=LawError)
    assert_names(msg, "unknown law 'chinchila'", "chinchilla")


def test_unknown_law_id_lists_the_catalogue():
    msg = fit_fails(small_frame(), law="no_such_law", error=LawError)
    assert_names(msg, "unknown law 'no_such_law'", *catalogue())


@pytest.mark.parametrize(
    ("formula", "problem"),
    [
        ("E + A * n_params**-", "not a valid expression"),
        ("E + A * n_params**-alpha + os.system('true')", "'os.system' is not allowed"),
        ("E + A * foo(n_params)", "function 'foo' is not allowed"),
        ("E + A * alpha", "has no covariate"),
    ],
)
def test_malformed_formula(formula, problem):
    msg = fit_fails(small_frame(), law=formula, error=LawError)
    assert_names(msg, problem)


def test_missing_law_file(tmp_path):
    missing = tmp_path / "my_law.toml"
    msg = fit_fails(small_frame(), law=str(missing), error=LawError)
    assert_names(msg, str(missing), "does not exist")


def test_unknown_prior_parameter():
    msg = fit_fails(
        small_frame(), error=LawError, model=bayescale.Model(priors={"gamma": "normal(0, 1)"})
    )
    assert_names(msg, "'gamma'", "not a parameter", "'chinchilla'", "alpha", "beta")


# ----------------------------------------------------------------------------- columns


def test_unknown_column():
    df = small_frame().drop(columns="n_tokens")
    msg = fit_fails(df)
    assert_names(msg, "'chinchilla'", "column 'n_tokens'", "'Model Size'", "'loss'", "columns=")


def test_unmapped_column_is_not_found_under_the_law_name():
    msg = fit_fails(small_frame(), columns=None)
    assert_names(msg, "'chinchilla'", "column 'n_params'", "'Model Size'", "columns=")


def test_columns_key_that_is_not_a_law_variable():
    msg = fit_fails(small_frame(), columns={"N": "Model Size"})
    assert_names(msg, "'N'", "not a variable of law 'chinchilla'", "n_params", "n_tokens", "loss")


def test_columns_value_that_is_not_a_column():
    msg = fit_fails(small_frame(), columns={"n_params": "Model Sze"})
    assert_names(msg, "'chinchilla'", "'Model Sze'", "mapped from 'n_params'", "'Model Size'")


def test_columns_value_that_is_not_a_string():
    msg = fit_fails(small_frame(), columns={"n_params": 3})
    assert_names(msg, "'n_params'", "3")


# ----------------------------------------------------------------------------- dtypes


def test_strings_in_a_numeric_column():
    df = small_frame().astype({"n_tokens": object})
    df.loc[6, "n_tokens"] = "abc"
    msg = fit_fails(df)
    assert_names(msg, "column 'n_tokens'", "'chinchilla'", "numeric", "row 6", "'abc'", "object")


def test_string_column_reports_the_first_bad_row():
    df = small_frame()
    df["loss"] = df["loss"].astype(str)
    df.loc[4, "loss"] = "2.5 nats"
    msg = fit_fails(df)
    assert_names(msg, "column 'loss'", "row 4", "'2.5 nats'", "'chinchilla'")


def test_bool_column():
    df = small_frame()
    df["loss"] = df["loss"] > 2.0  # all True
    msg = fit_fails(df)
    assert_names(msg, "column 'loss'", "'chinchilla'", "numeric", "bool", "row 0", "True")


# ----------------------------------------------------------------------------- accepted input


def test_prepare_accepts_valid_input_without_touching_it():
    """The counterpart of the cases above: a valid frame passes and is not modified."""
    law = get_law("chinchilla")
    df = small_frame()
    df.loc[3, "color"] = None  # NaN in a column the law does not use is irrelevant
    before = df.copy(deep=True)
    fd = prepare(df, law, COLUMNS)
    pd.testing.assert_frame_equal(df, before)
    assert fd.columns == {"n_params": "Model Size", "n_tokens": "n_tokens", "loss": "loss"}
    np.testing.assert_allclose(fd.log_x["n_params"], np.log(df["Model Size"]))
    np.testing.assert_allclose(fd.log_y, np.log(df["loss"]))
    assert list(fd.frame.columns) == ["n_params", "n_tokens", "loss"]


def test_prepare_accepts_numeric_strings_and_nullable_floats():
    law = get_law("chinchilla")
    df = small_frame()
    df["loss"] = df["loss"].astype(str)
    df["n_tokens"] = pd.array(df["n_tokens"], dtype="Float64")
    fd = prepare(df, law, COLUMNS)
    np.testing.assert_allclose(fd.log_y, np.log(np.linspace(3.5, 2.1, 10)))


# ----------------------------------------------------------------------------- known gaps

# Messages that do not yet name the law (the error is raised before the law is known to
# the frame conversion), and dtypes that are silently coerced.  Suggested fixes are in the
# hand-over report; each test states the intended behaviour.
_LAW_NOT_NAMED = "bug: data.as_frame raises without the law's id"


def test_mismatched_lengths_message_names_the_law():
    data = {"n_params": [1e8, 1e9, 1e10], "n_tokens": [1e10, 1e11], "loss": [3.0, 2.6, 2.2]}
    assert_names(fit_fails(data, columns=None), "'chinchilla'")


def test_two_dimensional_column_message_names_the_law():
    data = {"n_params": np.ones((10, 2)), "n_tokens": np.ones(10), "loss": np.ones(10)}
    assert_names(fit_fails(data, columns=None), "'chinchilla'")


def test_missing_csv_message_names_the_law(tmp_path):
    assert_names(fit_fails(tmp_path / "no_such_runs.csv"), "'chinchilla'")


def test_columns_value_type_message_names_the_law():
    assert_names(fit_fails(small_frame(), columns={"n_params": 3}), "'chinchilla'")


def test_bool_column_reports_the_value_actually_held():
    df = small_frame()
    df["loss"] = df["loss"] < 3.0  # row 0 holds False
    assert_names(fit_fails(df), "row 0 holds False")


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_complex_column_is_rejected():
    df = small_frame()
    df["loss"] = df["loss"] + 0.5j
    with pytest.raises(DataError, match="column 'loss'"):
        prepare(df, get_law("chinchilla"), COLUMNS)  # not fit(): with the bug it would sample


def test_datetime_column_is_rejected():
    df = small_frame()
    df["n_tokens"] = pd.to_datetime(df["n_tokens"] * 1e3)
    with pytest.raises(DataError, match="column 'n_tokens'"):
        prepare(df, get_law("chinchilla"), COLUMNS)


def test_duplicate_column_names_are_a_data_error():
    df = small_frame()
    df = pd.concat([df, df[["loss"]]], axis=1)
    assert list(df.columns).count("loss") == 2
    msg = fit_fails(df)
    assert_names(msg, "'loss'", "'chinchilla'")
