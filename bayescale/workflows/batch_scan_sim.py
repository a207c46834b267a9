"""Simulated Kaplan batch-size scans (Kaplan et al. 2020's raw runs are not public).

Loss curves of one model trained at several batch sizes (:func:`simulate_batch_scan`), drawn
from the published laws ``kaplan_ns`` and ``kaplan_bcrit`` through McCandlish et al.'s
trade-off; the true :math:`S_{\\min}`, :math:`E_{\\min}`, :math:`B_{\\rm crit}` at given
losses (:func:`batch_scan_truth`); gradient-norm measurements whose noise scale follows the
same law (:func:`simulate_gradient_norms`).  Analysed by
:mod:`bayescale.workflows.batch_scan` and :mod:`bayescale.workflows.bcrit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pandas as pd

from bayescale.data import positive_array
from bayescale.laws import Law, get_law
from bayescale.precision import float64
from bayescale.simulate import log_mean_values, noise_sd, parameter_values

__all__ = [
    "DEFAULT_SCAN_BATCH_SIZES",
    "batch_scan_truth",
    "simulate_batch_scan",
    "simulate_gradient_norms",
]

#: Batch sizes (tokens) of a simulated scan: 2^13 .. 2^22, the span of Kaplan et al.'s scans.
DEFAULT_SCAN_BATCH_SIZES = tuple(2.0**k for k in range(13, 23))


def _law_values(law_id: str, params: Mapping[str, float] | None) -> tuple[Law, dict[str, float]]:
    law = get_law(law_id)
    return law, parameter_values(law, params)


def _min_steps_curve(
    n_params: float,
    loss_params: Mapping[str, float] | None,
    bcrit_params: Mapping[str, float] | None,
    num_grid: int = 20_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log S_min, loss, log B_crit)`` on a fine grid of S_min (loss decreasing).

    ``loss = L(n_params, S_min)`` by the catalogue law ``kaplan_ns`` and
    ``B_crit = B_crit(loss)`` by ``kaplan_bcrit``; both evaluated by the laws' own formulas.
    """
    import jax.numpy as jnp

    ns_law, ns_theta = _law_values("kaplan_ns", loss_params)
    bc_law, bc_theta = _law_values("kaplan_bcrit", bcrit_params)
    if not (isinstance(n_params, Real) and math.isfinite(n_params) and n_params > 0):
        raise ValueError(f"n_params must be a finite number > 0, got {n_params!r}")
    log_s_min = np.linspace(0.0, math.log(1e9), num_grid)
    log_loss = np.asarray(
        ns_law.log_mean(
            {k: jnp.asarray(v) for k, v in ns_theta.items()},
            {"n_params": jnp.full(num_grid, math.log(n_params)), "steps": jnp.asarray(log_s_min)},
        )
    )
    log_bcrit = np.asarray(
        bc_law.log_mean(
            {k: jnp.asarray(v) for k, v in bc_theta.items()}, {"loss": jnp.asarray(log_loss)}
        )
    )
    return log_s_min, np.exp(log_loss), log_bcrit


