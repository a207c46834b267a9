"""Scoring of a backtest's held-out predictions: coverage and log errors per curve."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayescale.predict import extrapolation_distance, quantile_column
from bayescale.result import Result, Status

__all__ = ["BAND_LEVELS", "BAND_QUANTILES", "predict_and_score", "score"]

#: Central band levels every backtest's predictions carry (``check.calibration``'s default).
BAND_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Their endpoints and the median, ascending: ``q0.5 q2.5 ... q50 ... q97.5 q99.5``.
BAND_QUANTILES = tuple(
    sorted(
        {0.5, *(round((1 - lv) / 2, 6) for lv in BAND_LEVELS)}
        | {round((1 + lv) / 2, 6) for lv in BAND_LEVELS}
    )
)


def predict_and_score(
    batch: Result, ctx: dict, taus: pd.Series | None, biases: pd.DataFrame | None = None
):
    """Predictive quantiles, law median, baseline and extrapolation distance at the held-out
    points (each curve's law error ``taus[curve]``, none when ``taus`` is None; with
    ``biases``, quantiles and median times exp(bias * d) and the baseline, as
    ``debiased_baseline``, times exp(baseline_bias * d)); the table."""
    law, held, by_cols = ctx["law"], ctx["held"], ctx["by_cols"]
    columns = ctx["settings"]["columns"] or {}
    seed = ctx["settings"]["seed"]
    cov_cols = [columns.get(c, c) for c in law.covariates]
    keys = ctx["held_keys"]
    tau = pd.Series(0.0, index=held.index) if taus is None else keys.map(taus).astype(float)
    quantiles = tuple(map(quantile_column, BAND_QUANTILES))
    obs = pd.DataFrame(index=held.index, columns=list(quantiles), dtype=float)
    for value, rows in held.groupby(tau, sort=True):  # one evaluation per law-error value
        out = batch.predict(
            rows[[*by_cols, *cov_cols]],
            quantiles=BAND_QUANTILES,
            kind="observation",
            seed=seed,
            law_error=value,
        )
        obs.loc[rows.index] = out[list(quantiles)].to_numpy()
    mean = batch.predict(held[[*by_cols, *cov_cols]], quantiles=(0.5,), kind="mean", seed=seed)
    distance = pd.Series(np.nan, index=held.index)
    fit_frame, fit_keys = ctx["fit_frame"], ctx["fit_keys"]
    for label, rows in held.groupby(keys, sort=True):
        fitted = fit_frame[fit_keys == label]
        log_x = {c: np.log(rows[c].to_numpy(dtype=float)) for c in cov_cols}
        fitted_log_x = {c: np.log(fitted[c].to_numpy(dtype=float)) for c in cov_cols}
        distance.loc[rows.index] = extrapolation_distance(log_x, fitted_log_x)
    pred = held[list(dict.fromkeys([*by_cols, *cov_cols, ctx["x_col"]]))].assign(
        **{q: obs[q].to_numpy(dtype=float) for q in quantiles},
        curve=keys.to_numpy(),
        observed=held[columns.get(law.response, law.response)].to_numpy(dtype=float),
        median=mean["q50"].to_numpy(),
        baseline=held["_baseline"].to_numpy(),
        distance=distance.to_numpy(),
    )
    if "_pooled_baseline" in held:
        pred["pooled_baseline"] = held["_pooled_baseline"].to_numpy()
    pred = pred.reset_index(drop=True)
    if biases is not None:
        d = pred["distance"].to_numpy(dtype=float)
        shift = np.exp(pred["curve"].map(biases["bias"]).to_numpy(dtype=float) * d)
        for q in (*quantiles, "median"):
            pred[q] = pred[q].to_numpy(dtype=float) * shift
        base_mu = pred["curve"].map(biases["baseline_bias"]).to_numpy(dtype=float)
        pred["debiased_baseline"] = pred["baseline"].to_numpy(dtype=float) * np.exp(base_mu * d)
    per_fit = batch.diagnostics["status"]
    status = pd.Series(per_fit.to_numpy(), index=[str(label) for label in per_fit.index])
    table = score(pred, x_col=ctx["x_col"], fit_counts=ctx["fit_counts"], status=status)
    return table, pred


def score(
    pred: pd.DataFrame, *, x_col: str, fit_counts: pd.Series, status: pd.Series
) -> pd.DataFrame:
    log_obs = np.log(pred["observed"])
    pred = pred.assign(
        in_50=(pred["q25"] <= pred["observed"]) & (pred["observed"] <= pred["q75"]),
        in_90=(pred["q5"] <= pred["observed"]) & (pred["observed"] <= pred["q95"]),
        err=np.log(pred["median"]) - log_obs,
        base_err=np.log(pred["baseline"]) - log_obs,
    )
    extra = [b for b in ("pooled_baseline", "debiased_baseline") if b in pred]
    for b in extra:
        pred[f"{b}_err"] = np.log(pred[b]) - log_obs
    rows = {}
    for label, g in pred.groupby("curve", sort=True):
        last = g.loc[g[x_col].idxmax()]
        rows[label] = {
            "num_fit": int(fit_counts.get(label, 0)),
            "num_held_out": len(g),
            "coverage_50": float(g["in_50"].mean()),
            "coverage_90": float(g["in_90"].mean()),
            "final_in_50": bool(last["in_50"]),
            "final_in_90": bool(last["in_90"]),
            "rmse_log": float(np.sqrt(np.mean(g["err"] ** 2))),
            "baseline_rmse_log": float(np.sqrt(np.mean(g["base_err"] ** 2))),
            "final_error_log": float(last["err"]),
            "baseline_final_error_log": float(last["base_err"]),
            "status": str(status.get(str(label), "")),
        }
        for b in extra:
            rows[label][f"{b}_rmse_log"] = float(np.sqrt(np.mean(g[f"{b}_err"] ** 2)))
            rows[label][f"{b}_final_error_log"] = float(last[f"{b}_err"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "curve"
    table = table.astype({"final_in_50": object, "final_in_90": object})
    num_converged = int((table["status"] == Status.converged.value).sum())
    overall = {
        "num_fit": int(table["num_fit"].sum()),
        "num_held_out": int(table["num_held_out"].sum()),
        "coverage_50": float(pred["in_50"].mean()),
        "coverage_90": float(pred["in_90"].mean()),
        "final_in_50": float(table["final_in_50"].mean()),
        "final_in_90": float(table["final_in_90"].mean()),
        "rmse_log": float(np.sqrt(np.mean(pred["err"] ** 2))),
        "baseline_rmse_log": float(np.sqrt(np.mean(pred["base_err"] ** 2))),
        "final_error_log": float(np.sqrt(np.mean(table["final_error_log"] ** 2))),
        "baseline_final_error_log": float(np.sqrt(np.mean(table["baseline_final_error_log"] ** 2))),
        "status": f"{num_converged}/{len(table)} converged",
    }
    for b in extra:
        overall[f"{b}_rmse_log"] = float(np.sqrt(np.mean(pred[f"{b}_err"] ** 2)))
        overall[f"{b}_final_error_log"] = float(
            np.sqrt(np.mean(table[f"{b}_final_error_log"] ** 2))
        )
    table.loc["overall"] = pd.Series(overall)
    return table
