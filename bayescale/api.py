"""The public fitting entry point :func:`fit` (and its deprecated alias :func:`fit_batch`)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

import jax
import numpy as np

from bayescale.convergence import ESS_PER_CHAIN_MIN, RHAT_MAX, mode_failure, rhat
from bayescale.data import prepare, seed_int, split_curves
from bayescale.datatree import MODE_STATS
from bayescale.infer.batch import run_batch
from bayescale.infer.hmc import ChEESOptions
from bayescale.infer.nuts import SamplerOptions
from bayescale.infer.optimize import build_mode_fit, run_mode_fit
from bayescale.infer.parallel import stack
from bayescale.laws import Law, get_law
from bayescale.model import PooledPosterior, Posterior, check_pooled_names
from bayescale.options import MAP, NUTS, ChEES, Laplace, Model, method_name
from bayescale.precision import float64
from bayescale.result import Result

__all__ = ["fit", "fit_batch", "options_from_keywords", "resolve_options", "seed_key"]

_DEFAULT_MODEL = Model()
_DEFAULT_INFERENCE = NUTS()

# the keywords of fit/fit_batch 0.1, now fields of Model, NUTS/MAP/Laplace, or by=
_MODEL_KEYWORDS = ("likelihood", "noise", "priors", "pooled")
_INFERENCE_KEYWORDS = (
    "num_chains", "num_warmup", "num_samples", "thin", "dense_mass", "target_accept_prob",
    "max_tree_depth", "num_starts", "progress_bar", "devices", "chunk_size", "vectorized",
    "group_size", "keep", "method", "map_steps", "flat_priors",
)  # fmt: skip
_INFERENCE_TYPES = {"nuts": NUTS, "map": MAP, "laplace": Laplace}
SAMPLERS = ("nuts", "chees")  # the methods run by run_batch (Markov chains)


def seed_key(seed) -> tuple[jax.Array, int | tuple[int, ...]]:
    """``(key, record)`` of a fit's ``seed``: an int, or a ``jax.random.key``.

    ``record`` is what the result stores and seeds its numpy draws (prior, predictive) with:
    the int itself, or the key's whole key data as a tuple of ints.

    Raises
    ------
    TypeError
        For anything else (a bool, a float, a string, a raw ``uint32`` key array).
    ValueError
        An int outside ``0 <= seed < 2**63`` (:func:`bayescale.data.seed_int`).
    """
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        seed = seed_int(seed)
        return jax.random.key(seed), seed
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        if seed.shape != ():
            raise TypeError(
                f"seed must be one jax.random.key, got a key array of shape {seed.shape}"
            )
        return seed, tuple(int(k) for k in np.asarray(jax.random.key_data(seed)).ravel())
    raise TypeError(f"seed must be an int or a jax.random.key, got {type(seed).__name__}")


def fit(
    data,
    law: str | Path | Law,
    *,
    by: str | list[str] | None = None,
    columns: Mapping[str, str] | None = None,
    model: Model = _DEFAULT_MODEL,
    inference: NUTS | MAP | Laplace = _DEFAULT_INFERENCE,
    seed=0,
    warn: bool = True,
    **deprecated,
) -> Result:
    """Fit a scaling law and return its posterior.

    The law is fitted in log space, :math:`\\log y_i = \\log f(x_i;\\theta) + \\varepsilon_i`,
    under ``model`` (:class:`~bayescale.options.Model`: likelihood, noise model, priors,
    pooled parameters); the posterior is computed by ``inference``
    (:class:`~bayescale.options.NUTS` by default, :class:`~bayescale.options.ChEES`,
    :class:`~bayescale.options.MAP` or :class:`~bayescale.options.Laplace`).  It computes in
    float64 inside a scoped context (:mod:`bayescale.precision`): the caller's JAX settings
    are left as they were.

    Parameters
    ----------
    data : DataFrame, dict of arrays, or CSV path
        One row per run, columns named after the law's variables or mapped by ``columns``.
    law : str, Path or Law
        Catalogue id (``"chinchilla"``), path to a law TOML file, formula string
        (``"E + A * n_params**-alpha"``) or a :class:`~bayescale.laws.Law`.
    by : str or list of str, optional
        Column(s) splitting ``data`` into curves, each fitted to its own parameters in one
        compiled program (padded, chunked, sharded over devices; see
        :class:`~bayescale.options.NUTS`), or, with ``Model(pooled=...)``, jointly with the
        pooled parameters drawn from a population across the curves (one NUTS run).  A
        curve with fewer points than the law has parameters + 2 is fitted but reported
        ``failed``.
    columns : dict, optional
        Law variable -> data column, e.g. ``{"n_params": "Model Size"}``.
    model : Model
    inference : NUTS, ChEES, MAP or Laplace
    seed : int or jax.random.key
        Same seed, same data -> identical draws.  The result records it (a key as its key
        data).
    warn : bool
        Emit a :class:`~bayescale.result.ConvergenceWarning` carrying the numbers when a fit
        did not converge (r̂ > 1.01, ESS < 100 per chain, divergences; MAP/Laplace: no
        finite mode, a mode search that did not converge, a Hessian not positive definite).
    **deprecated
        The keywords of bayescale 0.1 (``likelihood=``, ``num_chains=``, ``method=``,
        ``group=``, ``pooled=``, ...): each warns with a :class:`DeprecationWarning` naming
        its new spelling, onto which it is mapped.

    Returns
    -------
    Result
        The one result type, whatever the options: ``.datatree`` (ArviZ DataTree with a
        fit dimension named after ``by``, or ``fit`` of length 1), ``.status``,
        ``.diagnostics`` (one row per fit), ``.summary()``, ``.predict()``, ``.save()``,
        ``result[label]``.

    Raises
    ------
    TypeError
        An unknown keyword, an old keyword given with its new spelling, ``inference``
        that is not one of the option objects, a ``seed`` that is not an int or a key
        (:func:`seed_key`), a ``warn`` that is not a bool, ``columns`` not a mapping.
    ValueError
        ``Model(pooled=...)`` without ``by=`` or with MAP/Laplace; NUTS batch settings
        without ``by=``; pooled names that are not parameters of the law; an int ``seed``
        outside ``[0, 2**63)``.
    DataError
        Invalid data (:mod:`bayescale.data`).
    """
    return _fit(data, law, by, columns, model, inference, seed, warn, deprecated, "fit")


def fit_batch(data, law: str | Path | Law, *, by: str | list[str], **options) -> Result:
    """Deprecated alias of ``fit(data, law, by=by, ...)`` (the same keywords)."""
    warnings.warn(
        "fit_batch(data, law, by=...) is deprecated; use fit(data, law, by=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    settings = {
        k: options.pop(k, default)
        for k, default in (
            ("columns", None),
            ("model", _DEFAULT_MODEL),
            ("inference", _DEFAULT_INFERENCE),
            ("seed", 0),
            ("warn", True),
        )
    }
    return _fit(data, law, by, *settings.values(), options, "fit_batch")


@float64
def _fit(data, law, by, columns, model, inference, seed, warn, deprecated, caller):
    """:func:`fit`, called by ``caller`` (the name its deprecation warnings use)."""
    if not isinstance(warn, bool):
        raise TypeError(f"warn={warn!r}: warn must be True or False")
    model, inference, by = _resolve(model, inference, by, deprecated, caller, stacklevel=5)
    law = get_law(law, priors=model.priors)
    posterior = Posterior(law, model.observation_for(law))
    method = method_name(inference)
    if model.pooled:
        if by is None or method != "nuts":
            raise ValueError(
                f"Model(pooled={model.pooled!r}) pools parameters across the fits of by=, with "
                f"NUTS; got by={by!r}, inference={type(inference).__name__}"
            )
        check_pooled_names(law, model.pooled)
    if by is None and method in SAMPLERS and inference.batch_only:
        given = ", ".join(f"{k}={v!r}" for k, v in inference.batch_only.items())
        raise ValueError(
            f"{type(inference).__name__}({given}) sets how the fits of fit(..., by=) run; it "
            "does not apply to a single fit"
        )
    key, seed_record = seed_key(seed)
    if by is None:
        fits, labels, reasons = [prepare(data, law, columns)], [0], {}
    else:
        fits, labels, reasons = split_curves(data, law, by, columns)
    posterior = replace(posterior, law=law.with_data_scales([f.log_x for f in fits]))
    if model.pooled:
        result = _fit_pooled(
            fits, labels, reasons, posterior, by, model.pooled, inference, key, seed_record
        )
    else:
        run = _fit_batch_nuts if method in SAMPLERS else _fit_batch_modes
        keys = key[None] if by is None else jax.random.split(key, len(fits))
        result = run(posterior, fits, labels, by, reasons, inference, keys, seed_record)
    # the warning points at the caller of fit: check_convergence, _fit, float64, fit, caller
    result.check_convergence(warn=warn, stacklevel=5)
    return result


def options_from_keywords(**keywords) -> dict:
    """The keyword arguments of :func:`fit` for settings spelt as bayescale 0.1's keywords.

    For functions whose own signatures take the fit's settings one by one (``likelihood=``,
    ``num_chains=``, ``method=``, ``map_steps=``, ``group=``, ``pooled=`` ...): returns
    ``{"model": Model(...), "inference": NUTS(...) | MAP(...) | Laplace(...)}`` plus ``by``
    (from ``group=``) and any ``columns``, ``seed``, ``warn`` given, without the
    deprecation warnings :func:`fit` gives to its callers.  Settings that never applied to
    the chosen method are dropped, as 0.1 ignored them.

    Raises
    ------
    TypeError
        An unknown keyword.
    ValueError, TypeError
        A setting the option objects reject (e.g. ``num_chains=0``).
    """
    passed = {k: keywords.pop(k) for k in ("columns", "seed", "warn", "by") if k in keywords}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model, inference, by = _resolve(
            _DEFAULT_MODEL, _DEFAULT_INFERENCE, passed.pop("by", None), keywords, "fit",
            stacklevel=2,
        )  # fmt: skip
    out = {**passed, "model": model, "inference": inference}
    return out if by is None else {**out, "by": by}


def resolve_options(
    caller: str,
    model: Model | None,
    inference: NUTS | MAP | Laplace | None,
    deprecated: dict,
    *,
    defaults: tuple[Model, NUTS | MAP | Laplace] = (_DEFAULT_MODEL, _DEFAULT_INFERENCE),
    stacklevel: int = 3,
) -> tuple[Model, NUTS | MAP | Laplace]:
    """``(model, inference)`` of a function that takes :func:`fit`'s ``model=`` and
    ``inference=`` (``None``: its own ``defaults``) and, for one release, the fit keywords
    of bayescale 0.1 in ``deprecated`` (``likelihood=``, ``num_chains=``, ``method=`` ...).

    Each old keyword is applied to the default object of its kind (``method=`` switching the
    kind) with a :class:`DeprecationWarning` naming its new spelling,
    ``caller(..., inference=NUTS(...))``, pointing at the frame ``stacklevel`` above the
    function that calls this (1: that function; 3, the default: the caller of a
    :func:`~bayescale.precision.float64`-decorated one).  ``deprecated`` is emptied.

    Raises
    ------
    TypeError
        A keyword that is no fit option, an old keyword given with ``model=``/``inference=``,
        or a ``model``/``inference`` that is not an option object.
    """
    if "group" in deprecated:
        raise TypeError(f"{caller}() got an unexpected keyword argument 'group'")
    model, inference, _ = _resolve(
        model, inference, None, deprecated, caller,
        stacklevel=stacklevel + 2, defaults=defaults, new=caller,
    )  # fmt: skip
    return model, inference


def _resolve(
    model, inference, by, old: dict, caller: str, *, stacklevel: int,
    defaults=(_DEFAULT_MODEL, _DEFAULT_INFERENCE), new: str = "fit",
):  # fmt: skip
    """``(model, inference, by)`` with the deprecated keywords ``old`` mapped onto them
    (each with a DeprecationWarning naming its new spelling in ``new(...)``); ``old`` is
    emptied of them.  ``model``/``inference`` that are ``None`` or ``defaults`` count as
    not given; the old keywords are applied to ``defaults``."""
    unknown = sorted(set(old) - {*_MODEL_KEYWORDS, *_INFERENCE_KEYWORDS, "group"})
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    base_model, base_inference = defaults
    model_given = model is not None and model is not base_model
    inference_given = inference is not None and inference is not base_inference
    model = base_model if model is None else model
    inference = base_inference if inference is None else inference
    if not isinstance(model, Model):
        raise TypeError(f"model={model!r}: model must be a bayescale.Model(...)")
    method_name(inference)  # raises TypeError for anything but NUTS/MAP/Laplace

    def deprecate(name, value, spelling):
        warnings.warn(
            f"{caller}({name}={value!r}) is deprecated; use {spelling}",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )

    def shown(obj, k, v):  # obj's class with the keyword and the defaults' own settings
        own = {
            f.name: getattr(obj, f.name)
            for f in fields(obj)
            if f.name != k and getattr(obj, f.name) != f.default
        }
        return f"{type(obj).__name__}({', '.join(f'{n}={x!r}' for n, x in {**own, k: v}.items())})"

    if "group" in old:
        group = old.pop("group")
        if by is not None and group is not None:
            raise TypeError(
                f"{caller}() got both by={by!r} and its deprecated spelling group={group!r}"
            )
        deprecate("group", group, f"{new}(..., by={group!r})")
        by = group if group is not None else by
    given = {k: old.pop(k) for k in _MODEL_KEYWORDS if k in old}
    if given:
        if model_given:
            raise TypeError(
                f"{caller}() got both model= and its deprecated keyword(s) {', '.join(given)}"
            )
        for k, v in given.items():
            value = tuple(v) if k == "pooled" and v is not None else v
            deprecate(k, v, f"{new}(..., model={shown(model, k, value)})")
        if "pooled" in given:
            given["pooled"] = () if given["pooled"] is None else tuple(given["pooled"])
        model = replace(model, **given)
    given = {k: old.pop(k) for k in _INFERENCE_KEYWORDS if k in old}
    if given:
        if inference_given:
            raise TypeError(
                f"{caller}() got both inference= and its deprecated keyword(s) {', '.join(given)}"
            )
        had_method = "method" in given
        method = given.pop("method", method_name(inference))
        if method not in _INFERENCE_TYPES:
            raise ValueError(f"unknown method {method!r}; choose one of nuts, map, laplace")
        cls = _INFERENCE_TYPES[method]
        base = inference if isinstance(inference, cls) else cls()
        if had_method:
            deprecate("method", method, f"{new}(..., inference={cls.__name__}())")
        if "map_steps" in given:
            given["num_steps"] = given.pop("map_steps")
        if given.get("flat_priors") and cls is not MAP:
            raise ValueError("flat_priors=True (maximum likelihood) applies to method='map' only")
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in given.items() if k in names}  # the rest never applied
        for k, v in given.items():
            old_name = "map_steps" if k == "num_steps" else k
            spelling = (
                f"{new}(..., inference={shown(base, k, v)})"
                if k in kept
                else "nothing (it never applied)"
            )
            deprecate(old_name, v, spelling)
        inference = replace(base, **kept)
    return model, inference, by


def _sampler_options(inference: NUTS | ChEES, *, pooled: bool) -> SamplerOptions | ChEESOptions:
    """The compiled sampler's static settings of ``inference``."""
    if isinstance(inference, ChEES):
        return ChEESOptions(
            num_chains=inference.num_chains,
            num_warmup=inference.num_warmup,
            num_samples=inference.num_samples,
            thin=inference.thin,
            dense_mass=inference.dense_mass,
            target_accept_prob=float(inference.target_accept_prob),
            max_leapfrog_steps=inference.max_leapfrog_steps,
            trajectory_scale=float(inference.trajectory_scale),
            num_starts=inference.num_starts,
            vectorized=inference.vectorized,
            group_size=inference.group_size,
        )
    return SamplerOptions(
        num_chains=inference.num_chains,
        num_warmup=inference.num_warmup,
        num_samples=inference.num_samples,
        thin=inference.thin,
        dense_mass=inference.dense_mass,
        target_accept_prob=inference.step_target(pooled),
        max_tree_depth=inference.max_tree_depth,
        num_starts=inference.num_starts,
        vectorized=inference.vectorized,
        group_size=inference.group_size,
    )


