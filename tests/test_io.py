"""Training logs in (:mod:`bayescale.io`): real TensorBoard event files written with the
``tensorboard`` package, W&B and CSV exports, and fits from them (API and command line)."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

import bayescale
from bayescale import io
from bayescale.cli import main

STEPS = np.arange(0, 60) * 50  # 0, 50, ..., 2950: step 0 is logged, as in real runs
E, A, ALPHA, NOISE = 2.0, 5.0, 0.3, 0.01
MAP = ["--method", "map"]  # the plumbing is the point: no sampler to compile


def _loss(seed: int) -> np.ndarray:
    """``E + A step^-alpha`` with 1% log-normal noise; at step 0 the initial loss, 11."""
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        clean = np.where(STEPS > 0, E + A * STEPS.astype(float) ** -ALPHA, 11.0)
    return clean * np.exp(NOISE * rng.standard_normal(STEPS.size))


def _scalar(tag: str, value: float, *, tensor: bool = False) -> summary_pb2.Summary.Value:
    if not tensor:  # TensorBoard 1.x / PyTorch: simple_value
        return summary_pb2.Summary.Value(tag=tag, simple_value=value)
    # TensorFlow 2: a scalar tensor of the scalars plugin
    plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_util.make_tensor_proto(np.float64(value)),
        metadata=summary_pb2.SummaryMetadata(plugin_data=plugin),
    )


def _write_run(folder, seed: int, *, tensor: bool = False) -> np.ndarray:
    """One run's event file: ``loss`` and ``lr`` at every step, a text summary (skipped by
    the reader) at the first; returns the losses written."""
    loss = _loss(seed)
    writer = EventFileWriter(str(folder))
    text = summary_pb2.Summary.Value(
        tag="notes",
        tensor=tensor_util.make_tensor_proto(np.array("hello", dtype=object)),
        metadata=summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        ),
    )
    for i, (step, value) in enumerate(zip(STEPS, loss, strict=True)):
        values = [_scalar("loss", value, tensor=tensor), _scalar("lr", 1e-3, tensor=tensor)]
        summary = summary_pb2.Summary(value=values + ([text] if i == 0 else []))
        writer.add_event(event_pb2.Event(step=int(step), wall_time=1e9 + i, summary=summary))
    writer.close()
    return loss


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """A folder of two runs, ``runs/a`` (simple values) and ``runs/b`` (TF2 tensors), and
    their losses."""
    root = tmp_path_factory.mktemp("tb") / "runs"
    written = {"a": _write_run(root / "a", 0), "b": _write_run(root / "b", 1, tensor=True)}
    return root, written


def test_read_tensorboard_folder_of_runs(logs):
    root, written = logs
    frame = io.read_tensorboard(root)
    assert list(frame.columns) == list(io.COLUMNS)
    assert sorted(frame["run"].unique()) == ["a", "b"] and set(frame["tag"]) == {"loss", "lr"}
    for run, loss in written.items():
        got = frame[(frame["run"] == run) & (frame["tag"] == "loss")]
        assert got["step"].tolist() == STEPS.tolist()
        rtol = 1e-7 if run == "a" else 1e-15  # simple_value is float32; the tensor float64
        np.testing.assert_allclose(got["value"], loss, rtol=rtol)
        assert got["wall_time"].tolist() == [1e9 + i for i in range(STEPS.size)]
    # one run folder, one event file, and a tag chosen: the same rows
    one = io.read_tensorboard(root / "b", tags="loss")
    assert set(one["run"]) == {"b"} and set(one["tag"]) == {"loss"} and len(one) == STEPS.size
    (file,) = (root / "b").iterdir()
    pd.testing.assert_frame_equal(io.read_tensorboard(file, ["loss"]), one)


def test_pivot_gives_what_fit_reads(logs):
    root, written = logs
    wide = io.pivot(io.read_tensorboard(root), tags=["loss", "lr"])
    assert list(wide.columns) == ["run", "step", "loss", "lr"]
    assert len(wide) == 2 * STEPS.size
    np.testing.assert_allclose(wide["lr"], 1e-3, rtol=1e-7)
    np.testing.assert_allclose(wide[wide["run"] == "b"]["loss"], written["b"])
    # a step logged twice (a restarted run) keeps the value written last
    long = pd.DataFrame(
        {"run": "r", "tag": "loss", "step": [1, 2, 2], "value": [3.0, 2.5, 2.4], "wall_time": 0}
    )
    assert io.pivot(long)["loss"].tolist() == [3.0, 2.4]
    with pytest.raises(ValueError, match=r"'acc' not found.*its tags: loss"):
        io.pivot(long, tags="acc")
    with pytest.raises(ValueError, match="missing: tag"):
        io.pivot(long.drop(columns="tag"))


def test_fit_a_tensorboard_curve(logs):
    """MAP fit of run a's loss from step 50 on recovers the curve it was written from."""
    root, _ = logs
    curve = io.pivot(io.read_tensorboard(root / "a", tags="loss"))
    curve = curve[curve["step"] > 0]
    columns = {"x": "step", "y": "loss"}
    result = bayescale.fit(curve, "power_law_offset", columns=columns, inference=bayescale.MAP())
    assert result.status.value == "converged"
    law = result.predict({"step": [100.0, 3000.0]}, kind="mean")["q50"].to_numpy()
    np.testing.assert_allclose(law, E + A * np.array([100.0, 3000.0]) ** -ALPHA, rtol=0.02)


