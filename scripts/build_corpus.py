"""Rebuild the calibration corpus shipped in ``bayescale/corpus/`` from the original files.

Each source becomes one CSV with the columns ``curve`` (one learning or scaling curve),
``group`` (model size, track, data set or image-model family), ``x`` (the covariate: steps,
FLOPs or parameters) and ``y`` (the response: loss or top-1 error), thinned to at most
``--points`` rows per curve, log-spaced in ``x`` (:func:`bayescale.data.thin_log_spaced`).
The originals are read from ``--shared`` (the project's ``../shared/data``) and from git
mirrors under ``--mirror`` (``owner+name/repo`` git directories, read at the pinned
commits below with ``git show``); each original's sha256 is checked before use, so the
output is reproducible or the script stops.

Usage::

    python scripts/build_corpus.py --shared ../shared/data --mirror /work/.mirror
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.data import thin_log_spaced

OUT = Path(__file__).resolve().parents[1] / "bayescale" / "corpus"

POLYPYTHIA = (
    "polypythia_train_lm_loss_every10steps.csv",
    "e9280387b688df8dfd733cd3f4507289644b55ba0173b75d032492293da43a87",
)
PORIAN = (
    "porian2024_isoflop_points.csv",
    "bd5cc107cb3eb90cd741a3693ac3bec6582722daaed5d55faa39e7734d780afa",
)
NANOGPT = ("KellerJordan/modded-nanogpt", "f411b3d346aa52d3504324ca93c230fd84c6c07f")
PYTHIA = ("EleutherAI/pythia", "a19eecb807ec2c79a39ebf18108816e6ffffc1d5")
TIMM = (
    "huggingface/pytorch-image-models",
    "aa4b5850c1543fa488abf260f18390eda46cf85d",
    "results/results-imagenet.csv",
    "30972bf7c7ab451bbd4480ec6116b13d0a84441c57bbc946896fd312264acfcd",
)

#: Fewest points (after dropping step 0) for a speedrun log to be kept.
MIN_NANOGPT_POINTS = 10
#: An image-model family needs this many sizes spanning at least this factor in parameters.
MIN_FAMILY_SIZES, MIN_FAMILY_SPAN = 5, 4.0

#: Pythia suites (standard, deduplicated) with a zero-shot evaluation of the final checkpoint
#: at each size, and the (n_layers, d_model) of each size (the README's table).
PYTHIA_SUITES = {
    "standard": ("70m", "160m", "410m", "1.4b", "2.8b", "6.9b", "12b"),
    "deduped": ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"),
}
PYTHIA_SHAPES = {
    "70m": (6, 512), "160m": (12, 768), "410m": (24, 1024), "1b": (16, 2048),
    "1.4b": (24, 2048), "2.8b": (32, 2560), "6.9b": (32, 4096), "12b": (36, 5120),
}  # fmt: skip
#: A task's metric is kept as a scaling curve when it improves with size this consistently
#: (Spearman correlation over the sizes); MMLU subsets and CrowS-Pairs (bias) are left out.
MIN_PYTHIA_TREND = 0.9

_VAL = re.compile(r"^step:(\d+)/\d+ val_loss:([0-9.]+)", re.M)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checked(data: bytes, expected: str, name: str) -> bytes:
    got = sha256(data)
    if got != expected:
        raise SystemExit(f"{name}: sha256 {got} differs from the pinned {expected}")
    return data


def git_show(mirror: Path, repo: str, commit: str, path: str, *, missing_ok=False) -> bytes | None:
    """A file of a mirrored repository at ``commit``; ``None`` for a blob the mirror lacks
    (its largest files) when ``missing_ok``."""
    git_dir = mirror / repo.replace("/", "+") / "repo"
    out = subprocess.run(
        ["git", "-C", str(git_dir), "show", f"{commit}:{path}"],
        capture_output=True,
        check=not missing_ok,
    )
    return out.stdout if out.returncode == 0 else None


def git_files(mirror: Path, repo: str, commit: str, under: str) -> list[str]:
    git_dir = mirror / repo.replace("/", "+") / "repo"
    out = subprocess.run(
        ["git", "-C", str(git_dir), "ls-tree", "-r", "--name-only", commit, under],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return sorted(out.split())


def polypythia(shared: Path, points: int) -> pd.DataFrame:
    """Every PolyPythia log: training loss against step, from step 100."""
    name, digest = POLYPYTHIA
    raw = pd.read_csv(io.BytesIO(checked((shared / name).read_bytes(), digest, name)))
    raw["curve"] = raw["model"] + "-seed" + raw["seed"].astype(str)
    thin = thin_log_spaced(raw, "step", by="curve", num=points, min_value=100)
    return pd.DataFrame(
        {
            "curve": thin["curve"],
            "group": thin["model"],
            "x": thin["step"],
            "y": thin["train_lm_loss"],
        }
    )


def porian(shared: Path) -> pd.DataFrame:
    """Porian et al.'s compute frontier: per configuration and FLOP budget, the lowest loss."""
    name, digest = PORIAN
    raw = pd.read_csv(io.BytesIO(checked((shared / name).read_bytes(), digest, name)))
    keys = ["source", "dataset", "hparams", "warmup", "decay", "param_count", "val"]
    raw["curve"] = raw[keys].astype(str).agg("/".join, axis=1)
    raw = raw[np.isfinite(raw["loss"])]
    best = raw.loc[raw.groupby(["curve", "flops"])["loss"].idxmin()]
    return pd.DataFrame(
        {"curve": best["curve"], "group": best["dataset"], "x": best["flops"], "y": best["loss"]}
    )


