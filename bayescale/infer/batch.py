"""Many independent fits as one compiled program: padded, chunked, sharded and reduced.

Every fit runs the single-fit sampler of :mod:`bayescale.infer.nuts` (same log density,
same MAP initialisation, its own warm-up adaptation); here the fits are stacked along a
leading axis, curves of different lengths padded and masked, the fit axis split into chunks
of a bucketed size (:func:`chunk_layout`: each chunk one call of the same compiled program,
and a new number of fits in the same bucket reuses it), with several devices each chunk
split over them with ``shard_map`` (over several processes: :mod:`~bayescale.infer.
distributed`), and with ``keep`` each chunk reduced on the device
(:mod:`bayescale.infer.reduce`) before it crosses to the host.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial

import jax
import numpy as np

from bayescale.infer import distributed
from bayescale.infer.hmc import ChEESOptions, build_chees_sampler
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.infer.parallel import (
    bucket,
    bucket_below,
    pad_fits,
    padded_length,
    stack,
    usable_devices,
)
from bayescale.infer.reduce import build_reduction
from bayescale.model import Posterior

__all__ = [
    "DTYPES",
    "chunk_layout",
    "default_chunk_size",
    "lockstep_defaults",
    "padded_length",
    "run_batch",
    "stack",
]

#: Floating dtypes a batch can sample in (``NUTS(dtype=...)``).
DTYPES = ("float64", "float32")

CPU_GROUP_SIZE = 32


def lockstep_defaults(
    devices: Sequence, options: SamplerOptions | ChEESOptions | None = None
) -> tuple[bool, int | None]:
    """``(vectorized, group_size)`` for fits run on ``devices`` by the sampler of ``options``.

    On accelerators, and for ChEES-HMC everywhere (every lane runs the same leapfrog count,
    so nothing is wasted), all chains of a chunk advance together under ``vmap`` (lanes
    are the parallelism).  For NUTS on CPU chains run one after another (its
    data-dependent control flow under ``vmap`` costs more than vectorisation saves there;
    ``benchmarks/batched.py --group-sizes``), and the fixed-length MAP search is vmapped
    over groups of ``CPU_GROUP_SIZE`` fits.
    """
    if isinstance(options, ChEESOptions):
        return True, None
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


def chunk_layout(num_fits: int, limit: int, num_devices: int) -> int:
    """Fits per chunk for ``num_fits`` fits, at most ``limit`` per chunk (at least one per
    device), over ``num_devices`` devices.

    Each device's share of a chunk is a :func:`~bayescale.infer.parallel.bucket` size (1, 2,
    3, 4, 6, 8, 12, ...): the fewest chunks of at most ``limit`` fits, as even as the count
    allows, then rounded up to a bucket, so that calls with different numbers of fits in the
    same bucket run the same compiled program.  The last chunk is padded.
    """
    per_device = -(-num_fits // num_devices)
    largest = bucket_below(max(1, limit // num_devices))
    chunks = -(-per_device // largest)
    return bucket(-(-per_device // chunks)) * num_devices


def run_batch(
    posterior: Posterior,
    options: SamplerOptions | ChEESOptions,
    keys,
    data: dict,
    *,
    devices: Sequence | None = None,
    chunk_size: int | None = None,
    progress_bar: bool = False,
    keep: int | None = None,
    dtype: str = "float64",
) -> dict:
    """Sample every fit of ``data`` (leaves with a leading fit axis); numpy output.

    The one driver of batched samplers (NUTS for :class:`SamplerOptions`, ChEES-HMC of
    :mod:`bayescale.infer.hmc` for :class:`ChEESOptions`, which shows no progress bar inside a
    single fit's compiled loop): a single fit (also a pooled posterior, whose groups
    are one fit) and a batch of fits alike.  The sampler is a compiled ``run(keys, data)``
    returning a dict of arrays with a leading fit axis (draws ``(fit, chain, draw, ...)``,
    their statistics, per-fit outputs named in :data:`bayescale.convergence.PER_FIT`); every
    chunk of its output goes through the same reduction.  A single fit splits its chains
    over the ``devices`` of this process that divide their number (``vectorized``/
    ``group_size`` as given, ``False``/``None`` when left ``None``) and shows
    ``progress_bar`` from inside the compiled loop; a batch shows one bar step per chunk.

    ``keep``, when given, reduces each chunk to ``keep`` draws per chain and
    ``out["all_draws"]``, the convergence numbers and summary of all draws
    (:func:`bayescale.infer.reduce.build_reduction`): on accelerators on the device that
    sampled it, so only that crosses to the host; on CPUs as soon as it is fetched.

    ``dtype`` (:data:`DTYPES`): ``"float32"`` samples in float32 (data cast, JAX's x64
    switched off for the call, scoped; a device-side reduction then computes in float32 too,
    a host-side one in float64), ``"float64"`` in float64.

    ``options.vectorized`` / ``options.group_size`` left ``None`` take the defaults of
    :func:`lockstep_defaults` for ``devices``.  Chunks all have the size of
    :func:`chunk_layout` (``chunk_size``, default :func:`default_chunk_size`, is its
    limit); the last is padded with prior-only copies of its first fit (see
    :func:`~bayescale.infer.parallel.pad_fits`) and trimmed.  With ``devices`` (default:
    ``jax.devices()``, which after ``jax.distributed.initialize`` holds every process's
    devices), each chunk is sharded over them; when they span processes each process
    places its share of the curves (:func:`bayescale.infer.distributed.to_global`) and
    every process gets the whole output (:func:`~bayescale.infer.distributed.gather`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    with jax.enable_x64(dtype == "float64"):
        data = jax.tree.map(
            lambda x: x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x, data
        )
        return _run(posterior, options, keys, data, devices, chunk_size, progress_bar, keep)


def _run(posterior, options, keys, data, devices, chunk_size, progress_bar, keep) -> dict:
    num_fits = keys.shape[0]
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(options, ChEESOptions):
        build_sampler_for = build_chees_sampler
    else:
        build_sampler_for = partial(build_sampler, progress_bar=progress_bar and num_fits == 1)
    if num_fits == 1:
        if distributed.spans_processes(devices):  # each process runs it on its own devices
            devices = [d for d in devices if d.process_index == jax.process_index()]
        options = options._replace(vectorized=bool(options.vectorized))
        run = build_sampler_for(
            posterior,
            options,
            devices=usable_devices(devices, options.num_chains),
            shard="chains",
        )
        reduce = None if keep is None else build_reduction(posterior, keep, devices[:1])
        return _fetch(run(keys, data), reduce, spans=False)
    n_dev = len(devices)
    spans = distributed.spans_processes(devices)
    vectorized, group_size = lockstep_defaults(devices, options)
    if options.vectorized is None:
        options = options._replace(vectorized=vectorized)
    if options.group_size is None:
        options = options._replace(group_size=group_size)
    if chunk_size is None:
        chunk_size = default_chunk_size(options, posterior.dim, data["log_y"].shape[1])
    chunk_size = chunk_layout(num_fits, chunk_size, n_dev)
    sharded = devices if n_dev > 1 else None
    run = build_sampler_for(posterior, options, devices=sharded)
    reduce = None if keep is None else build_reduction(posterior, keep, devices)
    starts = range(0, num_fits, chunk_size)
    bar = None
    if progress_bar and len(starts) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_fits, desc="fits", unit="fit", file=sys.stderr)
    pieces = []
    for start in starts:
        part = jax.tree.map(lambda x, s=start: x[s : s + chunk_size], (keys, data))
        chunk_keys, chunk, valid = pad_fits(*part, chunk_size)  # the last chunk padded
        if spans:
            chunk_keys, chunk = distributed.to_global((chunk_keys, chunk), devices)
        out = _fetch(run(chunk_keys, chunk), reduce, spans)
        pieces.append(jax.tree.map(lambda x, v=valid: x[:v], out))
        if bar is not None:
            bar.update(valid)
    if bar is not None:
        bar.close()
    return jax.tree.map(lambda *xs: np.concatenate(xs), *pieces)


def _fetch(out: dict, reduce, spans: bool) -> dict:
    """NumPy copy of a sampler's ``out``, reduced (on the device before the copy, or after
    it) by ``reduce`` when given; gathered from every process when ``spans``."""
    if reduce is not None and reduce.on_device:
        out = reduce.fn(out)
    out = distributed.gather(out) if spans else jax.tree.map(np.asarray, jax.device_get(out))
    if reduce is not None and not reduce.on_device:
        out = reduce.fn(out)
    return out
