"""The one DataTree layout of a result: its builder, and the conversion of bayescale 0.1's
single-fit layout.

Every group that holds draws or data per fit (:data:`FIT_GROUPS`) has the fit dimension
first: named after ``by``, or :data:`SINGLE` (one coordinate, 0) for a single fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jax
import numpy as np
import xarray as xr

from bayescale.convergence import ALL_DRAWS, mode_failure, sample_stats
from bayescale.data import FitData
from bayescale.infer.parallel import stack
from bayescale.model import Posterior
from bayescale.predict import noise_draws, point_sigma_values, pointwise, prior_draws

__all__ = [
    "FIT_GROUPS",
    "MODE_STATS",
    "SINGLE",
    "build_datatree",
    "dim_name",
    "seed_attr",
    "with_fit_dim",
]

#: Name of the fit dimension of a single fit (no ``by``).
SINGLE = "fit"
#: DataTree groups that carry the fit dimension.
FIT_GROUPS = (
    "posterior",
    "sample_stats",
    "log_likelihood",
    "posterior_predictive",
    "observed_data",
    "constant_data",
    "prior_predictive",
)
#: Per-fit numbers of a MAP/Laplace mode search (``attrs["mode_stats"]``).
MODE_STATS = (
    "map_potential",
    "map_grad_norm",
    "map_failed_starts",
    "map_agreeing_starts",
    "map_last_change",
    "map_converged",
    "min_eigenvalue",
)


def dim_name(by) -> str:
    """The fit dimension's name: ``by`` (joined by ``_`` for several columns) or ``"fit"``."""
    if by is None:
        return SINGLE
    return by if isinstance(by, str) else "_".join(by)


def seed_attr(seed):
    """A fit's seed as stored in the DataTree's attributes: the int, or a JSON list of the
    key data of a ``jax.random.key`` seed (:func:`bayescale.api.seed_key`)."""
    if isinstance(seed, int | np.integer):
        return int(seed)
    return json.dumps([int(k) for k in seed])