def nanogpt(mirror: Path, points: int) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One validation-loss curve per speedrun record (its first log in name order)."""
    repo, commit = NANOGPT
    rows, used = [], []
    logs = [
        f
        for f in git_files(mirror, repo, commit, "records")
        if f.startswith(("records/track_1_short/", "records/track_2_medium/"))
        and f.endswith((".txt", ".log"))
    ]
    seen = set()
    for path in logs:
        record = "/".join(path.split("/")[1:3])
        if record in seen or path.count("/") != 3:
            continue
        data = git_show(mirror, repo, commit, path, missing_ok=True)
        if data is None:
            continue
        val = [(int(s), float(v)) for s, v in _VAL.findall(data.decode("utf-8", "replace"))]
        val = [(s, v) for s, v in val if s > 0]
        if len(val) < MIN_NANOGPT_POINTS:
            continue
        seen.add(record)
        used.append((path, sha256(data)))
        rows += [(record, record.split("/")[0], s, v) for s, v in val]
    frame = pd.DataFrame(rows, columns=["curve", "group", "x", "y"])
    return thin_log_spaced(frame, "x", by="curve", num=points), used


def pythia_evals(mirror: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Pythia's zero-shot benchmarks across model size: one curve per suite and task, x the
    non-embedding parameters :math:`12\\,n_{layers} d_{model}^2`, y the error ``1 - acc``
    (LAMBADA also its perplexity), final checkpoints (step 143000).  A task is kept when its
    metric improves with size with Spearman correlation >= ``MIN_PYTHIA_TREND``."""
    repo, commit = PYTHIA
    rows, used = [], []
    for suite, sizes in PYTHIA_SUITES.items():
        results = {}
        for size in sizes:
            name = size if suite == "standard" else f"{size}-deduped"
            path = f"evals/pythia-v1/pythia-{name}/zero-shot/{name}_step143000.json"
            data = git_show(mirror, repo, commit, path)
            used.append((path, sha256(data)))
            results[size] = json.loads(data)["results"]
        tasks = set.intersection(*(set(r) for r in results.values()))
        n = np.array([12 * layers * width**2 for layers, width in map(PYTHIA_SHAPES.get, sizes)])
        for task in sorted(t for t in tasks if not t.startswith(("hendrycksTest", "crows"))):
            metrics = {"err": [1 - results[s][task]["acc"] for s in sizes]}
            if "ppl" in results[sizes[0]][task]:
                metrics["ppl"] = [results[s][task]["ppl"] for s in sizes]
            for metric, y in metrics.items():
                if pd.Series(n).corr(-pd.Series(y), method="spearman") >= MIN_PYTHIA_TREND:
                    curve = f"{suite}/{task}/{metric}"
                    rows += [(curve, task, x, v) for x, v in zip(n, y, strict=True)]
    return pd.DataFrame(rows, columns=["curve", "group", "x", "y"]), used


def timm(mirror: Path) -> pd.DataFrame:
    """ImageNet top-1 error against parameters, per model family and training recipe.

    Family: the architecture name with its digit runs replaced by ``#`` (``resnet#``,
    ``regnety_#``, ``tf_efficientnet_b#``), with the same pretrained tag; each model at its
    smallest evaluated image size; families with at least ``MIN_FAMILY_SIZES`` distinct
    parameter counts spanning at least a factor ``MIN_FAMILY_SPAN``.
    """
    repo, commit, path, digest = TIMM
    raw = pd.read_csv(
        io.BytesIO(checked(git_show(mirror, repo, commit, path), digest, path)), thousands=","
    )
    raw["arch"] = raw["model"].str.split(".").str[0]
    raw["tag"] = raw["model"].str.split(".", n=1).str[1].fillna("")
    raw = raw.sort_values(["img_size", "model"]).drop_duplicates("model")
    raw["family"] = raw["arch"].map(lambda a: re.sub(r"\d+", "#", a))
    parts = []
    for (family, tag), g in raw.groupby(["family", "tag"], sort=True):
        sizes = g["param_count"]
        if (
            sizes.nunique() >= MIN_FAMILY_SIZES
            and sizes.nunique() == len(g)
            and sizes.max() / sizes.min() >= MIN_FAMILY_SPAN
        ):
            parts.append(
                pd.DataFrame(
                    {
                        "curve": f"{family}.{tag}",
                        "group": family,
                        "x": g["param_count"] * 1e6,
                        "y": g["top1_err"] / 100,
                    }
                )
            )
    return pd.concat(parts).sort_values(["curve", "x"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--points", type=int, default=60, help="most rows per curve")
    args = parser.parse_args(argv)
    speedrun, logs = nanogpt(args.mirror, args.points)
    sources = {
        "polypythia": polypythia(args.shared, args.points),
        "nanogpt_speedrun": speedrun,
        "porian2024_frontier": porian(args.shared),
        "timm_imagenet": timm(args.mirror),
    }
    sources["pythia_evals"], evals = pythia_evals(args.mirror)
    OUT.mkdir(exist_ok=True)
    for name, frame in sources.items():
        frame = frame[["curve", "group", "x", "y"]].sort_values(["curve", "x"], kind="stable")
        values = frame[["x", "y"]].to_numpy(dtype=float)
        assert np.all(np.isfinite(values) & (values > 0)), name
        frame.to_csv(OUT / f"{name}.csv", index=False, float_format="%.6g")
        data = (OUT / f"{name}.csv").read_bytes()
        print(f"| {name}.csv | {len(frame)} | {frame['curve'].nunique()} | {sha256(data)} |")
    for name, files in (("nanogpt_speedrun_logs.txt", logs), ("pythia_evals_files.txt", evals)):
        (OUT / name).write_text("".join(f"{digest} {path}\n" for path, digest in files))


if __name__ == "__main__":
    main()
