"""The public fitting entry points: :func:`fit` (one posterior)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import jax
import numpy as np

from bayescale.data import DataError, as_frame, prepare
from bayescale.infer.batch import run_batch, stack
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.infer.optimize import METHODS, build_mode_fit, run_mode_fit
from bayescale.laws import Law, get_law
from bayescale.model import PooledPosterior, Posterior, with_noise
from bayescale.result import (
    ESS_PER_CHAIN_MIN,
    RHAT_MAX,
    BatchResult,
    FitResult,
    _rhat,
    keep_draws,
    mode_failure,
)

__all__ = ["fit", "fit_batch"]

# fit(..., group=, pooled=)'s default target_accept_prob (see fit's docstring)
POOLED_TARGET_ACCEPT_PROB = 0.99


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
    noise: str = "constant",
    priors: Mapping[str, str] | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    seed: int = 0,
    dense_mass: bool = True,
    target_accept_prob: float | None = None,
    max_tree_depth: int = 10,
    num_starts: int = 8,
    progress_bar: bool | None = None,
    warn: bool = True,
    method: str = "nuts",
    map_steps: int = 500,
    flat_priors: bool = False,
    group: str | None = None,
    pooled: Sequence[str] | None = None,
) -> FitResult | BatchResult:
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
    noise : {"constant", "loglinear"}
        Noise model: one scale :math:`\\sigma` (default), or
        :math:`\\log\\sigma(x) = \\log\\sigma_0 + \\sum_c \\gamma_c u_c` with :math:`u_c` the
        standardised log covariates and :math:`\\gamma_c \\sim \\mathcal N(0, 0.5^2)` fitted
        (sites ``gamma_<covariate>``; see :mod:`bayescale.model`); predictions at new
        covariates draw their noise at :math:`\\sigma(x)` there.
    priors : dict, optional
        Replacement priors, e.g. ``{"alpha": "lognormal(-1, 0.5)", "sigma": "halfnormal(0.05)"}``.
    num_chains, num_warmup, num_samples, thin : int
        NUTS settings; draws kept per chain = ``num_samples``.
    seed : int or jax.random.key
        Same seed, same data -> identical draws.
    dense_mass : bool
        Dense (default) or diagonal mass matrix, adapted per fit during warm-up.
    target_accept_prob : float, optional
        NUTS step-size target.  Default: 0.8, and 0.99 for a pooled fit (``group=``,
        ``pooled=``), whose population spread :math:`\\tau` has a funnel-shaped neck that
        larger steps diverge in: on PolyPythia's seeds (``power_law_offset``, ``alpha``
        pooled; 3 sizes x 3 seeds, 4 x 1000 + 1000) 0.8 left divergent transitions in all
        nine fits (3-104 of 4000), 0.95 in eight and 0.99 in one, at 2-3 times the
        gradient evaluations of 0.8 (``benchmarks/target_accept.py``).  Laws with curved
        ridges may need more than 0.8 too (``notebooks/methods.ipynb``'s broken-N
        Chinchilla law: 0.99).
    max_tree_depth : int
        NUTS tree depth limit.
    num_starts : int
        Prior draws from which the MAP search (which initialises the chains) starts.
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.
    warn : bool
        Emit a :class:`~bayescale.result.ConvergenceWarning` carrying the numbers if the fit
        did not converge (max r̂ > 1.01, ESS < 100 per chain, divergences; for ``"map"`` and
        ``"laplace"``: no finite mode, or a Hessian that is not positive definite).
    method : {"nuts", "map", "laplace"}
        ``"nuts"``: the posterior by NUTS.  ``"map"``: the posterior mode
        :math:`\\hat z = \\arg\\min_z U(z)` of the potential in the unconstrained space,
        by optax L-BFGS from ``num_starts`` prior draws (vmapped), the best kept; one draw
        (``chain``, ``draw`` of size 1).  ``"laplace"``: ``num_chains`` x ``num_samples``
        draws of :math:`\\mathcal N(\\hat z, H^{-1})`, :math:`H = \\nabla^2 U(\\hat z)`,
        mapped to the constrained space.  Both come back in the same DataTree shape, so
        ``predict``, ``summary`` and the plots work unchanged; ``.datatree.attrs["method"]``
        says which made them.
    map_steps : int
        L-BFGS steps per start (``"map"``, ``"laplace"``).
    flat_priors : bool
        With ``method="map"``: maximise the likelihood alone (no priors).  With
        ``likelihood="huber"`` this minimises :math:`\\sum_i \\rho_{\\delta}(r_i)`,
        :math:`\\delta = 10^{-3}`, over the law's parameters: Hoffmann et al.'s objective,
        whose optimum Besiroglu et al. (2024) report (see :mod:`bayescale.model`).
    group : str, optional
        Column splitting the data into groups (seeds, datasets, architectures) that share
        the ``pooled`` parameters' population (:class:`~bayescale.model.PooledPosterior`):
        :math:`z_{p,g} \\sim \\mathcal N(\\mu_p, \\tau_p)` on the unconstrained scale, every
        other parameter per group; non-centred coordinates (``.datatree.attrs["centred"]``;
        :class:`~bayescale.model.PooledPosterior` also has centred ones, and
        :func:`~bayescale.infer.optimize.choose_centring` a rule to pick them).
        One NUTS fit of all groups together; returns a
        :class:`~bayescale.result.BatchResult` with a dimension named ``group`` (each
        group's parameters, pooled ones included) plus ``<p>_pop`` (population centre,
        :math:`\\mu_p` mapped to the parameter's scale) and ``<p>_pop_sd``
        (:math:`\\tau_p`, on the log scale for a positive parameter) in the posterior.
    pooled : list of str, optional
        The law parameters drawn from a population across groups, e.g. ``["alpha"]``.

    Returns
    -------
    FitResult
        ``.datatree`` (ArviZ DataTree), ``.status``, ``.diagnostics``, ``.summary()``,
        ``.predict()``, ``.save()`` (a ``BatchResult`` with ``group=``).
    """
    _check_method(method)
    law = get_law(law, priors=priors)
    posterior = Posterior(law, with_noise(likelihood, noise))
    if target_accept_prob is None:
        pooling = group is not None or bool(pooled)
        target_accept_prob = POOLED_TARGET_ACCEPT_PROB if pooling else 0.8
    options = SamplerOptions(  # NUTS settings, of the plain and the pooled fit alike
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thin=thin,
        dense_mass=dense_mass,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        num_starts=num_starts,
    )
    if group is not None or pooled:
        if group is None or not pooled or method != "nuts":
            raise ValueError(
                "hierarchical pooling needs both group= (a column) and pooled= (parameter "
                f"names), with method='nuts'; got group={group!r}, pooled={pooled!r}, "
                f"method={method!r}"
            )
        return _fit_pooled(
            data, posterior, group, tuple(pooled), columns, options, seed, progress_bar, warn
        )
    fit_data = prepare(data, law, columns)
    if method != "nuts":
        key, seed_int = _seed_key(seed)
        run = build_mode_fit(
            posterior,
            method,
            num_starts=num_starts,
            num_steps=map_steps,
            num_chains=num_chains,
            num_samples=num_samples,
            flat_priors=flat_priors,
        )
        out = run_mode_fit(run, key[None], stack([fit_data]))
        return _one_fit_result(
            posterior,
            fit_data,
            out,
            seed_int,
            warn,
            lambda samples: _mode_attrs(method, samples, num_starts, map_steps, flat_priors),
        )
    if flat_priors:
        raise ValueError("flat_priors=True (maximum likelihood) applies to method='map' only")
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
    return _one_fit_result(
        posterior,
        fit_data,
        out,
        seed_int,
        warn,
        lambda samples: {
            "sampler": "numpyro NUTS (functional), MAP-initialised, windowed adaptation",
            "num_warmup": num_warmup,
            "thin": thin,
            "dense_mass": int(dense_mass),
            "target_accept_prob": target_accept_prob,
            "map_failed": int(not np.isfinite(samples["map_potential"])),
            "map_failed_starts": int(samples["map_failed_starts"]),
        },
    )


