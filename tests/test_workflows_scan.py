"""Batch-size scans (seed 001) and the critical batch size (seed 000) on simulated data.

Truth comes from the simulators (Kaplan's published L(N, S_min) and B_crit(L) through
McCandlish's relation).  Recovery checks are scaled by each posterior's sd and the Monte
Carlo error of its mean, and seeded; over several quantities the number of 95% intervals
missing the truth is held to a binomial bound, as in test_recovery.py.
"""

import math
import re
import warnings

import arviz_stats as azs
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayescale import NUTS, ConvergenceWarning, DataError, Model
from bayescale.laws import get_law
from bayescale.workflows import (
    fit_batch_scan,
    fit_critical_batch_size,
    gradient_noise_scale,
    steps_to_target,
)
from bayescale.workflows.batch_scan_sim import (
    batch_scan_truth,
    simulate_batch_scan,
    simulate_gradient_norms,
)

SETTINGS = {"num_chains": 2, "num_warmup": 500, "num_samples": 500}
INFERENCE = NUTS(**SETTINGS)
# the target losses of notebooks kaplan_000 and kaplan_001: as many fits per scan, so the
# notebooks and these tests share one compiled program (persistent compilation cache)
LEVELS_85M = [3.3, 3.6, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0]
LEVELS_3M = [4.3, 4.6, 5.0, 5.5, 6.0, 6.5, 7.0, 8.0]
Z_MAX = 3.5  # two-sided 4.7e-4 per quantity


def z_score(draws: np.ndarray, truth: float) -> float:
    """(truth - mean) / sqrt(sd^2 + MCSE(mean)^2) on the log scale, MCSE from bulk ESS."""
    log_draws = np.log(np.asarray(draws))
    ess = float(azs.ess(log_draws.reshape(-1, log_draws.shape[-1]), method="bulk"))
    sd = log_draws.std()
    mcse = sd / math.sqrt(ess)
    return float((math.log(truth) - log_draws.mean()) / math.hypot(sd, mcse))


def covered(draws: np.ndarray, truth: float) -> bool:
    lo, hi = np.quantile(np.asarray(draws).ravel(), [0.025, 0.975])
    return bool(lo <= truth <= hi)