def _nuts_attrs(options: SamplerOptions | ChEESOptions) -> dict:
    return {
        "num_warmup": options.num_warmup,
        "thin": options.thin,
        "dense_mass": int(options.dense_mass),
        "target_accept_prob": options.target_accept_prob,
    }


def _progress(inference: NUTS) -> bool:
    return sys.stderr.isatty() if inference.progress_bar is None else inference.progress_bar


def _mode_settings(inference: MAP | Laplace) -> dict:
    """:func:`~bayescale.infer.optimize.build_mode_fit`'s settings of ``inference``."""
    if isinstance(inference, MAP):
        return {
            "num_starts": inference.num_starts,
            "num_steps": inference.num_steps,
            "num_chains": 4,
            "num_samples": 1000,
            "flat_priors": inference.flat_priors,
        }
    return {
        "num_starts": inference.num_starts,
        "num_steps": inference.num_steps,
        "num_chains": inference.num_chains,
        "num_samples": inference.num_samples,
        "flat_priors": False,
    }


def _fit_batch_nuts(posterior, fits, labels, by, reasons, inference, keys, seed_record):
    """NUTS or ChEES: every curve its own posterior, one compiled program (one key per fit)."""
    options = _sampler_options(inference, pooled=False)
    keep = inference.keep
    samples = run_batch(
        posterior,
        options,
        keys,
        stack(fits, sort=True),
        devices=inference.devices,
        chunk_size=inference.chunk_size,
        progress_bar=_progress(inference),
        keep=keep,
        dtype=inference.dtype,
    )
    map_failed = ~np.isfinite(samples["map_potential"])
    for i in np.flatnonzero(map_failed):
        reasons.setdefault(str(labels[i]), "no finite posterior mode found")
    result = Result.from_samples(
        posterior,
        fits,
        labels,
        by,
        samples,
        seed=seed_record,
        attrs={
            "sampler": (
                "numpyro NUTS (functional), MAP-initialised, windowed adaptation"
                if isinstance(options, SamplerOptions)
                else "ChEES-HMC (fixed-length jittered HMC), MAP-initialised, cross-chain "
                "adaptation"
            )
            + ("" if by is None else ", batched over fits"),
            **_nuts_attrs(options),
            "failure_reasons": reasons,
            "columns": dict(fits[0].columns),
        },
    )
    return result


