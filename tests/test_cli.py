"""The ``bayescale`` command line, run in-process through :func:`bayescale.cli.main` (and in
child processes where what is imported is the point)."""

import contextlib
import io
import json
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

import pytest
from conftest import FIT_SETTINGS

import bayescale
from bayescale import Result
from bayescale.cli import main
from bayescale.simulate import simulate

# FIT_SETTINGS as options: kaplan_n's program in tests/test_plot.py and test_recovery.py,
# compiled once per CI run
TINY = [f"--{k[4:]}={v}" for k, v in FIT_SETTINGS.items()]  # --chains=2 --warmup=...


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("error: ")
    return err[0]


def test_laws_lists_the_catalogue(capsys):
    assert main(["laws"]) == 0
    out = capsys.readouterr().out
    assert "chinchilla" in out and "kaplan_n" in out
    assert "E + A * n_params**-alpha + B * n_tokens**-beta" in out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run ``bayescale demo`` once: (output folder, stdout)."""
    out_dir = tmp_path_factory.mktemp("demo")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["demo", "--out-dir", str(out_dir), *TINY]) == 0
    return out_dir, stdout.getvalue()


def test_demo_writes_plot_and_result(demo):
    out_dir, out = demo
    png = out_dir / "demo_fit.png"
    nc = out_dir / "demo_result.nc"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    assert str(png) in out and str(nc) in out
    assert "status:" in out and "max_rhat" in out and "alpha_N" in out
    result = bayescale.load(nc)
    assert result.law.id == "kaplan_n"
    assert result.num_chains == 2 and result.num_draws == FIT_SETTINGS["num_samples"]
    # the demo fits the reference value it simulated from
    assert abs(float(result.datatree.posterior["alpha_N"].median()) - 0.076) < 0.005


def test_fit_predict_plot_round_trip(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    simulate("kaplan_n", seed=1).rename(columns={"n_params": "N"}).to_csv(csv, index=False)
    nc = tmp_path / "fit.nc"
    png = tmp_path / "fit.png"
    argv = ["fit", str(csv), "--law", "kaplan_n", "--column", "n_params=N", *TINY]
    assert main([*argv, "--seed", "3", "--out", str(nc), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "status:" in out and "alpha_N" in out and str(nc) in out
    assert png.read_bytes().startswith(b"\x89PNG")
    result = bayescale.load(nc)
    assert result.columns == {"n_params": "N", "loss": "loss"}
    assert int(result.datatree.attrs["seed"]) == 3

    # covariates by the fit's column name (N) or the law's name (n_params)
    assert main(["predict", str(nc), "--at", "N=1e10", "--at", "N=1e8", "--kind", "mean"]) == 0
    header, first, second = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ["N", "mean", "q5"]
    beyond = 10 - np.log10(float(result.datatree.constant_data["n_params"].max()))
    assert f"{beyond:.4g}" in first and "N +1" in first  # a decade past the data (<= 1e9)
    assert "interpolation" in second
    expected = result.predict({"n_params": [1e10]}, kind="mean")["q50"].iloc[0]
    assert f"{expected:.4g}" in first
    assert main(["predict", str(nc), "--at", "n_params=1e10", "--kind", "mean"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[0] == "n_params"
    assert f"{expected:.4g}" in row

    pdf = tmp_path / "again.pdf"
    assert main(["plot", str(nc), "-o", str(pdf), "--extend", "2"]) == 0
    assert pdf.read_bytes().startswith(b"%PDF")


def test_bad_column_mapping_is_one_error_line(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    simulate("kaplan_n", num_points=10).to_csv(csv, index=False)
    argv = ["fit", str(csv), "--law", "kaplan_n", "--column", "n_params=Model Size"]
    assert main([*argv, "--out", str(tmp_path / "x.nc")]) == 2
    line = _error_line(capsys)
    assert "'Model Size'" in line
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fit", "{tmp}/missing.csv", "--law", "kaplan_n", "--out", "{tmp}/x.nc"], "missing.csv"),
        (["fit", "{csv}", "--law", "no_such_law", "--out", "{tmp}/x.nc"], "no_such_law"),
        (["fit", "{csv}", "--law", "kaplan_n", "--column", "n_params", "--out", "x"], "--column"),
        (["predict", "{tmp}/nothing.nc", "--at", "n_params=1"], "nothing.nc"),
        (["fit", "{csv}", "--law", "kaplan_n", "--likelihood", "cauchy", "--out", "x"], "cauchy"),
        (["demo", "--law", "E + A * n_params**-alpha", "--out-dir", "{tmp}"], "reference"),
    ],
)
def test_input_errors_exit_2_without_traceback(tmp_path, capsys, argv, needle):
    csv = tmp_path / "runs.csv"
    simulate("kaplan_n", num_points=10).to_csv(csv, index=False)
    argv = [a.format(tmp=tmp_path, csv=csv) for a in argv]
    assert main(argv) == 2
    assert needle in _error_line(capsys)


def test_predict_rejects_malformed_points(demo, capsys):
    nc = demo[0] / "demo_result.nc"
    assert main(["predict", str(nc), "--at", "n_params=big"]) == 2
    assert "'big'" in _error_line(capsys)
    assert main(["predict", str(nc), "--at", "n_tokens=1e9"]) == 2
    assert "n_params" in _error_line(capsys)
    assert main(["predict", str(nc), "--at", "n_params=1e9", "--at", "N=1e8,x=2"]) == 2
    assert "same covariates" in _error_line(capsys)


def test_fit_options_reach_the_fit(tmp_path, capsys):
    csv, nc = tmp_path / "runs.csv", tmp_path / "map.nc"
    simulate("kaplan_n", num_points=12, seed=1).to_csv(csv, index=False)
    argv = ["fit", str(csv), "--law", "kaplan_n", "--method", "map", "--likelihood", "huber"]
    assert main([*argv, "--discrepancy", "none", "--out", str(nc)]) == 0
    attrs = bayescale.load(nc).datatree.attrs
    assert (attrs["method"], attrs["likelihood"]) == ("map", "huber")
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--discrepancy", "ar1", "--out", str(nc)])
    assert exc.value.code == 2


def test_fit_report_states_the_unit_the_law_reads_x_in(tmp_path, capsys):
    csv = tmp_path / "curve.csv"
    x = np.geomspace(1e6, 1e10, 12)  # starts at 1e6: read in units of 1e6
    pd.DataFrame({"x": x, "y": 2.0 + 5.0 * (x / 1e6) ** -0.5}).to_csv(csv, index=False)
    argv = ["fit", str(csv), "--law", "power_law_offset", "--method", "map"]
    assert main([*argv, "--out", str(tmp_path / "map.nc")]) == 0
    assert "read in units of x = 1e+06" in capsys.readouterr().out


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["fit", "runs.csv"])  # --law and --out are required
    assert exc.value.code == 2


# The curves, likelihood, noise model and draws of tests/test_check.py's batched backtest:
# `fit --by` and `backtest` below run its compiled sampler (6 curves, <= 32 points each).
BATCH = ["--likelihood", "normal", "--noise", "loglinear", "--discrepancy", "none"]
BATCH += ["--chains", "2", "--warmup", "200", "--samples", "200"]


def _curves_csv(tmp_path):
    parts = []
    for i in range(6):
        params = {"E": 2.0 + 0.1 * i, "A": 5.0, "alpha": 0.4 + 0.04 * i}
        df = simulate("power_law_offset", params=params, noise=0.01, seed=100 + i)
        parts.append(df.rename(columns={"x": "step", "y": "loss"}).assign(run=f"r{i}"))
    csv = tmp_path / "curves.csv"
    pd.concat(parts).to_csv(csv, index=False)
    return csv


def test_fit_by_column_uses_the_batched_path(tmp_path, capsys):
    csv = _curves_csv(tmp_path)
    out = tmp_path / "runs.nc"
    argv = ["fit", str(csv), "--law", "power_law_offset", "--by", "run", "--keep", "100"]
    argv += ["--column", "x=step", "--column", "y=loss"]
    code = main([*argv, "--out", str(out), *BATCH])
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "6 fits by run" in text and out.is_file()
    assert "np.str_" not in captured.err  # labels of fits that did not converge, as text
    # concise tables: 4 significant digits, ESS as integers, no numpy reprs
    decimals = re.findall(r"\d+\.\d+", text)
    assert decimals and max(len(d.replace(".", "").lstrip("0")) for d in decimals) <= 4
    assert "np." not in text
    ess = text.split("min_ess_bulk")[1].splitlines()[1].split()
    assert all(v.isdigit() for v in ess[2:4])  # run, max_rhat, min_ess_bulk, min_ess_tail
    labels = [f"r{i}" for i in range(6)]
    import xarray as xr

    with xr.open_datatree(out, engine="h5netcdf") as dt:
        assert list(dt.posterior["run"].values) == labels
    loaded = bayescale.load(out)
    assert isinstance(loaded, bayescale.Result) and loaded.by == "run" and loaded.labels == labels
    assert loaded.likelihood == "normal+loglinear"  # --likelihood, --noise, --discrepancy
    assert loaded.datatree.posterior.sizes["draw"] == 100
    assert (loaded.diagnostics["num_draws"] == 2 * 200).all()
    # predict and plot take one fit of the batch with --fit
    capsys.readouterr()
    assert main(["predict", str(out), "--at", "step=1e3", "--kind", "mean"]) == 2
    line = _error_line(capsys)
    assert "--fit" in line and "6 fits" in line and ", ".join(labels[:5]) in line
    assert main(["predict", str(out), "--fit", "r7", "--at", "step=1e3"]) == 2
    assert "'r7'" in _error_line(capsys)
    assert main(["predict", str(out), "--fit", "r1", "--at", "step=1e3", "--kind", "mean"]) == 0
    table = capsys.readouterr().out
    expect = loaded["r1"].predict({"x": [1e3]}, kind="mean")["q50"].iloc[0]
    assert f"{expect:.4g}" in table
    png = tmp_path / "r2.png"
    assert main(["plot", str(out), "--fit", "r2", "-o", str(png)]) == 0 and png.is_file()


def test_plan_allocation_and_next_runs(tmp_path, capsys):
    """``bayescale plan``: the allocation at a budget and the chosen runs (saved as CSV),
    from a saved posterior (draws around Epoch's Chinchilla constants, no sampling)."""
    import json

    import pandas as pd
    from arviz_base import from_dict

    from bayescale.laws import get_law

    law = get_law("chinchilla")
    rng = np.random.default_rng(0)
    center = {"E": 1.817, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366, "sigma": 0.02}
    draws = {k: v * np.exp(0.05 * rng.standard_normal((2, 500))) for k, v in center.items()}
    columns = {c: c for c in (*law.covariates, law.response)}
    attrs = {"law": json.dumps(law.to_spec()), "likelihood": "normal"}
    dt = from_dict({"posterior": draws}, attrs={"/": {**attrs, "columns": json.dumps(columns)}})
    nc = Result(dt, law, "normal", columns).save(tmp_path / "posterior.nc")
    n = np.geomspace(1e8, 3e9, 6)
    cands = pd.DataFrame(
        [(a, a * r) for a in n for r in (5, 20, 80)], columns=["n_params", "n_tokens"]
    )
    cands.to_csv(tmp_path / "candidates.csv", index=False)
    out_csv = tmp_path / "design.csv"
    argv = ["plan", str(nc), "--flops", "5.76e23", "--target", "n_opt@1e22"]
    argv += ["--candidates", str(tmp_path / "candidates.csv"), "--budget", "3e21", "--k", "2"]
    assert main([*argv, "--num-outer", "32", "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "tokens_per_param" in out and "5.76e+23" in out
    assert "next runs for target n_opt@1e+22" in out
    design = pd.read_csv(out_csv)
    assert 1 <= len(design) <= 2 and design["cost"].sum() <= 3e21
    # a target without candidates is an input error: one line, exit status 2
    assert main(["plan", str(nc), "--target", "n_opt@1e22"]) == 2
    assert "--candidates" in _error_line(capsys)
    assert (
        main(
            [
                "plan",
                str(nc),
                "--flops",
                "1e22",
                "--target",
                "n_best@1e22",
                "--candidates",
                str(tmp_path / "candidates.csv"),
                "--budget",
                "1e21",
            ]
        )
        == 2
    )
    assert "QUANTITY" in _error_line(capsys)


def test_backtest_prints_the_table(tmp_path, capsys):
    csv = _curves_csv(tmp_path)
    table = tmp_path / "table.csv"
    argv = ["backtest", str(csv), "--law", "power_law_offset", "--by", "run"]
    argv += ["--column", "x=step", "--column", "y=loss", "--fit-fraction", "0.1"]
    assert main([*argv, *BATCH, "--out", str(table)]) == 0
    out = capsys.readouterr().out
    assert "coverage_90" in out and "baseline_rmse_log" in out and "overall" in out
    saved = pd.read_csv(table, index_col=0)
    assert list(saved.index) == [f"r{i}" for i in range(6)] + ["overall"]
    assert (saved["num_held_out"] > 0).all() and (saved["num_fit"] >= 5).all()

    # exactly one split rule; a bad one is one error line, exit status 2
    assert main([*argv, "--fit-below", "x=100"]) == 2
    assert "exactly one of --fit-fraction and --fit-below" in _error_line(capsys)


def test_derive_a_column_then_fit(tmp_path, capsys):
    """``--derive n_tokens="flops / (6 * n_params)"``: the column the law needs, computed
    from two the CSV has (MAP: the plumbing is the point)."""
    data = simulate("kaplan_d", num_points=12, seed=2)
    n_params = np.geomspace(1e7, 1e9, len(data))
    csv = tmp_path / "runs.csv"
    data.assign(n_params=n_params, flops=6 * n_params * data["n_tokens"]).drop(
        columns="n_tokens"
    ).to_csv(csv, index=False)
    nc = tmp_path / "d.nc"
    argv = ["fit", str(csv), "--law", "kaplan_d", "--method", "map", "--out", str(nc)]
    assert main([*argv, "--derive", "n_tokens=flops / (6 * n_params)", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_points"] == 12 and report["law"] == "kaplan_d"
    fitted = bayescale.load(nc).datatree.constant_data["n_tokens"].values.ravel()
    np.testing.assert_allclose(fitted, data["n_tokens"], rtol=1e-12)
    # errors name the expression and the unknown column, before any fit
    assert main([*argv, "--derive", "n_tokens=flops / (6 * N)"]) == 2
    line = _error_line(capsys)
    assert "'flops / (6 * N)'" in line and "unknown column 'N'" in line
    assert main([*argv, "--derive", "n_tokens=flops.real"]) == 2
    assert "flops.real" in _error_line(capsys)
    assert main([*argv, "--derive", "flops / 6"]) == 2
    assert 'NAME="EXPRESSION"' in _error_line(capsys)


def test_json_output_is_one_object(demo, capsys):
    assert main(["laws", "--json"]) == 0
    laws = json.loads(capsys.readouterr().out)["laws"]
    assert {"chinchilla", "kaplan_n"} <= {law["id"] for law in laws}
    nc = demo[0] / "demo_result.nc"
    assert main(["predict", str(nc), "--at", "n_params=1e10", "--kind", "mean", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["predictions"]
    expected = bayescale.load(nc).predict({"n_params": [1e10]}, kind="mean")
    assert row["q50"] == pytest.approx(expected["q50"].iloc[0], rel=1e-12)  # full precision
    # an input error prints nothing on stdout, one line on stderr
    assert main(["predict", str(nc), "--at", "n_params=big", "--json"]) == 2
    assert capsys.readouterr().out == ""


def test_one_data_source(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    simulate("kaplan_n", num_points=10).to_csv(csv, index=False)
    argv = ["fit", "--law", "kaplan_n", "--out", str(tmp_path / "x.nc")]
    assert main([*argv, str(csv), "--tensorboard", str(tmp_path)]) == 2
    assert "exactly one data source" in _error_line(capsys)
    assert main(argv) == 2
    assert "got none" in _error_line(capsys)
    assert main([*argv, str(csv), "--tag", "loss"]) == 2
    assert "--tag applies to --tensorboard and --wandb" in _error_line(capsys)
    assert main([*argv, str(csv), "--min-step", "10"]) == 2
    assert "--min-step applies to --tensorboard and --wandb" in _error_line(capsys)
    assert main([*argv, str(csv), "--step", "it"]) == 2
    assert "--step applies to --wandb" in _error_line(capsys)
    export = tmp_path / "export.csv"
    export.write_text("it,run-a - loss,run-a - loss__MIN\n1,3.0,2.9\n")
    assert main([*argv, "--wandb", str(export), "--tag", "acc", "--step", "it"]) == 2
    line = _error_line(capsys)
    assert "'acc' not found" in line and "export.csv" in line and "its tags: loss" in line
    assert main([*argv, "--wandb", str(export), "--step", "iteration"]) == 2
    assert "step column 'iteration' not in" in _error_line(capsys)


def _child(code: str) -> str:
    """Run ``code`` in a fresh Python process; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["predict", "--help"]])
def test_help_imports_no_jax(argv):
    """``bayescale --help`` answers at once: parsing the arguments imports neither JAX nor
    NumPyro nor pandas (asserted on the imports, not on a time)."""
    out = _child(
        "import runpy, sys\n"
        f"sys.argv = ['bayescale', *{argv!r}]\n"
        "try:\n    runpy.run_module('bayescale', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jax', 'numpyro', 'pandas', 'matplotlib'}))"
    )
    assert "usage: bayescale" in out
    assert out.strip().splitlines()[-1] == "IMPORTED []"


def test_package_imports_lazily_and_laws_start_no_backend():
    """``import bayescale`` imports no JAX; the public names resolve on use; loading laws
    (catalogue, formula strings with constants) starts no JAX backend, so
    ``jax.distributed.initialize`` may still be called after it."""
    out = _child(
        "import sys\n"
        "import bayescale\n"
        "print('jax' in sys.modules)\n"
        "from bayescale import fit, Result, compare, laws\n"
        "from jax._src import xla_bridge\n"
        "laws.catalogue(); laws.get_law('chinchilla')\n"
        "laws.get_law('loss = 2 * E + A * (n_params / 1e6)**-alpha')\n"
        "print(xla_bridge.backends_are_initialized())\n"
        "print(callable(compare), bayescale.Result is Result, 'fit' in dir(bayescale))\n"
        "print(sorted(set(bayescale.__all__) - set(dir(bayescale))))"
    )
    assert out.split("\n")[:4] == ["False", "False", "True True True", "[]"]
