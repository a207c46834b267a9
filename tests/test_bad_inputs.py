"""Every bad input answered at the boundary (issue 19): each case asserts the exception (or
warning) type and that its message names the argument, column, value or file at fault.

Cases that need a fitted result share one MAP fit of a two-parameter law (one small
compile); every other case fails before anything is traced.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import MAP, NUTS, DataError, DataWarning, Laplace, Model
from bayescale.cli import main
from bayescale.data import covariate_frame, prepare
from bayescale.laws import FormulaError, LawError, get_law, law_from_toml
from bayescale.laws.formula import parse_formula

FAST = MAP(num_starts=1, num_steps=50)


def _chinchilla_frame(n=20, seed=0):
    rng = np.random.default_rng(seed)
    n_params = np.geomspace(1e7, 1e10, n)
    n_tokens = np.geomspace(1e9, 1e11, n)[rng.permutation(n)]
    loss = 1.7 + 400 * n_params**-0.34 + 400 * n_tokens**-0.28
    return pd.DataFrame({"N": n_params, "D": n_tokens, "loss": loss})


def _law_frame():
    return _chinchilla_frame().rename(columns={"N": "n_params", "D": "n_tokens"})


def _kaplan_frame(n=12):
    n_params = np.geomspace(1e6, 1e9, n)
    return pd.DataFrame({"n_params": n_params, "loss": (8.8e13 / n_params) ** 0.076})


@pytest.fixture(scope="module")
def result():
    """One small MAP fit of ``kaplan_n`` (the only compile in this file)."""
    return bayescale.fit(_kaplan_frame(), "kaplan_n", inference=FAST, warn=False)


@pytest.fixture(scope="module")
def saved(result, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "fit.nc"
    result.save(path)
    return path


# --------------------------------------------------- 1. silent wrong answers: data
@pytest.mark.parametrize(
    "columns, message",
    [
        ({"n_params": "N", "n_tokens": "N", "loss": "loss"}, r"'n_params' and 'n_tokens'.*'N'"),
        ({"n_params": "N", "n_tokens": "D", "loss": "N"}, r"'n_params' and 'loss'.*'N'"),
        ({"n_params": "n_tokens"}, r"'n_params' and 'n_tokens'.*'n_tokens'"),
    ],
)
def test_two_variables_mapped_to_one_column_are_refused(columns, message):
    data = _chinchilla_frame() if "N" in columns.values() else _law_frame()
    with pytest.raises(DataError, match=message):
        bayescale.fit(data, "chinchilla", columns=columns, inference=FAST)


@pytest.mark.parametrize(
    "columns, error, message",
    [
        ({"n_params": "N", "n_tokens": "N"}, DataError, r"curve 'c0'.*'n_params' and 'n_tokens'"),
        ("N", TypeError, r"columns= must be a mapping.*'N'"),
    ],
)
def test_bad_columns_of_a_by_fit_are_named(columns, error, message):
    data = pd.concat([_chinchilla_frame().assign(curve=f"c{i}") for i in range(2)])
    with pytest.raises(error, match=message):
        bayescale.fit(data, "chinchilla", by="curve", columns=columns, inference=FAST)


@pytest.mark.parametrize(
    "column, row, value",
    [("n_params", 7, 1e308), ("n_params", 3, 1e-30), ("loss", 12, 2.5e40), ("n_tokens", 0, 1e25)],
)
def test_a_value_decades_off_its_column_warns_naming_column_row_value(column, row, value):
    data = _law_frame()
    data.loc[row, column] = value
    with pytest.warns(
        DataWarning, match=rf"column .{column}.*row {row} holds {re.escape(repr(value))}"
    ):
        prepare(data, get_law("chinchilla"))


def test_a_wide_log_spaced_column_and_prediction_inputs_do_not_warn():
    law = get_law("chinchilla")
    data = _law_frame()
    data["n_params"] = np.geomspace(1e3, 1e15, len(data))  # wide but evenly covered
    far = pd.DataFrame({"n_params": [1e8, 1e9, 1e20], "n_tokens": [1e10, 1e10, 1e10]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        prepare(data, law)
        covariate_frame(law, far)  # extrapolating far is what prediction is for


def test_data_warning_is_a_user_warning():
    assert issubclass(DataWarning, UserWarning)


def test_fit_warns_for_a_value_decades_off_its_column():
    data = _kaplan_frame()
    data.loc[4, "n_params"] = 1e308
    with pytest.warns(DataWarning, match=r"column 'n_params'.*row 4 holds 1e\+308"):
        bayescale.fit(data, "kaplan_n", inference=FAST, warn=False)


@pytest.mark.parametrize("by", [None, "curve"])
def test_data_warning_points_at_the_callers_line(by):
    data = _kaplan_frame()
    data["curve"] = ["a", "b"] * (len(data) // 2) + ["a"] * (len(data) % 2)
    data.loc[4, "n_params"] = 1e308
    with pytest.warns(DataWarning) as record:
        bayescale.fit(data, "kaplan_n", by=by, inference=FAST, warn=False)
    assert [w.filename for w in record if w.category is DataWarning] == [__file__]


def _with(row, column, value):
    data = _kaplan_frame().astype({column: object})
    data.loc[row, column] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (_with(4, "n_params", "abc"), r"column 'n_params'.*row 4 holds 'abc'"),
        (_with(5, "loss", -1.0), r"column 'loss'.*> 0.*row 5 holds -1\.0"),
        (_with(6, "loss", np.nan), r"column 'loss'.*non-finite.*\[6\]"),
        (_with(2, "n_params", np.inf), r"column 'n_params'.*non-finite.*\[2\]"),
        ({"n_params": [1.0, 2.0, 3.0], "loss": [1.0, 2.0]}, r"'n_params': 3, 'loss': 2"),
        ([1.0, 2.0, 3.0], r"data must be .*got list"),
        (_kaplan_frame().head(3), r"3 data point\(s\).*need at least 4"),
        (_kaplan_frame().rename(columns={"loss": "Loss"}), r"needs a column 'loss'.*'Loss'"),
    ],
)
def test_bad_data_is_named(data, message):
    with pytest.raises(DataError, match=message):
        bayescale.fit(data, "kaplan_n", inference=FAST)


# --------------------------------------------------- 2. raw internals: arguments
@pytest.mark.parametrize(
    "seed, error, message",
    [
        (-1, ValueError, r"seed .*-1"),
        (2**63, ValueError, r"seed .*9223372036854775808"),
        (2**70, ValueError, r"seed .*1180591620717411303424"),
        (2.5, TypeError, r"seed .*float"),
        ("0", TypeError, r"seed .*str"),
        (True, TypeError, r"seed .*bool"),
        (None, TypeError, r"seed .*NoneType"),
        (np.float64(1.0), TypeError, r"seed .*float"),
    ],
)
def test_a_bad_seed_is_named(seed, error, message):
    with pytest.raises(error, match=message):
        bayescale.fit(_law_frame(), "chinchilla", inference=FAST, seed=seed)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: NUTS(num_chains=2.5), "num_chains=2.5"),
        (lambda: NUTS(num_chains="4"), "num_chains='4'"),
        (lambda: NUTS(num_chains=0), "num_chains=0"),
        (lambda: NUTS(num_chains=True), "num_chains=True"),
        (lambda: NUTS(num_samples=-5), "num_samples=-5"),
        (lambda: MAP(num_steps=1.5), "num_steps=1.5"),
        (lambda: Laplace(num_chains="2"), "num_chains='2'"),
    ],
)
def test_a_bad_count_is_named(make, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        make()


@pytest.mark.parametrize(
    "columns, error, message",
    [
        ("Model Size", TypeError, r"columns= must be a mapping.*'Model Size'"),
        (["n_params"], TypeError, r"columns= must be a mapping.*\['n_params'\]"),
        ({"n_params": 3}, DataError, r"columns=.*'n_params' -> 3"),
        ({"width": "N"}, DataError, r"columns= maps 'width'"),
        ({"n_params": "Model Size"}, DataError, r"'Model Size' \(mapped from 'n_params'\)"),
    ],
)
def test_bad_columns_are_named(columns, error, message):
    with pytest.raises(error, match=message):
        bayescale.fit(_chinchilla_frame(), "chinchilla", columns=columns, inference=FAST)


@pytest.mark.parametrize(
    "quantiles, error, message",
    [
        (0.5, TypeError, r"quantiles .*0\.5"),
        ("0.5", TypeError, r"quantiles .*'0\.5'"),
        ((0.0, 0.5), ValueError, r"quantiles .*\(0, 1\).*0\.0"),
        ((0.5, 1.0), ValueError, r"quantiles .*\(0, 1\).*1\.0"),
        ((), ValueError, r"quantiles .*\[\]"),
        (("a",), ValueError, r"quantiles .*'a'"),
    ],
)
def test_bad_quantiles_are_named(result, quantiles, error, message):
    with pytest.raises(error, match=message):
        result.predict({"n_params": [1e9]}, quantiles=quantiles)


def test_ragged_quantiles_are_named(result):
    with pytest.raises(TypeError, match=r"quantiles .*\[\(0\.1,\), \(0\.2, 0\.3\)\]"):
        result.predict({"n_params": [1e9]}, quantiles=[(0.1,), (0.2, 0.3)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"seed": -1}, ValueError, r"seed .*-1"),
        ({"seed": 2.5}, TypeError, r"seed .*2\.5"),
        ({"kind": "median"}, ValueError, r"kind .*'median'"),
        ({"law_error": -1}, ValueError, r"law_error .*-1"),
        ({"new_data": {"flops": [1.0]}}, DataError, r"covariate 'n_params'.*\['flops'\]"),
        ({"new_data": {"n_params": [-1.0]}}, DataError, r"column 'n_params'.*-1\.0"),
    ],
)
def test_bad_prediction_arguments_are_named(result, kwargs, error, message):
    kwargs = {"new_data": {"n_params": [1e9]}, **kwargs}
    with pytest.raises(error, match=message):
        result.predict(**kwargs)


def test_bad_summary_quantiles_are_named(result):
    with pytest.raises(TypeError, match=r"quantiles .*0\.95"):
        result.summary(quantiles=0.95)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"inference": "nuts"}, TypeError, r"inference='nuts'"),
        ({"model": "normal"}, TypeError, r"model='normal'"),
        ({"warn": "no"}, TypeError, r"warn='no'"),
        ({"chains": 2}, TypeError, r"'chains'"),
        ({"inference": NUTS(chunk_size=2)}, ValueError, r"NUTS\(chunk_size=2\)"),
        ({"by": "grp"}, DataError, r"by= names column\(s\) \['grp'\]"),
    ],
)
def test_bad_fit_arguments_are_named(kwargs, error, message):
    kwargs = {"inference": FAST, **kwargs}
    with pytest.raises(error, match=message):
        bayescale.fit(_kaplan_frame(), "kaplan_n", **kwargs)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Model(likelihood="cauchy"), ValueError, r"likelihood='cauchy'"),
        (lambda: Model(noise="x"), ValueError, r"noise='x'"),
        (lambda: Model(priors={"alpha_N": "gauss(1)"}), ValueError, r"'alpha_N': 'gauss\(1\)'"),
        (lambda: Model(priors={"a": "lognormal(0, -1)"}), ValueError, r"scale -1 must be > 0"),
        (lambda: Model(pooled="alpha"), TypeError, r"pooled='alpha'"),
        (lambda: MAP(flat_priors="yes"), TypeError, r"flat_priors='yes'"),
    ],
)
def test_bad_model_options_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "law, message",
    [
        (42, r"got int"),
        ("no_such_law", r"unknown law 'no_such_law'"),
        (Model(priors={"beta": "lognormal(0, 1)"}), r"prior given for 'beta'"),
    ],
)
def test_bad_laws_and_priors_are_named(law, message):
    kwargs = {"model": law} if isinstance(law, Model) else {}
    with pytest.raises(LawError, match=message):
        bayescale.fit(_kaplan_frame(), "kaplan_n" if kwargs else law, inference=FAST, **kwargs)


# --------------------------------------------------- 3. files
def test_load_of_a_missing_file_names_it(tmp_path):
    path = tmp_path / "nothing.nc"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        bayescale.load(path)


@pytest.mark.parametrize("content", [b"not a netCDF file\n" * 10, b""])
def test_load_of_a_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "corrupt.nc"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"corrupt\.nc.* not a saved bayescale result"):
        bayescale.load(path)


def test_load_of_other_netcdf_names_it(tmp_path):
    import xarray as xr

    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"other\.nc.* not a bayescale result"):
        bayescale.load(path)


def test_save_into_a_missing_folder_names_it_and_writes_nothing(result, tmp_path):
    folder = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        result.save(folder / "r.nc")
    assert not folder.exists()


def test_fit_of_a_missing_csv_names_it(tmp_path):
    with pytest.raises(DataError, match=r"missing\.csv.*does not exist"):
        bayescale.fit(tmp_path / "missing.csv", "chinchilla", inference=FAST)


# --------------------------------------------------- 4. laws
@pytest.mark.parametrize(
    "formula, message",
    [
        ("1e999 * n_params**-alpha", r"constant 1e999 is not a finite number"),
        ("E + A * n_params**-1e400", r"constant 1e400 is not a finite number"),
        ("E + A / 0 * n_params", r"division by 0"),
        ("E + A / (1 - 1) * n_params", r"division by 1 - 1"),
        ("E + A * n_params**(-alpha / 0.0)", r"division by 0\.0"),
        ("E + A / (1e200 * 1e200) * n_params", r"division by 1e200 \* 1e200"),
    ],
)
def test_bad_constants_are_refused_when_parsed(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)
    with pytest.raises(LawError, match=message):  # and by fit, before any compile
        bayescale.fit(_law_frame(), formula, inference=FAST)


TOML = """id = "mine"
formula = "E + A * n_params**-alpha"
response = "loss"
[parameters.E]
prior = "lognormal(0, 1)"
[parameters.A]
prior = "lognormal(0, 5)"
[parameters.alpha]
prior = "lognormal(-1, 1)"
"""


@pytest.mark.parametrize("key", ["response", "formula"])
def test_a_law_file_without_a_required_key_names_file_and_key(tmp_path, key):
    path = tmp_path / "mine.toml"
    path.write_text("\n".join(line for line in TOML.splitlines() if not line.startswith(key)))
    with pytest.raises(LawError, match=rf"mine\.toml.*'{key}'"):
        law_from_toml(path)


def test_a_law_file_that_is_not_toml_names_it(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("id = \n")
    with pytest.raises(LawError, match=r"broken\.toml.*not valid TOML"):
        bayescale.fit(_law_frame(), path, inference=FAST)


def test_a_missing_law_file_names_it(tmp_path):
    with pytest.raises(LawError, match=r"absent\.toml"):
        law_from_toml(tmp_path / "absent.toml")


# --------------------------------------------------- 5. the command line
@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "runs.csv"
    _kaplan_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def no_fit(monkeypatch):
    """Makes any fit an error: the cases below must fail before fitting."""

    def refuse(*args, **kwargs):
        raise AssertionError("the command fitted before checking its arguments")

    monkeypatch.setattr(bayescale, "fit", refuse)


def _error(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--out", "{tmp}/nodir/r.nc"], "nodir"),
        (["--out", "{tmp}"], r"--out .* is a folder"),
        (["--out", "{tmp}/r.nc", "--plot", "{tmp}/fig.xyz"], r"--plot .*fig\.xyz.*\.png"),
        (["--out", "{tmp}/r.nc", "--plot", "{tmp}/fig"], r"--plot .*fig'.*\.png"),
    ],
)
def test_cli_fit_checks_output_paths_before_fitting(capsys, csv, tmp_path, no_fit, extra, named):
    argv = ["fit", csv, "--law", "kaplan_n", *(e.format(tmp=tmp_path) for e in extra)]
    assert re.search(named, _error(capsys, argv))


@pytest.mark.parametrize("content", ["", "\n\n", "\xff\xfe\x00 garbage\n\xff,\x00\n"])
def test_cli_unreadable_csv_names_the_file(capsys, tmp_path, no_fit, content):
    path = tmp_path / "unreadable.csv"
    path.write_bytes(content.encode("latin-1"))
    err = _error(capsys, ["fit", path, "--law", "kaplan_n", "--out", tmp_path / "r.nc"])
    assert "unreadable.csv" in err


def test_cli_header_only_csv_is_refused(capsys, tmp_path, no_fit):
    path = tmp_path / "header.csv"
    path.write_text("n_params,loss\n")
    err = _error(capsys, ["fit", path, "--law", "kaplan_n", "--out", tmp_path / "r.nc"])
    assert re.search(r"header\.csv.*no rows", err)


@pytest.mark.parametrize(
    "at, named",
    [
        ("flops=1", r"--at names 'flops'.*kaplan_n.*n_params"),
        ("n_params=1e9,flops=1", r"--at names 'flops'"),
        ("n_params=abc", r"n_params = 'abc' is not a number"),
        ("n_params", r"--at 'n_params' must be of the form NAME=VALUE"),
    ],
)
def test_cli_predict_names_a_bad_point(capsys, saved, at, named):
    assert re.search(named, _error(capsys, ["predict", saved, "--at", at]))


def test_cli_predict_of_a_corrupt_result_names_the_file(capsys, tmp_path):
    path = tmp_path / "junk.nc"
    path.write_bytes(b"junk" * 100)
    assert "junk.nc" in _error(capsys, ["predict", path, "--at", "n_params=1e9"])


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--seed", "-1"], r"seed .*-1"),
        (["--chains", "0"], r"num_chains=0"),
        (["--column", "n_params=Size"], r"'Size' \(mapped from 'n_params'\)"),
        (["--law", "E + A / 0 * n_params"], r"division by 0"),
        (["--law", "{tmp}/nolaw.toml"], r"nolaw\.toml"),
    ],
)
def test_cli_fit_names_a_bad_setting_before_fitting(capsys, csv, tmp_path, extra, named):
    argv = ["fit", csv, "--law", "kaplan_n", "--out", tmp_path / "r.nc"]
    argv += [e.format(tmp=tmp_path) for e in extra]
    assert re.search(named, _error(capsys, argv))
    assert not (tmp_path / "r.nc").exists()


@pytest.mark.parametrize("command", ["plan", "backtest"])
def test_cli_plan_and_backtest_check_out_before_working(capsys, tmp_path, saved, csv, command):
    first = saved if command == "plan" else csv
    argv = [command, first, "--out", tmp_path / "nodir" / "t.csv"]
    argv += ["--flops", "1e20"] if command == "plan" else ["--law", "kaplan_n"]
    assert "nodir" in _error(capsys, argv)


def test_cli_plot_checks_the_extension_before_loading(capsys, tmp_path):
    missing = tmp_path / "missing.nc"  # never read: the extension is refused first
    err = _error(capsys, ["plot", missing, "-o", tmp_path / "fig.xyz"])
    assert re.search(r"--output .*fig\.xyz.*\.png", err)
