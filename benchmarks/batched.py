"""Many curves at once: ``bayescale.fit(..., by=)`` against a Python loop of NumPyro fits.

Run ``python benchmarks/batched.py`` (defaults: W = S = 500, K = 64, 256, 1024, 4096; tens of
minutes on a 2-core CPU), ``--quick`` for a smoke run (W = S = 100, K = 64, 256), ``--sizes``
to choose K, ``--big`` to add one fit of K = 10,000 curves (the issue's memory target).

Data
----
Curves of the per-token law ``L(T) = a + b * T**-c`` (catalogue id ``kaplan_per_token``),
each simulated with ``bayescale.simulate.simulate("kaplan_per_token", params=..., seed=i)``
(30 points, T log-uniform on [1, 1024], log-normal noise 0.01) around the reference
(a, b, c) = (2.3, 5.4, 0.62): ``a = 2.3 e^{0.2 u1}``, ``b = 5.4 e^{0.2 u2}``,
``c = 0.62 e^{0.15 u3}``, u ~ N(0, 1) drawn once (numpy seed 12345).  Every curve has 30
points (bayescale pads them to its length bucket, 32, masked).

Peers
-----
(a) **Python loop of NumPyro fits** — the same posterior written as a plain NumPyro model
    (Student-t on log loss with nu ~ Gamma(2, 0.1), sigma ~ HalfNormal(0.1), the priors of
    ``models/kaplan_per_token.toml``; checked against the law file at start-up), fitted
    one curve after another with ``MCMC(NUTS(model), num_warmup=W, num_samples=S,
    num_chains=1, progress_bar=False)``, the MCMC object rebuilt for every fit as users do,
    in a process that imports only JAX and NumPyro (float64 switched on, as bayescale does;
    one JAX CPU device, JAX's default).  NUTS settings are NumPyro's defaults (diagonal
    mass matrix, target 0.8, tree depth 10, uniform init).  The first fit (its
    compilation) is not timed; the next ``--loop-fits`` (default 8) are, each including
    whatever NumPyro re-traces and re-compiles for a new MCMC object.  Three variants, each
    in a fresh process: ``loop`` (no persistent compilation cache); ``loop+cache`` (JAX's
    persistent cache in a fresh temporary folder, ``jax_compilation_cache_dir`` with
    ``jax_persistent_cache_min_compile_time_secs=0``, filled by the untimed first fit);
    ``loop+cache+jit_model_args`` (the same plus ``MCMC(..., jit_model_args=True)``: with
    NumPyro's default the data are baked into the program as constants, so every curve is
    a new program and the cache never hits; passed as arguments they give one program that
    the cache serves).  The issue's target is stated against ``loop``.
(b) **bayescale.fit(..., by=)** — all K curves in one call, ``by="curve"``, with the same W/S
    and **one chain per curve** (for comparability with the loop; bayescale's default is 4),
    its own defaults otherwise (MAP start, dense mass, target 0.8, tree depth 10; chunk size
    its default unless ``--chunk-size``; bayescale exposes each CPU core as a JAX device and
    splits every chunk's fits over them).  Each K runs in its own fresh process, so peak
    RSS (``getrusage`` maxrss, which XLA's allocations count in; tracemalloc does not see
    them) and compilation are per K.  ``bayescale.configure(cache_dir=None)`` leaves the persistent
    cache off, so no compiled program comes from an earlier run.

(c) **ChEES arm** (``--chees``) — in each K's (b) process, after its measurements:
    ``bayescale.fit(..., by="curve", inference=ChEES(num_chains=C, num_warmup=W_c,
    num_samples=S_c, thin=t, trajectory_scale=f))`` (defaults C = 2, W_c = W / C,
    S_c = S / C, t = 1, f = 1: the same iterations and kept draws per curve as (b);
    ``--chees-*`` to change; ``--chees-vectorized`` its
    ``vectorized``, default bayescale's),
    compile timed the same way, and its gradients counted exactly in an untimed second call
    (:func:`chees_arm`).  Reported beside (b): ms per fit without compilation, achieved
    gradient rate against (b)'s in-program limit, converged share (bayescale's status, whose
    ESS floor is 100 per chain, and r-hat <= 1.01 with min ESS >= 100), and ESS per second
    per fit (median min(bulk, tail) ESS over the fits / ms per fit).  With the loops, at
    K = 1,024 a further fresh process times the same ChEES call with JAX's persistent cache
    filled by an untimed first call, the loop+cache arms' conditions (every program re-traced,
    compiled code loaded from the cache).  ``--no-loop`` skips (a).
(d) **One big ChEES call** (``--chees-big K``, nothing else runs): ``bayescale.fit(...,
    by="curve", inference=ChEES(...))`` on K curves with the ``--chees-*`` settings (warm-up
    and samples default 250), ``--chunk-size``, ``--keep`` and ``--dtype``, in a fresh
    process: wall,
    compilation, peak RSS and converged share (the issue's K = 10,000 target).

Figures
-------
* **per fit, incl. compile** = wall time of the ``fit_batch`` call / K (data preparation,
  compilation, MAP search, NUTS, post-processing and convergence diagnostics all included).
* **per fit, excl. compile** = (wall - compile) / K, where *compile* is the union of JAX's
  own trace, lowering and XLA-compile time spans during the call (``jax.monitoring``), so
  one run per K suffices.
* **speed-up** = loop time per fit / fit_batch time per fit, against each loop.
* **gradient evaluations** (leapfrog steps; NUTS reuses the gradient of the previous step)
  *needed* = the sum over curves and iterations of each chain's own step count, **warm-up
  included**: the benchmark wraps NumPyro's ``hmc`` kernel as bayescale builds it so that
  the ``num_steps`` it reports accumulates over iterations (the Markov chain itself is
  untouched; only this benchmark's ``n_steps`` statistic changes meaning), so the first
  kept draw carries the warm-up total.  MAP search and Laplace start are not counted.
* **throughput limit** = K / time of one ``jax.jit(jax.vmap(jax.value_and_grad(potential)))``
  call at the same K: what the hardware gives when every lane
  of the vmapped gradient does needed work and nothing else runs (same padded data, split
  over the same devices; the fastest of repeated calls, the machine being shared).  At
  small K one call's dispatch (~0.1 ms) weighs, so the same call chained 50 times inside
  one program (``lax.scan``) is reported too, as the *in-program* limit.
* **achieved** = needed gradients / NUTS time, where NUTS time = time inside the sampler
  calls - compile - the MAP search (timed separately: ``jit(vmap(multi_start_map))`` at
  the same K, compile excluded; not done for ``--big``).
* **lock-step efficiency** = achieved / limit (and / in-program limit, which splits into
  **lane use** = needed / executed gradients — under ``vmap`` each NUTS iteration runs
  until the longest trajectory among all chains of the chunk has finished, so executed =
  group size x sum over iterations of the group's max step count, a group being one
  device's share of a chunk (counted exactly on the kept draws; the warm-up is assumed to
  waste the same fraction) — times the **per-step efficiency** left, executed gradients
  per second / in-program limit (tree bookkeeping, adaptation, data movement)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

LAW = "kaplan_per_token"
NUM_POINTS = 30
REFERENCE = {"a": 2.3, "b": 5.4, "c": 0.62}
SPREAD = {"a": 0.2, "b": 0.2, "c": 0.15}  # log-scale sd of the per-curve parameters
BIG_K = 10_000
GRAD_REPS = 50  # value-and-grad calls chained in one program for the in-program limit
TARGET_SPEEDUP, TARGET_K = 50.0, 1024
TARGET_RSS_GIB = 24.0
#: The lock-step sampler's targets at TARGET_K (ms/fit excl. compile, share of the
#: in-program gradient limit, speed-up over the fastest loop incl. compile).
CHEES_MS, CHEES_LIMIT, CHEES_SPEEDUP = 12.0, 0.5, 60.0
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


# ----------------------------------------------------------------------------- helpers


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class CompileClock:
    """Union of JAX's trace/lower/compile time spans (nested spans counted once)."""

    def __init__(self):
        from jax import monitoring

        self.spans: list[tuple[float, float]] = []

        def listener(event, start, end, **_):
            if event in COMPILE_EVENTS:
                self.spans.append((start, end))

        monitoring.register_event_time_span_listener(listener)

    def between(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1] (``time.time()``) covered by compile spans."""
        spans = sorted((max(s, t0), min(e, t1)) for s, e in self.spans if e > t0 and s < t1)
        total, cur_s, cur_e = 0.0, None, None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            total += cur_e - cur_s
        return total


def split_half_diagnostics(draws: dict):
    """Max r-hat and min(bulk, tail) ESS over parameters of single-chain fits.

    ``draws``: name -> ``(fits, draws)``.  Each chain is split into halves taken as two
    chains (split-r-hat's own rule), since arviz-stats gives NaN r-hat for one chain.
    """
    import arviz_stats as azs
    import numpy as np
    import xarray as xr

    half = next(iter(draws.values())).shape[1] // 2
    ds = xr.Dataset(
        {
            k: (("fit", "chain", "draw"), np.asarray(v)[:, : 2 * half].reshape(-1, 2, half))
            for k, v in draws.items()
        }
    )
    rhat = azs.rhat(ds).to_array().max("variable").values
    bulk = azs.ess(ds, method="bulk").to_array().min("variable").values
    tail = azs.ess(ds, method="tail").to_array().min("variable").values
    return rhat, np.minimum(bulk, tail)


def simulate_curves(num: int, path: Path) -> None:
    """``num`` simulated curves -> npz (token_index, loss: (num, 30); params: (num, 3))."""
    import numpy as np

    from bayescale.simulate import simulate

    rng = np.random.default_rng(12345)
    u = rng.standard_normal((num, 3))
    params = np.array([REFERENCE[k] for k in "abc"]) * np.exp(u * [SPREAD[k] for k in "abc"])
    tokens, losses = [], []
    for i in range(num):
        df = simulate(LAW, params=dict(zip("abc", params[i], strict=True)), seed=i)
        assert len(df) == NUM_POINTS
        tokens.append(df["token_index"].to_numpy())
        losses.append(df["loss"].to_numpy())
    np.savez(path, token_index=np.array(tokens), loss=np.array(losses), params=params)


def load_curves(path: Path, num: int):
    import numpy as np

    with np.load(path) as f:
        if f["loss"].shape[0] < num:
            raise ValueError(f"{path} holds {f['loss'].shape[0]} curves, {num} asked")
        return f["token_index"][:num], f["loss"][:num]


# ----------------------------------------------------------------------------- (a) loop


def plain_numpyro_model():
    """The kaplan_per_token posterior as a user would write it in NumPyro."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def model(log_t, log_y=None):
        a = numpyro.sample("a", dist.LogNormal(1.0, 0.75))
        b = numpyro.sample("b", dist.LogNormal(1.5, 1.0))
        c = numpyro.sample("c", dist.LogNormal(-0.7, 0.6))
        sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
        nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
        mu = jnp.log(a + b * jnp.exp(-c * log_t))
        numpyro.sample("loss", dist.StudentT(nu, mu, sigma), obs=log_y)

    return model


def check_priors_match_law() -> None:
    from bayescale.laws import get_law
    from bayescale.model import NU_PRIOR

    law = get_law(LAW)
    got = {k: (p.prior.kind, tuple(p.prior.args)) for k, p in law.parameters.items()}
    want = {
        "a": ("lognormal", (1, 0.75)),
        "b": ("lognormal", (1.5, 1)),
        "c": ("lognormal", (-0.7, 0.6)),
    }
    sigma = (law.sigma_prior.kind, tuple(law.sigma_prior.args))
    if got != want or sigma != ("halfnormal", (0.1,)) or tuple(NU_PRIOR) != (2.0, 0.1):
        raise SystemExit(f"plain NumPyro model out of date with {LAW}: {got}, sigma {sigma}")


def worker_loop(spec: dict) -> dict:
    """A user's loop: plain JAX + NumPyro (bayescale not imported), float64 as bayescale."""
    import jax
    from jax import monitoring

    jax.config.update("jax_enable_x64", True)
    if spec["cache_dir"]:
        jax.config.update("jax_compilation_cache_dir", spec["cache_dir"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    clock = CompileClock()
    counts = {"hits": 0, "misses": 0}

    def count(event, **_):
        if event.endswith("/cache_hits"):
            counts["hits"] += 1
        elif event.endswith("/cache_misses"):
            counts["misses"] += 1

    monitoring.register_event_listener(count)
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    model = plain_numpyro_model()
    tokens, losses = load_curves(Path(spec["curves"]), spec["fits"] + 1)
    times, compiles, steps, diverging, hits, misses = [], [], [], [], [], []
    kept: dict[str, list] = {}
    for i in range(spec["fits"] + 1):
        before = dict(counts)
        t0 = time.time()
        mcmc = MCMC(
            NUTS(model),
            num_warmup=spec["warmup"],
            num_samples=spec["samples"],
            num_chains=1,
            progress_bar=False,
            jit_model_args=spec["jit_model_args"],
        )
        mcmc.run(
            jax.random.key(i),
            jnp.log(tokens[i]),
            jnp.log(losses[i]),
            extra_fields=("num_steps", "diverging"),
        )
        jax.block_until_ready(mcmc.get_samples())
        t1 = time.time()
        extra = mcmc.get_extra_fields()
        for name, value in mcmc.get_samples().items():
            kept.setdefault(name, []).append(np.asarray(value))
        times.append(t1 - t0)
        compiles.append(clock.between(t0, t1))
        steps.append(int(np.sum(extra["num_steps"])))
        diverging.append(int(np.sum(extra["diverging"])))
        hits.append(counts["hits"] - before["hits"])
        misses.append(counts["misses"] - before["misses"])
    rhat, ess = split_half_diagnostics({k: np.stack(v[1:]) for k, v in kept.items()})
    ok = (rhat <= 1.01) & (ess >= 100) & (np.array(diverging[1:]) == 0)
    return {
        "converged_split": float(ok.mean()),
        "max_rhat_split": float(rhat.max()),
        "median_ess_split": float(np.median(ess)),
        "first_s": times[0],
        "first_compile_s": compiles[0],
        "times": times[1:],
        "compile_s": compiles[1:],
        "sampling_steps": steps[1:],
        "diverging": diverging[1:],
        "cache_hits": hits[1:],
        "cache_misses": misses[1:],
        "devices": len(jax.devices()),
        "peak_rss_gib": peak_rss_gib(),
    }


# ----------------------------------------------------------------------------- (b) fit_batch


def counting_hmc_patch() -> None:
    """Make the NUTS ``num_steps`` that bayescale records cumulative over iterations."""
    import bayescale.infer.nuts as nuts

    original = nuts.hmc

    def hmc(*args, **kwargs):
        init_kernel, sample_kernel = original(*args, **kwargs)

        def counting_sample_kernel(state, model_args=(), model_kwargs=None):
            new = sample_kernel(state, model_args=model_args, model_kwargs=model_kwargs)
            return new._replace(num_steps=state.num_steps + new.num_steps)

        return init_kernel, counting_sample_kernel

    nuts.hmc = hmc


def worker_batch(spec: dict) -> dict:
    import jax

    # bayescale samples in float64 inside its own scoped context; the gradient limit and
    # the MAP timing below run outside it, so float64 for the whole process (float32
    # gradients would be a limit about twice too high)
    jax.config.update("jax_enable_x64", True)
    clock = CompileClock()
    import jax.numpy as jnp
    import numpy as np
    import pandas as pd

    import bayescale
    import bayescale.api as api

    bayescale.configure(cache_dir=None)  # CPU cores as devices; no persistent cache: time compiles
    from bayescale.data import prepare
    from bayescale.infer.batch import default_chunk_size, lockstep_defaults, stack
    from bayescale.infer.nuts import SamplerOptions
    from bayescale.infer.optimize import multi_start_map
    from bayescale.laws import get_law
    from bayescale.model import Posterior
    from bayescale.result import Result

    counting_hmc_patch()
    K, W, S = spec["k"], spec["warmup"], spec["samples"]
    tokens, losses = load_curves(Path(spec["curves"]), K)
    frame = pd.DataFrame(
        {
            "curve": np.repeat(np.arange(K), NUM_POINTS),
            "token_index": tokens.ravel(),
            "loss": losses.ravel(),
        }
    )
    rss_before = peak_rss_gib()

    phases: dict[str, float] = {}
    sampler_spans: list[tuple[float, float]] = []
    original_run_batch = api.run_batch

    def timed_run_batch(*args, **kwargs):
        t0 = time.time()
        out = original_run_batch(*args, **kwargs)
        sampler_spans.append((t0, time.time()))
        return out

    api.run_batch = timed_run_batch
    original_from_samples = Result.from_samples.__func__
    original_check = Result.check_convergence

    def timed_from_samples(cls, *args, **kwargs):
        t0 = time.time()
        out = original_from_samples(cls, *args, **kwargs)
        phases["assemble_s"] = time.time() - t0
        return out

    def timed_check(self, *args, **kwargs):
        t0 = time.time()
        out = original_check(self, *args, **kwargs)
        phases["diagnostics_s"] = time.time() - t0
        return out

    Result.from_samples = classmethod(timed_from_samples)
    Result.check_convergence = timed_check

    t0 = time.time()
    result = bayescale.fit(
        frame,
        LAW,
        by="curve",
        model=bench_model(spec),
        inference=bayescale.NUTS(
            num_chains=1,
            num_warmup=W,
            num_samples=S,
            chunk_size=spec["chunk_size"],
            vectorized=spec["vectorized"],
            group_size=spec["group_size"],
            progress_bar=False,
        ),
        seed=0,
        warn=False,
    )
    t1 = time.time()
    rss_fit = peak_rss_gib()
    wall = t1 - t0
    compile_s = clock.between(t0, t1)
    (s0, s1) = sampler_spans[0]
    sampler_s = s1 - s0
    sampler_compile_s = clock.between(s0, s1)

    post = result.group("posterior")
    # ---- gradient counts (the recorded n_steps is cumulative: see counting_hmc_patch)
    cum = result.datatree.sample_stats["n_steps"].values.astype(np.int64)  # (K, 1, S)
    per_draw = np.diff(cum, axis=-1)  # steps of kept draws 2..S
    n0 = per_draw.mean(axis=-1, keepdims=True)  # draw 1's own count, estimated
    warm = cum[..., :1] - n0
    needed_total = float(cum[..., -1].sum())
    needed_warm = float(warm.sum())
    needed_draws = float(per_draw.sum())
    # lock-step groups as run_batch forms them: chunks (the last padded with copies of its
    # first fit), each split over the devices into contiguous blocks, each block run in
    # groups of group_size fits one after another; with vectorized chains a group's chains
    # advance together under vmap, otherwise every chain runs alone (a group of one)
    devices = jax.devices()
    n_dev = len(devices)
    vectorized, group_size = lockstep_defaults(devices)
    vectorized = vectorized if spec["vectorized"] is None else spec["vectorized"]
    group_size = spec["group_size"] or group_size
    options = SamplerOptions(num_chains=1, num_warmup=W, num_samples=S, vectorized=True)
    chunk = spec["chunk_size"] or default_chunk_size(options, 5, NUM_POINTS)
    chunk = min(chunk, K)
    chunk = -(-chunk // n_dev) * n_dev
    block = chunk // n_dev
    lanes = (group_size or block) if vectorized else 1
    executed_draws, saturated, groups = 0.0, 0, 0
    num_chunks = math.ceil(K / chunk)
    for start in range(0, K, chunk):
        idx = np.arange(start, start + chunk)
        idx = np.where(idx < K, idx, start)
        for d in range(n_dev):
            mine = idx[d * block : (d + 1) * block]
            for g in range(0, block, lanes):
                steps = per_draw[mine[g : g + lanes], 0]  # (lanes, draws)
                longest = steps.max(axis=0)
                executed_draws += steps.shape[0] * float(longest.sum())
                saturated += int((longest >= 2**options.max_tree_depth - 1).sum())
                groups += 1
    lane_use = needed_draws / executed_draws
    diag = result.diagnostics
    converged = float((diag["status"] == "converged").mean())
    rhat, ess = split_half_diagnostics(
        {k: post[k].values[:, 0] for k in ("a", "b", "c", "sigma", "nu")}
    )
    ok = (rhat <= 1.01) & (ess >= 100) & (diag["num_divergent"].to_numpy() == 0)
    mean_steps = per_draw.mean(axis=(1, 2))

    # ---- throughput limit: one vmapped value-and-grad call at the same K, on the same
    # (padded) data and split over the same devices as fit_batch's sampler
    law = get_law(LAW)
    posterior = Posterior(law, bench_model(spec).observation_for(law))
    fits = [
        prepare(frame.iloc[i * NUM_POINTS : (i + 1) * NUM_POINTS].drop(columns="curve"), law)
        for i in range(K)
    ]
    data = jax.tree.map(jnp.asarray, stack(fits, sort=True))
    z = posterior.unconstrain(
        {k: jnp.asarray(post[k].values[:, 0, -1]) for k in posterior.site_names}
    )
    if n_dev > 1 and K % n_dev == 0:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("fits",)), PartitionSpec("fits"))
        z, data = jax.device_put((z, data), sharding)
    value_and_grad = jax.vmap(jax.value_and_grad(posterior.potential))
    grad = jax.jit(value_and_grad)
    jax.block_until_ready(grad(z, data))
    calls = []
    t_end = time.time() + spec["grad_seconds"]
    while time.time() < t_end or len(calls) < 5:
        ta = time.perf_counter()
        jax.block_until_ready(grad(z, data))
        calls.append(time.perf_counter() - ta)

    def chained(z, d):  # GRAD_REPS dependent calls in one program: no dispatch per call
        def body(z, _):
            value, g = value_and_grad(z, d)
            return z - 1e-12 * g, value.sum()

        return jax.lax.scan(body, z, None, length=GRAD_REPS)

    chained = jax.jit(chained)
    jax.block_until_ready(chained(z, data))
    scans = []
    t_end = time.time() + spec["grad_seconds"]
    while time.time() < t_end or len(scans) < 3:
        ta = time.perf_counter()
        jax.block_until_ready(chained(z, data))
        scans.append((time.perf_counter() - ta) / GRAD_REPS)

    # ---- the MAP search alone (as init_fit runs it), compile excluded
    map_s = None
    if spec["time_map"]:
        o = SamplerOptions()
        one = jax.vmap(
            lambda key, d: multi_start_map(
                posterior, key, d, num_starts=o.num_starts, num_steps=o.map_steps
            )
        )
        g = group_size if group_size and K % (n_dev * group_size) == 0 else None

        def grouped(keys, d):  # as run_batch: vmapped within a group, groups one by one
            if g is None:
                return one(keys, d)
            split = lambda x: x.reshape(-1, g, *x.shape[1:])  # noqa: E731
            return jax.lax.map(lambda a: one(*a), (split(keys), jax.tree.map(split, d)))

        find = jax.jit(
            jax.shard_map(
                grouped,
                mesh=sharding.mesh,
                in_specs=sharding.spec,
                out_specs=sharding.spec,
                check_vma=False,
            )
            if n_dev > 1 and K % n_dev == 0
            else grouped
        )
        keys = jax.random.split(jax.random.key(1), K)
        if n_dev > 1 and K % n_dev == 0:
            keys = jax.device_put(keys, sharding)
        ta = time.time()
        jax.block_until_ready(find(keys, data))
        tb = time.time()
        map_s = (tb - ta) - clock.between(ta, tb)

    nuts_s = sampler_s - sampler_compile_s - (map_s or 0.0)
    chees = chees_arm(spec, frame, clock, map_s) if spec.get("chees") else None
    return {
        "chees": chees,
        "median_min_ess": nuts_ess(result),
        "k": K,
        "wall_s": wall,
        "compile_s": compile_s,
        "sampler_s": sampler_s,
        "sampler_compile_s": sampler_compile_s,
        "prepare_s": s0 - t0,
        "assemble_s": phases.get("assemble_s", float("nan")),
        "diagnostics_s": phases.get("diagnostics_s", float("nan")),
        "map_s": map_s,
        "nuts_s": nuts_s,
        "chunk": chunk,
        "num_chunks": num_chunks,
        "needed_total": needed_total,
        "needed_warm": needed_warm,
        "needed_draws": needed_draws,
        "executed_draws": executed_draws,
        "lane_use": lane_use,
        "saturated_iters": saturated,
        "draw_iters": per_draw.shape[-1] * groups,
        "mean_steps_per_iter": float(per_draw.mean()),
        "mean_max_steps_per_iter": float(executed_draws / K / per_draw.shape[-1]),
        "mean_steps_p99_fit": float(np.quantile(mean_steps, 0.99)),
        "warm_steps_per_iter": needed_warm / K / W if W else float("nan"),
        "grad_call_s": float(np.min(calls)),
        "grad_call_median_s": float(np.median(calls)),
        "grad_scan_s": float(np.min(scans)),
        "grad_calls_timed": len(calls),
        "points_padded": int(data["log_y"].shape[1]),
        "devices": n_dev,
        "lockstep_groups": groups,
        "vectorized": bool(vectorized),
        "group_size": group_size,
        "converged": converged,
        "converged_split": float(ok.mean()),
        "max_rhat_split": float(np.nanmax(rhat)),
        "median_ess_split": float(np.median(ess)),
        "divergent_fits": int((diag["num_divergent"] > 0).sum()),
        "rss_before_gib": rss_before,
        "peak_rss_gib": rss_fit,
    }


def bench_model(spec: dict):
    """The model every bayescale arm fits: ``--discrepancy none`` (default) is the loop
    peers' model (the law with Student-t noise, no discrepancy); ``default`` is
    ``bayescale.Model()`` (the law's own error on)."""
    import bayescale

    return (
        bayescale.Model()
        if spec.get("discrepancy") == "default"
        else bayescale.Model(discrepancy=None)
    )


def chees_arm(spec: dict, frame, clock: CompileClock, map_s: float | None) -> dict:
    """The ChEES arm (``--chees``), in the NUTS worker's process after its measurements.

    One timed ``bayescale.fit(..., by="curve", inference=ChEES(...))`` call (the persistent
    cache off, the in-memory program cache cleared first, so its compilation is timed), then
    an untimed second call of the same fit with :func:`bayescale.infer.hmc.num_steps`
    wrapped to count every iteration's leapfrog steps, warm-up included (the same seed
    gives the same chains), times the chains: the gradients needed.
    """
    import jax
    import numpy as np

    import bayescale
    import bayescale.api as api
    import bayescale.infer.hmc as hmc
    from bayescale.infer import cache

    C = spec["chees_chains"]
    inference = bayescale.ChEES(
        num_chains=C,
        num_warmup=spec["chees_warmup"],
        num_samples=spec["chees_samples"],
        thin=spec["chees_thin"],
        trajectory_scale=spec["chees_scale"],
        chunk_size=spec["chunk_size"],
        vectorized=spec["chees_vectorized"],
        group_size=spec["group_size"],
        progress_bar=False,
    )
    spans: list[tuple[float, float]] = []
    inner = api.run_batch

    def timed_run_batch(*args, **kwargs):
        t0 = time.time()
        out = inner(*args, **kwargs)
        spans.append((t0, time.time()))
        return out

    def run():
        return bayescale.fit(
            frame, LAW, by="curve", model=bench_model(spec), inference=inference, seed=0, warn=False
        )

    cache.clear()
    api.run_batch = timed_run_batch
    t0 = time.time()
    result = run()
    t1 = time.time()
    api.run_batch = inner
    (s0, s1) = spans[0]
    sampler_compile_s = clock.between(s0, s1)
    sampler_s = (s1 - s0) - sampler_compile_s - (map_s or 0.0)

    counts: list[float] = []
    plain = hmc.num_steps

    def record(n):
        counts.append(float(np.sum(n)))
        return n

    def counting(u, step_size, length, max_steps):
        n = plain(u, step_size, length, max_steps)
        shape = jax.ShapeDtypeStruct(n.shape, n.dtype)
        return jax.pure_callback(record, shape, n, vmap_method="expand_dims")

    hmc.num_steps = counting
    cache.clear()
    try:
        run()
    finally:
        hmc.num_steps = plain
        cache.clear()
    needed = sum(counts) * C  # padded fits of a last chunk or group are counted too
    diag = result.diagnostics
    ess = np.minimum(diag["min_ess_bulk"].to_numpy(), diag["min_ess_tail"].to_numpy())
    ok100 = (diag["max_rhat"] <= 1.01) & (ess >= 100) & (diag["num_divergent"] == 0)
    n_steps = result.datatree.sample_stats["n_steps"].values
    return {
        "wall_s": t1 - t0,
        "compile_s": clock.between(t0, t1),
        "sampler_compile_s": sampler_compile_s,
        "sampler_s": sampler_s,
        "needed_total": needed,
        "mean_steps_per_iter": float(n_steps.mean()),
        "converged": float((diag["status"] == "converged").mean()),
        "converged_ess100": float(ok100.mean()),
        "median_min_ess": float(np.median(ess)),
        "divergent_fits": int((diag["num_divergent"] > 0).sum()),
        "draws": int(C * spec["chees_samples"]),
    }


def worker_chees_big(spec: dict) -> dict:
    """``--chees-big``: one ``bayescale.fit(..., by="curve", inference=ChEES(...))`` call on
    K curves in a fresh process (no NUTS arm): wall, compilation, peak RSS, converged share.

    With ``spec["warm_cache"]`` (a folder) the persistent cache is on there and an untimed
    first call fills it; the timed call then re-traces every program (bayescale's in-memory
    programs cleared) and loads it from the cache: the loop+cache arms' conditions."""
    import jax

    clock = CompileClock()
    import numpy as np
    import pandas as pd

    import bayescale
    from bayescale.infer import cache

    warm = spec.get("warm_cache")  # a folder: one untimed call fills it first
    bayescale.configure(cache_dir=warm or None)
    K = spec["k"]
    tokens, losses = load_curves(Path(spec["curves"]), K)
    frame = pd.DataFrame(
        {
            "curve": np.repeat(np.arange(K), NUM_POINTS),
            "token_index": tokens.ravel(),
            "loss": losses.ravel(),
        }
    )
    inference = bayescale.ChEES(
        num_chains=spec["chees_chains"],
        num_warmup=spec["chees_warmup"],
        num_samples=spec["chees_samples"],
        thin=spec["chees_thin"],
        trajectory_scale=spec["chees_scale"],
        chunk_size=spec["chunk_size"],
        keep=spec["keep"],
        dtype=spec["dtype"],
        progress_bar=False,
    )

    def run():
        return bayescale.fit(
            frame, LAW, by="curve", model=bench_model(spec), inference=inference, seed=0, warn=False
        )

    if warm:  # as the loop+cache arms: programs from a filled persistent cache, re-traced
        run()
        cache.clear()
    rss_before = peak_rss_gib()
    t0 = time.time()
    result = run()
    t1 = time.time()
    diag = result.diagnostics
    return {
        "k": K,
        "wall_s": t1 - t0,
        "compile_s": clock.between(t0, t1),
        "converged": float((diag["status"] == "converged").mean()),
        "rss_before_gib": rss_before,
        "peak_rss_gib": peak_rss_gib(),
        "devices": len(jax.devices()),
    }


def nuts_ess(result) -> float:
    """Median over fits of min(bulk, tail) ESS in ``result``'s diagnostics."""
    import numpy as np

    diag = result.diagnostics
    return float(np.median(np.minimum(diag["min_ess_bulk"], diag["min_ess_tail"])))


# ----------------------------------------------------------------------------- orchestration


def run_worker(kind: str, spec: dict, tmp: Path) -> dict:
    out = tmp / f"{kind}-{len(list(tmp.iterdir()))}.json"
    spec = {**spec, "kind": kind, "out": str(out)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed (exit {proc.returncode}): {spec}")
    return json.loads(out.read_text())


def worker_main(spec: dict) -> None:
    warnings.simplefilter("ignore")
    workers = {"loop": worker_loop, "batch": worker_batch, "chees_big": worker_chees_big}
    result = workers[spec["kind"]](spec)
    Path(spec["out"]).write_text(json.dumps(result))


def fmt_s(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


LOOPS = {  # name -> (persistent cache, jit_model_args)
    "loop": (False, False),
    "loop+cache": (True, False),
    "loop+cache+jit_model_args": (True, True),
}


def summarise_loop(name: str, r: dict, scale: float) -> float:
    import numpy as np

    t = np.array(r["times"])
    per_fit = float(t.mean())
    grads = np.array(r["sampling_steps"])
    run = t - np.array(r["compile_s"])
    print(
        f"  {name}: first fit {r['first_s']:.2f} s (compile {r['first_compile_s']:.2f} s); "
        f"next {len(t)} fits {per_fit:.3f} s/fit (sd {t.std(ddof=1):.3f}, min {t.min():.3f}, "
        f"max {t.max():.3f}), of which trace+compile {np.mean(r['compile_s']):.3f} s; "
        f"persistent-cache hits/misses per fit {np.mean(r['cache_hits']):.1f}/"
        f"{np.mean(r['cache_misses']):.1f}; gradients in the kept draws {grads.mean():.0f}/fit "
        f"(NumPyro reports no warm-up counts; x (W+S)/S: ~{grads.sum() * scale / run.sum():,.0f}"
        f" grad/s outside compilation); converged by split-half r-hat <= 1.01, ESS >= 100, no "
        f"divergence {r['converged_split']:.0%} (max r-hat {r['max_rhat_split']:.3f}, median "
        f"min-ESS {r['median_ess_split']:.0f}); divergent fits "
        f"{sum(d > 0 for d in r['diverging'])}; "
        f"{r['devices']} JAX device(s); peak RSS {r['peak_rss_gib']:.2f} GiB",
        flush=True,
    )
    return per_fit


def batch_figures(r: dict) -> dict:
    K = r["k"]
    limit = K / r["grad_call_s"]
    achieved = r["needed_total"] / r["nuts_s"]
    executed = r["needed_total"] / r["lane_use"]
    limit_scan = K / r["grad_scan_s"]
    return {
        "limit_scan": limit_scan,
        "efficiency_scan": achieved / limit_scan,
        "incl": r["wall_s"] / K,
        "excl": (r["wall_s"] - r["compile_s"]) / K,
        "limit": limit,
        "achieved": achieved,
        "efficiency": achieved / limit,
        "per_step": executed / r["nuts_s"] / limit_scan,
    }


def summarise_batch(r: dict, warmup: int) -> None:
    K = r["k"]
    f = batch_figures(r)
    print(
        f"  K={K}: wall {r['wall_s']:.1f} s = prepare {r['prepare_s']:.1f} + sampler "
        f"{r['sampler_s']:.1f} (compile {r['sampler_compile_s']:.1f}, MAP "
        f"{fmt_s(r['map_s'])}, NUTS {r['nuts_s']:.1f}) + assemble {r['assemble_s']:.1f} + "
        f"diagnostics {r['diagnostics_s']:.1f}; compile in total {r['compile_s']:.1f} s; "
        f"{r['num_chunks']} chunk(s) of {r['chunk']} over {r['devices']} device(s) = "
        f"{r['lockstep_groups']} lock-step group(s) (chains "
        f"{'vmapped' if r['vectorized'] else 'one by one'}, MAP vmapped over groups of "
        f"{r['group_size'] or 'all'} fits); points padded to {r['points_padded']}",
        flush=True,
    )
    print(
        f"    gradients needed {r['needed_total']:.3g} ({r['needed_warm'] / K / warmup:.1f} per "
        f"warm-up iteration, {r['mean_steps_per_iter']:.1f} per kept draw; slowest 1% of "
        f"curves {r['mean_steps_p99_fit']:.1f}); executed per kept-draw iteration "
        f"{r['mean_max_steps_per_iter']:.1f} (longest chain of its group) -> lane use "
        f"{r['lane_use']:.1%}; iterations where some chain hit the tree-depth limit "
        f"{r['saturated_iters']}/{r['draw_iters']}",
        flush=True,
    )
    print(
        f"    vmapped value_and_grad at K={K}: {fmt_s(r['grad_call_s'])}/call best "
        f"(median {fmt_s(r['grad_call_median_s'])}) = {r['grad_call_s'] / K * 1e6:.2f} "
        f"us/gradient -> limit {f['limit']:,.0f} grad/s; achieved {f['achieved']:,.0f} grad/s "
        f"-> lock-step efficiency {f['efficiency']:.1%}; the same call chained {GRAD_REPS}x in "
        f"one program (no per-call dispatch): {r['grad_scan_s'] / K * 1e6:.2f} us/gradient -> "
        f"in-program limit {f['limit_scan']:,.0f} grad/s, efficiency {f['efficiency_scan']:.1%}"
        f" = lane use {r['lane_use']:.1%} x per-step efficiency {f['per_step']:.1%}",
        flush=True,
    )
    print(
        f"    converged by bayescale's status {r['converged']:.1%}; by split-half r-hat <= 1.01, "
        f"ESS >= 100, no divergence {r['converged_split']:.1%} (max r-hat "
        f"{r['max_rhat_split']:.3f}, median min-ESS {r['median_ess_split']:.0f}); fits with "
        f"divergences {r['divergent_fits']}; peak RSS {r['peak_rss_gib']:.2f} GiB (before "
        f"the call {r['rss_before_gib']:.2f})",
        flush=True,
    )
    if r.get("chees"):
        c, g = r["chees"], chees_figures(r)
        print(
            f"  ChEES arm (same process): wall {c['wall_s']:.1f} s, compile {c['compile_s']:.1f} "
            f"s, sampler excl. compile and MAP {c['sampler_s']:.1f} s (NUTS "
            f"{r['nuts_s']:.1f}); {g['excl'] * 1e3:.1f} ms/fit excl. compile (NUTS "
            f"{batch_figures(r)['excl'] * 1e3:.1f}; ratio {g['speedup']:.2f}x); gradients "
            f"needed {c['needed_total']:.3g} ({c['mean_steps_per_iter']:.1f} per kept-draw "
            f"iteration) -> achieved {g['achieved']:,.0f} grad/s = {g['efficiency_scan']:.1%} "
            f"of the in-program limit (NUTS {batch_figures(r)['efficiency_scan']:.1%}); "
            f"converged by bayescale's status {c['converged']:.1%} (NUTS "
            f"{r['converged']:.1%}), by r-hat <= 1.01, min ESS >= 100, no divergence "
            f"{c['converged_ess100']:.1%}; median min-ESS {c['median_min_ess']:.0f} of "
            f"{c['draws']} draws (NUTS {r['median_min_ess']:.0f}); ESS per second per fit "
            f"(excl. compile) {g['ess_per_s']:.0f} (NUTS {g['nuts_ess_per_s']:.0f}, ratio "
            f"{g['ess_ratio']:.2f}x); fits with divergences {c['divergent_fits']}",
            flush=True,
        )


def chees_figures(r: dict) -> dict:
    """Per-fit figures of the ChEES arm of ``r`` against its NUTS run (the same process)."""
    c, f = r["chees"], batch_figures(r)
    K = r["k"]
    excl = (c["wall_s"] - c["compile_s"]) / K
    achieved = c["needed_total"] / c["sampler_s"]
    return {
        "excl": excl,
        "speedup": f["excl"] / excl,
        "achieved": achieved,
        "efficiency_scan": achieved / f["limit_scan"],
        "ess_per_s": c["median_min_ess"] / excl,
        "nuts_ess_per_s": r["median_min_ess"] / f["excl"],
        "ess_ratio": (c["median_min_ess"] / excl) / (r["median_min_ess"] / f["excl"]),
    }


def run_chees_big(args) -> None:
    """``--chees-big K``: one ChEES call on K curves in a fresh process, printed."""
    C = args.chees_chains
    W, S = args.chees_warmup or 250, args.chees_samples or 250
    with tempfile.TemporaryDirectory(prefix="bayescale-bench-") as tmp_name:
        tmp = Path(tmp_name)
        curves = tmp / "curves.npz"
        simulate_curves(args.chees_big, curves)
        spec = {
            "curves": str(curves),
            "k": args.chees_big,
            "chees_chains": C,
            "chees_warmup": W,
            "chees_samples": S,
            "chees_thin": args.chees_thin,
            "chees_scale": args.chees_trajectory_scale,
            "chunk_size": args.chunk_size,
            "dtype": args.dtype,
            "keep": args.keep,
            "discrepancy": args.discrepancy,
        }
        print(
            f"ChEES(num_chains={C}, num_warmup={W}, num_samples={S}, thin={args.chees_thin}, "
            f"trajectory_scale={args.chees_trajectory_scale}, "
            f"chunk_size={args.chunk_size}, keep={args.keep}, dtype={args.dtype!r}), "
            f"K = {args.chees_big}, discrepancy {args.discrepancy}, "
            f"load average at start {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        r = run_worker("chees_big", spec, tmp)
    print(
        f"  wall {r['wall_s']:.1f} s (compile {r['compile_s']:.1f} s; "
        f"{(r['wall_s'] - r['compile_s']) / r['k'] * 1e3:.1f} ms/fit excl. compile); peak RSS "
        f"{r['peak_rss_gib']:.2f} GiB (before the call {r['rss_before_gib']:.2f}); converged "
        f"by bayescale's status {r['converged']:.1%}; {r['devices']} device(s); load average at "
        f"end {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="W=S=100, K up to 256")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(k) for k in s.split(",") if k.strip()],
        default=None,
        help="comma-separated K (empty: none, e.g. with --big)",
    )
    parser.add_argument("--big", action="store_true", help=f"also fit K={BIG_K} curves once")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--loop-fits", type=int, default=8, help="timed loop fits (>= 8)")
    parser.add_argument("--chunk-size", type=int, default=None, help="fit_batch chunk_size")
    parser.add_argument(
        "--vectorized",
        choices=["auto", "yes", "no"],
        default="auto",
        help="fit_batch vectorized= (chains under vmap); auto: bayescale's default",
    )
    parser.add_argument("--group-size", type=int, default=None, help="fit_batch group_size")
    parser.add_argument(
        "--chees", action="store_true", help="add the ChEES arm in each K's NUTS process"
    )
    parser.add_argument("--chees-chains", type=int, default=2)
    parser.add_argument("--chees-warmup", type=int, default=None, help="default: W / chains")
    parser.add_argument("--chees-samples", type=int, default=None, help="default: S / chains")
    parser.add_argument("--chees-thin", type=int, default=1, help="ChEES(thin=)")
    parser.add_argument(
        "--chees-trajectory-scale", type=float, default=1.0, help="ChEES(trajectory_scale=)"
    )
    parser.add_argument(
        "--chees-vectorized",
        choices=["auto", "yes", "no"],
        default="auto",
        help="ChEES(vectorized=): fits of a group under vmap together (auto: bayescale's)",
    )
    parser.add_argument("--no-loop", action="store_true", help="skip the NumPyro loops")
    parser.add_argument(
        "--chees-big",
        type=int,
        default=None,
        metavar="K",
        help="only one ChEES fit of K curves (the --chees-* settings; --chunk-size; --dtype)",
    )
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--keep", type=int, default=None, help="--chees-big: ChEES(keep=)")
    parser.add_argument(
        "--discrepancy",
        choices=["none", "default"],
        default="none",
        help="bayescale's model: none = the loop peers' model (default); default = Model()",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return

    W = args.warmup or (100 if args.quick else 500)
    S = args.samples or (100 if args.quick else 500)
    sizes = args.sizes
    if sizes is None:
        sizes = [64, 256] if args.quick else [64, 256, 1024, 4096]
    if args.loop_fits < 1:
        parser.error("--loop-fits must be >= 1")
    n_curves = max([*sizes, BIG_K if args.big else 0, args.loop_fits + 1])
    if args.chees_big:
        run_chees_big(args)
        return

    import platform

    import jax

    check_priors_match_law()
    print(
        f"bayescale batched benchmark: law {LAW}, {NUM_POINTS} points/curve, bayescale's "
        f"discrepancy {args.discrepancy}; "
        f"num_warmup W = {W}, num_samples S = {S}, 1 chain per curve for every peer; "
        f"K = {sizes}{' + ' + str(BIG_K) if args.big else ''}; {os.cpu_count()} CPU core(s) "
        f"({platform.machine()}), jax {jax.__version__} on {jax.default_backend()}, float64; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bayescale-bench-") as tmp_name:
        tmp = Path(tmp_name)
        curves = tmp / "curves.npz"
        t0 = time.time()
        simulate_curves(n_curves, curves)
        print(f"simulated {n_curves} curves in {time.time() - t0:.1f} s", flush=True)
        base = {"curves": str(curves), "warmup": W, "samples": S}

        print(
            "\n(a) Python loop of NumPyro MCMC(NUTS) fits (rebuilt per fit), a fresh process each:",
            flush=True,
        )
        loop = {}
        for name, (cached, jit_args) in ({} if args.no_loop else LOOPS).items():
            cache_dir = ""
            if cached:
                cache_dir = str(tmp / f"jax-cache-{name}")
                os.mkdir(cache_dir)
            spec = {
                **base,
                "fits": args.loop_fits,
                "cache_dir": cache_dir,
                "jit_model_args": jit_args,
            }
            loop[name] = summarise_loop(name, run_worker("loop", spec, tmp), (W + S) / S)

        print("\n(b) bayescale.fit_batch, a fresh process per K:", flush=True)
        batch = {}
        runs = [(K, True) for K in sizes] + ([(BIG_K, False)] if args.big else [])
        for K, time_map in runs:
            spec = {
                **base,
                "k": K,
                "chunk_size": args.chunk_size,
                "vectorized": {"auto": None, "yes": True, "no": False}[args.vectorized],
                "group_size": args.group_size,
                "grad_seconds": 3.0,
                "time_map": time_map,
                "chees": args.chees,
                "chees_chains": args.chees_chains,
                "chees_warmup": args.chees_warmup or W // args.chees_chains,
                "chees_samples": args.chees_samples or max(1, S // args.chees_chains),
                "chees_thin": args.chees_thin,
                "chees_scale": args.chees_trajectory_scale,
                "chees_vectorized": {"auto": None, "yes": True, "no": False}[args.chees_vectorized],
                "discrepancy": args.discrepancy,
            }
            batch[K] = run_worker("batch", spec, tmp)
            summarise_batch(batch[K], W)
            if args.chees and not args.no_loop and K == TARGET_K:
                cache_dir = tmp / "jax-cache-chees"
                os.mkdir(cache_dir)
                warm = {**spec, "keep": None, "dtype": "float64", "warm_cache": str(cache_dir)}
                batch[K]["chees_warm"] = r = run_worker("chees_big", warm, tmp)
                print(
                    f"  ChEES, persistent cache filled by an untimed first call (as loop+cache): "
                    f"wall {r['wall_s']:.2f} s = {r['wall_s'] / K * 1e3:.1f} ms/fit, compile "
                    f"{r['compile_s']:.2f} s, converged {r['converged']:.1%}",
                    flush=True,
                )

    # ---- final tables
    if args.no_loop:  # the per-K lines above carry the NUTS and ChEES figures
        return
    base_loop = loop["loop"]
    print(
        f"\nSummary, W={W}, S={S}, 1 chain per curve.  Loop s/fit: "
        + ", ".join(f"{k} {v:.3f}" for k, v in loop.items())
        + ".  incl./excl. = fit_batch wall per fit with/without its compilation."
    )
    head = f"{'K':>6} {'wall s':>8} {'compile s':>9} {'ms/fit incl.':>12} {'ms/fit excl.':>12}"
    for name in loop:
        head += f" {'x ' + name + ' incl./excl.':>32}"
    print(head)
    for K, r in batch.items():
        f = batch_figures(r)
        line = (
            f"{K:>6} {r['wall_s']:>8.1f} {r['compile_s']:>9.1f} {f['incl'] * 1e3:>12.1f} "
            f"{f['excl'] * 1e3:>12.1f}"
        )
        for per_fit in loop.values():
            line += f" {per_fit / f['incl']:>20.1f}x /{per_fit / f['excl']:>8.1f}x"
        print(line)
    print(
        f"\n{'K':>6} {'peak RSS GiB':>12} {'grad needed':>12} {'achieved/s':>11} "
        f"{'limit/s':>10} {'lock-step eff.':>14} {'limit/s in-prog.':>16} {'eff. in-prog.':>13} "
        f"{'lane use':>9} {'per-step eff.':>13} "
        f"{'depth-limit iters':>17} {'conv. split':>11} {'status conv.':>12} {'ESS':>5} "
        f"{'MAP s':>7} {'post s':>7}"
    )
    for K, r in batch.items():
        f = batch_figures(r)
        print(
            f"{K:>6} {r['peak_rss_gib']:>12.2f} {r['needed_total']:>12.3g} "
            f"{f['achieved']:>11.3g} {f['limit']:>10.3g} {f['efficiency']:>14.1%} "
            f"{f['limit_scan']:>16.3g} {f['efficiency_scan']:>13.1%} "
            f"{r['lane_use']:>9.1%} {f['per_step']:>13.1%} "
            f"{r['saturated_iters']:>8}/{r['draw_iters']:<8} {r['converged_split']:>11.1%} "
            f"{r['converged']:>12.1%} {r['median_ess_split']:>5.0f} "
            f"{r['map_s'] if r['map_s'] is not None else float('nan'):>7.1f} "
            f"{r['assemble_s'] + r['diagnostics_s']:>7.1f}"
        )
    print("\nTargets (issue, this CPU):")
    if TARGET_K in batch:
        f = batch_figures(batch[TARGET_K])
        speed = base_loop / f["incl"]
        print(
            f"  >= {TARGET_SPEEDUP:.0f}x per fit at K={TARGET_K} (compile included) vs the plain "
            f"loop: {speed:.1f}x -> {'MET' if speed >= TARGET_SPEEDUP else 'NOT MET'} "
            f"(excl. compile {base_loop / f['excl']:.1f}x; vs the fastest loop "
            f"{min(loop.values()) / f['incl']:.1f}x)"
        )
    else:
        print(f"  >= {TARGET_SPEEDUP:.0f}x per fit at K={TARGET_K}: K={TARGET_K} not run")
    if TARGET_K in batch and batch[TARGET_K].get("chees"):
        r = batch[TARGET_K]
        c, g = r["chees"], chees_figures(r)
        incl = c["wall_s"] / TARGET_K
        checks = [
            (f"<= {CHEES_MS:.0f} ms/fit excl. compile", f"{g['excl'] * 1e3:.1f} ms",
             g["excl"] * 1e3 <= CHEES_MS),
            ("converged share >= NUTS's", f"{c['converged']:.1%} vs {r['converged']:.1%}",
             c["converged"] >= r["converged"]),
            (f">= {CHEES_LIMIT:.0%} of the in-program gradient limit",
             f"{g['efficiency_scan']:.1%}", g["efficiency_scan"] >= CHEES_LIMIT),
        ]  # fmt: skip
        if loop:
            fastest = min(loop.values())
            checks.append(
                (
                    f">= {CHEES_SPEEDUP:.0f}x the fastest loop, compile included, cache off",
                    f"{fastest / incl:.1f}x",
                    fastest / incl >= CHEES_SPEEDUP,
                )
            )
            if "chees_warm" in r:  # like for like: the fastest loop's cache is filled too
                warm = r["chees_warm"]["wall_s"] / TARGET_K
                checks.append((f">= {CHEES_SPEEDUP:.0f}x the fastest loop, compile included, "
                               "both from a filled persistent cache", f"{fastest / warm:.1f}x",
                               fastest / warm >= CHEES_SPEEDUP))  # fmt: skip
        for what, value, ok in checks:
            print(f"  ChEES at K={TARGET_K}, {what}: {value} -> {'MET' if ok else 'NOT MET'}")
    if args.big:
        r = batch[BIG_K]
        ok = r["peak_rss_gib"] <= TARGET_RSS_GIB
        print(
            f"  {BIG_K} curves in one fit_batch call within {TARGET_RSS_GIB:.0f} GiB: wall "
            f"{r['wall_s']:.0f} s, peak RSS {r['peak_rss_gib']:.2f} GiB -> "
            f"{'MET' if ok else 'NOT MET'}"
        )
    else:
        print(f"  {BIG_K} curves within {TARGET_RSS_GIB:.0f} GiB: not run (use --big)")


if __name__ == "__main__":
    main()