def _one_fit_result(posterior, fit_data, out, seed: int, warn: bool, attrs) -> FitResult:
    """The :class:`FitResult` of a one-fit program's output (leading fit axis of size 1),
    its convergence checked; ``attrs(samples)`` gives the sampler's attributes."""
    samples = {k: v[0] for k, v in out.items()}
    result = FitResult.from_samples(
        posterior, fit_data, samples, seed=seed, sampler_attrs=attrs(samples)
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
    noise: str = "constant",
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
    method: str = "nuts",
    map_steps: int = 500,
    flat_priors: bool = False,
    keep: int | None = None,
) -> BatchResult:
    """Fit one law to many independent curves in one compiled, vmapped program.

    ``by`` names the column(s) splitting ``data`` into curves; each curve gets the posterior
    :func:`fit` would give it (the same log density, MAP initialisation and per-fit warm-up
    adaptation of step size and dense mass matrix), all fits in one compiled program (see
    ``vectorized`` / ``group_size`` below for how they are batched).  Curves of different
    lengths are padded and masked.  Fits are processed
    in chunks of ``chunk_size`` (default: what fits in ~4 GiB), each chunk one call of the
    same compiled program, its fit axis split over ``devices`` (default: all JAX devices).

    ``keep`` (for very large batches) bounds what is held for all fits: as each chunk
    arrives, its per-fit r̂, bulk/tail ESS, divergences and the mean, sd and quantiles
    (:data:`bayescale.result.SUMMARY_QUANTILES`) of every parameter are computed from all
    draws, and only ``keep`` evenly spaced draws per chain are kept in the DataTree
    (``diagnostics``, ``status`` and ``summary()`` report the numbers of all draws; the
    group ``all_draws_summary`` holds them).  Memory then grows with ``keep``, not with
    ``num_samples``; ``thin`` instead thins inside the sampler.

    A curve with fewer points than the law has parameters + 2 is still fitted (its posterior
    is mostly prior) but reported as ``failed`` with the reason; bad values (NaN, inf,
    non-positive) in any curve raise :class:`~bayescale.DataError` naming the curve.

    Parameters not listed are those of :func:`fit`.  ``vectorized`` (chains advance together
    under ``vmap``, or one after another) and ``group_size`` (fits whose MAP searches are
    vmapped together; groups run one after another inside the same call) default to what
    was measured fastest for the devices: on accelerators everything vmapped; on CPU chains
    one by one and groups of 32 fits (see :func:`bayescale.infer.batch.lockstep_defaults`).
    ``method``, ``map_steps`` and ``flat_priors`` are those of :func:`fit`; with ``"map"`` or
    ``"laplace"`` the optimiser (and Laplace draws) of every curve run in one vmapped call,
    its fit axis split over ``devices``.

    Returns
    -------
    BatchResult
        ``.datatree`` with a fit dimension named after ``by``; ``.diagnostics`` per fit;
        ``.failed``; ``.summary()``; ``.predict(new_data)``; ``result[label]``.
    """
    _check_method(method)
    if flat_priors and method != "map":
        raise ValueError("flat_priors=True (maximum likelihood) applies to method='map' only")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 4):
        raise ValueError(f"keep must be None or an integer >= 4 (draws per chain), got {keep!r}")
    law = get_law(law, priors=priors)
    posterior = Posterior(law, with_noise(likelihood, noise))
    fits, labels, reasons = _split_curves(data, law, by, columns)
    if method != "nuts":
        return _fit_batch_modes(
            posterior, fits, labels, by, reasons, method, seed, devices, warn,
            num_starts=num_starts, num_steps=map_steps, num_chains=num_chains,
            num_samples=num_samples, flat_priors=flat_priors,
        )  # fmt: skip
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
        reduce=None if keep is None else partial(keep_draws, posterior, keep=keep),
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
            "target_accept_prob": target_accept_prob,
            "failure_reasons": reasons,
            "columns": dict(fits[0].columns),
        },
    )
    result.check_convergence(warn=warn)
    return result


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _mode_attrs(method: str, out: dict, num_starts: int, map_steps: int, flat_priors: bool):
    """Root attributes of a MAP/Laplace result: the method and the mode search's numbers."""
    return {
        "sampler": f"{method}: optax L-BFGS from {num_starts} prior draws, {map_steps} steps"
        + (", flat priors (maximum likelihood)" if flat_priors else ""),
        "method": method,
        "num_starts": num_starts,
        "map_steps": map_steps,
        "flat_priors": int(flat_priors),
        "map_failed": int(not np.isfinite(out["map_potential"])),
        "map_potential": float(out["map_potential"]),
        "map_grad_norm": float(out["map_grad_norm"]),
        "map_failed_starts": int(out["map_failed_starts"]),
        "map_agreeing_starts": int(out["map_agreeing_starts"]),
        "map_last_change": float(out["map_last_change"]),
        "map_converged": int(out["map_converged"]),
        "min_eigenvalue": float(out["min_eigenvalue"]),
    }