def build_datatree(
    posterior: Posterior,
    fits: Sequence[FitData],
    labels: Sequence,
    by,
    samples: dict,
    *,
    seed,
    attrs: dict,
    num_prior_draws: int = 500,
    max_pointwise: int = 50_000_000,
) -> xr.DataTree:
    """The DataTree of sampler output with a leading fit axis (``z``: ``(fit, chain,
    draw, dim)``, the statistics ``(fit, chain, draw)``).

    ``seed`` (an int or a sequence of ints) seeds the numpy draws of the predictive and
    prior groups.  The pointwise groups (``log_likelihood``, ``posterior_predictive``,
    ``prior_predictive``) are stored when each holds at most ``max_pointwise`` numbers.
    """
    law = posterior.law
    dim = dim_name(by)
    values = {k: np.asarray(v) for k, v in posterior.constrain(samples["z"]).items()}
    k, c, s = values[law.parameter_names[0]].shape
    n_max = max(f.num_points for f in fits)

    def padded(arrays):
        out = np.full((len(arrays), n_max), np.nan)
        for i, a in enumerate(arrays):
            out[i, : a.size] = a
        return out

    coords = {dim: list(labels), "chain": np.arange(c), "draw": np.arange(s)}
    sample_dims = (dim, "chain", "draw")
    stats = sample_stats(samples)
    groups = {
        "posterior": xr.Dataset({n: (sample_dims, v) for n, v in values.items()}, coords),
        "sample_stats": xr.Dataset({n: (sample_dims, v) for n, v in stats.items()}, coords),
        "observed_data": xr.Dataset(
            {law.response: ((dim, "point"), padded([np.exp(f.log_y) for f in fits]))},
            coords={dim: list(labels)},
        ),
        "constant_data": xr.Dataset(
            {
                cv: ((dim, "point"), padded([np.exp(f.log_x[cv]) for f in fits]))
                for cv in law.covariates
            },
            coords={dim: list(labels)},
        ),
    }
    data = stack(fits, bucket=False)
    rng = np.random.default_rng(seed)
    if k * c * s * n_max <= max_pointwise:
        ll, log_mu = jax.vmap(pointwise(posterior))(
            values, data["log_x"], data["log_y"], data["mask"]
        )
        ll, log_mu = np.asarray(ll), np.asarray(log_mu)
        mask = data["mask"][:, None, None, :]
        noisy = values
        if posterior.noise_slopes:
            sigma = jax.vmap(
                lambda v, lx, m: posterior.point_sigma(
                    {k: x[..., None] for k, x in v.items()}, lx, lx, m
                )
            )(values, data["log_x"], data["mask"])
            noisy = {**values, "sigma": np.asarray(sigma)}
        with np.errstate(over="ignore", invalid="ignore"):  # padded points: masked below
            ppc = np.exp(log_mu + noise_draws(rng, posterior.likelihood, noisy, log_mu.shape))
        dims4 = (*sample_dims, "point")
        groups["log_likelihood"] = xr.Dataset(
            {law.response: (dims4, np.where(mask, ll, np.nan))}, coords
        )
        groups["posterior_predictive"] = xr.Dataset(
            {law.response: (dims4, np.where(mask, ppc, np.nan))}, coords
        )
    prior = prior_draws(posterior, num_prior_draws, seed)
    prior_coords = {"chain": [0], "draw": np.arange(num_prior_draws)}
    groups["prior"] = xr.Dataset(
        {n: (("chain", "draw"), v[None]) for n, v in prior.items()}, prior_coords
    )
    if k * num_prior_draws * n_max <= max_pointwise:
        pred = np.full((k, 1, num_prior_draws, n_max), np.nan)
        for i, f in enumerate(fits):
            log_x = {cv: np.asarray(x) for cv, x in f.log_x.items()}
            log_mu = np.asarray(
                posterior.log_mean({n: v[..., None] for n, v in prior.items()}, log_x)
            )
            noisy = point_sigma_values(posterior, prior, log_x, log_mu.shape)
            noise = noise_draws(rng, posterior.likelihood, noisy, log_mu.shape)
            with np.errstate(over="ignore"):  # wide priors reach beyond float range
                pred[i, 0, :, : f.num_points] = np.exp(log_mu + noise)
        groups["prior_predictive"] = xr.Dataset(
            {law.response: ((dim, "chain", "draw", "point"), pred)},
            {dim: list(labels), **prior_coords},
        )
    if "all_draws" in samples:
        groups[ALL_DRAWS] = xr.Dataset(
            {n: ((dim,), np.asarray(v)) for n, v in samples["all_draws"].items()},
            coords={dim: list(labels)},
        )
    dt = xr.DataTree.from_dict(groups)
    dt.attrs = {
        "law": json.dumps(law.to_spec(), default=float),
        "law_id": law.id,
        "likelihood": posterior.likelihood,
        "columns": json.dumps(dict(fits[0].columns)),
        "by": json.dumps(by),
        "seed": seed_attr(seed),
        **{a: (json.dumps(v) if isinstance(v, dict | list) else v) for a, v in attrs.items()},
    }
    return dt


def with_fit_dim(dt: xr.DataTree, dim: str) -> xr.DataTree:
    """``dt`` with the fit dimension ``dim``: a single fit's DataTree in bayescale 0.1's
    layout (no fit dimension; MAP/Laplace numbers as scalar attributes) is converted."""
    if dim in dt.posterior.dims:
        return dt
    groups = {}
    for name, node in dt.children.items():
        ds = node.to_dataset()
        if name in FIT_GROUPS:
            ds = ds.expand_dims({dim: [0]})
            ds = ds.transpose(dim, *(d for d in ds.dims if d != dim))
        groups[name] = ds
    out = xr.DataTree.from_dict(groups)
    attrs = dict(dt.attrs)
    if attrs.get("method", "nuts") != "nuts" and "mode_stats" not in attrs:
        attrs["mode_stats"] = json.dumps({k: [attrs.pop(k)] for k in MODE_STATS if k in attrs})
    if "failure_reasons" not in attrs:
        reason = ""
        if attrs.get("method", "nuts") != "nuts":
            stats = {k: v[0] for k, v in json.loads(attrs["mode_stats"]).items()}
            reason = mode_failure(
                attrs["method"],
                stats["map_potential"],
                stats["min_eigenvalue"],
                converged=bool(stats.get("map_converged", 1)),
                grad_norm=float(stats["map_grad_norm"]),
                last_change=float(stats.get("map_last_change", np.nan)),
                num_steps=attrs.get("map_steps"),
            )
        elif int(attrs.get("map_failed", 0)):
            reason = "no finite posterior mode found"
        attrs["failure_reasons"] = json.dumps({"0": reason} if reason else {})
    out.attrs = attrs
    return out
