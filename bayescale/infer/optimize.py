"""MAP by multi-start optimisation and the Laplace approximation at the mode.

One optimiser of the potential (:meth:`bayescale.model.Posterior.potential`) for every mode
search (``benchmarks/optimisers.py``):

* :func:`multi_start_map` — the start of NUTS: chains begin near the best mode found from
  prior draws, and the inverse Hessian there is the initial (dense) inverse mass matrix, so
  warm-up starts well conditioned.
* :func:`find_mode` — optax L-BFGS with a bounded backtracking line search, a fixed number
  of steps, over starts drawn from the prior (vmapped in lock-step, or one after another)
  and vmapped over fits;
  convergence is measured at the end, per fit: the :class:`~bayescale.options.MAP` and
  :class:`~bayescale.options.Laplace` fits.
  :func:`laplace_draws` then draws from :math:`\\mathcal N(\\hat z, H^{-1})`, :math:`H` the
  Hessian of the potential at the mode in the unconstrained space.

Everything is a pure function of ``(rng_key, data)``, over several starts (and, by callers,
vmapped over fits).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from bayescale.infer.cache import compiled, jit
from bayescale.infer.parallel import pad_fits, shard
from bayescale.model import Posterior, posterior_key

__all__ = [
    "MapResult",
    "Mode",
    "chain_starts",
    "choose_centring",
    "find_mode",
    "laplace_covariance",
    "laplace_draws",
    "multi_start_map",
]


class MapResult(NamedTuple):
    z: jnp.ndarray  # (dim,) best unconstrained point
    potential: jnp.ndarray  # () its potential (inf if every start failed)
    num_failed: jnp.ndarray  # () starts that ended non-finite
    covariance: jnp.ndarray  # (dim, dim) regularised inverse Hessian at z


def _grad_and_hessian(grad, z, eps: float = 1e-5):
    """Gradient and a central-difference Hessian of the gradient, symmetrised.

    Differencing the (exact, reverse-mode) gradient keeps the compiled program small: an
    exact Hessian of the Student-t density needs trigamma, whose expansion alone costs
    seconds of XLA compile time, for no gain in a preconditioner.
    """
    d = z.shape[-1]
    steps = jnp.eye(d) * eps * jnp.maximum(1.0, jnp.abs(z))[:, None]
    both = jax.vmap(grad)(jnp.concatenate([z + steps, z - steps, z[None]]))
    h = (both[:d] - both[d : 2 * d]) / (2 * jnp.diag(steps))[:, None]
    return both[-1], 0.5 * (h + h.T)


def laplace_covariance(posterior: Posterior, z, data, *, max_variance: float = 25.0):
    """Inverse Hessian of the potential at ``z``, eigenvalues clipped to (1e-10, max]."""
    _, hess = _grad_and_hessian(jax.grad(lambda z: posterior.potential(z, data)), z)
    hess = jnp.where(jnp.isfinite(hess), hess, 0.0)
    lam, vec = jnp.linalg.eigh(hess)
    var = jnp.clip(1.0 / jnp.maximum(jnp.abs(lam), 1e-12), 1e-10, max_variance)
    return (vec * var) @ vec.T


def multi_start_map(
    posterior: Posterior, rng_key, data, *, num_starts: int = 8, num_steps: int = 60
) -> MapResult:
    """The mode that starts NUTS: :func:`find_mode` (the one optimiser, ``num_starts`` prior
    draws, ``num_steps`` L-BFGS steps each, the starts one after another) and the regularised
    inverse Hessian there (:func:`laplace_covariance`); if every start failed, the first
    prior draw."""
    mode = find_mode(
        posterior, rng_key, data, num_starts=num_starts, num_steps=num_steps, vectorized=False
    )
    finite = jnp.isfinite(mode.potential)
    z = jnp.where(finite, mode.z, posterior.prior_draws(rng_key, num_starts)[0])
    cov = laplace_covariance(posterior, z, data)
    return MapResult(z, mode.potential, mode.num_failed, cov)


class Mode(NamedTuple):
    """The best of several optimisations of one fit's potential (:func:`find_mode`)."""

    z: jnp.ndarray  # (dim,) best unconstrained point
    potential: jnp.ndarray  # () its potential (inf if every start failed)
    grad_norm: jnp.ndarray  # () largest |gradient| component there
    num_failed: jnp.ndarray  # () starts that ended non-finite
    num_agree: jnp.ndarray  # () starts that ended within 1e-6 (relative) of the best
    start_potentials: jnp.ndarray  # (num_starts,) where every start ended (inf: failed)
    last_change: jnp.ndarray  # () the best start's objective decrease over its last steps
    converged: jnp.ndarray  # () bool: small gradient or a stalled objective (see find_mode)