def test_cli_fits_straight_from_event_files(logs, tmp_path, capsys):
    root, _ = logs
    out = tmp_path / "a.nc"
    argv = ["fit", "--tensorboard", str(root / "a"), "--tag", "loss", "--out", str(out)]
    argv += ["--law", "power_law_offset", "--column", "x=step", "--column", "y=loss", *MAP]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is one JSON object
    assert report["num_points"] == STEPS.size - 1  # step 0 dropped (--min-step 1)
    assert report["status"] == "converged" and report["result"] == str(out)
    loaded = bayescale.load(out)
    assert loaded.columns == {"x": "step", "y": "loss"}
    np.testing.assert_allclose(
        loaded.datatree.constant_data["x"].values.ravel(), STEPS[1:].astype(float)
    )
    # text output names what was read
    assert main([*argv, "--min-step", "1000"]) == 0
    text = capsys.readouterr().out
    assert f"read {STEPS.size} values of loss from 1 run(s); 40 rows at step >= 1000" in text


@pytest.mark.parametrize(
    ("call", "exc", "needles"),
    [
        (lambda d: io.read_tensorboard(d / "nothing"), FileNotFoundError, ["nothing"]),
        (lambda d: io.read_tensorboard(d / "empty"), FileNotFoundError, ["no TensorBoard"]),
        (
            lambda d: io.read_tensorboard(d / "runs", tags=["loss", "acc"]),
            ValueError,
            ["'acc' not found", "its tags: loss, lr"],
        ),
        (lambda d: io.read_tensorboard(d / "garbage"), ValueError, ["hold no scalar", "garbage"]),
        (lambda d: io.read_tensorboard(d / "runs", tags=[]), ValueError, ["tags"]),
    ],
)
def test_read_tensorboard_errors_name_the_file_or_tag(logs, call, exc, needles):
    base = logs[0].parent
    (base / "empty").mkdir(exist_ok=True)
    (base / "garbage").mkdir(exist_ok=True)
    (base / "garbage" / "events.out.tfevents.1.host").write_bytes(b"not a record at all")
    with pytest.raises(exc) as err:
        call(base)
    for needle in needles:
        assert needle in str(err.value)