@float64
def simulate_batch_scan(
    *,
    n_params: float = 8.5e7,
    batch_sizes=DEFAULT_SCAN_BATCH_SIZES,
    max_steps: float = 1e6,
    num_logged: int = 200,
    max_loss: float = 10.83,
    noise: float = 0.005,
    run_noise: float = 0.0,
    loss_params: Mapping[str, float] | None = None,
    bcrit_params: Mapping[str, float] | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Loss curves of one model trained at several batch sizes (a Kaplan batch-size scan).

    Kaplan et al.'s raw runs are not public; this draws them from the published laws.  The
    loss reached after :math:`S_{\\min}` steps at an infinite batch is Kaplan's
    :math:`L(N, S_{\\min})` (catalogue law ``kaplan_ns``), and a run at batch size
    :math:`B` needs more steps to reach the same loss, by McCandlish et al.'s relation
    with Kaplan's critical batch size (catalogue law ``kaplan_bcrit``):

    .. math::

        L(N, S_{\\min}) = (N_c/N)^{\\alpha_N} + (S_c/S_{\\min})^{\\alpha_S}, \\qquad
        S = S_{\\min}(L)\\,\\bigl(1 + B_{\\rm crit}(L)/B\\bigr), \\qquad
        B_{\\rm crit}(L) = B_*\\,L^{-1/\\alpha_B},

    so that at every loss :math:`(S/S_{\\min} - 1)(E/E_{\\min} - 1) = 1` with
    :math:`E = BS` and :math:`E_{\\min} = B_{\\rm crit} S_{\\min}`.  :math:`S(L)` is
    increasing as :math:`L` falls, so each run's curve is traced on a fine grid of
    :math:`S_{\\min}` and read at ``num_logged`` log-spaced steps up to ``max_steps``.  The
    loss is capped at ``max_loss`` (an untrained model's, where the law, fitted after
    warm-up, would exceed it), the logged loss carries log-normal noise, and each run
    optionally a seed-to-seed efficiency factor on its step count:

    .. math::

        \\log \\tilde L_{rt} = \\log \\min\\bigl(L_r(S_t\\, e^{-\\eta_r}),\\, L_{\\max}\\bigr)
        + \\sigma\\,\\varepsilon_{rt}, \\qquad
        \\eta_r \\sim \\mathcal N(0, \\tau^2), \\quad \\varepsilon_{rt} \\sim \\mathcal N(0, 1),

    with :math:`\\sigma` = ``noise`` and :math:`\\tau` = ``run_noise``.

    Parameters
    ----------
    n_params : float
        Non-embedding parameters :math:`N` of the model (Kaplan's scans: 3e6 and 8.5e7).
    batch_sizes : sequence of float
        Batch size of each run in tokens (default :data:`DEFAULT_SCAN_BATCH_SIZES`,
        :math:`2^{13} \\dots 2^{22}`).
    max_steps : float
        Last logged step of every run.
    num_logged : int
        Logged points per run, log-spaced from step 10 to ``max_steps``.
    max_loss : float
        :math:`L_{\\max}`, the loss of an untrained model (default :math:`\\ln 50257`, a
        uniform guess over GPT-2's vocabulary).
    noise : float
        :math:`\\sigma \\ge 0`, the sd of the logged log-loss around the curve.
    run_noise : float
        :math:`\\tau \\ge 0`, the sd of each run's log step-efficiency factor (shared by all
        the run's points, so it shifts the run's steps-to-target at every loss).
    loss_params : dict, optional
        Overrides of ``kaplan_ns``'s reference values (``alpha_N``, ``alpha_S``, ``N_c``,
        ``S_c``).
    bcrit_params : dict, optional
        Overrides of ``kaplan_bcrit``'s reference values (``B_star`` = 2.1e8 tokens,
        ``alpha_B`` = 0.21).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        One row per logged point: ``batch_size`` (tokens), ``steps``, ``n_tokens``
        (examples :math:`E = B S`) and ``loss`` (nats/token), runs in the order of
        ``batch_sizes``.

    See Also
    --------
    batch_scan_truth : the true :math:`S_{\\min}, E_{\\min}, B_{\\rm crit}` at given losses.
    bayescale.workflows.batch_scan.fit_batch_scan : the analysis these curves are made for.

    Examples
    --------
    >>> from bayescale.workflows.batch_scan_sim import simulate_batch_scan
    >>> curves = simulate_batch_scan(batch_sizes=[2**15, 2**18], num_logged=50, seed=1)
    >>> list(curves.columns), len(curves)
    (['batch_size', 'steps', 'n_tokens', 'loss'], 100)
    """
    sizes = positive_array(batch_sizes, "batch_sizes", distinct=True, error=ValueError)
    if not (isinstance(max_steps, Real) and math.isfinite(max_steps) and max_steps > 10):
        raise ValueError(f"max_steps must be a finite number > 10, got {max_steps!r}")
    if isinstance(num_logged, bool) or not isinstance(num_logged, int | np.integer):
        raise ValueError(f"num_logged must be an integer >= 2, got {num_logged!r}")
    if num_logged < 2:
        raise ValueError(f"num_logged must be an integer >= 2, got {num_logged!r}")
    if not (isinstance(max_loss, Real) and math.isfinite(max_loss) and max_loss > 0):
        raise ValueError(f"max_loss must be a finite number > 0, got {max_loss!r}")
    sigma = noise_sd(get_law("kaplan_ns"), {}, noise)
    tau = noise_sd(get_law("kaplan_ns"), {}, run_noise)
    log_s_min, loss, log_bcrit = _min_steps_curve(n_params, loss_params, bcrit_params)
    rng = np.random.default_rng(seed)
    log_steps = np.linspace(math.log(10.0), math.log(max_steps), int(num_logged))
    frames = []
    for size in sizes:
        eta = tau * rng.standard_normal()
        log_s = log_s_min + np.log1p(np.exp(log_bcrit) / size)  # S = S_min (1 + B_crit/B)
        curve = np.minimum(np.interp(log_steps - eta, log_s, loss), max_loss)
        logged = np.exp(np.log(curve) + sigma * rng.standard_normal(log_steps.size))
        steps = np.exp(log_steps)
        frames.append(
            pd.DataFrame(
                {"batch_size": size, "steps": steps, "n_tokens": size * steps, "loss": logged}
            )
        )
    return pd.concat(frames, ignore_index=True)


@float64
def batch_scan_truth(
    losses,
    *,
    n_params: float = 8.5e7,
    loss_params: Mapping[str, float] | None = None,
    bcrit_params: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The true :math:`S_{\\min}`, :math:`E_{\\min}`, :math:`B_{\\rm crit}` behind
    :func:`simulate_batch_scan` at target ``losses``.

    :math:`S_{\\min}(L)` inverts :math:`L(N, S_{\\min})` (``kaplan_ns``),
    :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}` and
    :math:`E_{\\min} = B_{\\rm crit}\\, S_{\\min}`; the arguments mean what they mean there.

    Returns
    -------
    DataFrame
        ``loss``, ``S_min`` (steps), ``E_min`` (tokens), ``B_crit`` (tokens); NaN where the
        model never reaches the loss (at or below its :math:`L(N, \\infty)`).
    """
    targets = positive_array(losses, "losses", error=ValueError)
    log_s_min, loss, log_bcrit = _min_steps_curve(n_params, loss_params, bcrit_params)
    inside = (targets > loss[-1]) & (targets <= loss[0])
    s_min = np.where(inside, np.exp(np.interp(targets, loss[::-1], log_s_min[::-1])), np.nan)
    bcrit = np.where(inside, np.exp(np.interp(targets, loss[::-1], log_bcrit[::-1])), np.nan)
    return pd.DataFrame({"loss": targets, "S_min": s_min, "E_min": bcrit * s_min, "B_crit": bcrit})


