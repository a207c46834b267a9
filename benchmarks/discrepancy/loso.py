"""Leave-one-source-out calibration of the discrepancy through the real ``fit`` -> ``predict``.

For each source of ``bayescale/corpus`` (splits of ``run.py``):

1. Empirical Bayes on the OTHER sources: each of their curves (all points) is fitted by
   ``fit(..., by="curve", model=Model(discrepancy=BROAD), inference=MAP())``; the hyperprior
   of :math:`\\log s` (and of :math:`\\log q`) is the normal whose mean is the mean of the
   sources' mean log MAP values (each source weighted equally) and whose variance is the
   mean within-source variance plus the variance of the source means (sd floored at
   ``SD_FLOOR``): the earlier (s, q) parametrisation's ``ou_rw(m_s, sd_s, m_q, sd_q)``,
   which the package no longer takes, so ``ou_rw_eb``'s rows are kept from the run that
   made them; the MAP values are cached in ``results/eb_logs.csv``.
2. The held-out source's curves: early part fitted with ``fit(..., by="curve")`` (NUTS),
   the rest predicted with ``predict(kind="observation")``; arms ``none``
   (``Model()``, no discrepancy), ``ou_rw`` (the shipped hyperpriors, learnt on the whole
   corpus by ``learn.py``: not blind to the source), ``ou_rw_fixed`` (the earlier
   ``LogNormal(log 0.01, 0.7)``), ``ou_rw_eb`` (empirical Bayes without this source) and
   ``ou_rw_lfo`` (the hyperprior chosen by leave-future-out log score on the other sources,
   ``learn.py``, read from ``results/learn_loso_lpd_r.csv``) and
   ``ou_rw_batch`` (``bayescale.learn.learn_discrepancy`` on the source's fitted points,
   around the ``ou_rw_lfo`` choice).
3. Scores over held-out points: coverage of the central 50/90% bands, MSCE over
   50/60/70/80/90/95/99%, median 90% width (log), mean 90% interval score (log; width +
   20 x the miss), ``err_ratio`` = median |log error| of the predictive median / that of
   least squares of the same law.

PolyPythia (``../shared/data``, when present): every log, steps >= 1000, the first 20% of
steps fitted, the final loss inside the 90% band (all 28 logs, the 20 from initialisation).

Writes ``benchmarks/results/discrepancy_loso.md`` (the tables; the notes after :data:`NOTES` are
kept), ``results/loso.csv``, ``results/loso_polypythia.csv`` and ``results/eb_logs.csv`` (step
1's MAP values, reused when ``ou_rw_eb`` is not run); with ``--keep`` the rows of
the arms not run this time are kept from those CSVs (older rows lack ``iscore90``).

Usage (from the worktree root)::

    nice -n 5 python benchmarks/discrepancy/loso.py [--chains 2 --warmup 500 --samples 500]
        [--sources polypythia ...] [--arms none ou_rw ou_rw_fixed ou_rw_eb ou_rw_lfo] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

from run import SPLITS, least_squares_medians, load_corpus, markdown  # noqa: E402

import bayescale as bs  # noqa: E402
from bayescale.check import least_squares_fit  # noqa: E402
from bayescale.data import prepare  # noqa: E402
from bayescale.datasets import polypythia as load_polypythia  # noqa: E402
from bayescale.laws import get_law  # noqa: E402
from bayescale.learn import learn_discrepancy  # noqa: E402
from bayescale.model import hyperpriors, scales  # noqa: E402

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Curve resamples of :func:`curve_interval`.
BOOTSTRAP = 2000
QUANTILES = tuple(
    sorted(
        {
            0.5,
            *[round((1 - lv) / 2, 6) for lv in LEVELS],
            *[round((1 + lv) / 2, 6) for lv in LEVELS],
        }
    )
)
BROAD = f"ou_rw({np.log(0.017):.4f}, 2)"
#: The hyperprior shipped before the leave-future-out choice (the roughness of s = q = 0.01).
FIXED = f"ou_rw({np.log(0.017):.5f}, 0.7)"
ARMS = ("none", "ou_rw", "ou_rw_fixed", "ou_rw_eb", "ou_rw_lfo", "ou_rw_batch")
SD_FLOOR = 0.3
LAW = "power_law_offset"
#: Text after this line of the output file is kept when the tables are rewritten.
NOTES = "<!-- hand-written notes below: kept by loso.py -->"


def frame_of(curves, part: str) -> pd.DataFrame:
    """Long frame of the curves' fitted (``part="fit"``), held-out or all points."""
    rows = []
    for c in curves:
        keep = {"fit": c["fit"], "held": ~c["fit"], "all": np.ones_like(c["fit"])}[part]
        rows.append(pd.DataFrame({"curve": c["curve"], "x": c["x"][keep], "y": c["y"][keep]}))
    return pd.concat(rows, ignore_index=True)


