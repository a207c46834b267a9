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
``--sampler chees`` times the ChEES-HMC program instead (:mod:`bayescale.infer.hmc`, its
defaults: 4 chains x 500 warm-up + 500 draws, advancing together on one device).

``--cold-fit`` times whole first calls ``bayescale.fit(chinchilla data, "chinchilla",
inference=NUTS() | ChEES())``, each in a fresh process with ``BAYESCALE_CACHE_DIR`` an empty
temporary folder and ``bayescale.configure()`` (the persistent cache on, as a user gets it),
then once more in another fresh process on the cache the first filled: the cold start and
what the cache keeps of it, for both samplers.

Data: ``../shared/data/chinchilla_epoch_svg_extracted.csv`` prepared as Epoch did
(:func:`bayescale.datasets.chinchilla`).
"""

from __future__ import annotations

import argparse
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


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", choices=["map", "prior"], default="map")
    parser.add_argument("--likelihood", default="student_t")
    parser.add_argument("--data", default=None, help="the shared data folder")
    parser.add_argument("--peer", action="store_true", help="stock NumPyro MCMC instead")
    parser.add_argument("--sampler", choices=["nuts", "chees"], default="nuts")
    parser.add_argument(
        "--cold-fit", action="store_true", help="cold and cached bayescale.fit, both samplers"
    )
    parser.add_argument("--child-fit", choices=["nuts", "chees"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_fit:
        child_fit(args.child_fit, args.data)
        return
    if args.cold_fit:
        cold_fits(args.data)
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


def child_fit(sampler: str, data_dir) -> None:
    """One first ``bayescale.fit`` of the Chinchilla data in this (fresh) process."""
    bayescale.configure()  # the persistent cache in BAYESCALE_CACHE_DIR, as a user has it
    frame = datasets.chinchilla(data_dir)
    inference = {"nuts": bayescale.NUTS, "chees": bayescale.ChEES}[sampler](progress_bar=False)
    w0, c0 = time.perf_counter(), _cpu()
    result = bayescale.fit(
        frame, "chinchilla", columns={"n_params": "Model Size"}, inference=inference, warn=False
    )
    print(f"{time.perf_counter() - w0:.2f} {_cpu() - c0:.2f} {result.status.value}", flush=True)


def cold_fits(data_dir) -> None:
    """Each sampler's first fit in a fresh process on an empty persistent cache, then again
    in another fresh process on the cache it filled."""
    print(f"cold Chinchilla fits; load average {os.getloadavg()[0]:.1f}", flush=True)
    for sampler in ("nuts", "chees"):
        with tempfile.TemporaryDirectory(prefix="bayescale-cold-") as cache:
            for label in ("empty cache", "cache filled by the first"):
                cmd = [sys.executable, __file__, "--child-fit", sampler]
                if data_dir:
                    cmd += ["--data", data_dir]
                env = {**os.environ, "BAYESCALE_CACHE_DIR": cache}
                t0 = time.perf_counter()
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                wall, cpu, status = out.stdout.split()[-3:]
                print(
                    f"  {sampler:5s} {label:26s}: fit {float(wall):6.2f} s wall "
                    f"({float(cpu):6.2f} s cpu), process {time.perf_counter() - t0:6.2f} s; "
                    f"status {status}",
                    flush=True,
                )


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


if __name__ == "__main__":
    main()
