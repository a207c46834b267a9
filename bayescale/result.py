"""The result of a fit: an ArviZ DataTree plus diagnostics, summary, predictions, save/load.

The DataTree holds the standard groups (``posterior``, ``sample_stats``, ``log_likelihood``,
``posterior_predictive``, ``observed_data``, ``constant_data``, ``prior``,
``prior_predictive``; ``predictions`` after :meth:`FitResult.predict`) with ``chain``/``draw``
dims, so arviz-stats and arviz-plots work on it unchanged.  Its root attributes carry the law
(as a spec), the likelihood and the column mapping, so a saved result loads back whole.
"""

from __future__ import annotations

import enum
import json
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from bayescale import diagnostics as batch_diagnostics
from bayescale.data import FitData, covariate_frame, nonnegative_number
from bayescale.laws import Law, law_from_spec
from bayescale.model import Posterior, observation_noise

__all__ = [
    "BatchResult",
    "ConvergenceWarning",
    "FitResult",
    "Status",
    "mode_failure",
    "quantile_column",
]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


class Status(enum.Enum):
    """Convergence status of a fit (worst problem found)."""

    converged = "converged"
    divergences = "divergences"
    low_ess = "low_ess"
    high_rhat = "high_rhat"
    failed = "failed"  # no finite posterior mode was found


class ConvergenceWarning(UserWarning):
    """A fit that did not meet the convergence thresholds; the message carries the numbers."""


def quantile_column(q: float) -> str:
    """Column name of quantile ``q``: 0.05 -> ``q5``, 0.025 -> ``q2.5``."""
    return f"q{100 * q:g}"