def eb_logs(curves, source: str) -> pd.DataFrame:
    """MAP log s, log q of every curve of ``source`` (all points), broad hyperprior."""
    sub = [c for c in curves if c["source"] == source]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bs.fit(
            frame_of(sub, "all"), LAW, by="curve",
            model=bs.Model(discrepancy=BROAD), inference=bs.MAP(), warn=False,
        )  # fmt: skip
    post = res.group("posterior")
    s, q = scales(*(post[k].values.reshape(len(sub), -1)[:, 0] for k in ("delta_r", "delta_w")))
    return pd.DataFrame({"source": source, "log_s": np.log(s), "log_q": np.log(q)})


def hyperprior(logs: pd.DataFrame) -> str:
    """The ``ou_rw(m_s, sd_s, m_q, sd_q)`` of the sources in ``logs`` (each weighted equally)."""
    args = []
    for name in ("log_s", "log_q"):
        g = logs.groupby("source")[name]
        means, within = g.mean(), g.var(ddof=0).fillna(0.0)
        sd = max(float(np.sqrt(within.mean() + means.var(ddof=0))), SD_FLOOR)
        args += [float(means.mean()), sd]
    return "ou_rw({:.4f}, {:.4f}, {:.4f}, {:.4f})".format(*args)


def curve_interval(hits: np.ndarray, curve: np.ndarray, level: float = 0.9) -> str:
    """``level`` percentile interval of the share of ``hits`` over curves resampled with
    replacement (:data:`BOOTSTRAP` times, seeded): a curve's points are correlated, so the
    curve is the unit of the coverage's sampling error."""
    _, index = np.unique(curve, return_inverse=True)
    hit, num = np.bincount(index, weights=hits), np.bincount(index)
    k = len(num)
    weights = np.random.default_rng(0).multinomial(k, np.full(k, 1.0 / k), size=BOOTSTRAP)
    lo, hi = np.quantile((weights @ hit) / (weights @ num), [(1 - level) / 2, (1 + level) / 2])
    return f"{lo:.2f}-{hi:.2f}"


def scores(table: pd.DataFrame, held: pd.DataFrame, lsq: np.ndarray) -> dict:
    """Coverage (with its curve-bootstrap 90% interval), MSCE, width and error ratio of the
    predictions ``table`` of ``held``."""
    y = np.log(held["y"].to_numpy())
    q = {qq: np.log(table[f"q{100 * qq:g}"].to_numpy()) for qq in QUANTILES}
    inside = {
        lv: (q[round((1 - lv) / 2, 6)] <= y) & (y <= q[round((1 + lv) / 2, 6)]) for lv in LEVELS
    }
    cover = {lv: float(np.mean(hits)) for lv, hits in inside.items()}
    curve = held["curve"].to_numpy()
    err = np.median(np.abs(y - q[0.5]))
    lo, hi = q[0.05], q[0.95]
    iscore = (hi - lo) + 20 * np.maximum(lo - y, 0) + 20 * np.maximum(y - hi, 0)
    return {
        "points": len(y),
        "cov50": cover[0.5],
        "cov90": cover[0.9],
        "cov50_ci90": curve_interval(inside[0.5], curve),
        "cov90_ci90": curve_interval(inside[0.9], curve),
        "msce": float(np.mean([(cover[lv] - lv) ** 2 for lv in LEVELS])),
        "width90": float(np.median(q[0.95] - q[0.05])),
        "iscore90": float(np.mean(iscore)),
        "err_ratio": float(err / np.median(np.abs(y - lsq))),
    }


def fit_predict(fit_frame, new_frame, discrepancy, inference, seed=0):
    """``fit(by="curve")`` then ``predict(kind="observation")``: (table, seconds, diag)."""
    t = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bs.fit(
            fit_frame, LAW, by="curve", model=bs.Model(discrepancy=discrepancy),
            inference=inference, seed=seed, warn=False,
        )  # fmt: skip
        table = res.predict(new_frame[["curve", "x"]], quantiles=QUANTILES, seed=seed)
    diag = res.diagnostics
    bad = int((diag["max_rhat"] > 1.05).sum())
    return table, time.time() - t, bad