def _fit_batch_modes(
    posterior, fits, labels, by, reasons, method, seed, devices, warn, **settings
) -> BatchResult:
    """``fit_batch`` with ``method="map"`` or ``"laplace"``: one vmapped call over all fits."""
    key, seed_int = _seed_key(seed)
    keys = jax.random.split(key, len(fits))
    devices = list(jax.devices() if devices is None else devices)
    run = build_mode_fit(posterior, method, devices=devices, **settings)
    out = run_mode_fit(run, keys, stack(fits), devices_count=len(devices))
    for i, label in enumerate(labels):
        reason = mode_failure(
            method,
            out["map_potential"][i],
            out["min_eigenvalue"][i],
            converged=bool(out["map_converged"][i]),
            grad_norm=out["map_grad_norm"][i],
            last_change=out["map_last_change"][i],
            num_steps=settings["num_steps"],
        )
        if reason:
            reasons.setdefault(str(label), reason)
    per_fit = (
        "map_potential",
        "map_grad_norm",
        "map_failed_starts",
        "map_agreeing_starts",
        "map_last_change",
        "map_converged",
    )
    result = BatchResult.from_samples(
        posterior,
        fits,
        labels,
        by,
        out,
        seed=seed_int,
        attrs={
            **{
                k: v
                for k, v in _mode_attrs(
                    method,
                    {k: out[k][0] for k in out},
                    settings["num_starts"],
                    settings["num_steps"],
                    settings["flat_priors"],
                ).items()
                if k in ("sampler", "method", "num_starts", "map_steps", "flat_priors")
            },
            "mode_stats": {k: out[k].tolist() for k in (*per_fit, "min_eigenvalue")},
            "failure_reasons": reasons,
            "columns": dict(fits[0].columns),
        },
    )
    result.check_convergence(warn=warn)
    return result


