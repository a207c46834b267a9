"""Simulated data from a scaling law: for tests, demos and checks of a fit's calibration.

Each workflow's own simulator lives beside it (``bayescale.workflows.batch_scan_sim``,
``per_token``, ``isoflop_sim``, ``frontier``); the unit constants in :mod:`bayescale.units`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.data import nonnegative_number, positive_column
from bayescale.laws import Law, get_law
from bayescale.precision import float64

__all__ = ["log_mean_values", "noise_sd", "parameter_values", "simulate", "simulate_runs"]

#: Used when neither the argument nor the law's ``[design]`` gives a value.
DEFAULT_NUM_POINTS = 20
DEFAULT_NOISE = 0.02

_DESIGN_SCALARS = ("num_points", "noise")


@float64
def simulate(
    law: str | Path | Law,
    *,
    params: Mapping[str, float] | None = None,
    design: Mapping[str, object] | None = None,
    num_points: int | None = None,
    noise: float | None = None,
    discrepancy: tuple[float, float] | None = None,
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
    :func:`bayescale.fit` with ``likelihood="normal"`` and ``discrepancy=None``).  With
    ``discrepancy=(s, q)`` the law's own error :math:`\\delta(u_i)` of
    :mod:`bayescale.model.discrepancy` (OU scale :math:`s`, random-walk scale :math:`q`,
    :math:`u` the decades from the first point) is drawn and added to :math:`\\log y`: the
    default model of :func:`bayescale.fit` at those scales (one-covariate laws).

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
    discrepancy : (float, float), optional
        :math:`(s, q) \\ge 0`, the OU and random-walk scales of :math:`\\delta`
        (:func:`bayescale.model.discrepancy.scales` of ``delta_r``, ``delta_w``);
        ``None`` (default): none.  Drawn after the noise, so the other draws of a seed stay.
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
        ``num_points < 1``, ``noise < 0``, or a law that is not finite at the drawn points,
        a ``discrepancy`` that is not two non-negative numbers or a law of several covariates.
        (:class:`~bayescale.LawError`, raised for an unknown law, is a ``ValueError`` too.)

    Examples
    --------
    >>> from bayescale.simulate import simulate
    >>> df = simulate("chinchilla", num_points=5, seed=1)
    >>> list(df.columns)
    ['n_params', 'n_tokens', 'loss']
    """
    law = get_law(law)
    theta = parameter_values(law, params)
    user_design = dict(design or {})
    ranges = _ranges(law, user_design)
    n = _num_points(law, user_design, num_points)
    sigma = noise_sd(law, user_design, noise)

    rng = np.random.default_rng(seed)
    log_x = {c: rng.uniform(math.log(lo), math.log(hi), size=n) for c, (lo, hi) in ranges.items()}
    eps = rng.standard_normal(n)
    log_f = log_mean_values(law, theta, log_x)
    bad = ~np.isfinite(log_f)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        at = ", ".join(f"{c}={math.exp(v[i]):.4g}" for c, v in log_x.items())
        raise ValueError(
            f"law {law.id!r} is not finite and positive at {int(bad.sum())} simulated point(s) "
            f"(first at {at}) with parameters {theta}"
        )
    log_y = log_f + sigma * eps
    if discrepancy is not None:
        from bayescale.model.discrepancy import decades_from_first, delta_draws

        if len(law.covariates) != 1:
            raise ValueError(f"discrepancy= runs along one covariate; law {law.id!r} has several")
        if isinstance(discrepancy, str) or len(discrepancy) != 2:
            raise ValueError(f"discrepancy must be (s, q), got {discrepancy!r}")
        s, q = (nonnegative_number(v, "discrepancy") for v in discrepancy)
        (lx,) = log_x.values()
        log_y = log_y + delta_draws(rng, decades_from_first(lx), s, q)
    columns = {c: np.exp(log_x[c]) for c in law.covariates}
    columns[law.response] = np.exp(log_y)
    return pd.DataFrame(columns)


@float64
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
    theta = parameter_values(law, params)
    sigma = noise_sd(law, {}, noise)
    frame = pd.DataFrame(runs).reset_index(drop=True)
    missing = [c for c in law.covariates if c not in frame.columns]
    if missing:
        raise ValueError(
            f"runs need the covariate column(s) {missing} of law {law.id!r}; they have "
            f"{list(map(str, frame.columns))}"
        )
    log_x = {}
    for c in law.covariates:
        log_x[c] = np.log(positive_column(frame, c, "a covariate of the runs"))
    log_f = log_mean_values(law, theta, log_x)
    bad = ~np.isfinite(log_f)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"law {law.id!r} is not finite and positive at run {i} "
            f"({', '.join(f'{c}={frame[c].iloc[i]:.4g}' for c in law.covariates)})"
        )
    eps = np.random.default_rng(seed).standard_normal(len(frame))
    return frame.assign(**{law.response: np.exp(log_f + sigma * eps)})


def parameter_values(law: Law, params: Mapping[str, float] | None) -> dict[str, float]:
    """The law's parameter values: its reference values updated by ``params``, as floats.

    Raises
    ------
    ValueError
        A name that is not a parameter of the law, a parameter with neither a reference
        value nor a given one, or a value that is not a finite number.
    """
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


def noise_sd(law: Law, design: dict, noise) -> float:
    """The log-noise standard deviation: ``noise``, else ``design["noise"]``, else the law's
    ``[design]`` noise, else :data:`DEFAULT_NOISE`; raises ValueError unless a number >= 0."""
    value = noise
    if value is None:
        value = design.get("noise", law.design.get("noise", DEFAULT_NOISE))
    return nonnegative_number(value, "noise")


@float64
def log_mean_values(law: Law, theta: dict[str, float], log_x: dict[str, np.ndarray]) -> np.ndarray:
    """``log f`` at the drawn points, evaluated by the law's own (log-space) formula."""
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in theta.items()}
    covs = {c: jnp.asarray(v) for c, v in log_x.items()}
    n = len(next(iter(log_x.values())))
    return np.broadcast_to(np.asarray(law.log_mean(params, covs), dtype=np.float64), (n,))


#: Names moved out of this module in 0.2 -> their new module; importable from here, with a
#: DeprecationWarning, for one release.
_MOVED = {
    "DEFAULT_SCAN_BATCH_SIZES": "bayescale.workflows.batch_scan_sim",
    "batch_scan_truth": "bayescale.workflows.batch_scan_sim",
    "simulate_batch_scan": "bayescale.workflows.batch_scan_sim",
    "simulate_gradient_norms": "bayescale.workflows.batch_scan_sim",
    "PER_TOKEN_ENDS": "bayescale.workflows.per_token",
    "PER_TOKEN_SIZES": "bayescale.workflows.per_token",
    "PER_TOKEN_TRENDS": "bayescale.workflows.per_token",
    "simulate_per_token": "bayescale.workflows.per_token",
    "simulate_isoflop": "bayescale.workflows.isoflop_sim",
    "simulate_frontier": "bayescale.workflows.frontier",
    "PF_DAY": "bayescale.units",
}


def __getattr__(name: str):
    """A name moved to another module (:data:`_MOVED`), with a DeprecationWarning naming it."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    where = _MOVED[name]
    warnings.warn(
        f"bayescale.simulate.{name} moved to {where}.{name}; import it from there "
        "(the old location goes in the next release)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(where), name)
