"""NUTS for one or many independent posteriors in one jit-compiled program.

The sampler is NumPyro's functional NUTS (:func:`numpyro.infer.hmc.hmc`) over the potential
of :class:`bayescale.model.Posterior`, in the posterior's centred sampler coordinates
(:meth:`~bayescale.model.Posterior.from_sampler`: a unit-Jacobian shear; draws are mapped
back before they leave the program).  Each fit is initialised by multi-start BFGS
(:mod:`bayescale.infer.optimize`): chains start from draws of the Laplace approximation at
the best mode, and the inverse Hessian there is the initial dense inverse mass matrix, which
NumPyro's windowed adaptation then refines per fit.

:func:`build_sampler` returns ``run(keys, data)`` where every leaf of ``data`` carries a
leading fit axis; :func:`bayescale.infer.batch.run_batch`, the one driver, calls it with one
fit (a single or pooled fit) or with many (``fit(..., by=)``).  Fits
run in groups (``lax.map`` over groups, ``vmap`` of the MAP search within one); each chain
is one ``scan`` over iterations, the chains of a group vmapped (``vectorized``) or mapped one
after another; draws are written into a preallocated buffer.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc

from bayescale.infer.cache import compiled, jit
from bayescale.infer.optimize import chain_starts
from bayescale.infer.parallel import in_groups
from bayescale.infer.parallel import shard as shard_axis
from bayescale.model import Posterior, posterior_key

__all__ = ["SamplerOptions", "build_sampler"]


class SamplerOptions(NamedTuple):
    """Static sampler settings (hashable: part of the compilation cache key)."""

    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    thin: int = 1
    dense_mass: bool = True
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    num_starts: int = 8
    map_steps: int = 60
    init: str = "map"  # "map": chains start around the MAP; "prior": from prior draws
    vectorized: bool | None = False  # vmap chains (lock-step) or lax.map them one by one
    group_size: int | None = None  # fits initialised together; groups one by one (None: all)


def _check_options(o: SamplerOptions) -> None:
    for name in ("num_chains", "num_samples", "thin", "num_starts", "map_steps"):
        value = getattr(o, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(o.num_warmup, int) or o.num_warmup < 0:
        raise ValueError(f"num_warmup must be a non-negative integer, got {o.num_warmup!r}")
    if o.group_size is not None and (not isinstance(o.group_size, int) or o.group_size < 1):
        raise ValueError(f"group_size must be None or a positive integer, got {o.group_size!r}")
    if not 0 < o.target_accept_prob < 1:
        raise ValueError(f"target_accept_prob must lie in (0, 1), got {o.target_accept_prob!r}")
    if not isinstance(o.max_tree_depth, int) or not 1 <= o.max_tree_depth <= 15:
        raise ValueError(f"max_tree_depth must be an integer in 1..15, got {o.max_tree_depth!r}")


class _Progress:
    """A tqdm bar fed from inside the compiled loop by ``jax.debug.callback``."""

    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

    def __call__(self, i):
        self.bar.n = max(self.bar.n, int(i) + 1)
        self.bar.refresh()
        if self.bar.n >= self.bar.total:
            self.bar.close()


def build_sampler(
    posterior: Posterior,
    options: SamplerOptions,
    *,
    progress_bar: bool = False,
    devices: tuple | None = None,
    shard: str = "fits",
):
    """Compile (once per law, likelihood, options and devices) ``run(keys, data) -> dict``.

    The returned arrays have shape ``(fits, chains, draws, ...)``: ``z`` the unconstrained
    draws and the NUTS statistics; plus per fit the MAP potential and failed starts.  With
    several ``devices``, ``shard="fits"`` splits the fit axis over them (the number of fits
    must be a multiple of the number of devices) and ``shard="chains"`` splits the chains
    of each fit (used by a single fit: four chains on two CPU cores run two by two).
    """
    _check_options(options)
    devices = tuple(devices) if devices is not None and len(devices) > 1 else None
    key = (
        "nuts",
        *posterior_key(posterior),
        options,
        progress_bar,
        devices,
        shard,
    )
    return compiled(key, lambda: _build(posterior, options, progress_bar, devices, shard))


def _build(posterior: Posterior, o: SamplerOptions, progress_bar: bool, devices, shard: str):
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda data: partial(posterior.sampler_potential, data=data), algo="NUTS"
    )
    total = o.num_warmup + o.num_samples * o.thin
    every = max(1, total // 100)
    bar: list = [None]  # the current run's progress bar, looked up when the callback fires

    def tick(i):
        if bar[0] is not None:
            bar[0](i)

    def init_fit(key, data):
        k_map, k_jitter, k_chains = jax.random.split(key, 3)
        w0, cov, mode = chain_starts(
            posterior, k_map, k_jitter, data, o.num_chains,
            num_starts=o.num_starts, map_steps=o.map_steps, init=o.init,
        )  # fmt: skip

        def init_chain(z, k):
            return init_kernel(
                z,
                o.num_warmup,
                inverse_mass_matrix=cov if o.dense_mass else jnp.diag(cov),
                dense_mass=o.dense_mass,
                target_accept_prob=o.target_accept_prob,
                max_tree_depth=o.max_tree_depth,
                model_args=(data,),
                rng_key=k,
            )

        states = jax.vmap(init_chain)(w0, jax.random.split(k_chains, o.num_chains))
        return states, mode

    def stats(s, data):
        return {
            "z": posterior.from_sampler(s.z, data),
            "diverging": s.diverging,
            "n_steps": s.num_steps,
            "acceptance_rate": s.mean_accept_prob,
            "lp": -s.potential_energy,
            "energy": s.energy,
            "step_size": s.adapt_state.step_size,
        }

    def run_chain(state, data, chain_index):
        """All iterations of one chain; kept draws are written into a preallocated buffer."""
        buffer = jax.tree.map(
            lambda x: jnp.zeros((o.num_samples, *x.shape), x.dtype), stats(state, data)
        )

        def body(carry, i):
            state, buffer = carry
            state = sample_kernel(state, model_args=(data,))
            j = jnp.clip((i - o.num_warmup) // o.thin, 0, o.num_samples - 1)
            keep = (i >= o.num_warmup) & ((i - o.num_warmup) % o.thin == o.thin - 1)
            buffer = jax.tree.map(
                lambda b, x: b.at[j].set(jnp.where(keep, x, b[j])), buffer, stats(state, data)
            )
            if progress_bar:
                jax.lax.cond(
                    (i % every == 0) | (i == total - 1),
                    lambda: jax.debug.callback(tick, chain_index * total + i),
                    lambda: None,
                )
            return (state, buffer), None

        (state, buffer), _ = jax.lax.scan(body, (state, buffer), jnp.arange(total))
        return buffer, state.adapt_state.inverse_mass_matrix

    def run_fits(keys, data):
        """Initialise and sample the fits of ``keys``/``data`` (leading fit axis)."""
        num_fits = keys.shape[0]
        if num_fits == 1:  # nothing to batch: unbatched loops trace and compile faster
            one = init_fit(keys[0], jax.tree.map(lambda x: x[0], data))
            states, mode = jax.tree.map(lambda x: x[None], one)
        else:
            states, mode = jax.vmap(init_fit)(keys, data)
        # one flat axis of fits x chains, each chain a whole scan: vmapped (lock-step) or
        # lax.map-ped (one after another, no lock-step waste; smaller program)
        flat = lambda x: x.reshape(num_fits * o.num_chains, *x.shape[2:])  # noqa: E731
        states = jax.tree.map(flat, states)
        chain_data = jax.tree.map(lambda x: jnp.repeat(x, o.num_chains, axis=0), data)
        index = jnp.arange(num_fits * o.num_chains)

        def run_chains(states, chain_data, index):
            if o.vectorized:
                return jax.vmap(run_chain)(states, chain_data, index)
            return jax.lax.map(lambda a: run_chain(*a), (states, chain_data, index))

        if devices is not None and shard == "chains":
            run_chains = shard_axis(run_chains, devices, "chains")
        buffer, imm = run_chains(states, chain_data, index)

        def unflat(b):  # (fits*chains, ...) -> (fits, chains, ...)
            return b.reshape(num_fits, o.num_chains, *b.shape[1:])

        draws = jax.tree.map(unflat, buffer)  # (fits, chains, draws, ...)
        draws["map_potential"] = mode.potential
        draws["map_failed_starts"] = mode.num_failed
        draws["inverse_mass_matrix"] = unflat(imm)
        return draws

    def run(keys, data):
        """Fits in groups of ``group_size``, each group one ``run_fits``, groups one by one.

        Within a group the MAP search is vmapped over fits (fixed-length, so no lane waits)
        and the chains are vmapped (``vectorized``) or mapped one after another.  Under
        ``vmap`` every NUTS iteration lasts as long as the longest trajectory among the
        chains advancing together, and wide vmaps fall out of the CPU caches; groups bound
        both, while the whole batch stays one compiled call.
        """
        return in_groups(run_fits, keys, data, o.group_size)

    if devices is not None and shard == "fits":
        run = shard_axis(run, devices, "fits")
    jitted = jit(run, devices)
    if not progress_bar:
        return jitted

    def with_progress(keys, data):
        bar[0] = _Progress(total * keys.shape[0] * o.num_chains, "sampling")
        return jitted(keys, data)

    return with_progress