def _split_curves(data, law: Law, by, columns):
    """Split ``data`` by the ``by`` column(s) into validated curves.

    Returns ``(fits, labels, reasons)``: one :class:`~bayescale.data.FitData` per curve, its
    label, and ``{label: why}`` for curves with too few points to constrain the law.
    """
    frame = as_frame(data)
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
    return fits, labels, reasons


def _fit_pooled(
    data, posterior, group, pooled, columns, options, seed, progress_bar, warn
) -> BatchResult:
    """``fit(..., group=, pooled=)``: one NUTS run of the pooled posterior of all groups."""
    import xarray as xr

    fits, labels, reasons = _split_curves(data, posterior.law, group, columns)
    # non-centred: choose_centring's Laplace-based rule picked centred coordinates for
    # PolyPythia 160m, which then diverged (9 of 600 draws, r-hat 1.15) where non-centred
    # did not (0, 1.06); it is kept as a helper, not applied by default
    hier = PooledPosterior(posterior, pooled, len(fits))
    centred = hier.centring
    key, seed_int = _seed_key(seed)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    devices = jax.devices()
    usable = max(d for d in range(1, len(devices) + 1) if options.num_chains % d == 0)
    run = build_sampler(
        hier, options, progress_bar=progress_bar, devices=devices[:usable], shard="chains"
    )
    stacked = jax.tree.map(lambda x: x[None], stack(fits))
    out = jax.device_get(run(key[None], stacked))
    samples = {k: np.asarray(v[0]) for k, v in out.items()}
    z_groups = np.moveaxis(np.asarray(hier.group_z(samples["z"])), -2, 0)  # (G, c, d, dim)
    per_group = {"z": z_groups}
    for name in ("diverging", "n_steps", "acceptance_rate", "lp", "energy", "step_size"):
        per_group[name] = np.broadcast_to(samples[name], (len(fits), *samples[name].shape))
    if not np.isfinite(samples["map_potential"]):
        reasons.setdefault("*", "no finite posterior mode found")
    population = {k: np.asarray(v) for k, v in hier.population(samples["z"]).items()}
    pop_diag = _population_diagnostics(population)
    bad = [
        f"{k} r̂ {d['rhat']:.3f}, ESS {d['ess_bulk']:.0f}/{d['ess_tail']:.0f} (bulk/tail)"
        for k, d in pop_diag.items()
        if not d["rhat"] <= RHAT_MAX
        or not min(d["ess_bulk"], d["ess_tail"]) >= ESS_PER_CHAIN_MIN * options.num_chains
    ]
    if bad:
        for label in labels:
            reasons.setdefault(str(label), "population not converged: " + "; ".join(bad))
    result = BatchResult.from_samples(
        posterior,
        fits,
        labels,
        group,
        per_group,
        seed=seed_int,
        attrs={
            "sampler": "numpyro NUTS (functional), MAP-initialised, pooled",
            "pooled": list(pooled),
            "centred": [int(c) for c in centred],
            "num_warmup": options.num_warmup,
            "dense_mass": int(options.dense_mass),
            "target_accept_prob": options.target_accept_prob,
            "failure_reasons": reasons,
            "population_diagnostics": pop_diag,
            "columns": dict(fits[0].columns),
        },
    )
    post = result.datatree.posterior.to_dataset()
    post = post.assign({k: (("chain", "draw"), v) for k, v in population.items()})
    result.datatree["posterior"] = xr.DataTree(post)
    result.check_convergence(warn=warn)
    return result


def _population_diagnostics(population: dict) -> dict:
    """r̂ and bulk/tail ESS (arviz-stats) of each population draw ``(chain, draw)`` array."""
    import arviz_stats as azs
    import xarray as xr

    ds = xr.Dataset({k: (("chain", "draw"), v) for k, v in population.items()})
    rhat, bulk = _rhat(ds), azs.ess(ds, method="bulk")
    tail = azs.ess(ds, method="tail")
    return {
        k: {
            "rhat": float(rhat[k]),
            "ess_bulk": float(bulk[k]),
            "ess_tail": float(tail[k]),
        }
        for k in population
    }
