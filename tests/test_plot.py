"""bayescale.plot on tiny fits of a one- (kaplan_n) and a two-covariate law (chinchilla)."""

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import FIT_SETTINGS
from matplotlib.collections import PolyCollection

import bayescale
from bayescale import plot
from bayescale.result import Result
from bayescale.simulate import simulate

DATA = Path(__file__).parent / "data"

FIT = {"inference": bayescale.NUTS(**FIT_SETTINGS), "warn": False}  # the recovery fits' program


@pytest.fixture(scope="module")
def fit_1d():
    return bayescale.fit(simulate("kaplan_n", seed=0), "kaplan_n", seed=0, **FIT)


@pytest.fixture(scope="module")
def fit_2d():
    return bayescale.fit(simulate("chinchilla", seed=0), "chinchilla", seed=0, **FIT)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _data_end_marked(ax, x_end) -> bool:
    """A dashed vertical line at ``x_end`` and an "end of data" text beside it."""
    line = any(np.allclose(ln.get_xdata(), x_end) and ln.get_linestyle() == "--" for ln in ax.lines)
    text = any(
        t.get_text().startswith("end of data") and t.get_position()[0] == pytest.approx(x_end)
        for t in ax.texts
    )
    return line and text


def _band_widths(band) -> dict:
    """Log10 width of a fill_between band at each x of its outline (top - bottom)."""
    xy = band.get_paths()[0].vertices
    return {
        x: np.log10(xy[xy[:, 0] == x, 1].max()) - np.log10(xy[xy[:, 0] == x, 1].min())
        for x in np.unique(xy[:, 0])
    }


def _assert_image(path, magic):
    data = path.read_bytes()
    assert data.startswith(magic)
    assert len(data) > 5000


