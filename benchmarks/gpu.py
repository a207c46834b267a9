"""Batched fits on an accelerator: ``fit(..., by=)`` at K = 10,000 and 100,000 curves.

Run through ``benchmarks/gpu.sh`` (it puts this checkout on ``PYTHONPATH``); ``--reduced``
(or ``BAYESCALE_GPU_REDUCED=1``) is the CPU smoke form the test suite runs (K = 6, 40 + 40
draws) so the script cannot rot.

1. Environment: Python, jax, jaxlib (and any CUDA plugin), numpyro, bayescale versions; JAX's
   devices and, where the backend reports it, each device's memory limit.
2. For each K (``--sizes``, default 10,000 and 100,000) and dtype (``--dtypes``, default
   float32 then float64): one ``bayescale.fit(frame, "kaplan_per_token", by="curve",
   inference=NUTS(num_chains=1, num_warmup=W, num_samples=S, keep=100, dtype=...))`` call,
   curves as in ``benchmarks/batched.py`` (its generator: 30 points, parameters spread
   around the reference).  ``--distinct`` of them (default 2,048; simulating a curve takes
   ~5 ms of host time) are simulated and tiled to K, every fit with its own seed.
   ``keep=100``: each chunk is reduced on the device (on an accelerator) and only
   summaries and 100 draws per fit come back.
3. Per call: wall time (everything: splitting the frame into curves, compiling, the MAP
   start, sampling, the reduction, the result), JAX's compile time within it
   (``jax.monitoring`` spans), ms per fit with and without it, the share of fits that
   bayescale reports ``converged``, the device's peak memory so far
   (``device.memory_stats()["peak_bytes_in_use"]``; runs go from small to large so each
   peak is its run's) and the host's peak RSS.
4. ``--budget`` seconds (default 420): a run whose estimated time (the last run's compile
   time plus its per-fit time without compilation scaled to K) would pass it is skipped and
   reported so, keeping the script under 8 minutes on one H100.

The figures are appended to ``--results`` (default ``benchmarks/RESULTS.md``) as a dated
block with the command and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batched import LAW, CompileClock, load_curves, peak_rss_gib, simulate_curves  # noqa: E402

REDUCED = {"sizes": [6], "dtypes": ["float32", "float64"], "warmup": 40, "samples": 40}


def versions() -> dict[str, str]:
    import bayescale

    names = ("jax", "jaxlib", "numpyro", "numpy")
    out = {"python": platform.python_version()}
    where = Path(bayescale.__file__).resolve().parent.parent
    out["bayescale"] = f"{getattr(bayescale, '__version__', '?')} ({where})"
    dists = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    plugins = sorted(d for d in dists if d.startswith(("jax-cuda", "jax_cuda", "jax-rocm")))
    for name in (*names, *plugins):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def device_lines() -> list[str]:
    import jax

    lines = []
    for d in jax.devices():
        stats = d.memory_stats() or {}
        limit = stats.get("bytes_limit")
        memory = f", {limit / 2**30:.1f} GiB" if limit else ""
        lines.append(f"{d.platform}:{d.id} {d.device_kind}{memory}")
    return lines


def device_peak_gib() -> float | None:
    import jax

    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    peaks = [p for p in peaks if p is not None]
    return max(peaks) / 2**30 if peaks else None


def curves_frame(k: int, distinct: int, path: Path):
    """``k`` curves (``distinct`` simulated ones tiled) as one long frame."""
    import numpy as np
    import pandas as pd

    tokens, losses = load_curves(path, min(k, distinct))
    reps = -(-k // tokens.shape[0])
    tokens, losses = np.tile(tokens, (reps, 1))[:k], np.tile(losses, (reps, 1))[:k]
    return pd.DataFrame(
        {
            "curve": np.repeat(np.arange(k), tokens.shape[1]),
            "token_index": tokens.ravel(),
            "loss": losses.ravel(),
        }
    )


def run_one(k, dtype, args, path, clock) -> dict:
    import bayescale

    frame = curves_frame(k, args.distinct, path)
    inference = bayescale.NUTS(
        num_chains=1,
        num_warmup=args.warmup,
        num_samples=args.samples,
        keep=min(args.keep, args.samples),
        dtype=dtype,
        progress_bar=False,
    )
    t0 = time.time()
    result = bayescale.fit(frame, LAW, by="curve", seed=0, inference=inference, warn=False)
    status = result.diagnostics["status"]
    t1 = time.time()
    compile_s = clock.between(t0, t1)
    return {
        "K": k,
        "dtype": dtype,
        "wall_s": t1 - t0,
        "compile_s": compile_s,
        "ms_per_fit": 1e3 * (t1 - t0) / k,
        "ms_per_fit_excl": 1e3 * (t1 - t0 - compile_s) / k,
        "converged": float((status == "converged").mean()),
        "device_peak_gib": device_peak_gib(),
        "host_rss_gib": peak_rss_gib(),
    }


def table(rows: list[dict]) -> list[str]:
    out = [
        "| K | dtype | wall s | compile s | ms/fit | ms/fit excl. compile | converged "
        "| device peak GiB | host peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['K']:,} | {r['dtype']} | skipped: {r['skipped']} |||||||")
            continue
        peak = "n/a" if r["device_peak_gib"] is None else f"{r['device_peak_gib']:.2f}"
        out.append(
            f"| {r['K']:,} | {r['dtype']} | {r['wall_s']:.1f} | {r['compile_s']:.1f} "
            f"| {r['ms_per_fit']:.3f} | {r['ms_per_fit_excl']:.3f} | {r['converged']:.1%} "
            f"| {peak} | {r['host_rss_gib']:.2f} |"
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reduced", action="store_true", help="CPU smoke form (tests)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--keep", type=int, default=100)
    parser.add_argument("--distinct", type=int, default=2048, help="curves simulated")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the runs")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.reduced or os.environ.get("BAYESCALE_GPU_REDUCED") == "1":
        args.reduced = True
        for name, value in REDUCED.items():
            setattr(args, name, value)
    start = time.time()
    import jax

    env = versions()
    devices = device_lines()
    print("environment:", ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    print(f"devices ({len(devices)}):", "; ".join(devices), flush=True)
    clock = CompileClock()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.npz"
        simulate_curves(min(max(args.sizes), args.distinct), path)
        print(f"simulated curves in {time.time() - start:.1f} s", flush=True)
        last = None
        for k in sorted(args.sizes):
            for dtype in args.dtypes:
                spent = time.time() - start
                estimate = (
                    0.0 if last is None else last["compile_s"] + last["ms_per_fit_excl"] * k / 1e3
                )
                if spent + estimate > args.budget:
                    rows.append({"K": k, "dtype": dtype, "skipped": "over --budget"})
                    print(f"K={k} {dtype}: skipped (estimated past --budget)", flush=True)
                    continue
                row = last = run_one(k, dtype, args, path, clock)
                rows.append(row)
                print(table([row])[-1], flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = jax.default_backend() == "cpu"
    where_reduced = "on the host: CPU devices" if cpu else "on the device"
    command = "benchmarks/gpu.sh " + shlex.join(sys.argv[1:])
    block = [
        "",
        f"## GPU batch benchmark ({'reduced CPU form, ' if args.reduced else ''}{stamp})",
        "",
        f"Command: `{command}`; host {platform.node()} ({os.cpu_count()} CPUs), "
        f"JAX backend {jax.default_backend()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".",
        "Devices: " + "; ".join(devices) + ".",
        f"`fit(..., by=)` of kaplan_per_token curves (30 points; {args.distinct:,} simulated, "
        f"tiled), 1 chain x {args.warmup} + {args.samples}, keep={min(args.keep, args.samples)}"
        f" (reduced {where_reduced});"
        f" total script time {time.time() - start:.0f} s.",
        "",
        *table(rows),
        "",
    ]
    with open(args.results, "a") as f:
        f.write("\n".join(block))
    print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
