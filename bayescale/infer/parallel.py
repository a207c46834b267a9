"""Fits side by side: padding and stacking curves, and splitting an axis over devices.

Shared by every program that runs many fits (NUTS, MAP, Laplace) so there is one padding
scheme and one sharding rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from bayescale.data import FitData

__all__ = [
    "bucket",
    "bucket_below",
    "gather_fits",
    "in_groups",
    "pad_fits",
    "padded_length",
    "shard",
    "stack",
    "usable_devices",
]


def shard(fn, devices, axis: str):
    """``fn`` split along the leading axis of every argument and output over ``devices``.

    Every block is independent (no collectives), so the per-device blocks need no
    varying-axis bookkeeping (``check_vma`` would reject NumPyro's replicated inits).
    """
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(devices), (axis,))
    spec = PartitionSpec(axis)
    return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)


def usable_devices(devices: Sequence, count: int) -> list:
    """The most of ``devices`` that divide ``count`` (chains of one fit) evenly."""
    devices = list(devices)
    usable = max(d for d in range(1, len(devices) + 1) if count % d == 0)
    return devices[:usable]


def bucket(n: int) -> int:
    """The smallest size ``>= n`` among 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and
    1.5 times them; padding to it wastes under a third).

    Shapes padded to these sizes (points per curve, fits per chunk) let calls of similar
    size share one compiled program, which the persistent compilation cache then keeps
    across processes.
    """
    if n <= 2:
        return max(n, 1)
    b = 1 << (n - 1).bit_length()
    return b if n > 3 * b // 4 else 3 * b // 4


def bucket_below(n: int) -> int:
    """The largest :func:`bucket` size ``<= n`` (``n >= 1``)."""
    p = 1 << (n.bit_length() - 1)
    return 3 * p // 2 if p >= 2 and 3 * p // 2 <= n else p


def padded_length(n: int) -> int:
    """Length that ``n`` points are padded to: 32, 48, 64, 96, 128, 192, ...
    (:func:`bucket`, at least 32)."""
    return max(32, bucket(n))


def stack(fits: Sequence[FitData], *, bucket: bool = True, sort: bool = False) -> dict:
    """Pad each fit's arrays to a common length and stack them: leaves ``(fits, points)``.

    With ``sort`` and one covariate, each fit's points are sorted along it (stable, padding
    last) and the dict holds ``"sorted": None``, a marker in the pytree's structure (static
    under :func:`jax.jit`) that spares a discrepancy's filter
    (:meth:`bayescale.model.Posterior.log_density`) a sort and a gather at every evaluation.
    The points are then no longer in the data's order: for the samplers and optimisers, not
    for per-point output."""
    n_max = max(f.num_points for f in fits)
    n_max = padded_length(n_max) if bucket else n_max

    def pad(x, fill):
        return np.concatenate([x, np.full(n_max - x.size, fill, dtype=x.dtype)])

    arrays = [f.arrays() for f in fits]
    out = {
        "log_x": {
            c: np.stack([pad(a["log_x"][c], 0.0) for a in arrays]) for c in arrays[0]["log_x"]
        },
        "log_y": np.stack([pad(a["log_y"], 0.0) for a in arrays]),
        "mask": np.stack([pad(a["mask"], False) for a in arrays]),
    }
    if sort and len(out["log_x"]) == 1:
        (name, log_x), *_ = out["log_x"].items()
        order = np.argsort(np.where(out["mask"], log_x, np.inf), axis=-1, kind="stable")
        take = lambda a: np.take_along_axis(a, order, axis=-1)  # noqa: E731
        out = {
            "log_x": {name: take(log_x)},
            "log_y": take(out["log_y"]),
            "mask": take(out["mask"]),
            "sorted": None,
        }
    return out


def gather_fits(data: dict, index, valid) -> dict:
    """The fits ``index`` of ``data`` (leaves with a leading fit axis); where ``valid`` is
    false the row is padding: a copy with every point masked, so it samples the prior (short,
    well-conditioned trajectories) instead of repeating a real, possibly stiff, fit whose
    cost a CPU would pay again.  numpy or JAX arrays."""
    out = jax.tree.map(lambda x: x[index], data)
    return {**out, "mask": out["mask"] & valid[:, None]}


def pad_fits(keys, data: dict, multiple: int):
    """``keys`` and ``data`` with the fit axis padded to a multiple of ``multiple`` by
    prior-only copies of the first fit (:func:`gather_fits`), and the true count."""
    num_fits = keys.shape[0]
    position = np.arange(-(-num_fits // multiple) * multiple)
    index = np.where(position < num_fits, position, 0)
    return keys[index], gather_fits(data, index, position < num_fits), num_fits


def in_groups(run_fits, keys, data, per_group: int | None):
    """``run_fits(keys, data)`` over groups of ``per_group`` fits, one group after another
    (``lax.map``), the fit axis padded by :func:`~bayescale.infer.parallel.pad_fits` and
    trimmed; all fits at once when ``per_group`` is ``None`` or not below their number."""
    num_fits = keys.shape[0]
    if per_group is None or num_fits <= per_group:
        return run_fits(keys, data)
    keys, data, _ = pad_fits(keys, data, per_group)

    def grouped(x):  # (groups, per_group, ...)
        return x.reshape(-1, per_group, *x.shape[1:])

    out = jax.lax.map(lambda a: run_fits(*a), jax.tree.map(grouped, (keys, data)))
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[:num_fits], out)