def loso(curves, sources, arms, inference) -> pd.DataFrame:
    cache = HERE / "results" / "eb_logs.csv"
    if not cache.exists():
        logs = pd.concat([eb_logs(curves, s) for s in SPLITS])
        logs.to_csv(cache, index=False)
    logs = pd.read_csv(cache)
    rows = []
    for source in sources:
        sub = [c for c in curves if c["source"] == source]
        fit_frame, held = frame_of(sub, "fit"), frame_of(sub, "held")
        hx = np.log(held["x"].to_numpy())
        # least squares, same law, fitted points, at every held-out point (in held's order)
        lsq_grid = least_squares_medians(sub, _grid(sub))
        lsq = np.concatenate([lsq_grid[i, : (~c["fit"]).sum()] for i, c in enumerate(sub)])
        assert len(lsq) == len(hx)
        eb = hyperprior(logs[logs.source != source])
        done = {}
        for arm in arms:
            disc = arm_discrepancy(arm, eb, source, fit_frame)
            key = _same(disc)
            if key in done:  # the same model as an arm already run: the same fit
                rows.append({**done[key], "arm": arm, "hyperprior": disc or ""})
                print(rows[-1], flush=True)
                continue
            table, secs, bad = fit_predict(fit_frame, held, disc, inference)
            row = {"source": source, "arm": arm, "hyperprior": disc or "",
                   "curves": len(sub), **scores(table, held, lsq), "rhat>1.05": bad,
                   "seconds": round(secs)}  # fmt: skip
            print(row, flush=True)
            rows.append(row)
            done[key] = row
    return pd.DataFrame(rows), logs


def _same(disc: str | None):
    """A key equal for discrepancies with the same hyperpriors (to 3 decimals)."""
    if disc is None:
        return None
    return tuple(round(a, 3) for p in hyperpriors(disc).values() for a in p.args)


