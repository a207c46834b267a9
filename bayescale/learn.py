"""The discrepancy's hyperprior learnt from a batch's own curves, by leave-future-out.

:func:`learn_discrepancy` makes, inside the fitted range of a user's curves, the choice that
``benchmarks/discrepancy/learn.py`` makes on the calibration corpus for the shipped
:data:`~bayescale.model.discrepancy.HYPERPRIORS`: each curve's early points predict its
later ones, and the centre of the roughness :math:`r` (``delta_r``) is chosen by the log score
of those predictions, with the corpus hyperprior as the prior of the centre.  Opt-in (its
leave-one-source-out effect: ``benchmarks/results/discrepancy_loso.md``): pass the chosen
text to ``Model(discrepancy=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayescale.api import fit
from bayescale.data import as_frame
from bayescale.laws import get_law
from bayescale.model.discrepancy import hyperpriors, parse_discrepancy
from bayescale.options import Laplace, Model

__all__ = ["learn_discrepancy"]


def learn_discrepancy(
    data,
    law,
    *,
    by: str | list[str],
    columns: Mapping[str, str] | None = None,
    prior: str = "ou_rw",
    shifts: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    tau: float = 0.5,
    inner: float = 0.6,
    min_points: int = 7,
    model: Model | None = None,
    inference=None,
    seed: int = 0,
) -> tuple[str, pd.DataFrame]:
    """Choose the roughness's hyperprior centre from the batch's own curves (leave-future-out).

    Each curve of ``data`` with at least ``min_points`` rows is split along its covariate:
    the first ``ceil(inner * n)`` rows are fitted (``fit(..., by=by)``, one fit per
    candidate), the rest predicted (``predict_draws(kind="observation")``) and scored by
    the log density of :math:`\\log y` under a Gaussian kernel density of the draws
    (Silverman's bandwidth).  Candidate ``k`` moves the log centre of the roughness
    :math:`r` by ``shifts[k]`` from ``prior``'s (its sd kept); its objective is

    .. math:: J_k = C\\,\\bar\\ell_k - \\tfrac12 (\\mathrm{shift}_k / \\tau)^2,

    :math:`\\bar\\ell_k` the mean over the curves of each curve's mean log score and
    :math:`C` the number of curves scored (each curve one unit of evidence).

    Parameters
    ----------
    data, law, by, columns
        As in :func:`bayescale.fit`; a law of one covariate.
    prior : str
        The discrepancy whose hyperprior centres the search (``"ou_rw"``: the shipped one).
    shifts : sequence of float
        Shifts of :math:`\\log r`'s centre to try (log units).
    tau : float
        sd of the prior of the shift, > 0.
    inner : float
        Fraction of each curve's rows fitted, in (0, 1).
    min_points : int
        Curves with fewer rows take no part.
    model : Model, optional
        Likelihood and noise model of the fits (its ``discrepancy`` is replaced).
    inference : optional
        Of the fits; default ``Laplace(num_chains=1, num_samples=400)``.
    seed : int

    Returns
    -------
    (discrepancy, table)
        The chosen ``"ou_rw(m_r, sd_r)"`` (for ``Model(discrepancy=...)``) and one
        row per candidate: ``shift``, ``discrepancy``, ``log_score`` (:math:`\\bar\\ell_k`),
        ``curves``, ``objective``.

    Raises
    ------
    ValueError
        For a law of several covariates, no curve with ``min_points`` rows, or arguments
        out of range.
    """
    if not 0 < inner < 1 or not tau > 0 or not len(shifts):
        raise ValueError(f"need 0 < inner < 1, tau > 0 and shifts; got {inner}, {tau}, {shifts}")
    name, _ = parse_discrepancy(prior)
    m_r, sd_r = hyperpriors(prior)["delta_r"].args
    the_law = get_law(law)
    if len(the_law.covariates) != 1:
        raise ValueError(f"the discrepancy runs along one covariate; {the_law.id!r} has more")
    columns = dict(columns or {})
    x_col = columns.get(the_law.covariates[0], the_law.covariates[0])
    y_col = columns.get(the_law.response, the_law.response)
    keys = [by] if isinstance(by, str) else list(by)
    frame = as_frame(data)
    fitted, held = [], []
    for _, g in frame.groupby(keys, sort=False):
        g = g.sort_values(x_col)
        if len(g) < min_points:
            continue
        k = math.ceil(inner * len(g))
        fitted.append(g.iloc[:k])
        held.append(g.iloc[k:])
    if not fitted:
        raise ValueError(f"no curve has {min_points} rows to split (min_points={min_points})")
    fitted, held = pd.concat(fitted), pd.concat(held)
    log_y = np.log(held[y_col].to_numpy(float))
    curve = held.groupby(keys, sort=False).ngroup().to_numpy()
    base = model or Model()
    inference = inference or Laplace(num_chains=1, num_samples=400)
    rows = []
    for shift in shifts:
        text = f"{name}({m_r + shift:.6g}, {sd_r:.6g})"
        res = fit(
            fitted, law, by=by, columns=columns, seed=seed, warn=False, inference=inference,
            model=Model(likelihood=base.likelihood, noise=base.noise, priors=base.priors,
                        discrepancy=text),
        )  # fmt: skip
        draws = np.log(res.predict_draws(held, seed=seed)).reshape(-1, len(held))
        per_row = _kde_log_density(draws, log_y)
        per_curve = pd.Series(per_row).groupby(curve).mean()
        score = float(per_curve.mean())
        rows.append({"shift": float(shift), "discrepancy": text, "log_score": score,
                     "curves": len(per_curve)})  # fmt: skip
    table = pd.DataFrame(rows)
    table["objective"] = table.curves * table.log_score - 0.5 * (table["shift"] / tau) ** 2
    table.loc[~np.isfinite(table.objective), "objective"] = -np.inf
    return str(table.discrepancy[table.objective.idxmax()]), table


def _kde_log_density(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log density at each ``y[j]`` of a Gaussian kernel density of ``draws[:, j]``."""
    n = draws.shape[0]
    sd = np.std(draws, axis=0)
    iqr = np.subtract(*np.percentile(draws, [75, 25], axis=0)) / 1.349
    h = 0.9 * np.minimum(sd, np.where(iqr > 0, iqr, sd)) * n**-0.2
    h = np.maximum(h, 1e-12)
    z = (y[None, :] - draws) / h
    log_k = -0.5 * z**2 - np.log(h) - 0.5 * math.log(2 * math.pi)
    top = log_k.max(axis=0)
    return top + np.log(np.mean(np.exp(log_k - top), axis=0))