def test_non_numeric_scalar_names_tag_and_file(tmp_path):
    writer = EventFileWriter(str(tmp_path / "run"))
    plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    value = summary_pb2.Summary.Value(
        tag="loss",
        tensor=tensor_util.make_tensor_proto(np.array("2.5", dtype=object)),
        metadata=summary_pb2.SummaryMetadata(plugin_data=plugin),
    )
    writer.add_event(event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    with pytest.raises(ValueError, match=r"tag 'loss' in '.*tfevents.*' holds a non-numeric"):
        io.read_tensorboard(tmp_path / "run")


def test_missing_tensorboard_names_the_extra(monkeypatch, logs):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'bayescale\[io\]'"):
        io.read_tensorboard(logs[0])


# ------------------------------------------------------------------------- W&B and CSV logs
WANDB_CHART = """\
Step,run-a - train/loss,run-a - train/loss__MIN,run-a - train/loss__MAX,run-b - train/loss,run-b - train/loss__MIN,run-b - train/loss__MAX,run-b - lr
100,3.1,3.0,3.2,3.3,3.2,3.4,0.001
200,2.9,2.8,3.0,,,,0.001
300,2.7,2.6,2.8,2.95,2.9,3.0,
"""  # noqa: E501  (as the W&B web page exports it)

WANDB_HISTORY = """\
_step,_runtime,_timestamp,loss,train/acc
0,1.5,1700000000.0,9.0,
10,15.0,1700000013.5,4.0,0.25
20,30.0,1700000027.0,3.5,0.5
"""


def test_read_wandb_chart_export(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(WANDB_CHART)
    frame = io.read_wandb(path)
    assert list(frame.columns) == list(io.COLUMNS)
    assert set(frame["tag"]) == {"train/loss", "lr"}  # __MIN and __MAX dropped
    loss = frame[frame["tag"] == "train/loss"]
    assert loss[loss["run"] == "run-a"]["value"].tolist() == [3.1, 2.9, 2.7]
    b = loss[loss["run"] == "run-b"]
    assert b["step"].tolist() == [100, 300] and b["value"].tolist() == [3.3, 2.95]  # gap dropped
    assert frame["wall_time"].isna().all() and frame["step"].dtype == np.int64
    wide = io.pivot(io.read_wandb(path, tags="train/loss"))
    assert list(wide.columns) == ["run", "step", "train/loss"] and len(wide) == 5
    with pytest.raises(ValueError, match=r"'loss' not found in the W&B export .*: lr, train/loss"):
        io.read_wandb(path, tags="loss")


def test_read_wandb_history(tmp_path):
    path = tmp_path / "bright-sun-7.csv"
    path.write_text(WANDB_HISTORY)
    frame = io.read_wandb(path)
    assert set(frame["run"]) == {"bright-sun-7"} and set(frame["tag"]) == {"loss", "train/acc"}
    acc = frame[frame["tag"] == "train/acc"]
    assert acc["step"].tolist() == [10, 20] and acc["wall_time"].tolist() == [
        1700000013.5,
        1700000027.0,
    ]


@pytest.mark.parametrize(
    ("text", "call", "needles"),
    [
        (WANDB_HISTORY.replace(",3.5,", ",nan?,"), io.read_wandb, ["'loss'", "'nan?'", "row 4"]),
        ("a,b\n1,2\n", io.read_wandb, ["not a W&B export", "read_csv_log"]),
        ("", io.read_wandb, ["cannot read CSV file"]),
        ("x,run-a - loss,y\n1,2,3\n", io.read_wandb, ["choose the step column among x, y"]),
        ("step,loss\n", io.read_csv_log, ["has no rows"]),
        ("it,loss\n1,2\n", io.read_csv_log, ["step column 'step' not in", "it, loss"]),
        ("step,loss\n1,2\n,3\n", io.read_csv_log, ["'step'", "empty at row 3"]),
    ],
)
def test_csv_log_errors_name_file_column_row(tmp_path, text, call, needles):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        call(path)
    for needle in [*needles, "log.csv"]:
        assert needle in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        call(tmp_path / "nope.csv")


def test_read_csv_log_with_a_run_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("run,it,loss,acc\nx,1,3.0,0.1\nx,2,2.5,\ny,1,3.5,0.2\n")
    frame = io.read_csv_log(path, step="it", run="run", tags=["loss"])
    assert frame[["run", "step", "value"]].values.tolist() == [
        ["x", 1, 3.0],
        ["x", 2, 2.5],
        ["y", 1, 3.5],
    ]
    timed = tmp_path / "timed.csv"
    timed.write_text("it,loss,t\n1,3.0,100.5\n2,2.5,101.5\n")
    frame = io.read_csv_log(timed, step="it", wall_time="t")
    assert set(frame["run"]) == {"timed"} and set(frame["tag"]) == {"loss"}
    assert frame["wall_time"].tolist() == [100.5, 101.5]
    with pytest.raises(ValueError, match=r"wall_time column 'time' not in .*: it, loss, t"):
        io.read_csv_log(timed, step="it", wall_time="time")


# ---------------------------------------------------------------------------------- derive
def test_derive_uses_the_formula_parser():
    frame = pd.DataFrame({"flops": [6e20, 1.2e21], "n_params": [1e9, 2e9]})
    out = io.derive(frame, {"n_tokens": "flops / (6 * n_params)", "r": "sqrt(n_tokens) * 2"})
    assert out["n_tokens"].tolist() == [1e11, 1e11] and "n_tokens" not in frame
    np.testing.assert_allclose(out["r"], 2 * np.sqrt(1e11), rtol=1e-15)  # float64
    with pytest.raises(bayescale.FormulaError, match="__import__"):
        io.derive(frame, {"x": "__import__('os').getcwd()"})
    with pytest.raises(ValueError, match=r"x = 'flops / d': unknown column 'd'; columns: flops"):
        io.derive(frame, {"x": "flops / d"})
    with pytest.raises(ValueError, match=r"is inf at row 1 \(flops=1.2e\+21, n_params=0\)"):
        io.derive(frame.assign(n_params=[1e9, 0.0]), {"x": "flops / n_params"})
    with pytest.raises(ValueError, match=r"column 'flops' holds a non-numeric value 'big' at row"):
        io.derive(frame.assign(flops=["1", "big"]), {"x": "flops / n_params"})