def arm_discrepancy(arm: str, eb: str, source: str | None, fit_frame=None) -> str | None:
    """The ``Model(discrepancy=...)`` of an arm (``source``: the held-out one, or ``None``
    for PolyPythia's final loss, whose ``ou_rw_lfo`` is the choice without PolyPythia;
    ``ou_rw_batch``: :func:`bayescale.learn.learn_discrepancy` on ``fit_frame`` around the
    ``ou_rw_lfo`` choice, that choice itself when no curve has enough points)."""
    if arm == "ou_rw_batch":
        prior = arm_discrepancy("ou_rw_lfo", eb, source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return learn_discrepancy(fit_frame, LAW, by="curve", prior=prior)[0]
        except ValueError:
            return prior
    if arm == "ou_rw_lfo":
        choice = pd.read_csv(HERE / "results" / "learn_loso_lpd_r.csv")
        choice = choice[(choice.arm == "lfo") & (choice.source == (source or "polypythia"))]
        return str(choice.hyperprior.iloc[0])
    return {"none": None, "ou_rw": "ou_rw", "ou_rw_fixed": FIXED, "ou_rw_eb": eb}[arm]


def _grid(sub):
    """Held-out log x padded to a grid (for :func:`run.least_squares_medians`)."""
    width = max((~c["fit"]).sum() for c in sub)
    out = np.zeros((len(sub), width))
    for i, c in enumerate(sub):
        h = np.log(c["x"][~c["fit"]])
        out[i, : len(h)], out[i, len(h) :] = h, h[-1]
    return out


def polypythia(arms, inference, eb: str) -> pd.DataFrame | None:
    """Final loss inside the 90% band, first 20% of steps (>= 1000) fitted."""
    folder = ROOT.parent / "shared" / "data"
    if not (folder / "polypythia_train_lm_loss_every10steps.csv").exists():
        folder = Path("/work/shared/data")
    try:
        data = load_polypythia(folder)
    except (FileNotFoundError, OSError):
        return None
    data = data[data["step"] >= 1000].copy()
    data["curve"] = data["model"].astype(str) + "-" + data["seed"].astype(str)
    last = data.sort_values("step").groupby("curve").tail(1)
    limit = data["curve"].map(data.groupby("curve")["step"].max()) * 0.2
    fitted = data[data["step"] <= limit]
    fit_frame = fitted.rename(columns={"step": "x", "train_lm_loss": "y"})[["curve", "x", "y"]]
    new = last.rename(columns={"step": "x", "train_lm_loss": "y"})
    init = new["from_init"].to_numpy(dtype=bool)
    lsq_pred = []
    law = get_law(LAW)
    for _, row in new.iterrows():
        pts = fit_frame[fit_frame.curve == row["curve"]]
        p = least_squares_fit(law, prepare(pts[["x", "y"]], law))
        lsq_pred.append(np.log(p["E"] + p["A"] * row["x"] ** -p["alpha"]))
    lsq_err = np.abs(np.log(new["y"].to_numpy()) - np.array(lsq_pred))
    rows, done = [], {}
    for arm in arms:
        disc = arm_discrepancy(arm, eb, None, fit_frame)
        key = _same(disc)
        if key in done:
            rows.append({**done[key], "arm": arm, "hyperprior": disc or ""})
            continue
        table, secs, bad = fit_predict(fit_frame, new, disc, inference)
        y = new["y"].to_numpy()
        inside = (table["q5"].to_numpy() <= y) & (y <= table["q95"].to_numpy())
        err = np.abs(np.log(y) - np.log(table["q50"].to_numpy()))
        row = {"arm": arm, "hyperprior": disc or "", "inside90_all": f"{inside.sum()}/{len(y)}",
               "inside90_init": f"{inside[init].sum()}/{init.sum()}",
               "err_ratio": float(np.median(err) / np.median(lsq_err)),
               "width90": float(np.median(np.log(table["q95"] / table["q5"]))),
               "rhat>1.05": bad, "seconds": round(secs)}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
        done[key] = row
    return pd.DataFrame(rows)


def _kept(path: Path, new: pd.DataFrame | None, arms, keys) -> pd.DataFrame | None:
    """``new`` with the rows of ``path`` whose arm is not in ``arms``, ordered by ``keys``
    then the arm's place in :data:`ARMS`."""
    if not path.exists():
        return new
    old = pd.read_csv(path, keep_default_na=False, na_values=[""])
    out = pd.concat([old[~old.arm.isin(arms)], new], ignore_index=True)
    out["hyperprior"] = out["hyperprior"].fillna("")
    rank = out.arm.map({a: i for i, a in enumerate(ARMS)})
    order = np.lexsort([rank.to_numpy()] + [out[k].map(_rank(out[k])).to_numpy() for k in keys])
    return out.iloc[order].reset_index(drop=True)


def _rank(col):
    return {v: i for i, v in enumerate(dict.fromkeys(col))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--sources", nargs="*", default=list(SPLITS))
    # ou_rw_eb is of the earlier (s, q) parametrisation: its rows are kept, not rerun
    runnable = [a for a in ARMS if a != "ou_rw_eb"]
    p.add_argument("--arms", nargs="*", default=runnable, choices=runnable)
    p.add_argument("--keep", action="store_true", help="keep the other arms' rows")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "discrepancy_loso.md"))
    a = p.parse_args(argv)
    inference = bs.NUTS(
        num_chains=a.chains, num_warmup=a.warmup, num_samples=a.samples, progress_bar=False
    )
    curves = load_corpus()
    table, logs = loso(curves, a.sources, a.arms, inference)
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    eb_all = hyperprior(logs)
    pp = polypythia(a.arms, inference, eb_all)
    if a.keep:
        table = _kept(res / "loso.csv", table, a.arms, ["source"])
        pp = _kept(res / "loso_polypythia.csv", pp, a.arms, [])
    table.to_csv(res / "loso.csv", index=False)
    if pp is not None:
        pp.to_csv(res / "loso_polypythia.csv", index=False)
    cmd = "nice -n 5 python benchmarks/discrepancy/loso.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "### Leave-one-source-out through `fit` -> `predict` (generated by "
        "`benchmarks/discrepancy/loso.py`)",
        "",
        f"Command: `{cmd}`; NUTS {a.chains} chains x ({a.warmup} warm-up + {a.samples}) "
        "draws; law `power_law_offset`; splits of `run.py`."
        + (
            " Rows of the arms this command did not run are kept from `results/loso*.csv`"
            " (earlier runs, same settings; they lack `iscore90`)."
            if a.keep
            else ""
        ),
        "",
        "Per-curve MAP log s, log q (broad hyperprior), per source (mean, sd):",
        "",
        markdown(
            logs.groupby("source")
            .agg(
                log_s_mean=("log_s", "mean"),
                log_s_sd=("log_s", "std"),
                log_q_mean=("log_q", "mean"),
                log_q_sd=("log_q", "std"),
            )
            .round(2)
            .reset_index()
        ),
        "",
    ]
    for source, g in table.groupby("source", sort=False):
        lines += [
            f"#### {source}",
            "",
            markdown(g.drop(columns="source")),
            "",
        ]
    if pp is not None:
        lines += [
            "#### PolyPythia final loss (first 20% of steps >= 1000 fitted)",
            "",
            f"EB hyperprior (all sources): `{eb_all}`",
            "",
            markdown(pp),
            "",
        ]
    out = Path(a.out)
    notes = out.read_text().partition(NOTES)[2] if out.exists() else ""
    out.write_text("\n".join(lines) + "\n" + NOTES + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
