"""The public fitting entry points: :func:`fit` (one posterior)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from bayescale.data import DataError, _as_frame, prepare
from bayescale.infer.batch import run_batch, stack
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.laws import Law, get_law
from bayescale.model import Posterior
from bayescale.result import BatchResult, FitResult

__all__ = ["fit", "fit_batch"]


def _seed_key(seed):
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return jax.random.key(int(seed)), int(seed)
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed, int(jax.random.key_data(seed).ravel()[-1])
    raise TypeError(f"seed must be an int or a jax.random.key, got {type(seed).__name__}")


def fit(
    data,
    law: str | Path | Law,
    *,
    columns: Mapping[str, str] | None = None,
    likelihood: str = "student_t",
    priors: Mapping[str, str] | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    seed: int = 0,
    dense_mass: bool = True,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    num_starts: int = 8,
    progress_bar: bool | None = None,
    warn: bool = True,
) -> FitResult:
    """Fit a scaling law by NUTS and return its posterior.

    The law is fitted in log space: :math:`\\log y_i = \\log f(x_i;\\theta) + \\varepsilon_i`
    with :math:`\\varepsilon_i` Student-t (``likelihood="student_t"``, :math:`\\nu` fitted;
    robust to the outlying runs real scaling data has) or normal (``"normal"``), and the
    law's default priors (override with ``priors``).

    Parameters
    ----------
    data : DataFrame, dict of arrays, or CSV path
        One row per run, columns named after the law's variables or mapped by ``columns``.
    law : str, Path or Law
        Catalogue id (``"chinchilla"``), path to a law TOML file, formula string
        (``"E + A * n_params**-alpha"``) or a :class:`~bayescale.laws.Law`.
    columns : dict, optional
        Law variable -> data column, e.g. ``{"n_params": "Model Size"}``.
    likelihood : {"student_t", "normal"}
    priors : dict, optional
        Replacement priors, e.g. ``{"alpha": "lognormal(-1, 0.5)", "sigma": "halfnormal(0.05)"}``.
    num_chains, num_warmup, num_samples, thin : int
        NUTS settings; draws kept per chain = ``num_samples``.
    seed : int or jax.random.key
        Same seed, same data -> identical draws.
    dense_mass : bool
        Dense (default) or diagonal mass matrix, adapted per fit during warm-up.
    target_accept_prob, max_tree_depth : NUTS step-size target and tree depth limit.
    num_starts : int
        Prior draws from which the MAP search (which initialises the chains) starts.
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.
    warn : bool
        Emit a :class:`~bayescale.result.ConvergenceWarning` carrying the numbers if the fit
        did not converge (max r̂ > 1.01, ESS < 100 per chain, divergences).

    Returns
    -------
    FitResult
        ``.datatree`` (ArviZ DataTree), ``.status``, ``.diagnostics``, ``.summary()``,
        ``.predict()``, ``.save()``.
    """
    law = get_law(law, priors=priors)
    posterior = Posterior(law, likelihood)
    fit_data = prepare(data, law, columns)
    options = SamplerOptions(
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thin=thin,
        dense_mass=dense_mass,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        num_starts=num_starts,
    )
    key, seed_int = _seed_key(seed)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    # the chains of one fit, split over the CPU cores (or accelerators) JAX sees
    devices = jax.devices()
    usable = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)
    run = build_sampler(
        posterior, options, progress_bar=progress_bar, devices=devices[:usable], shard="chains"
    )
    out = jax.device_get(run(key[None], stack([fit_data])))
    samples = {k: v[0] for k, v in out.items()}
    result = FitResult.from_samples(
        posterior,
        fit_data,
        samples,
        seed=seed_int,
        sampler_attrs={
            "sampler": "numpyro NUTS (functional), MAP-initialised, windowed adaptation",
            "num_warmup": num_warmup,
            "thin": thin,
            "dense_mass": int(dense_mass),
            "target_accept_prob": target_accept_prob,
            "map_failed": int(not np.isfinite(samples["map_potential"])),
            "map_failed_starts": int(samples["map_failed_starts"]),
        },
    )
    result.check_convergence(warn=warn)
    return result


def fit_batch(
    data,
    law: str | Path | Law,
    *,
    by: str | list[str],
    columns: Mapping[str, str] | None = None,
    likelihood: str = "student_t",
    priors: Mapping[str, str] | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    seed: int = 0,
    devices=None,
    chunk_size: int | None = None,
    dense_mass: bool = True,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    num_starts: int = 8,
    vectorized: bool | None = None,
    group_size: int | None = None,
    progress_bar: bool | None = None,
    warn: bool = True,
) -> BatchResult:
    """Fit one law to many independent curves in one compiled, vmapped program.

    ``by`` names the column(s) splitting ``data`` into curves; each curve gets the posterior
    :func:`fit` would give it (the same log density, MAP initialisation and per-fit warm-up
    adaptation of step size and dense mass matrix), all fits and chains advancing together
    under ``vmap``.  Curves of different lengths are padded and masked.  Fits are processed
    in chunks of ``chunk_size`` (default: what fits in ~4 GiB), each chunk one call of the
    same compiled program, its fit axis split over ``devices`` (default: all JAX devices).

    A curve with fewer points than the law has parameters + 2 is still fitted (its posterior
    is mostly prior) but reported as ``failed`` with the reason; bad values (NaN, inf,
    non-positive) in any curve raise :class:`~bayescale.DataError` naming the curve.

    Parameters not listed are those of :func:`fit`.  ``vectorized`` (chains advance together
    under ``vmap``, or one after another) and ``group_size`` (fits whose MAP searches are
    vmapped together; groups run one after another inside the same call) default to what
    was measured fastest for the devices: on accelerators everything vmapped; on CPU chains
    one by one and groups of 32 fits (see :func:`bayescale.infer.batch.lockstep_defaults`).

    Returns
    -------
    BatchResult
        ``.datatree`` with a fit dimension named after ``by``; ``.diagnostics`` per fit;
        ``.failed``; ``.summary()``; ``.predict(new_data)``; ``result[label]``.
    """
    law = get_law(law, priors=priors)
    posterior = Posterior(law, likelihood)
    frame = _as_frame(data)
    by_cols = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by_cols if b not in frame.columns]
    if missing or not by_cols:
        raise DataError(
            f"by= names column(s) {missing or by_cols} not in the data; it has columns "
            f"{list(map(str, frame.columns))}"
        )
    fits, labels, reasons = [], [], {}
    needed = len(law.parameters) + 2
    for key, rows in frame.groupby(by_cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = key[0] if isinstance(by, str) else "/".join(map(str, key))
        try:
            fit_data = prepare(rows.drop(columns=by_cols), law, columns, min_points=1)
        except DataError as err:
            raise DataError(f"curve {label!r} ({', '.join(by_cols)}): {err}") from None
        if fit_data.num_points < needed:
            reasons[str(label)] = f"{fit_data.num_points} points < {needed} needed"
        fits.append(fit_data)
        labels.append(label.item() if isinstance(label, np.generic) else label)
    if not fits:
        raise DataError(f"data for law {law.id!r} is empty (no rows)")
    options = SamplerOptions(
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thin=thin,
        dense_mass=dense_mass,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        num_starts=num_starts,
        vectorized=vectorized,
        group_size=group_size,
    )
    key, seed_int = _seed_key(seed)
    keys = jax.random.split(key, len(fits))
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    samples = run_batch(
        posterior,
        options,
        keys,
        stack(fits),
        devices=devices,
        chunk_size=chunk_size,
        progress_bar=progress_bar,
    )
    map_failed = ~np.isfinite(samples["map_potential"])
    for i in np.flatnonzero(map_failed):
        reasons.setdefault(str(labels[i]), "no finite posterior mode found")
    result = BatchResult.from_samples(
        posterior,
        fits,
        labels,
        by,
        samples,
        seed=seed_int,
        attrs={
            "sampler": "numpyro NUTS (functional), MAP-initialised, batched over fits",
            "num_warmup": num_warmup,
            "thin": thin,
            "dense_mass": int(dense_mass),
            "failure_reasons": reasons,
            "columns": dict(fits[0].columns),
        },
    )
    result.check_convergence(warn=warn)
    return result
