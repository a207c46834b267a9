"""Simulated data from a scaling law: for tests, demos and checks of a fit's calibration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.data import nonnegative_number
from bayescale.laws import Law, get_law

__all__ = [
    "batch_scan_truth",
    "simulate",
    "simulate_batch_scan",
    "simulate_frontier",
    "simulate_gradient_norms",
    "simulate_isoflop",
    "simulate_per_token",
    "simulate_runs",
]

#: Used when neither the argument nor the law's ``[design]`` gives a value.
DEFAULT_NUM_POINTS = 20
DEFAULT_NOISE = 0.02

_DESIGN_SCALARS = ("num_points", "noise")


def simulate(
    law: str | Path | Law,
    *,
    params: Mapping[str, float] | None = None,
    design: Mapping[str, object] | None = None,
    num_points: int | None = None,
    noise: float | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Draw a data set from a scaling law with log-normal noise.

    Each covariate is drawn log-uniformly over its design range and the response is the law
    times log-normal noise:

    .. math::

        \\log x_{ij} \\sim \\mathcal U(\\log \\ell_j, \\log h_j), \\qquad
        \\log y_i = \\log f(x_i; \\theta) + \\sigma\\, \\varepsilon_i, \\qquad
        \\varepsilon_i \\sim \\mathcal N(0, 1),

    for :math:`i = 1 \\dots n` points, covariates :math:`j` with ranges
    :math:`[\\ell_j, h_j]`, parameters :math:`\\theta` and noise scale :math:`\\sigma` (the
    standard deviation of the log residuals, i.e. the observation model of
    :func:`bayescale.fit` with ``likelihood="normal"``).

    Parameters
    ----------
    law : str, Path or Law
        Anything :func:`bayescale.laws.get_law` accepts: catalogue id, law file, formula
        string or :class:`~bayescale.laws.Law`.
    params : dict, optional
        Parameter values :math:`\\theta`.  They override the law's reference values
        (``law.reference``); every parameter must end up with a value.
    design : dict, optional
        ``{covariate: (low, high)}`` log-uniform ranges overriding ``law.design``; may also
        hold ``num_points`` and ``noise`` (as ``law.design`` does).
    num_points : int, optional
        Number of rows :math:`n`.  Default: ``design["num_points"]``, else
        ``law.design["num_points"]``, else 20.
    noise : float, optional
        :math:`\\sigma \\ge 0`; ``0`` gives the law exactly.  Default: ``design["noise"]``,
        else ``law.design["noise"]``, else 0.02.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same data.

    Returns
    -------
    DataFrame
        One column per covariate (in the law's order) then the response, named after the
        law's variables, so it can be passed to :func:`bayescale.fit` as is.

    Raises
    ------
    ValueError
        Naming the offending parameters or covariates: unknown or missing parameters,
        non-finite parameter values, missing or invalid ranges (need ``0 < low < high``),
        ``num_points < 1``, ``noise < 0``, or a law that is not finite at the drawn points.
        (:class:`~bayescale.LawError`, raised for an unknown law, is a ``ValueError`` too.)

    Examples
    --------
    >>> from bayescale.simulate import simulate
    >>> df = simulate("chinchilla", num_points=5, seed=1)
    >>> list(df.columns)
    ['n_params', 'n_tokens', 'loss']
    """
    law = get_law(law)
    theta = _parameters(law, params)
    user_design = dict(design or {})
    ranges = _ranges(law, user_design)
    n = _num_points(law, user_design, num_points)
    sigma = _noise(law, user_design, noise)

    rng = np.random.default_rng(seed)
    log_x = {c: rng.uniform(math.log(lo), math.log(hi), size=n) for c, (lo, hi) in ranges.items()}
    eps = rng.standard_normal(n)
    log_f = _log_mean(law, theta, log_x)
    bad = ~np.isfinite(log_f)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        at = ", ".join(f"{c}={math.exp(v[i]):.4g}" for c, v in log_x.items())
        raise ValueError(
            f"law {law.id!r} is not finite and positive at {int(bad.sum())} simulated point(s) "
            f"(first at {at}) with parameters {theta}"
        )
    columns = {c: np.exp(log_x[c]) for c in law.covariates}
    columns[law.response] = np.exp(log_f + sigma * eps)
    return pd.DataFrame(columns)


