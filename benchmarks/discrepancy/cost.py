"""Cost of the discrepancy in batched fits: ``fit(..., by=)`` of K per-token curves, both arms
in one process.

The curves of ``benchmarks/batched.py`` (law ``kaplan_per_token``, 30 points each, padded to
32), one chain per curve, ``NUTS(num_chains=1, num_warmup=W, num_samples=S)``.  Each arm
(``Model()`` and ``Model(discrepancy="ou_rw")``) is fitted once untimed (compilation), then
``--repeats`` times timed, the arms alternating; the figure is the median wall time per fit
and the ratio discrepancy / none.

Usage (from the worktree root)::

    nice -n 5 python benchmarks/discrepancy/cost.py --sizes 256 [--warmup 500 --samples 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

import batched  # noqa: E402

import bayescale as bs  # noqa: E402


def frame(num: int) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.npz"
        batched.simulate_curves(num, path)
        tokens, losses = batched.load_curves(path, num)
    return pd.DataFrame(
        {
            "curve": np.repeat(np.arange(num), tokens.shape[1]),
            "token_index": tokens.ravel(),
            "loss": losses.ravel(),
        }
    )


def timed(data, discrepancy, inference) -> float:
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bs.fit(
            data, batched.LAW, by="curve", model=bs.Model(discrepancy=discrepancy),
            inference=inference, warn=False,
        )  # fmt: skip
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[256])
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args(argv)
    inference = bs.NUTS(
        num_chains=1, num_warmup=a.warmup, num_samples=a.samples, progress_bar=False
    )
    print("| K | W = S | none, s/fit | ou_rw, s/fit | ratio |\n|---|---|---|---|---|")
    for k in a.sizes:
        data = frame(k)
        arms = {None: [], "ou_rw": []}
        for arm in arms:  # compile
            timed(data, arm, inference)
        for _ in range(a.repeats):
            for arm in arms:
                arms[arm].append(timed(data, arm, inference) / k)
        none, disc = np.median(arms[None]), np.median(arms["ou_rw"])
        print(f"| {k} | {a.warmup} | {none:.4f} | {disc:.4f} | {disc / none:.2f} |", flush=True)


if __name__ == "__main__":
    main()
