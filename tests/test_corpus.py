"""The shipped calibration corpus: files match the README's table and are usable curves."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CORPUS = Path(__file__).resolve().parents[1] / "bayescale" / "corpus"


def listed_files() -> list[tuple[str, int, int, str]]:
    """(file, rows, curves, sha256) from the README's 'Files' table."""
    text = (CORPUS / "README.md").read_text()
    rows = re.findall(r"^\| (\S+\.csv) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|$", text, re.M)
    return [(f, int(n), int(c), h) for f, n, c, h in rows]


def test_readme_lists_every_shipped_csv():
    assert sorted(f for f, *_ in listed_files()) == sorted(p.name for p in CORPUS.glob("*.csv"))
    assert len(listed_files()) >= 4


@pytest.mark.parametrize("name,rows,curves,digest", listed_files())
def test_file_matches_readme_and_is_a_set_of_curves(name, rows, curves, digest):
    path = CORPUS / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["curve", "group", "x", "y"]
    assert len(frame) == rows and frame["curve"].nunique() == curves
    values = frame[["x", "y"]].to_numpy(dtype=float)
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    for _, g in frame.groupby("curve"):
        assert len(g) <= 60 and np.all(np.diff(g["x"].to_numpy()) > 0)
        assert g["group"].nunique() == 1


def test_speedrun_manifest_has_one_log_per_curve():
    lines = (CORPUS / "nanogpt_speedrun_logs.txt").read_text().splitlines()
    frame = pd.read_csv(CORPUS / "nanogpt_speedrun.csv")
    records = {"/".join(line.split()[1].split("/")[1:3]) for line in lines}
    assert all(re.fullmatch(r"[0-9a-f]{64} records/\S+", line) for line in lines)
    assert records == set(frame["curve"])


def test_pythia_evals_manifest_has_each_final_checkpoint_once():
    lines = (CORPUS / "pythia_evals_files.txt").read_text().splitlines()
    paths = [line.split()[1] for line in lines]
    assert all(re.fullmatch(r"[0-9a-f]{64} evals/pythia-v1/\S+_step143000\.json", x) for x in lines)
    assert len(set(paths)) == len(paths) == 15
