"""Real data: every PolyPythia training curve (model size x seed) in one ``fit_batch`` call.

Data: ``../shared/data/polypythia_train_lm_loss_every10steps.csv`` (EleutherAI/pythia,
hmm-training-maps; Apache-2.0): training loss every 10 steps of the PolyPythia runs, 4
model sizes (14m, 70m, 160m, 410m) with several seeds each.  The law is the generic
saturating power law in training steps, ``loss = E + A * step**-alpha``
(``power_law_offset``).

Preparation (the same in ``benchmarks/polypythia_exponents.py``):

* steps below 100 are dropped: in the first ~100 steps the loss falls from the
  initialisation plateau (ln 50k ~ 10.8 nats) by warm-up dynamics, not by a power law in
  steps, and those points would drag the exponent;
* each curve is thinned to ~40 steps log-spaced between its first and last kept step
  (the nearest logged step to each target, duplicates dropped), so the early, fast part
  of the curve and the long tail weigh alike and the fit stays small.

Some logs do not start at initialisation: 160m seed 4, 410m seeds 0-2 and 70m seeds 5-8
begin at step 0 with a loss already near its final level (their step counter restarts on
a resumed run) and several stop early.  They are fitted like the others; their curves are
nearly flat, so their exponent is weakly identified (posterior close to the prior), which
is exactly what the per-curve convergence report is for.
"""

import numpy as np
import pandas as pd
import pytest

import bayescale

DATA_FILE = "polypythia_train_lm_loss_every10steps.csv"
MIN_STEP = 100
NUM_STEPS = 40
SETTINGS = {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
COLUMNS = {"x": "step", "y": "train_lm_loss"}
BY = ["model", "seed"]


def log_spaced_curves(raw: pd.DataFrame, min_step=MIN_STEP, num=NUM_STEPS) -> pd.DataFrame:
    """Steps >= ``min_step``; per (model, seed) the logged steps nearest ``num`` log-spaced
    targets between the curve's first and last kept step (duplicates dropped)."""
    kept = raw[raw["step"] >= min_step]
    parts = []
    for _, curve in kept.groupby(BY, sort=True):
        curve = curve.sort_values("step")
        steps = curve["step"].to_numpy()
        targets = np.geomspace(steps[0], steps[-1], num)
        right = np.clip(np.searchsorted(steps, targets), 1, len(steps) - 1)
        nearer_left = targets - steps[right - 1] <= steps[right] - targets
        idx = np.unique(np.where(nearer_left, right - 1, right))
        parts.append(curve.iloc[idx])
    return pd.concat(parts, ignore_index=True)


def curve_label(model, seed) -> str:
    return f"{model}/{seed}"  # fit_batch joins several ``by`` columns with "/"


@pytest.fixture(scope="module")
def curves(shared_data) -> pd.DataFrame:
    path = shared_data / DATA_FILE
    if not path.is_file():
        pytest.skip(f"{path} is absent (see ../shared/data/README.md)")
    return log_spaced_curves(pd.read_csv(path))


@pytest.fixture(scope="module")
def batch(curves):
    return bayescale.fit_batch(
        curves,
        "power_law_offset",
        columns=COLUMNS,
        by=BY,
        seed=0,
        progress_bar=False,
        warn=False,
        **SETTINGS,
    )


@pytest.fixture(scope="module")
def medians(batch) -> pd.DataFrame:
    summary = batch.summary(quantiles=(0.5,))
    return summary.pivot(index=batch.dim, columns="parameter", values="q50")


def test_curves_are_thinned_log_spaced(curves):
    sizes = curves.groupby(BY).size()
    assert sizes.between(NUM_STEPS - 8, NUM_STEPS).all(), sizes[sizes < NUM_STEPS - 8]
    assert curves["step"].min() >= MIN_STEP


def test_every_curve_present(batch, curves):
    expected = {curve_label(m, s) for m, s in curves[BY].drop_duplicates().itertuples(index=False)}
    assert set(map(str, batch.labels)) == expected
    assert len(batch) == len(expected)


@pytest.mark.xfail(
    reason="known gap (issue 4): at 2 chains x 300+300 draws about 20 of 28 PolyPythia curves "
    "miss r̂ <= 1.01 / ESS >= 200: the 9 resumed logs (flat, alpha unidentified, divergences), "
    "the 160m and some 70m curves (slow mixing along the E-alpha ridge as cosine decay bends "
    "the tail) and 14m curves at r̂ 1.010-1.015; at 4 x 1000+1000 15 of 28 converge; the test "
    "states the goal",
    strict=False,
)
def test_most_curves_converge(batch):
    diag = batch.diagnostics
    bad = diag[diag["status"] != "converged"]
    report = "; ".join(
        f"{label}: {row.status} (r̂={row.max_rhat:.3f}, bulk ESS={row.min_ess_bulk:.0f}, "
        f"tail ESS={row.min_ess_tail:.0f}, divergent={row.num_divergent}"
        f"{', ' + row.reason if row.reason else ''})"
        for label, row in bad.iterrows()
    )
    assert len(bad) <= 0.1 * len(diag), (
        f"{len(bad)} of {len(diag)} curves did not converge: {report}"
    )


def test_exponents_positive_and_below_two(batch, medians):
    failed = set(batch.failed)
    converged = [label for label in batch.labels if label not in failed]
    alpha = medians.loc[converged, "alpha"]
    bad = alpha[(alpha <= 0) | (alpha >= 2)]
    assert bad.empty, f"alpha posterior median outside (0, 2): {bad.round(3).to_dict()}"


@pytest.mark.xfail(
    reason="known gap (issue 4): for 3 of 28 curves (160m/4, 410m/1, 410m/2) the fitted "
    "asymptote E sits just above the last loss: these are resumed logs, flat over their "
    "steps, so E is their level and the last (noisy) point falls below it; the test states "
    "the goal",
    strict=False,
)
def test_asymptote_below_last_observed_loss(batch, curves, medians):
    last = curves.sort_values("step").groupby(BY)["train_lm_loss"].last()
    last.index = [curve_label(m, s) for m, s in last.index]
    e = medians["E"].rename(index=str)
    above = {
        label: (round(float(e[label]), 3), round(float(last[label]), 3))
        for label in last.index
        if not e[label] < last[label]
    }
    assert not above, f"E median >= last observed loss, (E, last loss): {above}"
