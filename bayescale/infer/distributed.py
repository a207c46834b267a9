"""Many processes (hosts) running one batch of fits through ``jax.distributed``.

Every process runs the same script: it calls :func:`initialize` (before anything starts
JAX's backend: importing bayescale and loading laws does not), then the same
``fit(data, law, by=...)`` with the same data and seed.  The batch's devices default to
``jax.devices()``, every process's devices; each chunk of fits is one global array sharded
over them along the fit axis, and each process places only its own share of the curves on
its own devices (:func:`to_global`, ``jax.make_array_from_process_local_data``).  What a
chunk returns (draws, or with ``NUTS(keep=...)`` the device-side summaries) is gathered to
every process (:func:`gather`), so **every process returns the same, full Result**.

A single fit (no ``by=``) and MAP/Laplace fits are not split across processes: each process
computes them on its own devices (the same numbers everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

__all__ = ["gather", "initialize", "spans_processes", "to_global"]


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    cpu_collectives: str | None = "gloo",
    **kwargs,
) -> None:
    """``jax.distributed.initialize`` for a run over ``num_processes`` processes.

    ``cpu_collectives`` (``"gloo"``, ``"mpi"`` or ``None`` to leave JAX's setting) sets
    ``jax_cpu_collectives_implementation``, which processes whose devices are CPUs need to
    exchange results.  Must run before JAX's backend starts (before the first array is
    made); ``kwargs`` go to ``jax.distributed.initialize``.
    """
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **kwargs,
    )


def spans_processes(devices: Sequence) -> bool:
    """Whether ``devices`` include another process's (a global mesh)."""
    me = jax.process_index()
    return any(d.process_index != me for d in devices)


def _sharding(devices: Sequence):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    return NamedSharding(Mesh(np.array(devices), ("fits",)), PartitionSpec("fits"))


def to_global(tree, devices: Sequence):
    """Global arrays of ``tree``'s leaves (host arrays with the same leading fit axis on
    every process), sharded along that axis over ``devices`` as :func:`~bayescale.infer.
    parallel.shard` splits it; each process transfers only the rows its devices hold.

    The fit count must be a multiple of ``len(devices)``.  PRNG key arrays travel as their
    key data.
    """
    sharding = _sharding(devices)

    def place(x):
        is_key = jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        host = np.asarray(jax.random.key_data(x) if is_key else x)
        rows = [idx[0] for idx in sharding.addressable_devices_indices_map(host.shape).values()]
        lo, hi = min(r.start for r in rows), max(r.stop for r in rows)
        if sum(r.stop - r.start for r in rows) != hi - lo:
            raise ValueError("each process's devices must be consecutive in devices=")
        out = jax.make_array_from_process_local_data(sharding, host[lo:hi], host.shape)
        return jax.random.wrap_key_data(out, impl=jax.random.key_impl(x)) if is_key else out

    return jax.tree.map(place, tree)


def gather(tree):
    """NumPy copies of ``tree``'s global arrays, complete on every process."""
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
