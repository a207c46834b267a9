"""Many independent fits as one compiled program: padded, chunked and sharded.

Every fit runs the single-fit sampler of :mod:`bayescale.infer.nuts` (same log density,
same MAP initialisation, its own warm-up adaptation); here the fits are stacked along a
leading axis, curves of different lengths padded and masked, the fit axis split into chunks
(each chunk one call of the same compiled program) and, with several devices, each chunk
split over them with ``shard_map``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial

import jax
import numpy as np

from bayescale.infer.hmc import ChEESOptions, build_chees_sampler
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.infer.parallel import pad_fits, padded_length, stack, usable_devices
from bayescale.model import Posterior

__all__ = ["default_chunk_size", "lockstep_defaults", "padded_length", "run_batch", "stack"]

CPU_GROUP_SIZE = 32


def lockstep_defaults(devices: Sequence) -> tuple[bool, int | None]:
    """``(vectorized, group_size)`` for fits run on ``devices``.

    On accelerators all chains of a chunk advance together under ``vmap`` (lanes are the
    parallelism).  On CPU chains run one after another (NUTS's data-dependent control flow
    under ``vmap`` costs more than vectorisation saves there; ``benchmarks/batched.py
    --group-sizes``), and the fixed-length MAP search is vmapped over groups of
    ``CPU_GROUP_SIZE`` fits.
    """
    if all(d.platform == "cpu" for d in devices):
        return False, CPU_GROUP_SIZE
    return True, None


def default_chunk_size(options: SamplerOptions, dim: int, num_points: int) -> int:
    """Fits per compiled call so that draws and working memory stay within ~4 GiB."""
    per_fit = (
        8
        * options.num_chains
        * (
            options.num_samples * (dim + 8)  # kept draws and statistics
            + 40 * dim * dim  # NUTS state and adaptation (dense mass matrix windows)
            + 8 * num_points  # data and per-point temporaries
        )
    )
    return int(max(1, min(8192, (4 * 2**30) // per_fit)))


def run_batch(
    posterior: Posterior,
    options: SamplerOptions | ChEESOptions,
    keys,
    data: dict,
    *,
    devices: Sequence | None = None,
    chunk_size: int | None = None,
    progress_bar: bool = False,
    reduce: Callable[[dict], dict] | None = None,
) -> dict:
    """Sample every fit of ``data`` (leaves with a leading fit axis); numpy output.

    The one sampler driver (NUTS for :class:`SamplerOptions`, ChEES-HMC of
    :mod:`bayescale.infer.hmc` for :class:`ChEESOptions`, which shows no progress bar inside
    a single fit's compiled loop): a single fit (also a pooled posterior, whose groups are one fit)
    and a batch of fits alike.  A single fit splits its chains over the ``devices`` that
    divide their number (``vectorized``/``group_size`` as given, ``False``/``None`` when
    left ``None``) and shows ``progress_bar`` from inside the compiled loop; a batch shows
    one bar step per chunk.

    ``reduce``, when given, is applied to each chunk's output as it arrives (e.g.
    :func:`bayescale.convergence.keep_draws`), so only what it returns is held for all fits.

    ``options.vectorized`` / ``options.group_size`` left ``None`` take the defaults of
    :func:`lockstep_defaults` for ``devices``.  Chunks all have the same size, as even as the
    count allows (the last is padded with prior-only copies of its first fit, see
    :func:`~bayescale.infer.parallel.pad_fits`, and trimmed), so the
    program is compiled once and little padding is computed.
    With ``devices`` (default: every JAX device), the chunk size is rounded up to a
    multiple of their number and each chunk is sharded over them.
    """
    num_fits = keys.shape[0]
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(options, ChEESOptions):
        build_sampler_for = build_chees_sampler
    else:
        build_sampler_for = partial(build_sampler, progress_bar=progress_bar and num_fits == 1)
    if num_fits == 1:
        options = options._replace(vectorized=bool(options.vectorized))
        run = build_sampler_for(
            posterior,
            options,
            devices=usable_devices(devices, options.num_chains),
            shard="chains",
        )
        out = jax.tree.map(np.asarray, jax.device_get(run(keys, data)))
        return out if reduce is None else reduce(out)
    n_dev = len(devices)
    vectorized, group_size = lockstep_defaults(devices)
    if options.vectorized is None:
        options = options._replace(vectorized=vectorized)
    if options.group_size is None:
        options = options._replace(group_size=group_size)
    if chunk_size is None:
        chunk_size = default_chunk_size(options, posterior.dim, data["log_y"].shape[1])
    chunk_size = int(min(chunk_size, num_fits))
    chunk_size = -(-num_fits // -(-num_fits // chunk_size))  # balanced: 10,000 -> 2 x 5,000
    chunk_size = -(-chunk_size // n_dev) * n_dev
    run = build_sampler_for(posterior, options, devices=devices if n_dev > 1 else None)
    starts = range(0, num_fits, chunk_size)
    bar = None
    if progress_bar and len(starts) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_fits, desc="fits", unit="fit", file=sys.stderr)
    pieces = []
    for start in starts:
        part = jax.tree.map(lambda x, s=start: x[s : s + chunk_size], (keys, data))
        chunk_keys, chunk, valid = pad_fits(*part, chunk_size)  # the last chunk padded
        out = jax.device_get(run(chunk_keys, chunk))
        piece = jax.tree.map(lambda x, v=valid: np.asarray(x)[:v], out)
        pieces.append(piece if reduce is None else reduce(piece))
        if bar is not None:
            bar.update(valid)
    if bar is not None:
        bar.close()
    return jax.tree.map(lambda *xs: np.concatenate(xs), *pieces)
