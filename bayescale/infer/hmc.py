"""Fixed-length HMC with ChEES adaptation: a lock-step sampler for batches of fits.

The fits of a group (all fits of a chunk on a device, or one fit) and their ``num_chains``
chains advance in lock step: every iteration every chain of every fit runs the same number
of leapfrog steps :math:`n = \\lceil s\\,u_t \\bar L \\rceil` (clipped to
``1..max_leapfrog_steps``), :math:`u_t \\in (0, 1)` the base-2 van der Corput (Halton) number
of the iteration, :math:`\\bar L` the median over the group's fits of their adapted
:math:`T_k / \\epsilon_k`, :math:`s` 1 during warm-up and ``trajectory_scale`` after it;
one Metropolis correction per chain follows.  Each fit keeps its own step size
:math:`\\epsilon_k` (so its trajectory is :math:`n \\epsilon_k` long), mass matrix and
adaptation.  There is no tree, no per-lane loop bound and so no lane waste under ``vmap``:
the leapfrog loop's trip count is the same for thousands of lanes.  A fit alone has
:math:`\\bar L = T / \\epsilon`.

Warm-up adapts, per fit and from all its chains at once (Hoffman, Radul & Sountsov 2021):

- the step size :math:`\\epsilon` by dual averaging (NumPyro's
  :func:`~numpyro.infer.hmc_util.dual_averaging`) of ``target_accept_prob`` minus the
  harmonic mean of the chains' acceptance probabilities; the final :math:`\\epsilon` is the
  dual-averaging average;
- the trajectory length :math:`T` by Adam ascent on :math:`\\log T` of the ChEES criterion
  :math:`\\tfrac14 E[(\\lVert x'-\\bar x'\\rVert^2 - \\lVert x-\\bar x\\rVert^2)^2]`, whose
  gradient estimate per chain, at the trajectory that ran, is :math:`u_t \\bar L \\epsilon
  (\\lVert x'-\\bar x'\\rVert^2 -
  \\lVert x-\\bar x\\rVert^2)\\,(x'-\\bar x')\\cdot M^{-1}p'` (proposals weighted by their
  acceptance probability, divergent ones left out), each update clipped to
  :math:`\\pm 0.35`, then averaged with weight :math:`t^{-1/2}`;
- the inverse mass matrix :math:`M^{-1}`: the Laplace covariance at the MAP until the end of
  one window (iterations ``W/5 .. 3W/5``), then the covariance of every chain's positions in
  that window, regularised as Stan does (:math:`\\tfrac{n}{n+5}\\Sigma + 10^{-3}
  \\tfrac{5}{n+5} I`), diagonal unless ``dense_mass``; the step-size adaptation restarts
  there.

The chains start as NUTS's do (:func:`bayescale.infer.optimize.chain_starts`): draws of
the Laplace approximation at the multi-start MAP, in the posterior's sampler coordinates
(:meth:`~bayescale.model.Posterior.from_sampler`).  The log density is
:meth:`~bayescale.model.Posterior.sampler_potential`, the one every path uses.

:func:`build_chees_sampler` returns ``run(keys, data)`` with the output of
:func:`bayescale.infer.nuts.build_sampler` (same keys and shapes; ``n_steps`` is the
iteration's leapfrog count), so :func:`bayescale.infer.batch.run_batch` drives both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import dual_averaging

from bayescale.infer.cache import compiled
from bayescale.infer.optimize import chain_starts
from bayescale.infer.parallel import in_groups
from bayescale.infer.parallel import shard as shard_axis
from bayescale.model import Posterior, posterior_key

__all__ = [
    "ChEESOptions",
    "build_chees_sampler",
    "halton",
    "num_steps",
]

#: Energy error above which a transition counts as divergent (NumPyro's threshold).
MAX_DELTA_ENERGY = 1000.0
#: Clip of one Adam update of :math:`\log T` (TFP's and BlackJAX's value).
LOG_UPDATE_CLIP = 0.35
ADAM_BETAS = (0.9, 0.999)
INITIAL_STEP_SIZE = 0.5  # in the units of the Laplace-preconditioned posterior (sd ~ 1)
INITIAL_TRAJECTORY = 1.0


class ChEESOptions(NamedTuple):
    """Static settings of :func:`build_chees_sampler` (hashable: part of its cache key).

    ``vectorized``: the fits of a group advance together under ``vmap`` (``True``) or one
    after another (``False``); a fit's own chains always advance together.
    """

    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    thin: int = 1
    dense_mass: bool = True
    target_accept_prob: float = 0.8
    max_leapfrog_steps: int = 255
    trajectory_scale: float = 1.0  # after warm-up, trajectories of this times the adapted length
    learning_rate: float = 0.05
    num_starts: int = 8
    map_steps: int = 60
    init: str = "map"  # "map": chains start around the MAP; "prior": from prior draws
    vectorized: bool | None = True
    group_size: int | None = None


def _check(o: ChEESOptions) -> None:
    for name in ("num_chains", "num_samples", "thin", "num_starts", "map_steps"):
        value = getattr(o, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if o.num_chains < 2:
        raise ValueError(f"ChEES adapts from several chains per fit: num_chains={o.num_chains}")
    if not isinstance(o.num_warmup, int) or o.num_warmup < 0:
        raise ValueError(f"num_warmup must be a non-negative integer, got {o.num_warmup!r}")
    if not 0 < o.target_accept_prob < 1:
        raise ValueError(f"target_accept_prob must lie in (0, 1), got {o.target_accept_prob!r}")
    if not isinstance(o.max_leapfrog_steps, int) or o.max_leapfrog_steps < 1:
        raise ValueError(f"max_leapfrog_steps must be >= 1, got {o.max_leapfrog_steps!r}")
    if not o.trajectory_scale > 0:
        raise ValueError(f"trajectory_scale must be positive, got {o.trajectory_scale!r}")


def halton(i, bits: int):
    """Base-2 van der Corput number of ``i + 1`` in (0, 1), from its lowest ``bits`` bits."""
    j = (jnp.asarray(i) + 1).astype(jnp.uint32)
    out = jnp.zeros((), jnp.result_type(float))
    for b in range(bits):
        out = out + ((j >> b) & 1) * 0.5 ** (b + 1)
    return out


def num_steps(u, step_size, length, max_steps: int):
    """Leapfrog steps of one iteration: :math:`\\lceil u T / \\epsilon \\rceil` in
    ``1..max_steps`` (int32)."""
    return jnp.clip(jnp.ceil(u * length / step_size), 1, max_steps).astype(jnp.int32)


class _Adapt(NamedTuple):
    log_step: jnp.ndarray  # () log step size in use
    da: tuple  # NumPyro dual-averaging state
    log_length: jnp.ndarray  # () log trajectory length T in use (the t^-1/2 average)
    adam: tuple  # (m, v, t) of the Adam ascent on log T
    count: jnp.ndarray  # () iterations since the last restart of the averages
    inverse_mass: jnp.ndarray  # (dim, dim)
    momentum: jnp.ndarray  # (dim, dim) L^-1, L L^T = inverse_mass: p = eps @ L^-1 ~ N(0, M)
    sums: tuple  # (n, sum, sum of outer products) of positions - shift in the mass window
    shift: jnp.ndarray  # (dim,)


class _State(NamedTuple):
    w: jnp.ndarray  # (chains, dim)
    potential: jnp.ndarray  # (chains,)
    grad: jnp.ndarray  # (chains, dim)
    adapt: _Adapt


def rows_times(x, m):
    """``x @ m`` for a few rows ``x`` and a small square ``m``, as broadcast products and a
    sum (XLA's CPU matrix product is slow at these sizes under ``vmap``)."""
    return jnp.sum(x[..., :, None] * m, axis=-2)


def _mass(cov, dense: bool, dim: int):
    """``(inverse_mass, L^-1)`` from a covariance, ``L`` its lower Cholesky factor: diagonal
    unless ``dense``; the identity where the covariance is not finite or not positive
    definite."""
    m = cov if dense else jnp.diag(jnp.diag(cov))
    chol = jnp.linalg.cholesky(m)
    ok = jnp.all(jnp.isfinite(chol))
    eye = jnp.eye(dim, dtype=cov.dtype)
    inv_chol = jax.scipy.linalg.solve_triangular(jnp.where(ok, chol, eye), eye, lower=True)
    return jnp.where(ok, m, eye), inv_chol


def build_chees_sampler(
    posterior: Posterior,
    options: ChEESOptions,
    *,
    devices: tuple | None = None,
    shard: str = "fits",
):
    """Compile (once per law, likelihood, options and devices) ``run(keys, data) -> dict``.

    Output as :func:`bayescale.infer.nuts.build_sampler`'s: ``(fits, chains, draws, ...)``
    arrays ``z`` (unconstrained draws), ``diverging``, ``n_steps``, ``acceptance_rate``,
    ``lp``, ``energy``, ``step_size``; per fit ``map_potential``, ``map_failed_starts`` and
    per chain the final ``inverse_mass_matrix`` (``(dim, dim)``).  With several ``devices``
    and ``shard="fits"`` the fit axis is split over them; ``shard="chains"`` runs on one
    device (a fit's chains adapt together, so they are not split).
    """
    _check(options)
    devices = tuple(devices) if devices is not None and len(devices) > 1 else None
    if shard == "chains":
        devices = None
    key = ("chees", *posterior_key(posterior), options, devices)
    return compiled(key, lambda: _build(posterior, options, devices))


def _build(posterior: Posterior, o: ChEESOptions, devices):
    dim, chains = posterior.dim, o.num_chains
    total = o.num_warmup + o.num_samples * o.thin
    bits = max(1, math.ceil(math.log2(total + 1)))
    window = (o.num_warmup // 5, 3 * o.num_warmup // 5)  # mass-matrix window [start, end)
    da_init, da_update = dual_averaging()
    b1, b2 = ADAM_BETAS

    def init_fit(key, data):
        k_start, k_run = jax.random.split(key)
        w0, cov, mode = chain_starts(
            posterior, *jax.random.split(k_start), data, chains,
            num_starts=o.num_starts, map_steps=o.map_steps, init=o.init,
        )  # fmt: skip
        inverse_mass, momentum = _mass(cov, o.dense_mass, dim)
        potential, grad = jax.vmap(jax.value_and_grad(posterior.sampler_potential), (0, None))(
            w0, data
        )
        log_step = jnp.log(INITIAL_STEP_SIZE)
        zero = jnp.zeros((), w0.dtype)
        adapt = _Adapt(
            log_step=log_step,
            da=da_init(log_step + jnp.log(10.0)),
            log_length=jnp.log(INITIAL_TRAJECTORY) + zero,
            adam=(zero, zero, zero),
            count=zero,
            inverse_mass=inverse_mass,
            momentum=momentum,
            sums=(zero, jnp.zeros(dim, w0.dtype), jnp.zeros((dim, dim), w0.dtype)),
            shift=w0[0],
        )
        return _State(w0, potential, grad, adapt), k_run, mode

    def transition(state: _State, n, u, key, data):
        """One HMC iteration of all chains of a fit, ``n`` leapfrog steps each."""
        a = state.adapt
        vg = jax.vmap(jax.value_and_grad(posterior.sampler_potential))
        data = jax.tree.map(lambda x: jnp.broadcast_to(x, (chains, *x.shape)), data)
        step = jnp.exp(a.log_step)
        k_p, k_u = jax.random.split(key)
        eps = jax.random.normal(k_p, (chains, dim), state.w.dtype)
        p0 = rows_times(eps, a.momentum)  # p ~ N(0, M), M = inverse_mass^-1 = (L L^T)^-1

        def kinetic(p):
            return 0.5 * jnp.sum(p * rows_times(p, a.inverse_mass), -1)

        def leapfrog(_, c):
            w, p, potential, grad = c
            p = p - 0.5 * step * grad
            w = w + step * rows_times(p, a.inverse_mass)
            potential, grad = vg(w, data)
            return w, p - 0.5 * step * grad, potential, grad

        w1, p1, u1, g1 = jax.lax.fori_loop(
            0, n, leapfrog, (state.w, p0, state.potential, state.grad)
        )
        h0, h1 = state.potential + kinetic(p0), u1 + kinetic(p1)
        delta = jnp.where(jnp.isnan(h1 - h0), jnp.inf, h1 - h0)
        accept_prob = jnp.exp(-jnp.clip(delta, 0.0, None))
        diverging = delta > MAX_DELTA_ENERGY
        accept = jax.random.uniform(k_u, (chains,)) < accept_prob
        new = _State(
            jnp.where(accept[:, None], w1, state.w),
            jnp.where(accept, u1, state.potential),
            jnp.where(accept[:, None], g1, state.grad),
            a,
        )
        info = {
            "accept_prob": accept_prob,
            "diverging": diverging,
            "energy": jnp.where(accept, h1, h0),
            "n_steps": jnp.broadcast_to(n, (chains,)),
            "step_size": jnp.broadcast_to(step, (chains,)),
            "u": u,
            "proposal": (w1, p1),
        }
        return new, info

    def adapt_step(state: _State, before: _State, info, i, log_lbar):
        """The warm-up update of step size, trajectory length and mass matrix.

        ``log_lbar``: log of the iteration's unjittered step count :math:`\\bar L` (the
        fit's own :math:`T/\\epsilon` when it runs alone, the group's in lock step).  The
        ChEES gradient is that of the trajectory that ran, of length
        :math:`u \\bar L \\epsilon`; the Adam step moves the fit's own :math:`\\log T`.
        """
        a = state.adapt
        ok = ~info["diverging"]
        prob = jnp.where(ok, info["accept_prob"], 0.0)
        # harmonic mean of the acceptance probabilities (0 when any kept one is 0 or all
        # chains diverged)
        inv = jnp.sum(jnp.where(ok, 1.0 / prob, 0.0))
        harmonic = jnp.where(jnp.any(ok) & jnp.isfinite(inv), jnp.sum(ok) / inv, 0.0)
        da = da_update(o.target_accept_prob - harmonic, a.da)
        log_step = da[0]
        # ChEES gradient with respect to log T
        w1, p1 = info["proposal"]
        w1 = jnp.where(ok[:, None], w1, 0.0)
        weight = jnp.sum(prob) + 1e-20
        centred1 = w1 - jnp.sum(prob[:, None] * w1, 0) / weight
        centred0 = before.w - jnp.mean(before.w, 0)
        v1 = jnp.where(ok[:, None], rows_times(p1, a.inverse_mass), 0.0)
        per_chain = (
            info["u"]
            * jnp.exp(log_lbar + a.log_step)
            * (jnp.sum(centred1**2, -1) - jnp.sum(centred0**2, -1))
            * jnp.sum(centred1 * v1, -1)
        )
        g = jnp.sum(prob * per_chain) / weight
        m, v, t = a.adam
        m, v, t = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2, t + 1
        update = o.learning_rate * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + 1e-8)
        raw = a.log_length + jnp.clip(update, -LOG_UPDATE_CLIP, LOG_UPDATE_CLIP)
        finite = jnp.isfinite(raw)
        raw = jnp.where(finite, raw, a.log_length)
        count = a.count + 1
        weight_t = count**-0.5
        log_length = (1 - weight_t) * a.log_length + weight_t * raw
        log_length = jnp.clip(log_length, log_step, log_step + jnp.log(float(o.max_leapfrog_steps)))
        last = i == o.num_warmup - 1
        log_step = jnp.where(last, da[1], log_step)  # the dual-averaging average from here on
        # positions of the mass-matrix window
        n, s1, s2 = a.sums
        inside = (i >= window[0]) & (i < window[1])
        x = state.w - a.shift
        sums = (
            n + jnp.where(inside, chains, 0),
            s1 + jnp.where(inside, jnp.sum(x, 0), 0.0),
            s2 + jnp.where(inside, x.T @ x, 0.0),
        )
        adam = (jnp.where(finite, m, a.adam[0]), jnp.where(finite, v, a.adam[1]), t)
        return state._replace(
            adapt=a._replace(
                log_step=log_step,
                da=da,
                log_length=log_length,
                adam=adam,
                count=count,
                sums=sums,
            )
        )

    def end_window(state: _State):
        """Mass matrix from the window's positions; the step-size averages restart."""
        a = state.adapt
        n, s1, s2 = a.sums
        mean = s1 / n
        cov = (s2 - n * jnp.outer(mean, mean)) / (n - 1)
        cov = n / (n + 5.0) * cov + 1e-3 * 5.0 / (n + 5.0) * jnp.eye(dim, dtype=cov.dtype)
        inverse_mass, momentum = _mass(cov, o.dense_mass, dim)
        return state._replace(
            adapt=a._replace(
                inverse_mass=inverse_mass,
                momentum=momentum,
                da=da_init(a.log_step + jnp.log(10.0)),
                count=jnp.zeros_like(a.count),
            )
        )

    def stats(state: _State, info, data):
        return {
            "z": posterior.from_sampler(state.w, data),
            "diverging": info["diverging"],
            "n_steps": info["n_steps"],
            "acceptance_rate": info["accept_prob"],
            "lp": -state.potential,
            "energy": info["energy"],
            "step_size": info["step_size"],
        }

    def shared_steps(adapt: _Adapt, u, real, scale):
        """The group's leapfrog count of an iteration, :math:`\\lceil s u \\bar L \\rceil`
        (``scale`` :math:`s`), and
        :math:`\\log \\bar L`: :math:`\\bar L` the median over the group's real fits
        (``real``; all when none is) of their adapted :math:`T_k / \\epsilon_k`."""
        per_fit = adapt.log_length - adapt.log_step
        log_lbar = jnp.nanmedian(jnp.where(real, per_fit, jnp.nan))
        log_lbar = jnp.where(jnp.isnan(log_lbar), jnp.median(per_fit), log_lbar)
        counts = num_steps(
            u, 1.0, jnp.broadcast_to(scale * jnp.exp(log_lbar), u.shape), o.max_leapfrog_steps
        )
        return counts[0], log_lbar

    def run_group(states: _State, keys, data):
        """All iterations of a group of fits (leading axis) advancing in lock step: every
        chain of every fit runs the same number of leapfrog steps per iteration
        (:func:`shared_steps`), each fit with its own step size, mass matrix and
        adaptation: a ``scan`` over warm-up iterations, then one over kept draws."""
        fits = keys.shape[0]
        real = jnp.any(data["mask"].reshape(fits, -1), -1)
        each = jax.vmap(transition, (0, None, None, 0, 0))

        def iteration(states, i):
            u = halton(i, bits)
            scale = jnp.where(i >= o.num_warmup, o.trajectory_scale, 1.0)
            n, log_lbar = shared_steps(states.adapt, jnp.broadcast_to(u, (fits,)), real, scale)
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
            new, info = each(states, n, u, step_keys, data)
            return new, info, log_lbar

        def warm(states, i):
            new, info, log_lbar = iteration(states, i)
            new = jax.vmap(adapt_step, (0, 0, 0, None, None))(new, states, info, i, log_lbar)
            if window[1] > window[0] + 1:
                new = jax.lax.cond(
                    i == window[1] - 1, lambda: jax.vmap(end_window)(new), lambda: new
                )
            return new, None

        def draw(states, j):
            """``thin`` iterations; the last one's state is the kept draw."""
            first = o.num_warmup + j * o.thin
            states = jax.lax.fori_loop(
                0, o.thin - 1, lambda k, s: iteration(s, first + k)[0], states
            )
            new, info, _ = iteration(states, first + o.thin - 1)
            return new, jax.vmap(stats)(new, info, data)

        states, _ = jax.lax.scan(warm, states, jnp.arange(o.num_warmup))
        states, draws = jax.lax.scan(draw, states, jnp.arange(o.num_samples))
        # (draws, fits, chains, ...) -> (fits, chains, draws, ...)
        draws = jax.tree.map(lambda b: jnp.moveaxis(b, 0, 2), draws)
        imm = jnp.broadcast_to(states.adapt.inverse_mass[:, None], (fits, chains, dim, dim))
        return draws, imm

    def alone(args):
        """:func:`run_group` of one fit (no leading axis)."""
        out = run_group(*jax.tree.map(lambda x: x[None], args))
        return jax.tree.map(lambda x: x[0], out)

    def run_fits(keys, data):
        states, run_keys, mode = jax.vmap(init_fit)(keys, data)
        if o.vectorized:
            draws, imm = run_group(states, run_keys, data)
        else:  # one by one: each fit a group of its own
            draws, imm = jax.lax.map(alone, (states, run_keys, data))
        return {
            **draws,
            "map_potential": mode.potential,
            "map_failed_starts": mode.num_failed,
            "inverse_mass_matrix": imm,
        }

    def run(keys, data):
        return in_groups(run_fits, keys, data, o.group_size)

    if devices is not None:
        run = shard_axis(run, devices, "fits")
    return jax.jit(run)