def test_bands_one_covariate(fit_1d, tmp_path):
    ax = plot.bands(fit_1d, extend=1.5)
    x_max = float(fit_1d.datatree.constant_data["n_params"].max())
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "n_params [parameters (non-embedding)]"
    assert ax.get_ylabel() == "loss [nats/token]"
    # 90% and 50% bands, plus the shaded extrapolated region
    assert len(_bands(ax)) == 2
    shaded = [p for p in ax.patches if p.get_x() == pytest.approx(x_max)]
    assert shaded and shaded[0].get_x() + shaded[0].get_width() == pytest.approx(x_max * 10**1.5)
    # the curve runs 1.5 decades past the data, and the boundary is marked there
    assert ax.get_xlim()[1] == pytest.approx(x_max * 10**1.5, rel=1e-9)
    vlines = [ln for ln in ax.lines if np.allclose(ln.get_xdata(), x_max)]
    assert vlines, "no vertical line at the largest observed covariate"
    assert any("extrapolation" in t.get_text() for t in ax.texts)
    # median: solid inside the data, dashed beyond it, joined at the data's maximum
    medians = [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
    assert {ln.get_linestyle() for ln in medians} == {"-", "--"}
    solid = next(ln for ln in medians if ln.get_linestyle() == "-")
    assert solid.get_xdata()[-1] == pytest.approx(x_max)
    # data points are all drawn
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == fit_1d.datatree.observed_data.sizes["point"]
    # the median follows the law: it decreases with model size for kaplan_n
    y = solid.get_ydata()
    assert np.all(np.diff(y) < 0)
    path = plot.save_figure(ax, tmp_path / "bands.png")
    _assert_image(path, b"\x89PNG")


def test_bands_do_not_touch_stored_predictions(fit_1d):
    fit_1d.predict({"n_params": [1e9, 1e10]})
    before = fit_1d.datatree["predictions"].to_dataset().copy(deep=True)
    plot.bands(fit_1d, num=50)
    after = fit_1d.datatree["predictions"].to_dataset()
    assert after.sizes["prediction_point"] == 2
    np.testing.assert_array_equal(after["loss"].values, before["loss"].values)


def test_bands_no_extrapolation_and_bad_arguments(fit_1d):
    ax = plot.bands(fit_1d, extend=0, quantiles=[(0.1, 0.9)], kind="mean")
    x_max = float(fit_1d.datatree.constant_data["n_params"].max())
    assert ax.get_xlim()[1] == pytest.approx(x_max)
    assert len(_bands(ax)) == 1
    assert not any("extrapolation" in t.get_text() for t in ax.texts)
    assert _data_end_marked(ax, x_max)  # the end of the data is marked all the same
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "80% credible band of the law"
    with pytest.raises(ValueError, match="kind"):
        plot.bands(fit_1d, kind="law")
    with pytest.raises(ValueError, match="n_tokens"):
        plot.bands(fit_1d, x="n_tokens")
    with pytest.raises(ValueError, match="extend"):
        plot.bands(fit_1d, extend=-1)
    with pytest.raises(ValueError, match="band"):
        plot.bands(fit_1d, quantiles=[(0.9, 0.1)])


def test_bands_two_covariates_one_curve_per_slice(fit_2d, tmp_path):
    ax = plot.bands(fit_2d, kind="observation")
    fig = ax.get_figure()
    tokens = fit_2d.datatree.constant_data["n_tokens"].values
    assert ax.get_xlabel() == "n_params [parameters]"
    # three slices x (90%, 50%) bands
    assert len(_bands(ax)) == 6
    medians = [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
    assert len(medians) == 6  # solid + dashed per slice
    # a colour bar for the slicing covariate, with its unit
    colorbar_axes = [a for a in fig.axes if a is not ax]
    assert len(colorbar_axes) == 1
    assert colorbar_axes[0].get_ylabel() == "n_tokens [tokens]"
    # slices at the 10/50/90% data quantiles (log space), named in the legend
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    expected = np.exp(np.quantile(np.log(tokens), [0.1, 0.5, 0.9]))
    for value in expected:
        assert f"n_tokens = {value:.3g}" in labels
    assert "90% predictive band of a new run" in labels
    assert not any("credible" in label for label in labels)
    # more tokens -> lower loss: the slice medians are ordered
    solid = [ln for ln in medians if ln.get_linestyle() == "-"]
    first_y = [ln.get_ydata()[0] for ln in solid]
    assert first_y[0] > first_y[1] > first_y[2]
    path = plot.save_figure(fig, tmp_path / "sub" / "bands2d.pdf")
    _assert_image(path, b"%PDF")


def test_bands_other_axis_and_explicit_slices(fit_2d):
    ax = plot.bands(fit_2d, x="n_tokens", slices=[1e8, 1e10], extend=0.5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "n_params = 1e+08" in labels and "n_params = 1e+10" in labels
    assert len(_bands(ax)) == 4
    assert ax.get_xlabel() == "n_tokens [tokens]"


def test_corner_and_forest(fit_2d, tmp_path):
    fig = plot.corner(fit_2d)
    visible = [a for a in fig.axes if a.get_visible() and a.axison]
    assert len(visible) == 5 * 6 // 2  # lower triangle and diagonal of 5 parameters
    xlabels = {a.get_xlabel() for a in fig.axes}
    assert "log10(A)" in xlabels and "alpha" in xlabels  # A spans decades, alpha does not
    _assert_image(plot.save_figure(fig, tmp_path / "corner.png"), b"\x89PNG")

    fig = plot.forest(fit_2d, var_names=["E", "alpha", "sigma"])
    texts = " ".join(t.get_text() for a in fig.axes for t in a.texts)
    assert "log10(E)" in texts and "log10(sigma)" in texts
    _assert_image(plot.save_figure(fig, tmp_path / "forest.png"), b"\x89PNG")

    with pytest.raises(ValueError, match="gamma"):
        plot.corner(fit_2d, var_names=["E", "gamma"])


def test_save_figure_rejects_unknown_suffix(fit_1d, tmp_path):
    ax = plot.bands(fit_1d, num=20)
    with pytest.raises(ValueError, match="jpg"):
        plot.save_figure(ax, tmp_path / "fig.jpg")


def test_bands_show_both_kinds_by_default(fit_1d):
    """The default draws the predictive band of a new run (where data fall) and the credible
    band of the law, both named in the legend; no invisibility note (both show).  Under the
    default discrepancy the law and delta trade off, so the law's band need not be the
    narrower; a new run's band widens beyond the data."""
    ax = plot.bands(fit_1d, extend=0.5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "data",
        "posterior median of the law",
        "90% predictive band of a new run",
        "90% credible band of the law",
    ]
    predictive, credible = map(_band_widths, _bands(ax))
    assert predictive.keys() == credible.keys()
    assert all(predictive[x] > 0 and credible[x] > 0 for x in predictive)
    end = fit_1d.datatree_of().constant_data["n_params"].values.max()
    inside = max(w for x, w in predictive.items() if x <= end)
    assert predictive[max(predictive)] > inside  # half a decade beyond the data
    assert not any("not visible" in t.get_text() for t in ax.texts)
    assert ax.get_title() == fit_1d.law.title and ax.title.get_color() == "black"
    assert _data_end_marked(ax, float(fit_1d.datatree.constant_data["n_params"].max()))


def test_batch_curve_named_with_the_users_columns_and_invisible_bands_noted():
    """One curve of a by= fit (MAP, bayescale 0.1's file): the user's column names on the
    axes, the curve's label in the title, and a note that its one-draw bands cannot be seen."""
    batch = bayescale.load(DATA / "batch-0.1.nc")
    batch = Result(
        batch.datatree, batch.law, batch.likelihood, {"x": "tokens seen", "y": "eval loss"}, "curve"
    )
    ax = plot.bands(batch["c1"])
    assert ax.get_xlabel() == "tokens seen" and ax.get_ylabel() == "eval loss"
    assert ax.get_title() == f"curve = c1: {batch.law.title}"
    note = next(t.get_text() for t in ax.texts if "not visible" in t.get_text())
    assert "the 90% predictive band of a new run is narrower than the line" in note
    assert "the 90% credible band of the law is narrower than the line" in note
    assert "MAP" in note
    x_max = np.nanmax(batch["c1"].datatree.constant_data["x"].values)
    assert _data_end_marked(ax, x_max)


def test_fit_that_did_not_converge_is_marked():
    """bayescale 0.1's 1 x 20-draw NUTS fit: r-hat 1.54, drawn with a red title giving its
    numbers and a red frame."""
    result = bayescale.load(DATA / "fit-0.1.nc")
    d = result.diagnostics.iloc[0]
    ax = plot.bands(result, num=30)
    first = ax.get_title().splitlines()[0]
    assert first == (
        f"NOT CONVERGED (high_rhat): r-hat {d['max_rhat']:.3f}, "
        f"ESS {min(d['min_ess_bulk'], d['min_ess_tail']):.0f}, 0 divergent"
    )
    assert "r-hat 1.539" in first
    assert ax.title.get_color() == "red"
    assert all(sp.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for sp in ax.spines.values())
    fig = plot.forest(result)
    assert fig.get_suptitle() == first


def test_frontier_marks_the_end_of_data(fit_2d):
    ax = plot.frontier(fit_2d)
    const = fit_2d.datatree.constant_data
    largest = float((6 * const["n_params"] * const["n_tokens"]).max())
    assert _data_end_marked(ax, largest)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["n_params (median, 90% band)", "n_tokens (median, 90% band)"]
    # the 2 x 500-draw test fit did not converge: marked as in bands
    assert ax.get_title().splitlines()[-1] == "compute-optimal frontier, law chinchilla"
    assert ax.get_title().startswith("NOT CONVERGED" if fit_2d.failed else "compute")