def simulate_runs(
    law: str | Path | Law,
    runs,
    *,
    params: Mapping[str, float] | None = None,
    noise: float | None = None,
    seed=0,
) -> pd.DataFrame:
    """Outcomes of given runs: the law's response at each row of ``runs``, with log-normal
    noise,

    .. math::

        \\log y_i = \\log f(x_i; \\theta) + \\sigma\\, \\varepsilon_i, \\qquad
        \\varepsilon_i \\sim \\mathcal N(0, 1),

    as :func:`simulate`, but at covariate values one chose (a design) instead of drawn ones.

    Parameters
    ----------
    law : str, Path or Law
        Anything :func:`bayescale.laws.get_law` accepts.
    runs : DataFrame or dict
        One row per run, a column per covariate of the law (other columns are kept).
    params : dict, optional
        Parameter values overriding the law's reference values.
    noise : float, optional
        :math:`\\sigma \\ge 0`; default the law's ``[design]`` noise, else 0.02.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`.  The noise of row :math:`i` is the
        :math:`i`-th standard normal of that generator, so designs simulated with the same
        seed share their noise (common random numbers).

    Returns
    -------
    DataFrame
        ``runs`` with the response column added (named after the law's response).

    Raises
    ------
    ValueError
        A missing covariate column, non-positive or non-finite covariate values (naming the
        column and row), bad parameters or noise, or a law not finite at a run.
    """
    law = get_law(law)
    theta = _parameters(law, params)
    sigma = _noise(law, {}, noise)
    frame = pd.DataFrame(runs).reset_index(drop=True)
    missing = [c for c in law.covariates if c not in frame.columns]
    if missing:
        raise ValueError(
            f"runs need the covariate column(s) {missing} of law {law.id!r}; they have "
            f"{list(map(str, frame.columns))}"
        )
    log_x = {}
    for c in law.covariates:
        x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(x) & (x > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"runs column {c!r} must be positive and finite; row {i} has {frame[c].iloc[i]!r}"
            )
        log_x[c] = np.log(x)
    log_f = _log_mean(law, theta, log_x)
    bad = ~np.isfinite(log_f)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"law {law.id!r} is not finite and positive at run {i} "
            f"({', '.join(f'{c}={frame[c].iloc[i]:.4g}' for c in law.covariates)})"
        )
    eps = np.random.default_rng(seed).standard_normal(len(frame))
    return frame.assign(**{law.response: np.exp(log_f + sigma * eps)})


def _parameters(law: Law, params: Mapping[str, float] | None) -> dict[str, float]:
    params = dict(params or {})
    unknown = [k for k in params if k not in law.parameters]
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for law {law.id!r}; "
            f"its parameters: {', '.join(law.parameters)}"
        )
    theta = {**law.reference, **params}
    missing = [k for k in law.parameters if theta.get(k) is None]
    if missing:
        raise ValueError(
            f"law {law.id!r} has no reference value for parameter(s) {missing}; "
            f"pass them with params={{...}}"
        )
    bad = []
    for k in law.parameters:
        value = theta[k]
        if isinstance(value, bool) or not isinstance(value, Real | np.number):
            bad.append(k)
        elif not math.isfinite(float(value)):
            bad.append(k)
    if bad:
        shown = ", ".join(f"{k}={theta[k]!r}" for k in bad)
        raise ValueError(f"parameter(s) of law {law.id!r} must be finite numbers: {shown}")
    return {k: float(theta[k]) for k in law.parameters}


