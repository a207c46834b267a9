"""Real data: every PolyPythia training curve (model size x seed) in one ``fit(..., by=)`` call.

Data: ``../shared/data/polypythia_train_lm_loss_every10steps.csv`` (EleutherAI/pythia,
hmm-training-maps; Apache-2.0): training loss every 10 steps of the PolyPythia runs, 4
model sizes (14m, 70m, 160m, 410m) with several seeds each.  The law is the generic
saturating power law in training steps, ``loss = E + A * step**-alpha``
(``power_law_offset``).  Preparation: :func:`bayescale.datasets.polypythia` (steps >= 100,
~40 log-spaced steps per curve, ``from_init`` marking the logs that start at
initialisation; the others restart their step counter on a resumed run, begin near their
final loss and are nearly flat, so their exponent is weakly identified: they are fitted
like the others and the per-curve report says how each went; the claims below are about
the curves that start at initialisation).

Likelihood: Student-t on log loss with nu fixed at 4 (``"student_t(4)"``): forty points of
a smooth training curve do not identify nu (benchmarks/RESULTS.md, "PolyPythia: nu fixed");
the default discrepancy on (the default path a user takes).
"""

import pandas as pd
import pytest

import bayescale
from bayescale import datasets

NUM_STEPS = 40
MIN_STEP = 100
#: NUTS at bayescale's defaults (4 chains x 1000 + 1000): the settings a user gets.
SETTINGS: dict = {}
LIKELIHOOD = "student_t(4)"
COLUMNS = {"x": "step", "y": "train_lm_loss"}
BY = ["model", "seed"]


def curve_label(model, seed) -> str:
    return f"{model}/{seed}"  # fit(..., by=) joins several ``by`` columns with "/"


@pytest.fixture(scope="module")
def curves(shared_data) -> pd.DataFrame:
    path = shared_data / datasets.POLYPYTHIA_FILE
    if not path.is_file():
        pytest.skip(f"{path} is absent (see ../shared/data/README.md)")
    return datasets.polypythia(shared_data, min_step=MIN_STEP, num_steps=NUM_STEPS)


@pytest.fixture(scope="module")
def batch(curves):
    return bayescale.fit(
        curves.drop(columns="from_init"),
        "power_law_offset",
        columns=COLUMNS,
        by=BY,
        model=bayescale.Model(likelihood=LIKELIHOOD),
        inference=bayescale.NUTS(progress_bar=False, **SETTINGS),
        seed=0,
        warn=False,
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


@pytest.fixture(scope="module")
def from_init(curves) -> list[str]:
    """Labels of the curves whose log starts at initialisation."""
    kept = curves[curves["from_init"]][BY].drop_duplicates()
    return [curve_label(m, s) for m, s in kept.itertuples(index=False)]


def test_most_curves_converge(batch, from_init):
    """At least 90% of the curves from initialisation converge (r̂ <= 1.01, ESS >= 100/chain)."""
    diag = batch.diagnostics.rename(index=str).loc[from_init]
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


def test_asymptote_below_last_observed_loss(batch, curves, from_init):
    """The data do not put E above the last loss of any curve from initialisation: E's 5%
    posterior quantile lies below it.  (Under the default discrepancy the observed curve is
    the law times :math:`e^{\\delta}`, so the last loss may dip below the law's asymptote by
    the law's own error and E's median need not lie below it; resumed logs are flat, so
    their E is their level.)"""
    last = curves.sort_values("step").groupby(BY)["train_lm_loss"].last()
    last.index = [curve_label(m, s) for m, s in last.index]
    summary = batch.summary(quantiles=(0.05,))
    e = summary[summary["parameter"] == "E"].set_index(batch.dim)["q5"].rename(index=str)
    above = {
        label: (round(float(e[label]), 3), round(float(last[label]), 3))
        for label in from_init
        if not e[label] < last[label]
    }
    assert not above, f"E 5% quantile >= last observed loss, (E q5, last loss): {above}"
