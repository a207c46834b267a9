"""check.calibration: coverage by level, MSCE, interval score, band width, reliability plot."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayescale
from bayescale import check
from bayescale.check.calibration import band_columns
from bayescale.check.scoring import BAND_LEVELS, BAND_QUANTILES
from bayescale.predict import quantile_column

N = 4000
CORPUS = Path(__file__).resolve().parents[1] / "bayescale" / "corpus"


def gaussian_predictions(sd_ratio: float, *, n: int = N, seed: int = 0) -> pd.DataFrame:
    """Log-normal observations around known medians; bands of a normal predictive whose
    scale is ``sd_ratio`` times the true one (1: calibrated)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.0, 2.0, n)
    sd = rng.uniform(0.05, 0.3, n)
    frame = pd.DataFrame({"observed": np.exp(mu + sd * rng.standard_normal(n))})
    frame["curve"] = np.where(np.arange(n) % 2, "odd", "even")
    for q in BAND_QUANTILES:
        frame[quantile_column(q)] = np.exp(mu + sd_ratio * sd * stats.norm.ppf(q))
    return frame


def test_calibrated_gaussian_covers_within_binomial_error():
    cal = check.calibration(gaussian_predictions(1.0))
    t = cal.table()
    assert list(t.index) == list(BAND_LEVELS)
    assert (t["num_points"] == N).all()
    # each level within 3.5 binomial standard errors of its nominal coverage
    assert (np.abs(t["gap"]) < 3.5 * t["se"]).all(), t
    # MSCE of a calibrated band: E = mean l(1-l)/n (~5e-5); 10x that bounds it (chi2_7 tail)
    assert cal.msce < 10 * np.mean([lv * (1 - lv) for lv in BAND_LEVELS]) / N
    assert t["coverage"].tolist() == pytest.approx((t["num_inside"] / N).tolist())


def test_too_narrow_gaussian_fails_and_interval_score_prefers_the_truth():
    narrow, right, wide = (check.calibration(gaussian_predictions(r)) for r in (0.5, 1.0, 2.0))
    t = narrow.table()
    # half the sd: the 90% band holds P(|z| < 0.82) ~ 0.59
    assert t.loc[0.9, "coverage"] == pytest.approx(2 * stats.norm.cdf(0.5 * 1.645) - 1, abs=0.03)
    assert (t["gap"] < -5 * t["se"]).all()
    assert narrow.msce > 0.03 > right.msce
    # the interval score is proper: the true predictive scores best at every level
    for lv in BAND_LEVELS:
        s = [c.table().loc[lv, "interval_score"] for c in (narrow, right, wide)]
        assert s[1] < s[0] and s[1] < s[2], (lv, s)
    # sharpness: the median width scales with the band's sd (2 z sd in log response)
    ratio = narrow.table()["median_width"] / right.table()["median_width"]
    assert ratio.to_numpy() == pytest.approx(0.5, rel=1e-9)


def test_interval_score_by_hand():
    frame = pd.DataFrame({"observed": [1.0, math.e**2, math.e**-1]})
    lo, hi = band_columns(0.8)
    assert (lo, hi) == ("q10", "q90")
    frame[lo], frame[hi] = 1 / math.e, math.e  # log band [-1, 1], width 2
    t = check.calibration(frame, levels=[0.8]).table()
    # inside: 2; above by 1: 2 + 2/0.2 * 1 = 12; on the edge: 2
    assert t.loc[0.8, "interval_score"] == pytest.approx((2 + 12 + 2) / 3)
    assert t.loc[0.8, "num_inside"] == 2
    assert t.loc[0.8, "median_width"] == pytest.approx(2.0)


def test_groups_and_bad_arguments():
    frame = gaussian_predictions(1.0, n=400)
    frame.loc[frame["curve"] == "even", "observed"] *= 30.0  # the even points all miss high
    cal = check.calibration(frame, by="curve")
    assert cal.groups == ["overall", "even", "odd"]
    assert (cal.table("even")["coverage"] == 0).all()
    assert cal.table("odd")["num_points"].eq(200).all()
    assert cal.msce_by_group()["even"] > 0.3
    assert "MSCE by group" in repr(cal)
    with pytest.raises(ValueError, match="no band for level"):
        check.calibration(frame, levels=[0.42])
    with pytest.raises(ValueError, match="levels"):
        check.calibration(frame, levels=[1.0])
    with pytest.raises(KeyError, match="source"):
        check.calibration(frame, by="source")
    with pytest.raises(KeyError, match="no group"):
        cal.table("nope")
    with pytest.raises(AttributeError):
        cal.by = ()  # frozen


def test_reliability_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cal = check.calibration(gaussian_predictions(0.5, n=400), by="curve")
    ax = cal.plot()
    line = ax.lines[1]  # the diagonal first, then the coverage
    assert line.get_xdata().tolist() == list(BAND_LEVELS)
    assert np.allclose(line.get_ydata(), cal.table()["coverage"])
    check.plot_reliability(cal, group="odd", ax=ax)
    ax.figure.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 0


def test_calibration_of_a_real_backtest():
    """Three PolyPythia 14m logs from the corpus, first 20% fitted (Laplace: cheap); the
    calibration's 50%/90% coverage is the backtest table's, and wider levels hold more."""
    frame = pd.read_csv(CORPUS / "polypythia.csv")
    frame = frame[frame["curve"].isin(["14m-seed1", "14m-seed2", "14m-seed3"])]
    bt = check.backtest(
        frame, "power_law_offset", by="curve", split=0.2, inference=bayescale.Laplace(), seed=0
    )
    cal = check.calibration(bt, by="curve")
    t = cal.table()
    overall = bt.table.loc["overall"]
    assert t.loc[0.5, "coverage"] == pytest.approx(overall["coverage_50"])
    assert t.loc[0.9, "coverage"] == pytest.approx(overall["coverage_90"])
    assert t["num_points"].eq(overall["num_held_out"]).all()
    assert t["coverage"].is_monotonic_increasing
    assert t["median_width"].is_monotonic_increasing
    assert cal.groups[1:] == ["14m-seed1", "14m-seed2", "14m-seed3"]
    for curve in cal.groups[1:]:
        assert cal.table(curve).loc[0.9, "coverage"] == pytest.approx(
            bt.table.loc[curve, "coverage_90"]
        )


def test_band_quantile_keeps_an_overflowed_tail_usable():
    """Draws of a heavy-tailed predictive that overflowed to inf: where NumPy's linear rule
    gives NaN (inf - inf), the band's end is the order statistic (inf), so a held-out point
    is still scored; finite quantiles are NumPy's own."""
    from bayescale.predict import band_quantile

    rng = np.random.default_rng(0)
    finite = rng.lognormal(size=(400, 3))
    heavy = finite.copy()
    heavy[-40:, 0] = np.inf  # 10% of point 0's draws overflowed
    for q in (0.05, 0.5, 0.95, 0.995):
        np.testing.assert_array_equal(band_quantile(finite, q), np.quantile(finite, q, axis=0))
        out = band_quantile(heavy, q)
        np.testing.assert_array_equal(out[1:], np.quantile(heavy[:, 1:], q, axis=0))
        assert not np.isnan(out).any()
    assert band_quantile(heavy, 0.995)[0] == np.inf
    assert band_quantile(heavy, 0.5)[0] == np.quantile(heavy[:, 0], 0.5)
    # NaN draws (padding) stay NaN: nothing is invented
    nan = finite.copy()
    nan[0, 1] = np.nan
    assert np.isnan(band_quantile(nan, 0.5)[1])