BACKTRACKING_STEPS = 4  # step shrinkings tried per L-BFGS step, each by ...
BACKTRACKING_FACTOR = 0.2  # ... this factor (smallest step tried: 0.2**4 = 1.6e-3)
GRAD_TOL = 1e-5  # a start converged: largest |gradient| component below this, or ...
CHANGE_TOL = 1e-9  # ... its objective fell by less than this (relative) over the last steps


def _lbfgs(fun, z0, num_steps: int, tol: float):
    """optax L-BFGS with a bounded backtracking line search, ``num_steps`` steps.

    Lock-step friendly under ``vmap``: the steps are a ``scan`` of fixed length and each
    line search tries the full quasi-Newton step and at most :data:`BACKTRACKING_STEPS`
    shorter ones, each :data:`BACKTRACKING_FACTOR` times the last (Armijo's sufficient
    decrease, optax ``scale_by_backtracking_linesearch``; if none is accepted the shortest
    is taken), so every start and every fit of a batch run the same program for at most
    ``1 + BACKTRACKING_STEPS`` objective evaluations per step.  Under ``vmap`` a line
    search runs until the slowest lane has finished, so this bound, not the typical search,
    sets the cost (optax's default zoom line search is a ``while_loop`` of up to 30
    value-and-gradient evaluations per step).  Convergence
    is measured afterwards (:func:`find_mode`), not tested inside the loop; a start whose
    largest gradient component falls below ``tol`` stops moving.

    Returns ``(z, fun(z), max |grad fun(z)|, decrease of fun over the last steps)``.
    """
    search = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=BACKTRACKING_STEPS,
        decrease_factor=BACKTRACKING_FACTOR,
        increase_factor=2.0**BACKTRACKING_STEPS,  # every search starts from the full step
        max_learning_rate=1.0,
    )
    opt = optax.lbfgs(linesearch=search)
    value_and_grad = jax.value_and_grad(fun)

    def step(carry, _):
        z, state = carry
        value, grad = value_and_grad(z)
        updates, new_state = opt.update(grad, state, z, value=value, grad=grad, value_fn=fun)
        z_new = optax.apply_updates(z, updates)
        moving = (jnp.max(jnp.abs(grad)) > tol) & jnp.all(jnp.isfinite(z_new))
        z = jnp.where(moving, z_new, z)
        state = jax.tree.map(lambda a, b: jnp.where(moving, a, b), new_state, state)
        return (z, state), value

    (z, _), values = jax.lax.scan(step, (z0, opt.init(z0)), None, length=num_steps)
    value, grad = value_and_grad(z)
    value = jnp.where(jnp.isfinite(value), value, jnp.inf)
    earlier = values[-max(1, num_steps // 10)]  # the objective 10% of the steps ago
    return z, value, jnp.max(jnp.abs(grad)), earlier - value


def find_mode(
    posterior: Posterior,
    rng_key,
    data,
    *,
    num_starts: int = 16,
    num_steps: int = 200,
    tol: float = 1e-8,
    flat_priors: bool = False,
    vectorized: bool = True,
) -> Mode:
    """Minimise the potential from ``num_starts`` prior draws; keep the best.

    Parameters
    ----------
    posterior : Posterior
    rng_key : jax.random.key
        Draws the starts from the prior (:meth:`Posterior.prior_draws`).
    data : dict
        One fit's data pytree.
    num_starts, num_steps : int
        Starts, and L-BFGS steps per start (a fixed number: :func:`_lbfgs`).
    tol : float
        A start stops moving when its largest gradient component is below ``tol``.
    flat_priors : bool
        Minimise the negative log-likelihood alone,
        :math:`-\\sum_i \\log p(y_i \\mid \\theta, \\sigma)` (the maximum-likelihood
        estimate, in the same unconstrained coordinates), instead of the potential.
    vectorized : bool
        Optimise the starts together under ``vmap`` (lock-step), or one after another
        (``lax.map``: the same optimisation of each start up to rounding, a smaller program
        to compile).

    Returns
    -------
    Mode
        Best point, its objective, gradient norm, counts of failed and agreeing starts, and
        whether the best start converged: with :math:`f` the objective and :math:`g` its
        gradient at the end, :math:`\\max_i |g_i| <` :data:`GRAD_TOL` or
        :math:`f_{\\text{10\\% of the steps earlier}} - f \\le`
        :data:`CHANGE_TOL` :math:`\\max(1, |f|)` (a stalled objective: the optimum of a
        likelihood with a kink, such as Huber's, has no small gradient).
    """
    starts = posterior.prior_draws(rng_key, num_starts)
    if flat_priors:

        def fun(z):
            nll = -posterior.log_likelihood(z, data)
            return jnp.where(jnp.isfinite(nll), nll, jnp.inf)

    else:

        def fun(z):
            return posterior.potential(z, data)

    def one(z0):
        return _lbfgs(fun, z0, num_steps, tol)

    if vectorized:
        ends, values, grad_norms, changes = jax.vmap(one)(starts)
    else:
        ends, values, grad_norms, changes = jax.lax.map(one, starts)
    finite = jnp.isfinite(values) & jnp.all(jnp.isfinite(ends), axis=-1)
    values = jnp.where(finite, values, jnp.inf)
    best = jnp.argmin(values)
    agree = jnp.abs(values - values[best]) <= 1e-6 * jnp.maximum(1.0, jnp.abs(values[best]))
    stalled = changes[best] <= CHANGE_TOL * jnp.maximum(1.0, jnp.abs(values[best]))
    converged = finite[best] & ((grad_norms[best] < GRAD_TOL) | stalled)
    return Mode(
        z=ends[best],
        potential=values[best],
        grad_norm=grad_norms[best],
        num_failed=jnp.sum(~finite),
        num_agree=jnp.sum(agree & finite),
        start_potentials=values,
        last_change=changes[best],
        converged=converged,
    )


def laplace_draws(posterior: Posterior, rng_key, z, data, shape: tuple[int, ...]):
    """Draws of :math:`\\mathcal N(\\hat z, H^{-1})` at the mode ``z``, shape ``(*shape, dim)``.

    :math:`H` is the Hessian of the potential at ``z`` in the unconstrained space (central
    differences of the exact gradient).  Returns ``(draws, min_eigenvalue)``; a Hessian that
    is not positive definite (``min_eigenvalue <= 0``: a saddle, a ridge, or a likelihood
    with a kink at the mode) gives draws from the absolute eigenvalues and is reported by the
    caller.
    """
    _, hess = _grad_and_hessian(jax.grad(lambda x: posterior.potential(x, data)), z)
    hess = jnp.where(jnp.isfinite(hess), hess, 0.0)
    lam, vec = jnp.linalg.eigh(hess)
    scale = vec / jnp.sqrt(jnp.maximum(jnp.abs(lam), 1e-12))  # H^{-1/2}
    eps = jax.random.normal(rng_key, (*shape, z.shape[-1]))
    return z + eps @ scale.T, lam[0]


METHODS = ("nuts", "map", "laplace")


def build_mode_fit(
    posterior: Posterior,
    method: str,
    *,
    num_starts: int = 16,
    num_steps: int = 500,
    num_chains: int = 4,
    num_samples: int = 1000,
    flat_priors: bool = False,
    devices: tuple | None = None,
):
    """Compile (once per law, likelihood and settings) ``run(keys, data) -> dict``.

    ``run`` is :func:`find_mode` (and, for ``method="laplace"``, :func:`laplace_draws`)
    vmapped over a leading fit axis of ``keys`` and every ``data`` leaf; with several
    ``devices`` the fit axis is split over them (its length must be a multiple of their
    number).  Output, per fit: ``z`` of shape ``(chains, draws, dim)`` — ``(1, 1, dim)``
    for the MAP, ``(num_chains, num_samples, dim)`` Laplace draws — ``lp`` (log density of
    each draw), and the mode's ``map_potential``, ``map_grad_norm``, ``map_failed_starts``,
    ``map_agreeing_starts``, ``map_last_change`` and ``map_converged`` (:class:`Mode`) and
    ``min_eigenvalue`` (of the Hessian; ``nan`` for the MAP).
    """
    if method not in ("map", "laplace"):
        raise ValueError(f"method must be 'map' or 'laplace' here, got {method!r}")
    for name, value in (
        ("num_starts", num_starts),
        ("num_steps", num_steps),
        ("num_chains", num_chains),
        ("num_samples", num_samples),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if flat_priors and method != "map":
        raise ValueError("flat_priors=True (maximum likelihood) applies to method='map' only")
    devices = tuple(devices) if devices is not None and len(devices) > 1 else None
    settings = (num_starts, num_steps, num_chains, num_samples, flat_priors)
    cache_key = ("mode", *posterior_key(posterior), method, *settings, devices)
    return compiled(cache_key, lambda: _build_mode_fit(posterior, method, devices, *settings))


def _build_mode_fit(
    posterior, method, devices, num_starts, num_steps, num_chains, num_samples, flat_priors
):
    def one(key, data):
        k_map, k_draws = jax.random.split(key)
        mode = find_mode(
            posterior,
            k_map,
            data,
            num_starts=num_starts,
            num_steps=num_steps,
            flat_priors=flat_priors,
        )
        if method == "laplace":
            z, min_eig = laplace_draws(posterior, k_draws, mode.z, data, (num_chains, num_samples))
        else:
            z, min_eig = mode.z[None, None], jnp.nan
        lp = -jax.vmap(jax.vmap(lambda x: posterior.potential(x, data)))(z)
        return {
            "z": z,
            "lp": lp,
            "map_potential": mode.potential,
            "map_grad_norm": mode.grad_norm,
            "map_failed_starts": mode.num_failed,
            "map_agreeing_starts": mode.num_agree,
            "map_last_change": mode.last_change,
            "map_converged": mode.converged,
            "min_eigenvalue": jnp.asarray(min_eig, dtype=mode.z.dtype),
        }

    run = jax.vmap(one)
    if devices is not None:
        run = shard(run, devices, "fits")
    return jit(run, devices)


def run_mode_fit(run, keys, data, devices_count: int = 1) -> dict:
    """Call a :func:`build_mode_fit` program on all fits; numpy output.

    The fit axis is padded (:func:`~bayescale.infer.parallel.pad_fits`, then trimmed) to a
    multiple of ``devices_count`` so it splits evenly.
    """
    import numpy as np

    keys, data, num_fits = pad_fits(keys, data, devices_count)
    out = jax.device_get(run(keys, data))
    return {k: np.asarray(v)[:num_fits] for k, v in out.items()}


def choose_centring(
    posterior: Posterior, keys, data, pooled, *, num_steps: int = 150, num_draws: int = 1000
):
    """Per pooled parameter, whether the hierarchical fit should use centred coordinates.

    Each group is fitted alone by the Laplace approximation (:func:`build_mode_fit`, all
    groups in one vmapped call).  For a pooled parameter with unconstrained group modes
    :math:`\\hat z_g` and Laplace standard deviations :math:`s_g`, the modes scatter by the
    population spread and their own error, :math:`\\operatorname{var}_g \\hat z_g \\approx
    \\tau^2 + \\overline{s^2}`, so the moment estimate of the spread is
    :math:`\\hat\\tau^2 = \\operatorname{var}_g \\hat z_g - \\overline{s^2}`.  The data
    are informative when each group is pinned down more tightly than the groups differ,
    :math:`\\hat\\tau^2 > \\overline{s^2}`, i.e. :math:`\\operatorname{var}_g \\hat z_g >
    2\\,\\overline{s^2}`.  With few groups the sample variance is noisy
    (:math:`(G-1)\\operatorname{var}_g \\hat z_g / (\\tau^2 + s^2) \\sim \\chi^2_{G-1}`),
    and the two mistakes are not alike: centred coordinates where the data are weak give
    divergences (the funnel), non-centred ones where they are strong only slow mixing.  So
    the centred parameterisation is chosen only when :math:`\\tau^2 = s^2` is rejected at
    the 1% level,

    .. math::

        \\frac{\\operatorname{var}_g \\hat z_g}{2\\,\\overline{s^2}} >
        \\frac{\\chi^2_{G-1}(0.99)}{G-1},

    and the non-centred one otherwise (:class:`bayescale.model.PooledPosterior`).  The
    Laplace :math:`s_g` can underestimate a skewed posterior's spread (PolyPythia 160m:
    ratio 3.0 against the threshold 3.3 for 5 seeds, where the centred fit diverged).

    Parameters
    ----------
    posterior : Posterior
        The base (one-group) posterior.
    keys : jax.Array
        One random key per group, shape ``(G,)``.
    data : dict
        The groups' data pytree, every leaf with a leading group axis.
    pooled : sequence of str
        The pooled parameters.
    num_steps, num_draws : int
        L-BFGS steps of each group's mode search, and Laplace draws per group used for
        :math:`s_g`.

    Returns
    -------
    tuple of bool
        One flag per pooled parameter (``True``: centred).
    """
    import numpy as np
    import scipy.stats

    # fit(by=..., inference=Laplace(num_steps=num_steps, num_chains=1, num_samples=num_draws))'s
    # program, so the two share one compilation
    devices = jax.devices()
    run = build_mode_fit(
        posterior,
        "laplace",
        num_starts=8,
        num_steps=num_steps,
        num_chains=1,
        num_samples=num_draws,
        devices=devices,
    )
    out = run_mode_fit(run, keys, data, devices_count=len(devices))
    ok = np.isfinite(out["map_potential"])
    flags = []
    for name in pooled:
        z = out["z"][ok, 0, :, posterior.site_names.index(name)]  # (G, draws)
        if z.shape[0] < 2:
            flags.append(False)
            continue
        num_groups = z.shape[0]
        ratio = np.median(z, axis=1).var(ddof=1) / (2.0 * np.mean(z.var(axis=1)))
        threshold = scipy.stats.chi2.ppf(0.99, num_groups - 1) / (num_groups - 1)
        flags.append(bool(ratio > threshold))
    return tuple(flags)


def chain_starts(
    posterior: Posterior, k_map, k_jitter, data, num_chains: int, *, num_starts: int,
    map_steps: int,
    init: str = "map",
):  # fmt: skip
    """``(w0, cov, mode)``: ``num_chains`` starting points in sampler coordinates, the
    Laplace covariance there (the initial inverse mass matrix) and the mode search's result.

    ``init="map"``: the multi-start MAP (:func:`~bayescale.infer.optimize.multi_start_map`),
    the chains drawn from the Laplace approximation with every standard deviation capped at
    1 (a start whose potential is not finite falls back to the mode); ``"prior"``: one prior
    draw and covariance :math:`0.01 I`.  ``k_map`` seeds the mode search (or the prior
    draw), ``k_jitter`` the chains' draws around it.
    """
    if init == "map":
        mode = multi_start_map(posterior, k_map, data, num_starts=num_starts, num_steps=map_steps)
    else:
        z = posterior.prior_draws(k_map, 1)[0]
        mode = MapResult(z, posterior.potential(z, data), 0, 0.01 * jnp.eye(posterior.dim))
    # the chains move in the centred coordinates; the Laplace covariance maps through the
    # Jacobian of the shear
    to_sampler = partial(posterior.to_sampler, data=data)
    jac = jax.jacfwd(to_sampler)(mode.z)
    cov = jac @ mode.covariance @ jac.T
    w = to_sampler(mode.z)
    lam, vec = jnp.linalg.eigh(cov)
    chol = vec * jnp.sqrt(jnp.clip(lam, 0.0, 1.0))
    w0 = w + jax.random.normal(k_jitter, (num_chains, posterior.dim)) @ chol.T
    ok = jnp.isfinite(jax.vmap(posterior.sampler_potential, (0, None))(w0, data))
    return jnp.where(ok[:, None], w0, w), cov, mode