def _mode_attrs(method: str, out: dict, inference: MAP | Laplace) -> dict:
    """Root attributes of a MAP/Laplace result: the method and the mode search's numbers."""
    flat = isinstance(inference, MAP) and inference.flat_priors
    return {
        "sampler": f"{method}: optax L-BFGS from {inference.num_starts} prior draws, "
        f"{inference.num_steps} steps" + (", flat priors (maximum likelihood)" if flat else ""),
        "method": method,
        "num_starts": inference.num_starts,
        "map_steps": inference.num_steps,
        "flat_priors": int(flat),
        "map_failed": int(not np.isfinite(out["map_potential"])),
        "map_potential": float(out["map_potential"]),
        "map_grad_norm": float(out["map_grad_norm"]),
        "map_failed_starts": int(out["map_failed_starts"]),
        "map_agreeing_starts": int(out["map_agreeing_starts"]),
        "map_last_change": float(out["map_last_change"]),
        "map_converged": int(out["map_converged"]),
        "min_eigenvalue": float(out["min_eigenvalue"]),
    }


def _fit_batch_modes(posterior, fits, labels, by, reasons, inference, keys, seed_record):
    """MAP or Laplace: one vmapped call over all fits (one key per fit)."""
    method = method_name(inference)
    devices = inference.devices
    if devices is None:  # a single fit is not split (padding it would repeat it per device);
        # this process's devices: host arrays never go on another process's (jax.distributed)
        devices = jax.local_devices() if len(fits) > 1 else jax.local_devices()[:1]
    devices = list(devices)
    run = build_mode_fit(posterior, method, devices=devices, **_mode_settings(inference))
    out = run_mode_fit(run, keys, stack(fits, sort=True), devices_count=len(devices))
    for i, label in enumerate(labels):
        reason = mode_failure(
            method,
            out["map_potential"][i],
            out["min_eigenvalue"][i],
            converged=bool(out["map_converged"][i]),
            grad_norm=out["map_grad_norm"][i],
            last_change=out["map_last_change"][i],
            num_steps=inference.num_steps,
        )
        if reason:
            reasons.setdefault(str(label), reason)
    shared = ("sampler", "method", "num_starts", "map_steps", "flat_priors")
    first = _mode_attrs(method, {k: out[k][0] for k in out}, inference)
    result = Result.from_samples(
        posterior,
        fits,
        labels,
        by,
        out,
        seed=seed_record,
        attrs={
            **{k: first[k] for k in shared},
            "mode_stats": {k: out[k].tolist() for k in MODE_STATS},
            "failure_reasons": reasons,
            "columns": dict(fits[0].columns),
        },
    )
    return result