def _ranges(law: Law, design: dict) -> dict[str, tuple[float, float]]:
    unknown = [k for k in design if k not in law.covariates and k not in _DESIGN_SCALARS]
    if unknown:
        raise ValueError(
            f"design gives range(s) for {unknown}, which are not covariates of law "
            f"{law.id!r} (its covariates: {', '.join(law.covariates)})"
        )
    ranges = {}
    missing = []
    for c in law.covariates:
        spec = design.get(c, law.design.get(c))
        if spec is None:
            missing.append(c)
            continue
        try:
            if isinstance(spec, str | bytes):
                raise TypeError
            lo, hi = (float(v) for v in spec)
        except (TypeError, ValueError):
            raise ValueError(
                f"design range of covariate {c!r} must be a pair (low, high), got {spec!r}"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise ValueError(
                f"design range of covariate {c!r} must satisfy 0 < low < high (finite), "
                f"got ({lo!r}, {hi!r})"
            )
        ranges[c] = (lo, hi)
    if missing:
        raise ValueError(
            f"law {law.id!r} gives no design range for covariate(s) {missing}; "
            f"pass design={{{missing[0]!r}: (low, high), ...}}"
        )
    return ranges


def _num_points(law: Law, design: dict, num_points) -> int:
    value = num_points
    if value is None:
        value = design.get("num_points", law.design.get("num_points", DEFAULT_NUM_POINTS))
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"num_points must be an integer >= 1, got {value!r}")
    return int(value)


def _noise(law: Law, design: dict, noise) -> float:
    value = noise
    if value is None:
        value = design.get("noise", law.design.get("noise", DEFAULT_NOISE))
    return nonnegative_number(value, "noise")


def _log_mean(law: Law, theta: dict[str, float], log_x: dict[str, np.ndarray]) -> np.ndarray:
    """``log f`` at the drawn points, evaluated by the law's own (log-space) formula."""
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in theta.items()}
    covs = {c: jnp.asarray(v) for c, v in log_x.items()}
    n = len(next(iter(log_x.values())))
    return np.broadcast_to(np.asarray(law.log_mean(params, covs), dtype=np.float64), (n,))


# ----------------------------------------------------------------------------- batch-size scans

#: Batch sizes (tokens) of a simulated scan: 2^13 .. 2^22, the span of Kaplan et al.'s scans.
DEFAULT_SCAN_BATCH_SIZES = tuple(2.0**k for k in range(13, 23))


def _law_values(law_id: str, params: Mapping[str, float] | None) -> tuple[Law, dict[str, float]]:
    law = get_law(law_id)
    return law, _parameters(law, params)


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