@pytest.fixture(scope="module")
def scan_85m():
    curves = simulate_batch_scan(n_params=8.5e7, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_batch_scan(curves, LEVELS_85M, seed=1, inference=INFERENCE)


@pytest.fixture(scope="module")
def scan_3m():
    curves = simulate_batch_scan(n_params=3e6, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_batch_scan(curves, LEVELS_3M, seed=2, inference=INFERENCE)


# ----------------------------------------------------------------------------- simulators


def test_simulated_scan_follows_mccandlish_hyperbola():
    """Noise-free curves read at a target loss lie on (S/S_min - 1)(E/E_min - 1) = 1."""
    curves = simulate_batch_scan(n_params=8.5e7, noise=0.0, num_logged=400, seed=0)
    # the levels this check was written for (the fits' 7.0 is reached within the first few
    # logged steps, where the log-spaced logging grid is too coarse to read S to 5e-3)
    levels = [level for level in LEVELS_85M if level < 7.0]
    points = steps_to_target(curves, levels, smooth=1)
    truth = batch_scan_truth(levels, n_params=8.5e7).set_index("loss")
    t = truth.loc[points["loss_level"]]
    product = (points["steps"].to_numpy() / t["S_min"].to_numpy() - 1) * (
        points["n_tokens"].to_numpy() / t["E_min"].to_numpy() - 1
    )
    assert len(points) == len(levels) * 10
    np.testing.assert_allclose(product, 1.0, rtol=5e-3)
    # B_crit of the truth is Kaplan's law
    law = get_law("kaplan_bcrit")
    expected = law.reference["B_star"] * truth.index.to_numpy() ** (-1 / law.reference["alpha_B"])
    np.testing.assert_allclose(truth["B_crit"], expected, rtol=1e-6)


def test_simulators_are_seeded_and_validate():
    a = simulate_batch_scan(seed=3, num_logged=20)
    b = simulate_batch_scan(seed=3, num_logged=20)
    c = simulate_batch_scan(seed=4, num_logged=20)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["loss"], c["loss"])
    assert (a["loss"] <= 10.83 * np.exp(4 * 0.005)).all()
    with pytest.raises(ValueError, match="batch_sizes"):
        simulate_batch_scan(batch_sizes=[1024, -1])
    with pytest.raises(ValueError, match="alpha_B"):
        simulate_batch_scan(bcrit_params={"alpha_B": float("nan")})
    with pytest.raises(ValueError, match="batch_size_small"):
        simulate_gradient_norms([4.0], batch_size_small=2**20, batch_size_big=2**13)
    assert np.isnan(batch_scan_truth([2.0], n_params=3e6)["S_min"]).all()  # below L(N, inf)


# ----------------------------------------------------------------------------- read-off


def test_steps_to_target_validates_at_the_boundary():
    curves = simulate_batch_scan(num_logged=30, seed=0)
    with pytest.raises(DataError, match=r"\['step'\]"):
        steps_to_target(curves, [4.0], columns={"steps": "step"})
    bad = curves.copy()
    bad.loc[7, "loss"] = -1.0
    with pytest.raises(DataError, match=r"'loss'.*row 7"):
        steps_to_target(bad, [4.0])
    with pytest.raises(DataError, match="target_losses"):
        steps_to_target(curves, [4.0, 0.0])
    with pytest.raises(DataError, match="min_runs"):
        fit_batch_scan(curves, [4.0], min_runs=2)
    # a target no run reaches gives no rows; fitting only such targets is an error
    assert steps_to_target(curves, [1.0]).empty
    with pytest.raises(DataError, match="no target loss was reached"):
        fit_batch_scan(curves, [1.0, 2.0])


def test_steps_to_target_with_renamed_columns_and_runs():
    curves = simulate_batch_scan(num_logged=60, batch_sizes=[2**14, 2**18], seed=0)
    twice = pd.concat([curves.assign(seed=0), curves.assign(seed=1)], ignore_index=True)
    twice = twice.rename(columns={"steps": "step", "loss": "train_loss"})
    points = steps_to_target(
        twice, [5.0, 4.0], columns={"steps": "step", "loss": "train_loss"}, run="seed"
    )
    assert list(points.columns) == ["loss_level", "batch_size", "run", "steps", "n_tokens"]
    assert len(points) == 8
    np.testing.assert_allclose(points["n_tokens"], points["batch_size"] * points["steps"])
    # lower targets take more steps; smaller batches take more steps
    s = points[points["run"] == 0].set_index(["loss_level", "batch_size"])["steps"]
    assert s[(4.0, 2**14)] > s[(5.0, 2**14)] and s[(4.0, 2**14)] > s[(4.0, 2**18)]


# ----------------------------------------------------------------------------- workflows


def test_batch_scan_recovers_smin_emin_bcrit(scan_85m):
    """Every level's S_min, E_min, B_crit posterior holds the simulator's truth."""
    result = scan_85m
    assert list(result.levels.index) == sorted(LEVELS_85M, reverse=True)
    assert (result.levels["num_runs"] == 10).all() and result.skipped.empty
    assert result.levels["bcrit_in_scan"].all()
    truth = batch_scan_truth(result.levels.index, n_params=8.5e7).set_index("loss")
    draws = result.draws()
    flags, worst = [], {}
    for name in ("S_min", "E_min", "B_crit"):
        for i, level in enumerate(result.levels.index):
            z = z_score(draws[name][i], truth.loc[level, name])
            worst[(name, level)] = z
            flags.append(covered(draws[name][i], truth.loc[level, name]))
    bad = {k: round(v, 2) for k, v in worst.items() if abs(v) > Z_MAX}
    assert not bad, f"truth more than {Z_MAX} sd from the posterior: {bad}"
    allowed = stats.binom.ppf(0.999, len(flags), 0.05)
    assert flags.count(False) <= allowed, f"{flags.count(False)} of {len(flags)} missed"
    # the table and the draws agree, and B_crit is E_min / S_min draw by draw
    np.testing.assert_allclose(
        result.levels["B_crit_q50"], np.median(draws["B_crit"].reshape(len(LEVELS_85M), -1), axis=1)
    )
    assert result.batch.diagnostics["max_rhat"].max() < 1.05


def test_critical_batch_size_recovers_kaplan(scan_85m, scan_3m):
    """B* and alpha_B from two simulated scans (3M and 85M) hold Kaplan's values."""
    result = fit_critical_batch_size(
        [scan_85m, scan_3m], num_imputations=8, seed=3, inference=INFERENCE
    )
    assert len(result.levels) == len(LEVELS_85M) + len(LEVELS_3M)
    assert set(result.levels["source"]) == {0, 1}
    reference = get_law("kaplan_bcrit").reference
    draws = result.draws()
    assert draws["B_star"].shape == (8 * SETTINGS["num_chains"], SETTINGS["num_samples"])
    for name, value in reference.items():
        z = z_score(draws[name], value)
        assert abs(z) < Z_MAX, f"{name}: reference {value:g} is {z:+.2f} sd from the posterior"
    assert result.diagnostics["max_rhat"].max() < 1.05
    # the pooled posterior is every imputation's draws, chains stacked
    per_fit = result.batch.datatree.posterior["B_star"].values  # (imputation, chain, draw)
    np.testing.assert_array_equal(np.sort(draws["B_star"].ravel()), np.sort(per_fit.ravel()))
    # the level table summarises the scans' own draws (one helper for both tables)
    mine = result.levels[result.levels["source"] == 0].set_index("loss_level")
    theirs = scan_85m.levels.sort_index()
    for col in ("B_crit_mean", "B_crit_sd", "B_crit_q2.5", "B_crit_q50", "B_crit_q97.5"):
        np.testing.assert_allclose(mine[col], theirs[col], rtol=1e-12)
    # prediction at a target loss: the law with a band, ordered quantiles
    pred = result.predict([2.0, 3.0])
    assert list(pred["loss"]) == [2.0, 3.0]
    assert (pred["q2.5"] < pred["q50"]).all() and (pred["q50"] < pred["q97.5"]).all()
    expected = reference["B_star"] * np.array([2.0, 3.0]) ** (-1 / reference["alpha_B"])
    lo, hi = pred["q2.5"].to_numpy(), pred["q97.5"].to_numpy()
    assert ((lo <= expected) & (expected <= hi)).all(), (pred, expected)
    assert pred.loc[0, "decades_beyond"] > 0  # L = 2 lies below every fitted level


def _synthetic_draws(per_level_sd: float, seed: int) -> pd.DataFrame:
    """Per-level log-normal B_crit posteriors centred near Kaplan's law."""
    law = get_law("kaplan_bcrit")
    rng = np.random.default_rng(seed)
    losses = np.geomspace(3.0, 7.0, 8)
    centre = np.log(law.reference["B_star"]) - np.log(losses) / law.reference["alpha_B"]
    centre = centre + 0.02 * rng.standard_normal(losses.size)  # medians nearly on the law
    num_draws = 400
    return pd.DataFrame(
        {
            "loss_level": np.repeat(losses, num_draws),
            "B_crit": np.exp(
                np.repeat(centre, num_draws) + per_level_sd * rng.standard_normal(8 * num_draws)
            ),
        }
    )


def _interval_width(result, name: str) -> float:
    lo, hi = np.quantile(np.log(result.draws()[name]).ravel(), [0.025, 0.975])
    return float(hi - lo)


def test_imputation_carries_per_level_uncertainty():
    """Wide per-level posteriors widen B*'s interval well beyond the medians-only fit;
    narrow ones leave it about as it is."""
    widths = {}
    for sd in (0.3, 0.005):
        draws = _synthetic_draws(sd, seed=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            imputed = fit_critical_batch_size(draws, num_imputations=8, seed=6, inference=INFERENCE)
            medians = fit_critical_batch_size(draws, method="median", seed=6, inference=INFERENCE)
        widths[sd] = {
            name: (_interval_width(imputed, name), _interval_width(medians, name))
            for name in ("B_star", "alpha_B")
        }
        for res in (imputed, medians):
            assert covered(res.draws()["alpha_B"], 0.21), (sd, res.method, res.summary())
    for name, (wide, narrow) in widths[0.3].items():
        assert wide > 3 * narrow, (name, widths)
    # 0.005 is a quarter of the medians' own scatter (0.02): propagating it changes little
    # (the imputed sets scatter like the medians up to a factor sqrt(1 + 1/16)); a fit
    # that inflated intervals regardless would fail here
    for name, (wide, narrow) in widths[0.005].items():
        assert 0.7 < wide / narrow < 1.5, (name, widths)


def test_critical_batch_size_validates():
    draws = _synthetic_draws(0.1, seed=0)
    with pytest.raises(DataError, match="method"):
        fit_critical_batch_size(draws, method="mean")
    with pytest.raises(DataError, match="at least 4 loss levels"):
        fit_critical_batch_size(draws[draws["loss_level"] < 4.0])
    with pytest.raises(DataError, match=r"\['B_crit'\]"):
        fit_critical_batch_size(draws.rename(columns={"B_crit": "b"}))
    bad = draws.copy()
    bad.loc[3, "B_crit"] = np.nan
    with pytest.raises(DataError, match=r"'B_crit'.*row 3"):
        fit_critical_batch_size(bad)
    with pytest.raises(DataError, match="num_imputations"):
        fit_critical_batch_size(draws, num_imputations=1)


# ----------------------------------------------------------------------------- noise scale


def test_gradient_noise_scale_is_exact_without_noise():
    measured = simulate_gradient_norms(
        [3.0, 4.0, 6.0], noise=0.0, grad_norm_sq=2.5, noise_scale_ratio=0.5
    )
    out = gradient_noise_scale(measured)
    np.testing.assert_allclose(out["noise_scale"], measured["noise_scale_true"], rtol=1e-9)
    np.testing.assert_allclose(out["grad_norm_sq"], 2.5, rtol=1e-9)
    assert list(out["loss"]) == [3.0, 4.0, 6.0]  # other columns are kept


def test_gradient_noise_scale_with_noise_and_errors():
    measured = simulate_gradient_norms(np.linspace(3, 7, 200), noise=0.05, seed=1)
    out = gradient_noise_scale(measured)
    ratio = np.log(out["noise_scale"] / out["noise_scale_true"]).dropna()
    assert len(ratio) > 190
    # unbiased inputs: the log-ratio's median is near 0, within its binomial-scaled error
    assert abs(np.median(ratio)) < 4 * 1.2533 * ratio.std() / math.sqrt(len(ratio))
    # a noise scale far above the big batch cannot be measured: NaN, not a negative number
    extreme = gradient_noise_scale(
        {
            "batch_size_small": [1e3],
            "batch_size_big": [1e4],
            "grad_norm_sq_small": [1.0],
            "grad_norm_sq_big": [1.2],
        }
    )
    assert np.isnan(extreme["noise_scale"]).all()
    with pytest.raises(DataError, match="batch_size_small must be < batch_size_big; row 1"):
        gradient_noise_scale(measured.assign(batch_size_small=[1e3, 2e6] + [1e3] * 198))
    with pytest.raises(DataError, match=r"\['grad_norm_sq_big'\]"):
        gradient_noise_scale(measured.drop(columns="grad_norm_sq_big"))
    with pytest.raises(DataError, match=r"'grad_norm_sq_small'.*row 0"):
        gradient_noise_scale(measured.assign(grad_norm_sq_small=0.0))


@pytest.mark.parametrize("function", [fit_batch_scan, fit_critical_batch_size])
def test_old_fit_keywords_warn_with_the_new_spelling(function):
    """Each 0.1 fit keyword maps onto the workflow's own defaults (a normal likelihood) and
    warns with that spelling (checked before any fit: the call then fails on its
    arguments); giving both spellings is a TypeError."""
    name = function.__name__
    if function is fit_batch_scan:
        args, kwargs = (simulate_batch_scan(n_params=3e6, seed=12), [4.0]), {"min_runs": 2}
    else:
        args, kwargs = (_synthetic_draws(0.1, seed=0),), {"method": "mean"}
    for (key, value), new in (
        (("likelihood", "student_t"), "model=Model(discrepancy=None, likelihood='student_t')"),
        (("priors", {"alpha": "normal(0, 1)"}),
         "model=Model(likelihood='normal', discrepancy=None, priors={'alpha': 'normal(0, 1)'})"),
        (("num_chains", 2), "inference=NUTS(num_chains=2)"),
    ):  # fmt: skip
        message = f"{name}({key}={value!r}) is deprecated; use {name}(..., {new})"
        with pytest.warns(DeprecationWarning, match=re.escape(message)):
            with pytest.raises(DataError):
                function(*args, **kwargs, **{key: value})
    with pytest.raises(TypeError, match="both model= and"):
        function(*args, model=Model(), likelihood="normal", **kwargs)
    with pytest.raises(TypeError, match="both inference= and"):
        function(*args, inference=NUTS(), num_chains=2, **kwargs)
