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
    "POINTWISE_GROUPS",
    "SINGLE",
    "build_datatree",
    "dim_name",
    "pointwise_groups",
    "recompute_pointwise",
    "restore_pointwise",
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
#: Groups of :func:`pointwise_groups`: one number per draw and data point.
POINTWISE_GROUPS = ("log_likelihood", "posterior_predictive", "prior_predictive")
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
    pointwise: bool = True,
) -> xr.DataTree:
    """The DataTree of sampler output with a leading fit axis (``z``: ``(fit, chain,
    draw, dim)``, the statistics ``(fit, chain, draw)``).

    ``seed`` (an int or a sequence of ints) seeds the numpy draws of the predictive and
    prior groups.  The pointwise groups (``log_likelihood``, ``posterior_predictive``,
    ``prior_predictive``) are stored when each holds at most ``max_pointwise`` numbers;
    with ``pointwise=False`` they are left to :func:`restore_pointwise` (named in
    ``attrs["dropped_groups"]``, as in a saved result).
    """
    law = posterior.law
    dim = dim_name(by)
    values = {k: np.asarray(v) for k, v in posterior.constrain(samples["z"]).items()}
    _, c, s = values[law.parameter_names[0]].shape
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
    prior = prior_draws(posterior, num_prior_draws, seed)
    groups["prior"] = xr.Dataset(
        {n: (("chain", "draw"), v[None]) for n, v in prior.items()},
        {"chain": [0], "draw": np.arange(num_prior_draws)},
    )
    if pointwise:
        groups.update(
            pointwise_groups(
                posterior, values, data, prior, list(labels), dim, seed, max_pointwise=max_pointwise
            )
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
    if not pointwise:
        dt.attrs["dropped_groups"] = json.dumps(list(POINTWISE_GROUPS))
    return dt


def pointwise_groups(
    posterior: Posterior,
    values: dict,
    data: dict,
    prior: dict,
    labels: list,
    dim: str,
    seed,
    *,
    max_pointwise: int = 50_000_000,
) -> dict[str, xr.Dataset]:
    """The pointwise groups of fits: ``log_likelihood``, ``posterior_predictive`` and
    ``prior_predictive`` (each only when it holds at most ``max_pointwise`` numbers).

    ``values`` are the constrained draws ``(fit, chain, draw)`` of :attr:`Posterior.site_names`,
    ``data`` the stacked fits (``log_x``, ``log_y``, ``mask``: ``(fit, point)``, unbucketed),
    ``prior`` the prior draws ``{name: (num,)}``.  One numpy generator seeded by ``seed``
    draws the posterior-predictive noise, then the prior-predictive noise, so the groups of a
    fit are a function of its draws, data and seed: :func:`recompute_pointwise` recomputes
    them from a saved result.
    """
    law = posterior.law
    k, c, s = values[law.parameter_names[0]].shape
    n_max = data["mask"].shape[1]
    coords = {dim: labels, "chain": np.arange(c), "draw": np.arange(s)}
    dims4 = (dim, "chain", "draw", "point")
    rng = np.random.default_rng(seed)
    groups = {}
    if k * c * s * n_max <= max_pointwise:
        out = jax.vmap(pointwise(posterior))(values, data["log_x"], data["log_y"], data["mask"])
        # host copies (ll writable, masked in place), each device buffer freed once copied
        ll = np.array(out[0])
        log_mu = np.array(out[1])
        del out
        missing = ~np.asarray(data["mask"], bool)[:, None, None, :]
        noisy = values
        if posterior.noise_slopes:
            sigma = jax.vmap(
                lambda v, lx, m: posterior.point_sigma(
                    {k: x[..., None] for k, x in v.items()}, lx, lx, m
                )
            )(values, data["log_x"], data["mask"])
            noisy = {**values, "sigma": np.asarray(sigma)}
        # in place: at K = 10,000 each (fit, chain, draw, point) array is over a GiB
        ppc = noise_draws(rng, posterior.likelihood, noisy, log_mu.shape)
        ppc += log_mu
        del log_mu
        with np.errstate(over="ignore", invalid="ignore"):  # padded points: masked below
            np.exp(ppc, out=ppc)
        np.copyto(ll, np.nan, where=missing)
        np.copyto(ppc, np.nan, where=missing)
        groups["log_likelihood"] = xr.Dataset({law.response: (dims4, ll)}, coords)
        groups["posterior_predictive"] = xr.Dataset({law.response: (dims4, ppc)}, coords)
    num_prior = len(next(iter(prior.values())))
    if k * num_prior * n_max <= max_pointwise:
        pred = np.full((k, 1, num_prior, n_max), np.nan)
        for i in range(k):
            n = int(data["mask"][i].sum())
            log_x = {cv: np.asarray(x[i, :n]) for cv, x in data["log_x"].items()}
            log_mu = np.asarray(
                posterior.log_mean({n: v[..., None] for n, v in prior.items()}, log_x)
            )
            noisy = point_sigma_values(posterior, prior, log_x, log_mu.shape)
            noise = noise_draws(rng, posterior.likelihood, noisy, log_mu.shape)
            with np.errstate(over="ignore"):  # wide priors reach beyond float range
                pred[i, 0, :, :n] = np.exp(log_mu + noise)
        groups["prior_predictive"] = xr.Dataset(
            {law.response: (dims4, pred)},
            {dim: labels, "chain": [0], "draw": np.arange(num_prior)},
        )
    return groups


def recompute_pointwise(dt: xr.DataTree, posterior: Posterior, dim: str) -> dict:
    """The groups of :func:`pointwise_groups` recomputed from a result's DataTree: its
    posterior draws, its data, its ``prior`` draws and ``attrs["seed"]``; ``{}`` when the
    tree lacks one of them.  Equal to the stored groups of a fit as :func:`build_datatree`
    made it (not of a tree spliced from fits of several seeds)."""
    needed = {"posterior", "observed_data", "constant_data", "prior"}
    if "seed" not in dt.attrs or not needed <= set(dt.children):
        return {}
    obs = dt.observed_data[posterior.law.response].transpose(dim, "point").values
    mask = np.isfinite(obs)

    def log(a):  # padding: 0, as in :func:`bayescale.infer.parallel.stack`
        return np.where(mask, np.log(np.where(mask, a, 1.0)), 0.0)

    data = {
        "log_x": {
            c: log(dt.constant_data[c].transpose(dim, "point").values)
            for c in posterior.law.covariates
        },
        "log_y": log(obs),
        "mask": mask,
    }
    post = dt.posterior
    values = {n: post[n].transpose(dim, "chain", "draw").values for n in posterior.site_names}
    prior = {n: dt.prior[n].values[0] for n in posterior.site_names}
    seed = dt.attrs["seed"]
    seed = json.loads(seed) if isinstance(seed, str) else int(seed)
    return pointwise_groups(posterior, values, data, prior, list(post[dim].values), dim, seed)


def restore_pointwise(dt: xr.DataTree, posterior: Posterior, dim: str) -> xr.DataTree:
    """``dt`` with the pointwise groups named in ``attrs["dropped_groups"]`` (left out by
    :meth:`bayescale.Result.save` or by ``build_datatree(pointwise=False)``) recomputed by
    :func:`recompute_pointwise` (those within its size limit), the attribute removed."""
    dropped = json.loads(dt.attrs.get("dropped_groups", "[]"))
    groups = recompute_pointwise(dt, posterior, dim) if dropped else {}
    out = dt.copy(deep=False)
    for name in dropped:
        if name in groups:
            out[name] = xr.DataTree(groups[name])
    out.attrs = {k: v for k, v in dt.attrs.items() if k != "dropped_groups"}
    return out


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
