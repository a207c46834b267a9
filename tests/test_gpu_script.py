"""``benchmarks/gpu.sh`` in its reduced CPU form, so the GPU script cannot rot."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_reduced(tmp_path):
    results = tmp_path / "RESULTS.md"
    repo_results = ROOT / "benchmarks" / "RESULTS.md"
    before = hashlib.sha256(repo_results.read_bytes()).hexdigest()
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--reduced", "--results", str(results)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "environment: python" in out.stdout and "devices (" in out.stdout
    text = results.read_text()
    assert "## GPU batch benchmark (reduced CPU form" in text
    assert "Command: `benchmarks/gpu.sh --reduced --results" in text
    for dtype in ("float32", "float64"):
        row = re.search(rf"^\| 6 \| {dtype} \| ([0-9.]+) \|.*\| ([0-9.]+)% \|", text, re.M)
        assert row, text
        assert float(row.group(1)) > 0 and 0 <= float(row.group(2)) <= 100
    assert hashlib.sha256(repo_results.read_bytes()).hexdigest() == before