def _batch_sizes(batch_sizes) -> np.ndarray:
    sizes = np.asarray(batch_sizes, dtype=np.float64).ravel()
    if sizes.size < 1 or not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ValueError(f"batch_sizes must be finite numbers > 0, got {list(sizes)}")
    if len(np.unique(sizes)) != sizes.size:
        raise ValueError(f"batch_sizes must be distinct, got {list(sizes)}")
    return sizes


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
    >>> from bayescale.simulate import simulate_batch_scan
    >>> curves = simulate_batch_scan(batch_sizes=[2**15, 2**18], num_logged=50, seed=1)
    >>> list(curves.columns), len(curves)
    (['batch_size', 'steps', 'n_tokens', 'loss'], 100)
    """
    sizes = _batch_sizes(batch_sizes)
    if not (isinstance(max_steps, Real) and math.isfinite(max_steps) and max_steps > 10):
        raise ValueError(f"max_steps must be a finite number > 10, got {max_steps!r}")
    if isinstance(num_logged, bool) or not isinstance(num_logged, int | np.integer):
        raise ValueError(f"num_logged must be an integer >= 2, got {num_logged!r}")
    if num_logged < 2:
        raise ValueError(f"num_logged must be an integer >= 2, got {num_logged!r}")
    if not (isinstance(max_loss, Real) and math.isfinite(max_loss) and max_loss > 0):
        raise ValueError(f"max_loss must be a finite number > 0, got {max_loss!r}")
    sigma = _noise(get_law("kaplan_ns"), {}, noise)
    tau = _noise(get_law("kaplan_ns"), {}, run_noise)
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
    targets = np.asarray(losses, dtype=np.float64).ravel()
    if targets.size < 1 or not np.all(np.isfinite(targets) & (targets > 0)):
        raise ValueError(f"losses must be finite numbers > 0, got {list(targets)}")
    log_s_min, loss, log_bcrit = _min_steps_curve(n_params, loss_params, bcrit_params)
    inside = (targets > loss[-1]) & (targets <= loss[0])
    s_min = np.where(inside, np.exp(np.interp(targets, loss[::-1], log_s_min[::-1])), np.nan)
    bcrit = np.where(inside, np.exp(np.interp(targets, loss[::-1], log_bcrit[::-1])), np.nan)
    return pd.DataFrame({"loss": targets, "S_min": s_min, "E_min": bcrit * s_min, "B_crit": bcrit})


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
    targets = np.asarray(losses, dtype=np.float64).ravel()
    if targets.size < 1 or not np.all(np.isfinite(targets) & (targets > 0)):
        raise ValueError(f"losses must be finite numbers > 0, got {list(targets)}")
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
    sigma = _noise(bc_law, {}, noise)
    log_bcrit = _log_mean(bc_law, bc_theta, {"loss": np.log(targets)})
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


# ---------------------------------------------------------------------------------------
# Simulators of the seed analyses' raw runs (Kaplan et al. 2020's runs are not public)

#: FLOP in one PF-day (1e15 FLOP/s for a day).
PF_DAY = 8.64e19

#: Per-token loss trends L_N(T) = a(N) + b(N) T^-c(N), each coefficient ``A * N**p``, set so
#: the seed chart 004 legend's smallest fit (4.0 + 3.2 T^-0.47) holds at N = 1e6 and its
#: largest (2.3 + 5.4 T^-0.62) at N = 3e8 (the ends of the chart's colour bar).
PER_TOKEN_SIZES = (1e6, 3e8)
PER_TOKEN_ENDS = {"a": (4.0, 2.3), "b": (3.2, 5.4), "c": (0.47, 0.62)}


def _trend(v_small: float, v_large: float) -> tuple[float, float]:
    """``(A, p)`` of ``A * N**p`` through the two ends of :data:`PER_TOKEN_ENDS`."""
    n0, n1 = PER_TOKEN_SIZES
    p = math.log(v_large / v_small) / math.log(n1 / n0)
    return v_small / n0**p, p


#: ``{coefficient: (A, p)}`` of the default per-token trends.
PER_TOKEN_TRENDS = {k: _trend(*v) for k, v in PER_TOKEN_ENDS.items()}


def simulate_per_token(
    *,
    n_params=(1e6, 3e6, 1e7, 3e7, 1e8, 3e8),
    token_index: tuple[float, float] = (1.0, 1024.0),
    num_points: int = 32,
    trends: Mapping[str, tuple[float, float]] | None = None,
    noise: float = 0.01,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Per-token loss curves of several model sizes (seed chart 004, left panel).

    For each model size :math:`N` the loss at token position :math:`T` in the context is

    .. math::

        L_N(T) = a(N) + b(N)\\, T^{-c(N)}, \\qquad
        a(N) = A_a N^{p_a},\\; b(N) = A_b N^{p_b},\\; c(N) = A_c N^{p_c},

    observed with log-normal noise :math:`\\log y = \\log L_N(T) + \\sigma\\varepsilon`.
    The default trends (:data:`PER_TOKEN_TRENDS`) pass through the seed legend's smallest and
    largest fits (:math:`4.0 + 3.2 T^{-0.47}` at :math:`N = 10^6`, :math:`2.3 + 5.4
    T^{-0.62}` at :math:`3 \\cdot 10^8`): :math:`p_a \\approx -0.097`, :math:`p_b \\approx
    0.092`, :math:`p_c \\approx 0.049`.

    Parameters
    ----------
    n_params : sequence of float
        Model sizes :math:`N` (one curve each).
    token_index : (float, float)
        First and last token position; ``num_points`` distinct integer positions, spaced
        logarithmically between them.
    num_points : int
        Positions per curve (fewer if rounding to integers merges some).
    trends : dict, optional
        ``{"a": (A_a, p_a), "b": (A_b, p_b), "c": (A_c, p_c)}``; default
        :data:`PER_TOKEN_TRENDS`.
    noise : float
        :math:`\\sigma`, the log-noise standard deviation (Kaplan's per-token losses are
        averages over many contexts, so it is small).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        Columns ``n_params``, ``token_index``, ``loss`` (the ``kaplan_per_token`` law's
        names, with ``n_params`` to split the curves).  ``attrs["parameters"]`` holds the
        true ``{N: {"a", "b", "c"}}`` and ``attrs["trends"]`` the trends used.
    """
    trends = dict(PER_TOKEN_TRENDS if trends is None else trends)
    if sorted(trends) != ["a", "b", "c"]:
        raise ValueError(f"trends must give 'a', 'b' and 'c', got {sorted(trends)}")
    sizes = np.atleast_1d(np.asarray(n_params, dtype=float))
    if sizes.ndim != 1 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"n_params must be positive finite sizes, got {n_params!r}")
    lo, hi = (float(v) for v in token_index)
    if not 1 <= lo < hi:
        raise ValueError(
            f"token_index must be (first, last) with 1 <= first < last, got {token_index!r}"
        )
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    sigma = _noise(get_law("kaplan_per_token"), {}, noise)
    positions = np.unique(np.round(np.geomspace(lo, hi, num_points)))
    rng = np.random.default_rng(seed)
    parts, truth = [], {}
    for n in sizes:
        coef = {k: a_k * n**p_k for k, (a_k, p_k) in trends.items()}
        truth[float(n)] = coef
        mean = coef["a"] + coef["b"] * positions ** -coef["c"]
        loss = mean * np.exp(sigma * rng.standard_normal(positions.size))
        parts.append(pd.DataFrame({"n_params": n, "token_index": positions, "loss": loss}))
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"parameters": truth, "trends": trends}
    return out