@float64
def simulate_gradient_norms(
    losses,
    *,
    batch_size_small: float = 2.0**13,
    batch_size_big: float = 2.0**20,
    noise_scale_ratio: float = 1.0,
    grad_norm_sq: float = 1.0,
    noise: float = 0.05,
    bcrit_params: Mapping[str, float] | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Squared gradient norms measured at two batch sizes, for the gradient noise scale.

    A minibatch gradient :math:`G_B` of :math:`B` tokens is the true gradient :math:`G` plus
    noise of covariance :math:`\\Sigma/B`, so :math:`\\mathbb E|G_B|^2 = |G|^2 +
    \\operatorname{tr}\\Sigma / B`.  The simple noise scale
    :math:`B_{\\rm simple} = \\operatorname{tr}\\Sigma/|G|^2` is set to
    ``noise_scale_ratio`` times Kaplan's :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}`
    (McCandlish et al.: :math:`B_{\\rm crit} \\approx B_{\\rm noise}`), and each measured
    squared norm carries log-normal noise:

    .. math::

        |\\tilde G_{B}|^2 = |G|^2\\bigl(1 + B_{\\rm simple}/B\\bigr)\\, e^{\\sigma \\varepsilon},
        \\qquad \\varepsilon \\sim \\mathcal N(0, 1).

    Parameters
    ----------
    losses : sequence of float
        Losses (nats/token) at which the two norms are measured.
    batch_size_small, batch_size_big : float
        :math:`B_{\\rm small} < B_{\\rm big}`, in tokens.
    noise_scale_ratio : float
        :math:`B_{\\rm simple}/B_{\\rm crit}` (> 0; 1 is the theory's).
    grad_norm_sq : float
        :math:`|G|^2` (any positive scale; the noise scale does not depend on it).
    noise : float
        :math:`\\sigma \\ge 0` of each measured log squared norm.
    bcrit_params : dict, optional
        Overrides of ``kaplan_bcrit``'s reference values.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        ``loss``, ``batch_size_small``, ``batch_size_big``, ``grad_norm_sq_small``,
        ``grad_norm_sq_big`` (the measurements) and ``noise_scale_true``
        (:math:`B_{\\rm simple}` used), one row per loss; the input of
        :func:`bayescale.workflows.bcrit.gradient_noise_scale`.
    """
    targets = positive_array(losses, "losses", error=ValueError)
    for name, value in (
        ("batch_size_small", batch_size_small),
        ("batch_size_big", batch_size_big),
        ("noise_scale_ratio", noise_scale_ratio),
        ("grad_norm_sq", grad_norm_sq),
    ):
        if not (isinstance(value, Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not batch_size_small < batch_size_big:
        raise ValueError(
            f"batch_size_small ({batch_size_small!r}) must be < batch_size_big ({batch_size_big!r})"
        )
    bc_law, bc_theta = _law_values("kaplan_bcrit", bcrit_params)
    sigma = noise_sd(bc_law, {}, noise)
    log_bcrit = log_mean_values(bc_law, bc_theta, {"loss": np.log(targets)})
    b_simple = noise_scale_ratio * np.exp(log_bcrit)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((2, targets.size))
    small = grad_norm_sq * (1 + b_simple / batch_size_small) * np.exp(sigma * eps[0])
    big = grad_norm_sq * (1 + b_simple / batch_size_big) * np.exp(sigma * eps[1])
    return pd.DataFrame(
        {
            "loss": targets,
            "batch_size_small": float(batch_size_small),
            "batch_size_big": float(batch_size_big),
            "grad_norm_sq_small": small,
            "grad_norm_sq_big": big,
            "noise_scale_true": b_simple,
        }
    )