class FitResult:
    """Posterior of one scaling-law fit.

    Attributes
    ----------
    datatree : xarray.DataTree
        ArviZ 1.x DataTree with ``chain``/``draw`` dims.
    law : Law
    likelihood : str
    columns : dict
        Law variable -> data column used in the fit.
    """

    def __init__(self, datatree: xr.DataTree, law: Law, likelihood: str, columns: dict):
        self.datatree = datatree
        self.law = law
        self.likelihood = likelihood
        self.columns = dict(columns)
        self.posterior = Posterior(law, likelihood)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(
        cls,
        posterior: Posterior,
        data: FitData,
        samples: dict,
        *,
        seed: int,
        num_prior_draws: int = 500,
        sampler_attrs: dict | None = None,
    ) -> FitResult:
        """Assemble the DataTree from one fit's sampler output (``(chains, draws, ...)``)."""
        from arviz_base import from_dict

        law = posterior.law
        values = {k: np.asarray(v) for k, v in posterior.constrain(samples["z"]).items()}
        log_x = {k: jnp.asarray(v) for k, v in data.log_x.items()}
        ll, log_mu = _pointwise(posterior)(values, log_x, data.log_y)
        rng = np.random.default_rng(seed)
        noisy = _point_sigma_values(posterior, values, log_x, log_mu.shape)
        ppc = np.asarray(log_mu) + _noise(rng, posterior.likelihood, noisy, log_mu.shape)
        point = np.arange(data.num_points)
        prior = _prior_draws(posterior, num_prior_draws, seed)
        log_prior_mu = np.asarray(
            posterior.log_mean({k: v[..., None] for k, v in prior.items()}, log_x)
        )
        noisy = _point_sigma_values(posterior, prior, log_x, log_prior_mu.shape)
        log_prior_pred = log_prior_mu + _noise(rng, posterior.likelihood, noisy, log_prior_mu.shape)
        with np.errstate(over="ignore"):  # wide priors reach beyond float range: inf is honest
            prior_pred = np.exp(np.asarray(log_prior_pred))
        stats = _sample_stats(samples)
        covariate_dims = {c: ["point"] for c in law.covariates}
        attrs = {
            "law": json.dumps(law.to_spec(), default=float),
            "law_id": law.id,
            "likelihood": posterior.likelihood,
            "columns": json.dumps(data.columns),
            "seed": int(seed),
            **{
                k: (json.dumps(v) if isinstance(v, dict) else v)
                for k, v in (sampler_attrs or {}).items()
            },
        }
        dt = from_dict(
            {
                "posterior": values,
                "sample_stats": stats,
                "log_likelihood": {law.response: np.asarray(ll)},
                "posterior_predictive": {law.response: np.exp(np.asarray(ppc))},
                "observed_data": {law.response: np.exp(data.log_y)},
                "constant_data": {c: np.exp(data.log_x[c]) for c in law.covariates},
                "prior": {k: v[None] for k, v in prior.items()},
                "prior_predictive": {law.response: prior_pred[None]},
            },
            dims={law.response: ["point"], **covariate_dims},
            coords={"point": point},
            attrs={"/": attrs},
        )
        result = cls(dt, law, posterior.likelihood, data.columns)
        return result

    # ------------------------------------------------------------------ diagnostics
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.posterior.site_names

    @property
    def num_chains(self) -> int:
        return int(self.datatree.posterior.sizes["chain"])

    @property
    def num_draws(self) -> int:
        return int(self.datatree.posterior.sizes["draw"])

    @property
    def method(self) -> str:
        """``"nuts"``, ``"map"`` or ``"laplace"``: what made the draws."""
        return str(self.datatree.attrs.get("method", "nuts"))

    def _mode_diagnostics(self) -> dict:
        a = self.datatree.attrs
        converged = bool(a.get("map_converged", 1))  # results saved before it was recorded
        last_change = float(a.get("map_last_change", float("nan")))
        failure = mode_failure(
            self.method,
            a["map_potential"],
            a["min_eigenvalue"],
            converged=converged,
            grad_norm=float(a["map_grad_norm"]),
            last_change=last_change,
            num_steps=a.get("map_steps"),
        )
        return {
            "method": self.method,
            "map_potential": float(a["map_potential"]),
            "map_grad_norm": float(a["map_grad_norm"]),
            "num_starts": int(a["num_starts"]),
            "map_failed_starts": int(a["map_failed_starts"]),
            "map_agreeing_starts": int(a["map_agreeing_starts"]),
            "map_converged": converged,
            "map_last_change": last_change,
            "min_eigenvalue": float(a["min_eigenvalue"]),
            "failure": failure,
            "max_rhat": float("nan"),
            "min_ess_bulk": float("nan"),
            "min_ess_tail": float("nan"),
            "num_divergent": 0,
            "num_draws": self.num_chains * self.num_draws,
        }

    @property
    def diagnostics(self) -> dict:
        """max r̂, min bulk/tail ESS (arviz-stats), divergences, and the thresholds used.

        For ``"map"``/``"laplace"`` results: the mode search's numbers (objective, largest
        gradient component, failed and agreeing starts, smallest Hessian eigenvalue) and
        ``failure`` (empty when fine); r̂ and ESS are NaN (no Markov chain).
        """
        import arviz_stats as azs

        if self.method != "nuts":
            return self._mode_diagnostics()

        names = list(self.parameter_names)
        post = self.datatree.posterior.dataset[names]
        rhat = _rhat(post)
        ess_bulk = azs.ess(post, method="bulk")
        ess_tail = azs.ess(post, method="tail")
        num_div = int(self.datatree.sample_stats["diverging"].sum())
        return {
            "max_rhat": float(max(float(rhat[k]) for k in names)),
            "min_ess_bulk": float(min(float(ess_bulk[k]) for k in names)),
            "min_ess_tail": float(min(float(ess_tail[k]) for k in names)),
            "num_divergent": num_div,
            "num_draws": self.num_chains * self.num_draws,
            "mean_n_steps": float(self.datatree.sample_stats["n_steps"].mean()),
            "rhat_max_allowed": RHAT_MAX,
            "ess_min_allowed": ESS_PER_CHAIN_MIN * self.num_chains,
        }

    @property
    def status(self) -> Status:
        """The worst convergence problem: high r̂ > low ESS > divergences > converged.

        For ``"map"``/``"laplace"``: ``failed`` or ``converged``."""
        if self.method != "nuts":
            return Status.failed if self._mode_diagnostics()["failure"] else Status.converged
        return _status(self.diagnostics, failed=bool(self.datatree.attrs.get("map_failed", 0)))

    def check_convergence(self, *, warn: bool = True) -> Status:
        """Return :attr:`status`; warn with the numbers when it is not ``converged``."""
        d = self.diagnostics
        status = self.status
        if warn and status is not Status.converged and self.method != "nuts":
            warnings.warn(
                f"{self.method} fit of law {self.law.id!r} failed: {d['failure']} "
                f"({d['map_failed_starts']} of {d['num_starts']} starts ended non-finite, "
                f"{d['map_agreeing_starts']} agree with the best, potential "
                f"{d['map_potential']:.6g})",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif warn and status is not Status.converged:
            warnings.warn(
                f"fit of law {self.law.id!r} did not converge ({status.value}): "
                f"max r̂ = {d['max_rhat']:.4f} (limit {RHAT_MAX}), "
                f"min bulk ESS = {d['min_ess_bulk']:.0f}, min tail ESS = {d['min_ess_tail']:.0f} "
                f"(limit {d['ess_min_allowed']}), {d['num_divergent']} divergent transition(s) "
                f"of {d['num_draws']} draws",
                ConvergenceWarning,
                stacklevel=3,
            )
        return status

    def summary(self, **kwargs) -> pd.DataFrame:
        """arviz-stats summary (mean, sd, 95% ETI, MCSE, ESS, r̂) of the parameters.

        Keyword arguments go to :func:`arviz_stats.summary` (defaults here: 95% intervals,
        unrounded numbers).
        """
        import arviz_stats as azs

        kwargs.setdefault("var_names", list(self.parameter_names))
        kwargs.setdefault("ci_prob", 0.95)
        kwargs.setdefault("round_to", "none")
        return azs.summary(self.datatree, **kwargs)

    def draws(self, var_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Posterior draws as ``{name: array of shape (chain, draw)}``."""
        names = list(var_names or self.parameter_names)
        return {k: self.datatree.posterior[k].values for k in names}

    # ------------------------------------------------------------------ predictions
    def _log_prediction_draws(
        self, new: FitData, kind: str, seed: int, law_error: float = 0.0
    ) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return _log_predictions(
            self.posterior,
            self.draws(),
            new.log_x,
            kind,
            rng,
            self._fitted_log_x(),
            None,
            law_error,
        )

    def _fitted_log_x(self) -> dict:
        const = self.datatree.constant_data
        return {c: np.log(const[c].values) for c in self.law.covariates}

    def extrapolation_distance(self, new_data) -> np.ndarray:
        """:math:`d(x) = \\sqrt{\\sum_c d_c(x)^2}` at each row of ``new_data``, :math:`d_c` the
        decades (log10) by which covariate :math:`c` lies beyond the fitted range (0 inside):
        the distance the opt-in ``law_error`` of :meth:`predict` scales with."""
        new = covariate_frame(self.law, new_data, self.columns)
        return _extrapolation_distance(new.log_x, self._fitted_log_x())

    def predict_draws(
        self, new_data, *, kind: str = "observation", seed: int = 0, law_error: float = 0.0
    ) -> np.ndarray:
        """Draws of the response at ``new_data``, shape ``(chain, draw, point)``
        (``law_error`` as in :meth:`predict`)."""
        new = covariate_frame(self.law, new_data, self.columns)
        return np.exp(self._log_prediction_draws(new, kind, seed, law_error))

    def predict(
        self,
        new_data,
        *,
        quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
        kind: str = "observation",
        seed: int = 0,
        law_error: float = 0.0,
    ) -> pd.DataFrame:
        """Posterior-predictive summary of the response at ``new_data``.

        Parameters
        ----------
        new_data : DataFrame or dict
            Covariate values, under the law's names or the columns used in the fit.
        quantiles : sequence of float
            Each gives a column ``q<percent>`` (``q5``, ``q2.5`` ...).
        kind : {"observation", "mean"}
            ``"observation"``: what a new run would measure (noise included);
            ``"mean"``: the law itself, :math:`f(x;\\theta)`.
        seed : int
            Seed of the observation noise draws.
        law_error : float
            :math:`\\tau \\ge 0`, opt-in error of the law itself beyond the fitted range, in
            log response per decade of extrapolation: each observation draw gets an
            independent :math:`\\tau\\,d(x)\\,z`, :math:`z \\sim \\mathcal N(0, 1)`, with
            :math:`d(x)` the decades beyond the fitted range
            (:meth:`extrapolation_distance`), so that for normal noise

            .. math:: \\operatorname{Var}\\log y(x) = \\sigma_0^2 + \\tau^2 d(x)^2
                \\;(+\\text{ the posterior's own spread}).

            0 by default (and inside the fitted range).  Learn :math:`\\tau` out of sample,
            e.g. :meth:`bayescale.check.BacktestResult.with_law_error`.  ``kind="mean"`` (the
            law itself) is unaffected.

        Returns
        -------
        DataFrame
            Covariates, ``mean``, the quantile columns, ``decades_beyond`` (how many decades
            the point lies outside the fitted range of its furthest covariate; 0 inside) and
            ``extrapolation`` (``"interpolation"`` or which covariates, by how much).  The
            draws are stored in the DataTree's ``predictions`` group.
        """
        qs = [float(q) for q in quantiles]
        if not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
        new = covariate_frame(self.law, new_data, self.columns)
        draws = np.exp(self._log_prediction_draws(new, kind, seed, law_error))
        observed = self.datatree.constant_data
        fitted = {c: np.log(observed[c].values) for c in self.law.covariates}
        out = _prediction_table(new, draws, qs, fitted)
        self._store_predictions(new, draws, kind)
        return out

    def _store_predictions(self, new: FitData, draws: np.ndarray, kind: str) -> None:
        point = np.arange(draws.shape[-1])
        pred = xr.Dataset(
            {self.law.response: (("chain", "draw", "prediction_point"), draws)},
            coords={
                "chain": self.datatree.posterior.chain.values,
                "draw": self.datatree.posterior.draw.values,
                "prediction_point": point,
            },
            attrs={"kind": kind},
        )
        const = xr.Dataset(
            {c: (("prediction_point",), np.exp(new.log_x[c])) for c in self.law.covariates},
            coords={"prediction_point": point},
        )
        self.datatree["predictions"] = xr.DataTree(pred)
        self.datatree["predictions_constant_data"] = xr.DataTree(const)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the DataTree (with the law and settings in its attributes) to netCDF."""
        path = Path(path)
        self.datatree.to_netcdf(path, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> FitResult:
        """Read a result written by :meth:`save` (see :func:`load` for either kind)."""
        result = load(path)
        if not isinstance(result, cls):
            raise ValueError(f"{str(path)!r} holds a batch of fits: use BatchResult.load")
        return result

    def __repr__(self) -> str:
        d = self.diagnostics
        return (
            f"<FitResult law={self.law.id!r} likelihood={self.likelihood!r} "
            f"chains={self.num_chains} draws={self.num_draws} status={self.status.value} "
            f"max_rhat={d['max_rhat']:.3f} min_ess_bulk={d['min_ess_bulk']:.0f} "
            f"divergent={d['num_divergent']}>"
        )


def load(path: str | Path) -> FitResult | BatchResult:
    """Read a result saved by :meth:`FitResult.save` or :meth:`BatchResult.save`.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a saved bayescale result.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved result at {str(path)!r}")
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        dt = opened.load()
    try:
        law = law_from_spec(json.loads(dt.attrs["law"]))
        likelihood = dt.attrs["likelihood"]
        columns = json.loads(dt.attrs["columns"])
    except KeyError as err:
        raise ValueError(f"{str(path)!r} is not a bayescale result (no {err} attribute)") from None
    if "by" in dt.attrs:
        return BatchResult(dt, law, likelihood, columns, json.loads(dt.attrs["by"]))
    return FitResult(dt, law, likelihood, columns)


def _rhat(post: xr.Dataset) -> xr.Dataset:
    """arviz-stats r̂; a single chain is first split into its two halves.

    arviz-stats returns NaN for one chain; split-r̂ compares the halves of each chain anyway,
    so a one-chain fit (e.g. one chain per curve in a large batch) gets the r̂ of its halves
    instead of never being reported converged.
    """
    import arviz_stats as azs

    if post.sizes["chain"] == 1:
        half = post.sizes["draw"] // 2
        first = post.isel(chain=0, draw=slice(0, half))
        second = post.isel(chain=0, draw=slice(half, 2 * half)).assign_coords(draw=first.draw)
        post = xr.concat([first, second], dim="chain").assign_coords(chain=[0, 1])
    return azs.rhat(post)


def _sample_stats(samples: dict) -> dict[str, np.ndarray]:
    """NUTS statistics under ArviZ's names (``tree_depth`` from the leapfrog count).

    MAP and Laplace draws (no ``n_steps``) carry ``lp`` and ``diverging`` (all False).
    """
    if "n_steps" not in samples:
        lp = np.asarray(samples["lp"])
        return {"lp": lp, "diverging": np.zeros(lp.shape, dtype=bool)}
    n_steps = np.asarray(samples["n_steps"])
    return {
        "diverging": np.asarray(samples["diverging"], dtype=bool),
        "n_steps": n_steps,
        "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(int),
        "acceptance_rate": np.asarray(samples["acceptance_rate"]),
        "lp": np.asarray(samples["lp"]),
        "energy": np.asarray(samples["energy"]),
        "step_size": np.asarray(samples["step_size"]),
    }


def mode_failure(
    method: str,
    map_potential: float,
    min_eigenvalue: float,
    *,
    converged: bool = True,
    grad_norm: float = float("nan"),
    last_change: float = float("nan"),
    num_steps: int | None = None,
) -> str:
    """Why a ``"map"``/``"laplace"`` fit failed, or ``""``.

    In order: no finite mode; for Laplace, a Hessian that is not positive definite at the
    mode (``min_eigenvalue <= 0``); a best start that had not converged after ``num_steps``
    L-BFGS steps (``converged`` false: largest gradient component ``grad_norm`` not small and
    the objective still falling by ``last_change`` over the last 10% of the steps; see
    :func:`bayescale.infer.optimize.find_mode`).
    """
    if not np.isfinite(map_potential):
        return "no finite posterior mode found"
    if method == "laplace" and not min_eigenvalue > 0:
        return f"Hessian at the mode not positive definite (min eigenvalue {min_eigenvalue:.3g})"
    if not converged:
        return (
            f"mode search did not converge in {num_steps} steps: max |grad| {grad_norm:.3g}, "
            f"objective still falling by {last_change:.3g} over the last 10% of the steps"
        )
    return ""


def _status(d: dict, *, failed: bool = False) -> Status:
    if failed:
        return Status.failed
    if not np.isfinite(d["max_rhat"]) or d["max_rhat"] > d["rhat_max_allowed"]:
        return Status.high_rhat
    if min(d["min_ess_bulk"], d["min_ess_tail"]) < d["ess_min_allowed"]:
        return Status.low_ess
    if d["num_divergent"] > 0:
        return Status.divergences
    return Status.converged


_POINTWISE: dict = {}


def _pointwise(posterior: Posterior):
    """Jitted pointwise log-likelihood and posterior-predictive draws (one per posterior)."""
    key = (json.dumps(posterior.law.to_spec(), sort_keys=True, default=str), posterior.likelihood)
    if key not in _POINTWISE:

        @jax.jit
        def fn(values, log_x, log_y, mask=None):
            v = {k: x[..., None] for k, x in values.items()}
            ll = posterior.pointwise_log_likelihood(v, log_x, log_y, mask)
            return ll, posterior.log_mean(v, log_x)

        _POINTWISE[key] = fn
    return _POINTWISE[key]


def _point_sigma_values(
    posterior: Posterior, values: dict, log_x: dict, shape, reference_log_x=None, mask=None
) -> dict:
    """``values`` with ``sigma`` replaced by the noise scale at each point (``shape``) when
    the noise model is ``"loglinear"`` (:meth:`Posterior.point_sigma`, covariates
    standardised by the fitted points ``reference_log_x``); ``values`` unchanged otherwise."""
    if not posterior.noise_slopes:
        return values
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    sigma = posterior.point_sigma(v, log_x, reference_log_x, mask)
    return {**values, "sigma": np.broadcast_to(np.asarray(sigma), shape)}


def _noise(rng: np.random.Generator, likelihood: str, values: dict, shape) -> np.ndarray:
    """Observation noise on the log scale for draws ``values`` (``(..., )`` -> ``shape``)."""
    return observation_noise(rng, likelihood, values, shape)


def _prior_draws(posterior: Posterior, num: int, seed: int) -> dict[str, np.ndarray]:
    """Exact prior draws with numpy (no compilation), ``{name: (num,)}``."""
    return posterior.prior_sample(num, seed)


def _log_predictions(
    posterior: Posterior,
    values: dict,
    log_x: dict,
    kind: str,
    rng,
    fitted_log_x: dict,
    mask=None,
    law_error: float = 0.0,
) -> np.ndarray:
    """Draws of the log response at ``log_x``: the law (``kind="mean"``) or a new run.

    ``values`` are parameter draws of shape ``(...)`` (a point axis is appended) and ``log_x``
    broadcasts against ``(..., points)``; ``fitted_log_x`` (and its ``mask``) are the fitted
    points, against which a ``"loglinear"`` noise model standardises its covariates.  A new
    run's draws get the opt-in law error :math:`\\tau\\,d(x)\\,z` (``law_error`` = :math:`\\tau`;
    :func:`_extrapolation_distance`), drawn after the noise so that :math:`\\tau = 0` leaves
    the draws as they were.
    """
    if kind not in ("observation", "mean"):
        raise ValueError(f"kind must be 'observation' or 'mean', got {kind!r}")
    law_error = nonnegative_number(law_error, "law_error")
    v = {k: jnp.asarray(x)[..., None] for k, x in values.items()}
    log_x = {k: jnp.asarray(x) for k, x in log_x.items()}
    log_mu = np.asarray(posterior.log_mean(v, log_x))
    if kind == "mean":
        return log_mu
    fitted = {c: jnp.asarray(fitted_log_x[c]) for c in log_x}
    noisy = _point_sigma_values(posterior, values, log_x, log_mu.shape, fitted, mask)
    log_y = log_mu + _noise(rng, posterior.likelihood, noisy, log_mu.shape)
    if law_error > 0:
        distance = _extrapolation_distance(log_x, fitted_log_x, mask)
        log_y = log_y + law_error * distance * rng.standard_normal(log_mu.shape)
    return log_y


def _signed_decades(log_x: dict, fitted_log_x: dict, mask=None) -> dict:
    """Per covariate, the signed decades by which ``log_x`` lies outside the fitted range
    (0 inside).  ``fitted_log_x[c]`` has the fitted points on its last axis (one row for all
    prediction points, or one row per row of ``log_x``); NaN or ``mask`` false: padding."""
    out = {}
    for c, x in log_x.items():
        fitted = np.asarray(fitted_log_x[c], dtype=float) / np.log(10)
        if mask is not None:
            fitted = np.where(mask, fitted, np.nan)
        lo, hi = np.nanmin(fitted, axis=-1), np.nanmax(fitted, axis=-1)
        x = np.asarray(x) / np.log(10)
        extra = (1,) * (x.ndim - np.ndim(lo))  # one fitted range per leading index of x
        lo, hi = np.reshape(lo, np.shape(lo) + extra), np.reshape(hi, np.shape(hi) + extra)
        out[c] = np.where(x > hi, x - hi, np.where(x < lo, x - lo, 0.0))
    return out


def _extrapolation_distance(log_x: dict, fitted_log_x: dict, mask=None) -> np.ndarray:
    """:math:`d(x) = \\sqrt{\\sum_c d_c(x)^2}`, the Euclidean norm of
    :func:`_signed_decades` over covariates."""
    return np.sqrt(sum(d**2 for d in _signed_decades(log_x, fitted_log_x, mask).values()))


def _prediction_table(new: FitData, draws: np.ndarray, quantiles, fitted_log_x: dict):
    """Covariates, ``mean``, quantile columns and the extrapolation columns of ``predict``.

    ``draws`` has shape ``(..., points)``; ``fitted_log_x[c]`` holds the fitted points'
    log covariate, one row per prediction point or one row for all (NaN: padding).
    """
    flat = draws.reshape(-1, draws.shape[-1])
    out = new.frame.rename(columns=new.columns).reset_index(drop=True)
    out["mean"] = flat.mean(axis=0)
    for q, col in zip(quantiles, map(quantile_column, quantiles), strict=True):
        out[col] = np.quantile(flat, q, axis=0)
    decades = _signed_decades(new.log_x, fitted_log_x)
    signed = pd.DataFrame({new.columns[c]: v for c, v in decades.items()})
    out["decades_beyond"] = signed.abs().max(axis=1).to_numpy() if len(signed.columns) else 0.0
    out["extrapolation"] = [
        ", ".join(f"{c} {v:+.2g} dec" for c, v in row.items() if v != 0) or "interpolation"
        for _, row in signed.iterrows()
    ]
    return out


#: DataTree group of a ``fit_batch(..., keep=...)`` result holding, per fit, the
#: convergence numbers and the summary of every draw (the groups hold the kept draws).
ALL_DRAWS = "all_draws_summary"
#: Quantiles stored per fit and parameter when draws are thinned by ``keep``.
SUMMARY_QUANTILES = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)


def convergence_numbers(values: dict, names: Sequence[str], diverging) -> dict[str, np.ndarray]:
    """Per fit: max split r̂, min bulk/tail ESS over ``names``, divergences, draws.

    ``values[name]`` and ``diverging`` have shape ``(fit, chain, draw)``.  The statistics are
    arviz-stats' (:mod:`bayescale.diagnostics`, all fits at once); a one-chain fit gets the
    r̂ of its two halves, as :class:`FitResult` does.
    """
    x = np.stack([np.moveaxis(values[n], 0, -1) for n in names], axis=-1)  # (c, d, fit, par)
    if x.shape[0] == 1:  # one chain: its two halves
        half = x.shape[1] // 2
        halves = np.concatenate([x[:, :half], x[:, half : 2 * half]], axis=0)
    else:
        halves = x
    return {
        "max_rhat": batch_diagnostics.rhat(halves).max(axis=-1),
        "min_ess_bulk": batch_diagnostics.ess_bulk(x).min(axis=-1),
        "min_ess_tail": batch_diagnostics.ess_tail(x).min(axis=-1),
        "num_divergent": np.asarray(diverging).sum(axis=(1, 2)),
        "num_draws": np.full(x.shape[2], x.shape[0] * x.shape[1]),
    }


def keep_draws(posterior: Posterior, samples: dict, keep: int) -> dict:
    """Reduce one chunk of sampler output (leading fit axis) to ``keep`` draws per chain.

    Before the other draws are dropped, every fit's convergence numbers
    (:func:`convergence_numbers`) and the mean, sd and :data:`SUMMARY_QUANTILES` of each
    parameter are computed from all of them and returned under ``samples["all_draws"]``.
    The kept draws are evenly spaced over each chain.
    """
    values = {k: np.asarray(v) for k, v in posterior.constrain(samples["z"]).items()}
    summary = convergence_numbers(values, posterior.site_names, samples["diverging"])
    for name, v in values.items():
        flat = v.reshape(v.shape[0], -1)
        summary[f"{name}_mean"], summary[f"{name}_sd"] = flat.mean(axis=1), flat.std(axis=1)
        for q in SUMMARY_QUANTILES:
            summary[f"{name}_{quantile_column(q)}"] = np.quantile(flat, q, axis=1)
    num_draws = samples["z"].shape[2]
    index = np.unique(np.linspace(0, num_draws - 1, min(keep, num_draws)).round().astype(int))
    per_fit = ("map_potential", "map_failed_starts", "inverse_mass_matrix")
    out = {k: (v if k in per_fit else np.asarray(v)[:, :, index]) for k, v in samples.items()}
    out["all_draws"] = summary
    return out


class BatchResult:
    """Posteriors of many independent fits of one law (``fit_batch``).

    ``datatree`` has a fit dimension named after ``by`` (coordinates: the group labels)
    before ``chain``/``draw``; padded points of shorter curves are NaN in the data groups.
    ``result[label]`` is one fit's :class:`FitResult`.
    """

    def __init__(self, datatree: xr.DataTree, law: Law, likelihood: str, columns: dict, by):
        self.datatree = datatree
        self.law = law
        self.likelihood = likelihood
        self.columns = dict(columns)
        self.by = by
        self.posterior = Posterior(law, likelihood)

    @classmethod
    def from_samples(
        cls,
        posterior: Posterior,
        fits: Sequence[FitData],
        labels: Sequence,
        by,
        samples: dict,
        *,
        seed: int,
        attrs: dict,
        max_pointwise: int = 50_000_000,
    ) -> BatchResult:
        """Assemble the batched DataTree from sampler output with a leading fit axis.

        The pointwise ``log_likelihood`` and ``posterior_predictive`` groups are stored when
        they hold at most ``max_pointwise`` numbers (fits x chains x draws x points).
        """
        law = posterior.law
        dim = by if isinstance(by, str) else "_".join(by)
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
        posterior_ds = xr.Dataset({n: (sample_dims, v) for n, v in values.items()}, coords=coords)
        stats = _sample_stats(samples)
        groups = {
            "posterior": posterior_ds,
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
        if k * c * s * n_max <= max_pointwise:
            from bayescale.infer.batch import stack

            data = stack(fits, bucket=False)
            ll, log_mu = jax.vmap(_pointwise(posterior))(
                values, data["log_x"], data["log_y"], data["mask"]
            )
            ll, log_mu = np.asarray(ll), np.asarray(log_mu)
            mask = data["mask"][:, None, None, :]
            rng = np.random.default_rng(seed)
            noisy = values
            if posterior.noise_slopes:
                sigma = jax.vmap(
                    lambda v, lx, m: posterior.point_sigma(
                        {k: x[..., None] for k, x in v.items()}, lx, lx, m
                    )
                )(values, data["log_x"], data["mask"])
                noisy = {**values, "sigma": np.asarray(sigma)}
            with np.errstate(over="ignore", invalid="ignore"):  # padded points: masked below
                ppc = np.exp(log_mu + _noise(rng, posterior.likelihood, noisy, log_mu.shape))
            dims4 = (*sample_dims, "point")
            groups["log_likelihood"] = xr.Dataset(
                {law.response: (dims4, np.where(mask, ll, np.nan))}, coords
            )
            groups["posterior_predictive"] = xr.Dataset(
                {law.response: (dims4, np.where(mask, ppc, np.nan))}, coords
            )
        if "all_draws" in samples:
            groups[ALL_DRAWS] = xr.Dataset(
                {k: ((dim,), np.asarray(v)) for k, v in samples["all_draws"].items()},
                coords={dim: list(labels)},
            )
        dt = xr.DataTree.from_dict(groups)
        dt.attrs = {
            "law": json.dumps(law.to_spec(), default=float),
            "law_id": law.id,
            "likelihood": posterior.likelihood,
            "by": json.dumps(by),
            "seed": int(seed),
            **{a: (json.dumps(v) if isinstance(v, dict | list) else v) for a, v in attrs.items()},
        }
        return cls(dt, law, posterior.likelihood, fits[0].columns, by)

    @property
    def dim(self) -> str:
        return self.by if isinstance(self.by, str) else "_".join(self.by)

    @property
    def labels(self) -> list:
        return list(self.datatree.posterior[self.dim].values)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.posterior.site_names

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def method(self) -> str:
        """``"nuts"``, ``"map"`` or ``"laplace"``: what made the draws."""
        return str(self.datatree.attrs.get("method", "nuts"))

    @cached_property
    def diagnostics(self) -> pd.DataFrame:
        """Per fit: max r̂, min bulk/tail ESS, divergences, status and the reason if failed.

        The statistics are arviz-stats' rank-normalised split r̂ and bulk/tail ESS, computed
        for all fits at once by :mod:`bayescale.diagnostics` (equal to arviz-stats, tested;
        arviz-stats itself loops over series in Python: minutes for 10,000 fits).  A
        one-chain fit gets the r̂ of its two halves, as :class:`FitResult` does.  Computed
        once per result.  For ``"map"``/``"laplace"``: per fit, the mode search's numbers,
        status and reason.
        """
        if self.method != "nuts":
            stats = json.loads(self.datatree.attrs["mode_stats"])
            reasons = json.loads(self.datatree.attrs.get("failure_reasons", "{}"))
            frame = pd.DataFrame(stats, index=pd.Index(self.labels, name=self.dim))
            frame["reason"] = [reasons.get(str(label), "") for label in self.labels]
            frame["status"] = np.where(
                frame["reason"] != "", Status.failed.value, Status.converged.value
            )
            return frame

        if ALL_DRAWS in self.datatree.children:  # fit_batch(keep=...): from all draws
            conv = {k: v.values for k, v in self.datatree[ALL_DRAWS].dataset.items()}
        else:
            post, names = self.datatree.posterior.dataset, self.parameter_names
            conv = convergence_numbers(
                {n: post[n].transpose(self.dim, "chain", "draw").values for n in names},
                names,
                self.datatree.sample_stats["diverging"].values,
            )
        chains = int(self.datatree.posterior.sizes["chain"])
        reasons = json.loads(self.datatree.attrs.get("failure_reasons", "{}"))
        rows = []
        for i, label in enumerate(self.labels):
            d = {
                "max_rhat": float(conv["max_rhat"][i]),
                "min_ess_bulk": float(conv["min_ess_bulk"][i]),
                "min_ess_tail": float(conv["min_ess_tail"][i]),
                "num_divergent": int(conv["num_divergent"][i]),
                "num_draws": int(conv["num_draws"][i]),
                "rhat_max_allowed": RHAT_MAX,
                "ess_min_allowed": ESS_PER_CHAIN_MIN * chains,
            }
            reason = reasons.get(str(label), "")
            d["status"] = _status(d, failed=bool(reason)).value
            d["reason"] = reason
            rows.append({self.dim: label, **d})
        return pd.DataFrame(rows).set_index(self.dim)

    @property
    def status(self) -> pd.Series:
        return self.diagnostics["status"]

    @property
    def failed(self) -> list:
        """Labels of fits that did not converge."""
        s = self.status
        return list(s.index[s != Status.converged.value])

    def check_convergence(self, *, warn: bool = True) -> pd.Series:
        """Per-fit status; one warning listing the failing labels with their numbers."""
        diag = self.diagnostics
        bad = diag[diag["status"] != Status.converged.value]
        if warn and len(bad):
            if self.method != "nuts":
                shown = "; ".join(
                    f"{label}: {row.reason}" for label, row in bad.head(10).iterrows()
                )
            else:
                shown = "; ".join(
                    f"{label}: {row.status}{' (' + row.reason + ')' if row.reason else ''} "
                    f"r̂={row.max_rhat:.3f} ESS={min(row.min_ess_bulk, row.min_ess_tail):.0f} "
                    f"div={row.num_divergent}"
                    for label, row in bad.head(10).iterrows()
                )
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            warnings.warn(
                f"{len(diag) - len(bad)} of {len(diag)} fits of law {self.law.id!r} converged; "
                f"not converged: {shown}{more}",
                ConvergenceWarning,
                stacklevel=3,
            )
        return diag["status"]

    def summary(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """One row per (fit, parameter): mean, sd and quantiles of the posterior.

        For a ``fit_batch(..., keep=...)`` result, the mean, sd and the quantiles in
        :data:`SUMMARY_QUANTILES` come from all draws (reduced chunk by chunk before the
        draws were thinned); other quantiles from the kept draws.
        """
        rows = []
        post = self.datatree.posterior
        stored = self.datatree[ALL_DRAWS].dataset if ALL_DRAWS in self.datatree.children else None
        for name in self.parameter_names:
            x = post[name].values.reshape(len(self), -1)
            mean, sd = x.mean(axis=1), x.std(axis=1)
            qs = {quantile_column(q): np.quantile(x, q, axis=1) for q in quantiles}
            if stored is not None:
                mean, sd = stored[f"{name}_mean"].values, stored[f"{name}_sd"].values
                qs.update({c: stored[f"{name}_{c}"].values for c in qs if f"{name}_{c}" in stored})
            for i, label in enumerate(self.labels):
                row = {self.dim: label, "parameter": name, "mean": mean[i], "sd": sd[i]}
                row.update({c: v[i] for c, v in qs.items()})
                rows.append(row)
        return pd.DataFrame(rows)

    def __getitem__(self, label) -> FitResult:
        if label not in self.labels:
            raise KeyError(f"no fit labelled {label!r}; labels include {self.labels[:5]}")
        sub = self.datatree.sel({self.dim: label})
        mask = ~np.isnan(sub.observed_data[self.law.response].values)
        groups = {}
        for name, node in sub.children.items():
            ds = node.to_dataset()
            if "point" in ds.dims:
                ds = ds.isel(point=np.flatnonzero(mask))
            groups[name] = ds
        dt = xr.DataTree.from_dict(groups)
        dt.attrs = dict(self.datatree.attrs)
        if self.method != "nuts":  # this fit's mode numbers, under FitResult's attribute names
            i = self.labels.index(label)
            stats = json.loads(dt.attrs.pop("mode_stats"))
            dt.attrs.update({k: v[i] for k, v in stats.items()})
        return FitResult(dt, self.law, self.likelihood, self.columns)

    def _prediction_inputs(self, new_data) -> tuple[pd.DataFrame, FitData, np.ndarray]:
        """The rows, their validated covariates and the index of each row's fit."""
        from bayescale.data import DataError

        frame = new_data if isinstance(new_data, pd.DataFrame) else pd.DataFrame(new_data)
        by = [self.by] if isinstance(self.by, str) else list(self.by)
        missing = [b for b in by if b not in frame.columns]
        if missing:
            raise DataError(f"prediction inputs need the group column(s) {missing}")
        keys = frame[by].astype(str).agg("/".join, axis=1)
        index = {str(label): i for i, label in enumerate(self.labels)}
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise DataError(
                f"prediction inputs name fit(s) {unknown[:5]} that are not in this result "
                f"(its {len(index)} fits include {self.labels[:5]})"
            )
        new = covariate_frame(self.law, frame.drop(columns=by), self.columns)
        return frame, new, keys.map(index).to_numpy()

    def _log_prediction_draws(
        self,
        new: FitData,
        fit_index: np.ndarray,
        kind: str,
        seed: int,
        law_error: float = 0.0,
        max_numbers: float = 2e7,
    ) -> np.ndarray:
        """Draws of the log response, ``(chain, draw, row)``, each row under its own fit.

        All rows of a set of fits are evaluated at once: the fits' rows padded to a
        ``(fits, rows)`` grid against draws ``(chain, draw, fits)``, in chunks of fits of at
        most ``max_numbers`` draws.
        """
        post, const = self.datatree.posterior, self.datatree.constant_data
        fits, inverse = np.unique(fit_index, return_inverse=True)
        rank = pd.Series(inverse).groupby(inverse).cumcount().to_numpy()
        width = int(rank.max()) + 1
        c, d = post.sizes["chain"], post.sizes["draw"]
        per_chunk = max(1, int(max_numbers // (c * d * width)))
        rng = np.random.default_rng(seed)
        out = np.empty((c, d, len(fit_index)))
        for start in range(0, len(fits), per_chunk):
            chunk = fits[start : start + per_chunk]
            rows = np.flatnonzero((inverse >= start) & (inverse < start + len(chunk)))
            f, r = inverse[rows] - start, rank[rows]
            values = {k: np.moveaxis(post[k].values[chunk], 0, -1) for k in self.parameter_names}
            log_x = {}
            for cv, x in new.log_x.items():
                grid = np.full((len(chunk), width), x[rows[0]])
                grid[f, r] = x[rows]
                log_x[cv] = grid
            fitted = {cv: np.log(const[cv].values[chunk]) for cv in self.law.covariates}
            mask = np.isfinite(fitted[self.law.covariates[0]])
            fitted = {cv: np.where(mask, v, 0.0) for cv, v in fitted.items()}
            with np.errstate(over="ignore", invalid="ignore"):  # padded cells: dropped below
                log_draws = _log_predictions(
                    self.posterior, values, log_x, kind, rng, fitted, mask, law_error
                )
            out[:, :, rows] = log_draws[:, :, f, r]
        return out

    def predict_draws(
        self, new_data, *, kind: str = "observation", seed: int = 0, law_error: float = 0.0
    ) -> np.ndarray:
        """Draws of the response at each row of ``new_data`` under the fit its ``by`` column(s)
        name, shape ``(chain, draw, row)`` (``law_error`` as in :meth:`FitResult.predict`)."""
        _, new, fit_index = self._prediction_inputs(new_data)
        return np.exp(self._log_prediction_draws(new, fit_index, kind, seed, law_error))

    def predict(
        self,
        new_data,
        *,
        quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
        kind: str = "observation",
        seed: int = 0,
        law_error: float = 0.0,
    ) -> pd.DataFrame:
        """Predictions per fit, as :meth:`FitResult.predict`, all rows in one evaluation.

        ``new_data`` carries the ``by`` column(s), which name each row's fit and are kept in
        the output (first, in the input's row order and index); ``decades_beyond`` and
        ``extrapolation`` are measured against each row's own fitted range.
        """
        qs = [float(q) for q in quantiles]
        if not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
        frame, new, fit_index = self._prediction_inputs(new_data)
        draws = np.exp(self._log_prediction_draws(new, fit_index, kind, seed, law_error))
        const = self.datatree.constant_data
        fitted = {c: np.log(const[c].values[fit_index]) for c in self.law.covariates}
        out = _prediction_table(new, draws, qs, fitted)
        by = [self.by] if isinstance(self.by, str) else list(self.by)
        out = pd.concat([frame[by].reset_index(drop=True), out], axis=1)
        out.index = frame.index
        return out

    def save(self, path: str | Path) -> Path:
        """Write the DataTree (law, settings and ``by`` in its attributes) to netCDF."""
        path = Path(path)
        self.datatree.to_netcdf(path, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BatchResult:
        """Read a result written by :meth:`save` (see :func:`load` for either kind)."""
        result = load(path)
        if not isinstance(result, cls):
            raise ValueError(f"{str(path)!r} holds one fit: use FitResult.load")
        return result

    def __repr__(self) -> str:
        n_ok = int((self.status == Status.converged.value).sum())
        return f"<BatchResult law={self.law.id!r} fits={len(self)} converged={n_ok}>"
