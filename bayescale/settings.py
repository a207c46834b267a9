"""Explicit, opt-in process settings for JAX: CPU devices and the persistent compile cache.

Importing bayescale changes nothing in the caller's process. A program that wants
bayescale's recommended settings calls :func:`configure` once, before JAX starts its
backends (before the first JAX computation); the ``bayescale`` command line and the
notebooks do.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["DEFAULT_CACHE_DIR", "configure"]

DEFAULT_CACHE_DIR = Path("~/.cache/bayescale/jax").expanduser()
_UNSET = object()


def configure(*, cpu_devices: int | str | None = "all", cache_dir=_UNSET) -> dict:
    """Set JAX's CPU device count and persistent compilation cache for this process.

    Parameters
    ----------
    cpu_devices : int, "all" or None
        Number of CPU devices JAX exposes (chains and batched fits are split over them).
        ``"all"`` (default): one per core, or ``BAYESCALE_CPU_DEVICES`` if set. ``None``:
        leave JAX's setting alone. Ignored (with the current count kept) where an
        ``XLA_FLAGS`` device count is set or JAX's backends have already started.
    cache_dir : str, Path or None
        Folder of JAX's persistent compilation cache, so a program compiled once is not
        compiled again by later processes. Default: ``BAYESCALE_CACHE_DIR`` if set, else
        ``~/.cache/bayescale/jax``; ``None`` or ``""`` leaves the cache off (or as the caller
        set it).

    Returns
    -------
    dict
        What was set: ``{"cpu_devices": int | None, "cache_dir": str | None}`` (``None``:
        left unchanged).

    Raises
    ------
    ValueError
        ``cpu_devices`` is not ``"all"``, ``None`` or a positive integer.
    """
    done: dict = {"cpu_devices": None, "cache_dir": None}
    if cpu_devices == "all":
        count = int(os.environ.get("BAYESCALE_CPU_DEVICES", os.cpu_count() or 1))
    elif cpu_devices is None:
        count = None
    elif isinstance(cpu_devices, int) and not isinstance(cpu_devices, bool) and cpu_devices > 0:
        count = cpu_devices
    else:
        raise ValueError(
            "configure(cpu_devices=) must be 'all', None or a positive integer, "
            f"got {cpu_devices!r}"
        )
    forced = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if count is not None and not forced and count != jax.config.jax_num_cpu_devices:
        try:
            jax.config.update("jax_num_cpu_devices", count)
            done["cpu_devices"] = count
        except RuntimeError:  # backends already started: the count cannot change any more
            pass
    if cache_dir is _UNSET:
        cache_dir = os.environ.get("BAYESCALE_CACHE_DIR", str(DEFAULT_CACHE_DIR))
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(cache_dir).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        done["cache_dir"] = str(Path(cache_dir).expanduser())
    return done