def _fit_pooled(fits, labels, reasons, posterior, by, pooled, inference, key, seed_record):
    """``fit(..., by=, model=Model(pooled=...))``: one NUTS run of the pooled posterior of
    all curves (non-centred coordinates, :class:`~bayescale.model.PooledPosterior`)."""
    hier = PooledPosterior(posterior, pooled, len(fits))
    options = _sampler_options(inference, pooled=True)
    stacked = jax.tree.map(lambda x: x[None], stack(fits, sort=True))
    out = run_batch(
        hier,
        options,
        key[None],
        stacked,
        devices=inference.devices,
        progress_bar=_progress(inference),
        dtype=inference.dtype,
    )
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
    result = Result.from_samples(
        posterior,
        fits,
        labels,
        by,
        per_group,
        seed=seed_record,
        attrs={
            "sampler": "numpyro NUTS (functional), MAP-initialised, pooled",
            "pooled": list(pooled),
            "centred": [int(c) for c in hier.centring],
            "num_warmup": options.num_warmup,
            "dense_mass": int(options.dense_mass),
            "target_accept_prob": options.target_accept_prob,
            "failure_reasons": reasons,
            "population_diagnostics": pop_diag,
            "columns": dict(fits[0].columns),
        },
    )
    node = result.group("posterior")
    node.dataset = node.to_dataset().assign(
        {k: (("chain", "draw"), v) for k, v in population.items()}
    )
    return result


def _population_diagnostics(population: dict) -> dict:
    """r̂ and bulk/tail ESS (arviz-stats) of each population draw ``(chain, draw)`` array."""
    import arviz_stats as azs
    import xarray as xr

    ds = xr.Dataset({k: (("chain", "draw"), v) for k, v in population.items()})
    r, bulk = rhat(ds), azs.ess(ds, method="bulk")
    tail = azs.ess(ds, method="tail")
    return {
        k: {"rhat": float(r[k]), "ess_bulk": float(bulk[k]), "ess_tail": float(tail[k])}
        for k in population
    }