def simulate_isoflop(
    law: str | Path | Law = "chinchilla",
    *,
    flops=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    params: Mapping[str, float] | None = None,
    num_points: int = 9,
    span: float = 1.0,
    center_jitter: float = 0.2,
    center_offset: float | Sequence[float] = 0.0,
    noise: float = 0.01,
    seed: int | None = 0,
) -> pd.DataFrame:
    """IsoFLOP sweeps: at each budget :math:`C`, runs of several sizes with :math:`D = C/(6N)`.

    Each sweep has ``num_points`` sizes log-spaced over ``span`` decades on either side of a
    centre that lies ``center_offset`` decades plus at most ``center_jitter`` decades
    (uniformly drawn) from the law's loss-minimising :math:`N^*(C)` (researchers do not know
    it in advance; an offset makes the sweeps reach further past the optimum on one side, as
    in Kaplan-like sweeps), and

    .. math::

        D_i = \\frac{C}{6 N_i}, \\qquad
        \\log L_i = \\log f(N_i, D_i; \\theta) + \\sigma \\varepsilon_i .

    For the Chinchilla law :math:`N^*(C) = G (C/6)^{\\beta/(\\alpha+\\beta)}` (Hoffmann et al.
    2022, eq. 4), so the sweeps' vertices follow a power law of exponent
    :math:`\\beta/(\\alpha+\\beta)`.

    Parameters
    ----------
    law : str, Path or Law
        A law of ``n_params`` and ``n_tokens``.
    flops : sequence of float
        Budgets :math:`C` in FLOP.
    params : dict, optional
        Parameter values overriding the law's reference values.
    num_points : int
        Runs per budget.
    span : float
        Decades of :math:`N` on either side of the sweep's centre.
    center_jitter : float
        Largest random offset (decades) of the sweep's centre from :math:`N^*(C)`.
    center_offset : float or sequence of float
        Fixed offset (decades, positive: larger models) of the sweeps' centres from
        :math:`N^*(C)`, one for all budgets or one per budget (e.g. falling with the budget,
        as when small-budget sweeps reach far past the optimum); :math:`|` offset
        :math:`|` + ``center_jitter`` must be below ``span`` so that every sweep brackets
        its optimum.
    noise : float
        :math:`\\sigma`, the standard deviation of the log-loss noise.
    seed : int, optional

    Returns
    -------
    DataFrame
        Columns ``flops``, ``n_params``, ``n_tokens``, ``loss``; ``attrs["n_opt"]`` maps each
        budget to the law's :math:`N^*(C)` (minimised on a grid of 1e-4 decades).
    """
    import jax.numpy as jnp

    law = get_law(law)
    if set(law.covariates) != {"n_params", "n_tokens"}:
        raise ValueError(
            f"simulate_isoflop needs a law of n_params and n_tokens; law {law.id!r} has "
            f"covariates {list(law.covariates)}"
        )
    theta = _parameters(law, params)
    budgets = np.atleast_1d(np.asarray(flops, dtype=float))
    if budgets.ndim != 1 or not np.all(np.isfinite(budgets)) or np.any(budgets <= 0):
        raise ValueError(f"flops must be positive finite budgets, got {flops!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points must be an integer >= 3, got {num_points!r}")
    offsets = np.asarray(center_offset, dtype=float)
    if offsets.ndim > 1 or offsets.size not in (1, budgets.size):
        raise ValueError(
            f"center_offset must be one number or one per budget ({budgets.size}), "
            f"got {center_offset!r}"
        )
    offsets = np.broadcast_to(offsets.reshape(-1), budgets.shape)
    if not (
        span > 0
        and 0 <= center_jitter
        and np.all(np.isfinite(offsets))
        and np.all(np.abs(offsets) + center_jitter < span)
    ):
        raise ValueError(
            f"need span > 0, center_jitter >= 0 and |center_offset| + center_jitter < span, "
            f"got span={span}, center_jitter={center_jitter}, center_offset={center_offset}"
        )
    sigma = _noise(law, {}, noise)
    rng = np.random.default_rng(seed)
    ln10 = math.log(10.0)
    params_j = {k: jnp.asarray(v) for k, v in theta.items()}

    def log_f(log_n, log_c6):
        covs = {"n_params": jnp.asarray(log_n), "n_tokens": jnp.asarray(log_c6 - log_n)}
        return np.asarray(law.log_mean(params_j, covs))

    parts, n_opt = [], {}
    for c, offset in zip(budgets, offsets, strict=True):
        log_c6 = math.log(c / 6.0)
        grid = 0.5 * log_c6 + np.arange(-6.0, 6.0, 1e-4) * ln10
        values = log_f(grid, log_c6)
        log_n_opt = float(grid[np.nanargmin(values)])
        n_opt[float(c)] = math.exp(log_n_opt)
        centre = log_n_opt + (offset + rng.uniform(-center_jitter, center_jitter)) * ln10
        log_n = centre + np.linspace(-span, span, num_points) * ln10
        log_loss = log_f(log_n, log_c6) + sigma * rng.standard_normal(num_points)
        n = np.exp(log_n)
        parts.append(
            pd.DataFrame(
                {"flops": c, "n_params": n, "n_tokens": c / (6 * n), "loss": np.exp(log_loss)}
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"n_opt": n_opt}
    return out


def simulate_frontier(
    *,
    flops_min: tuple[float, float] = (1e-7, 1.0),
    num_points: int = 24,
    batch_size: float = 2.0**19,
    params: Mapping[str, float] | None = None,
    noise: float = 0.1,
    loss_noise: float = 0.005,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Compute-efficient training runs, as measured at a fixed batch size (seed chart 002).

    For budgets :math:`C_{min}` (PF-days) drawn log-uniformly, the compute-efficient run has

    .. math::

        N = N_e C_{min}^{p_N} e^{\\sigma\\varepsilon_1}, \\quad
        S_{min} = S_e C_{min}^{p_S} e^{\\sigma\\varepsilon_2}, \\quad
        E_{min} = \\frac{C_{min}\\,[\\text{FLOP}]}{6N}, \\quad
        B_{crit} = \\frac{E_{min}}{S_{min}}, \\quad
        L = \\Big(\\frac{B_{crit}}{B_*}\\Big)^{-\\alpha_B} e^{\\sigma_L \\varepsilon_3},

    (Kaplan et al. 2020, eqs. 5.3, 6.1-6.3; :math:`B_{crit}(L) = B_* L^{-1/\\alpha_B}`
    inverted).  The run is trained at the fixed ``batch_size`` :math:`B`, so by McCandlish et
    al.'s trade-off it takes :math:`S = S_{min}(1 + B_{crit}/B)` steps and
    :math:`E = E_{min}(1 + B/B_{crit}) = BS` tokens, and costs :math:`C = 6NBS` FLOP.
    Defaults are the published values (the ``kaplan_frontier_n``, ``kaplan_frontier_s`` and
    ``kaplan_bcrit`` references: :math:`N_e = 1.3\\cdot10^9, p_N = 0.73, S_e = 5.4\\cdot10^3,
    p_S = 0.03, B_* = 2.1\\cdot10^8, \\alpha_B = 0.21`).

    Parameters
    ----------
    flops_min : (float, float)
        Range of :math:`C_{min}` in PF-days.
    num_points : int
        Runs.
    batch_size : float
        :math:`B` in tokens.
    params : dict, optional
        Overrides of ``N_e, p_N, S_e, p_S, B_star, alpha_B``.
    noise : float
        :math:`\\sigma`, log scatter of :math:`N` and :math:`S_{min}` about the frontier.
    loss_noise : float
        :math:`\\sigma_L`, log noise of the measured loss.
    seed : int, optional

    Returns
    -------
    DataFrame
        What a researcher measures: ``n_params``, ``batch_size``, ``steps``, ``n_tokens``,
        ``flops`` (FLOP), ``loss``; and the truth behind it: ``true_flops_min`` (PF-days),
        ``true_steps_min``, ``true_critical_batch_size``, ``true_tokens_min``.
    """
    laws = [get_law(k) for k in ("kaplan_frontier_n", "kaplan_frontier_s", "kaplan_bcrit")]
    defaults = {k: v for law in laws for k, v in law.reference.items()}
    unknown = [k for k in (params or {}) if k not in defaults]
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown}; simulate_frontier takes {list(defaults)}"
        )
    p = {**defaults, **(params or {})}
    lo, hi = (float(v) for v in flops_min)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"flops_min must be (low, high) with 0 < low < high, got {flops_min!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be an integer >= 1, got {num_points!r}")
    if not (math.isfinite(batch_size) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive number of tokens, got {batch_size!r}")
    sigma = _noise(laws[0], {}, noise)
    sigma_loss = _noise(laws[0], {}, loss_noise)
    rng = np.random.default_rng(seed)
    c_min = np.exp(rng.uniform(math.log(lo), math.log(hi), num_points))
    eps = rng.standard_normal((3, num_points))
    n = p["N_e"] * c_min ** p["p_N"] * np.exp(sigma * eps[0])
    s_min = p["S_e"] * c_min ** p["p_S"] * np.exp(sigma * eps[1])
    e_min = c_min * PF_DAY / (6 * n)
    b_crit = e_min / s_min
    loss = (b_crit / p["B_star"]) ** -p["alpha_B"] * np.exp(sigma_loss * eps[2])
    steps = s_min * (1 + b_crit / batch_size)
    return pd.DataFrame(
        {
            "n_params": n,
            "batch_size": float(batch_size),
            "steps": steps,
            "n_tokens": batch_size * steps,
            "flops": 6 * n * batch_size * steps,
            "loss": loss,
            "true_flops_min": c_min,
            "true_steps_min": s_min,
            "true_critical_batch_size": b_crit,
            "true_tokens_min": e_min,
        }
    )
