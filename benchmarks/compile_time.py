"""Where the first call of a Chinchilla fit goes: tracing, XLA compilation, sampling.

Run ``python benchmarks/compile_time.py`` (about half a minute).  The persistent compilation
cache is left off (``bayescale.configure(cache_dir=None)``), so the
compile is measured cold.  The program is the one ``bayescale.fit`` runs (``build_sampler``
with its defaults: 4 chains x 1000 warm-up + 1000 draws, MAP initialisation, chains split
over the CPU devices); ``--init prior`` leaves out the MAP search to show its share, and
``--likelihood normal`` the Student-t's.  Each stage is reported as wall and CPU seconds
(CPU is what XLA compilation costs on a loaded machine).  ``--peer`` instead times the same
cold fit with stock NumPyro (``MCMC(NUTS(dense_mass=True))``, 4 sequential chains, the data
compiled in as constants, NumPyro's default), in its own process for a cold start.

``--cold-fits N`` times the whole first ``bayescale.fit`` of Chinchilla (defaults, no progress
bar), each in a fresh process, N rounds alternating the arms: this checkout with XLA's
default compiler options and with bayescale's
:data:`~bayescale.infer.cache.CPU_COMPILER_OPTIONS`, and with ``--before DIR`` the
``bayescale`` package of another checkout (imported from ``DIR``).  Each round runs every
arm twice against its own new persistent cache folder: cold (empty cache), then warm (the
cache the cold process filled).  Per process: wall and CPU seconds of the ``fit`` call and of
the whole process (imports included), the XLA compilations it ran (count, summed wall
seconds) and the posterior mean of ``E``.  ``--chees`` adds the arm ``chees``: this
checkout, bayescale's options, ``inference=ChEES()``.

``--sampler chees`` times the ChEES-HMC program instead of NUTS's
(:mod:`bayescale.infer.hmc`, its defaults: 4 chains x 500 warm-up + 500 draws, advancing
together on one device).

Data: ``../shared/data/chinchilla_epoch_svg_extracted.csv`` prepared as Epoch did
(:func:`bayescale.datasets.chinchilla`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import bayescale
from bayescale import datasets
from bayescale.data import prepare
from bayescale.infer.batch import stack
from bayescale.infer.hmc import ChEESOptions, build_chees_sampler
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.laws import get_law
from bayescale.model import Posterior

ARMS = ("xla-default", "bayescale")  # compiler options of this checkout's programs


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", choices=["map", "prior"], default="map")
    parser.add_argument("--likelihood", default="student_t")
    parser.add_argument("--data", default=None, help="the shared data folder")
    parser.add_argument("--peer", action="store_true", help="stock NumPyro MCMC instead")
    parser.add_argument("--cold-fits", type=int, default=0, metavar="N")
    parser.add_argument("--before", default=None, help="folder holding another bayescale")
    parser.add_argument("--chees", action="store_true", help="--cold-fits: add a ChEES arm")
    parser.add_argument("--sampler", choices=["nuts", "chees"], default="nuts")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cold_fit_child(*args.child, args.data)
        return
    if args.cold_fits:
        cold_fits(args.cold_fits, args.data, args.before, chees=args.chees)
        return
    # bayescale's process settings (chains split over the CPU cores), without the persistent
    # cache: the compile is what is timed
    bayescale.configure(cache_dir=None)

    law = get_law("chinchilla")
    posterior = Posterior(law, args.likelihood)
    frame = datasets.chinchilla(args.data)
    if args.peer:
        peer(posterior, prepare(frame, law, {"n_params": "Model Size"}))
        return
    data = stack([prepare(frame, law, {"n_params": "Model Size"})])
    if args.sampler == "chees":
        options, usable = ChEESOptions(init=args.init), 1
        run = build_chees_sampler(posterior, options)
    else:
        options = SamplerOptions(init=args.init)
        devices = jax.devices()
        usable = max(d for d in range(1, len(devices) + 1) if options.num_chains % d == 0)
        run = build_sampler(posterior, options, devices=devices[:usable], shard="chains")
    key = jax.random.key(0)[None]

    w0, c0 = time.perf_counter(), _cpu()
    lowered = run.lower(key, data)
    w1, c1 = time.perf_counter(), _cpu()
    compiled = lowered.compile()
    w2, c2 = time.perf_counter(), _cpu()
    out = jax.block_until_ready(compiled(key, data))
    w3, c3 = time.perf_counter(), _cpu()
    stages = [
        ("trace + lower", w1 - w0, c1 - c0),
        ("XLA compile", w2 - w1, c2 - c1),
        ("compiled call", w3 - w2, c3 - c2),
    ]
    print(
        f"Chinchilla fit program, {args.sampler} ({args.likelihood}, init={args.init}, "
        f"{options.num_chains} chains x {options.num_warmup} + {options.num_samples} over "
        f"{usable} device(s)); load average {os.getloadavg()[0]:.1f}"
    )
    for name, wall, cpu in stages:
        print(f"  {name:14s} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    total = sum(s[1] for s in stages)
    print(f"  {'total':14s} wall {total:6.2f} s")
    print(f"  leapfrog steps per draw {float(np.mean(out['n_steps'])):.1f}")


def peer(posterior: Posterior, fit_data) -> None:
    """Stock NumPyro MCMC on the same model and data, cold: one wall/CPU figure."""
    from numpyro.infer import MCMC, NUTS

    a = fit_data.arrays()
    w0, c0 = time.perf_counter(), _cpu()
    mcmc = MCMC(
        NUTS(posterior.model, dense_mass=True),
        num_warmup=1000,
        num_samples=1000,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), a["log_x"], a["log_y"], a["mask"])
    jax.block_until_ready(mcmc.get_samples())
    print(
        f"stock NumPyro MCMC(NUTS(dense_mass=True)), 4 sequential chains x 1000 + 1000, "
        f"{posterior.likelihood}, cold: wall {time.perf_counter() - w0:.2f} s, "
        f"cpu {_cpu() - c0:.2f} s; load average {os.getloadavg()[0]:.1f}"
    )


def cold_fit_child(arm: str, cache_dir: str, data_dir) -> None:
    """One ``bayescale.fit`` in this fresh process; prints one JSON line."""
    import jax.monitoring

    bayescale.configure(cache_dir=cache_dir)
    if arm == "xla-default":
        from bayescale.infer import cache

        cache.CPU_COMPILER_OPTIONS.clear()
    compiles = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    frame = datasets.chinchilla(data_dir)
    w0, c0 = time.perf_counter(), _cpu()
    settings = (
        {"inference": bayescale.ChEES(progress_bar=False)}
        if arm == "chees"
        else {"progress_bar": False}
    )
    result = bayescale.fit(
        frame, "chinchilla", columns={"n_params": "Model Size"}, seed=0, **settings
    )
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    mean_e = float(np.mean(result.draws(["E"])["E"]))
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "compiles": len(compiles),
                "compile_wall": sum(compiles),
                "big_compiles": sum(d > 0.5 for d in compiles),
                "E": mean_e,
                "status": result.status.value,
                "load": os.getloadavg()[0],
                "module": bayescale.__file__,
            }
        )
    )


def cold_fits(rounds: int, data_dir, before, *, chees: bool = False) -> None:
    """``rounds`` x (each arm cold, then warm), every fit in its own process."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    arms = {arm: here for arm in (*ARMS, "chees") if chees or arm != "chees"}
    if before:
        arms["before"] = os.path.abspath(before)
    names = list(arms)
    rows = []
    for r in range(rounds):
        for arm in names if r % 2 == 0 else names[::-1]:
            with tempfile.TemporaryDirectory() as cache_dir:
                for state in ("cold", "warm"):
                    cmd = [sys.executable, os.path.abspath(__file__), "--child", arm, cache_dir]
                    if data_dir:
                        cmd += ["--data", os.path.abspath(data_dir)]
                    env = dict(os.environ, PYTHONPATH=arms[arm])
                    w0, t0 = time.perf_counter(), os.times()
                    out = subprocess.run(
                        cmd, capture_output=True, text=True, check=True, env=env, cwd=arms[arm]
                    )
                    t1 = os.times()
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    row["process_wall"] = time.perf_counter() - w0
                    row["process_cpu"] = sum(t1[2:4]) - sum(t0[2:4])  # children's user + sys
                    rows.append((r, arm, state, row))
                    print(
                        f"round {r} {arm:11s} {state}: fit wall {row['wall']:6.2f} s, "
                        f"cpu {row['cpu']:6.2f} s (process {row['process_wall']:6.2f} / "
                        f"{row['process_cpu']:6.2f} s), {row['compiles']:3d} compiles "
                        f"({row['big_compiles']} over 0.5 s, {row['compile_wall']:6.2f} s wall), "
                        f"mean E {row['E']:.6f}, {row['status']}, load {row['load']:.1f}; "
                        f"{row['module']}",
                        flush=True,
                    )
    for arm in names:
        for state in ("cold", "warm"):
            sel = [row for _, a, s, row in rows if a == arm and s == state]

            def med(k, sel=sel):
                return np.median([x[k] for x in sel])

            print(
                f"{arm:11s} {state}: median fit wall {med('wall'):6.2f} s, cpu {med('cpu'):6.2f} s;"
                f" process wall {med('process_wall'):6.2f} s, cpu {med('process_cpu'):6.2f} s"
                f" ({len(sel)} processes)"
            )


if __name__ == "__main__":
    main()
