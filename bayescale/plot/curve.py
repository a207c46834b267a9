"""Data with posterior bands of the law and of a new run, and the extrapolation."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np

from bayescale.plot.marks import (
    axis_label,
    mark_data_end,
    plain_log_ticks,
    root_figure,
    set_title,
)
from bayescale.result import Result, quantile_column

__all__ = ["BAND_NAMES", "LINE_WIDTH", "bands"]

_SLICE_QUANTILES = (0.1, 0.5, 0.9)
#: What :func:`bands` draws for each ``kind``.
BAND_NAMES = {"observation": "predictive band of a new run", "mean": "credible band of the law"}
#: Line width of the posterior median (points); a band narrower than this cannot be seen.
LINE_WIDTH = 1.8


def _slice_values(values: np.ndarray, slices) -> np.ndarray:
    """Values of the slicing covariate: ``slices`` data quantiles, or the values given."""
    if isinstance(slices, Integral) and not isinstance(slices, bool):
        if slices < 1:
            raise ValueError(f"slices must be >= 1 or a sequence of values, got {slices}")
        qs = [0.5] if slices == 1 else (_SLICE_QUANTILES if slices == 3 else None)
        if qs is None:
            qs = np.linspace(0.1, 0.9, int(slices))
        # quantiles in log space: the covariates span decades
        return np.exp(np.quantile(np.log(values), qs))
    out = np.asarray(slices, dtype=float).ravel()
    if out.size == 0 or not np.all(np.isfinite(out) & (out > 0)):
        raise ValueError(f"slice values must be finite and > 0, got {list(np.ravel(slices))}")
    return out


def _grid(lo: float, hi: float, extend: float, num: int) -> np.ndarray:
    """Log-spaced grid over ``[lo, hi * 10**extend]`` that contains ``hi`` exactly."""
    a, b = np.log10(lo), np.log10(hi)
    if extend <= 0:
        return np.logspace(a, b, num)
    span = max(b - a, 1e-12)
    n_in = int(np.clip(round(num * span / (span + extend)), 2, num - 1))
    inside = np.logspace(a, b, n_in)
    outside = np.logspace(b, b + extend, num - n_in + 1)[1:]
    inside[-1] = hi
    return np.concatenate([inside, outside])


def bands(
    result: Result,
    *,
    x: str | None = None,
    ax=None,
    extend: float = 1.0,
    num: int = 200,
    quantiles: Sequence[tuple[float, float]] | None = None,
    kind: str = "both",
    slices: int | Sequence[float] = 3,
):
    """Data, posterior median and posterior bands on log–log axes.

    Two kinds of band (:meth:`Result.predict`): the *predictive band of a new run*
    (``kind="observation"``: what a new run would measure, noise included; the band the
    data points should fall in) and the *credible band of the law* (``kind="mean"``: the
    law :math:`f(x;\\theta)` itself; narrower without a discrepancy, while under the default
    discrepancy the law and :math:`\\delta` trade off inside the data and the new run's band,
    which holds both, follows the data).  The default ``"both"`` draws the two,
    labelled in the legend.  A band narrower than the median's line cannot be seen: a
    note on the axes says so.

    The curve runs over the observed range of covariate ``x`` and ``extend`` decades beyond
    its largest observed value, which is marked by a dashed line ("end of data"); the
    extrapolated region is shaded and the median is dashed there.  Axes are labelled with
    the data columns the law's variables were fitted from (and the law's units); one curve
    of a ``by=`` fit is named in the title; a fit that did not converge gets a red title
    with its r-hat, ESS and divergences, and a red frame.

    With two or more covariates one curve and its bands are drawn per *slice*: the second
    covariate fixed at its data quantiles (10%, 50%, 90% in log space by default) and any
    further covariate at its data median; the data points are coloured by the second
    covariate on the same colour scale as the slices.

    Parameters
    ----------
    result : Result
        Of one fit (one curve of a ``by=`` fit: ``result[label]``).
    x : str, optional
        Covariate on the horizontal axis (default: the law's first covariate).
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is made by default.
    extend : float
        Decades to extrapolate beyond the largest observed ``x`` (0: none).
    num : int
        Points of the curve.
    quantiles : sequence of (low, high), optional
        Quantile pairs of the bands, e.g. ``((0.05, 0.95), (0.25, 0.75))`` for 90% and 50%
        (the default for one kind; ``((0.05, 0.95),)`` for ``"both"``).
    kind : {"both", "observation", "mean"}
    slices : int or sequence of float
        Number of slices (data quantiles spread over 10%..90%) or the values of the second
        covariate to slice at.  Ignored for one-covariate laws.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib import colors
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory, offset_copy

    law = result.law
    covariates = law.covariates
    x = covariates[0] if x is None else x
    if x not in covariates:
        raise ValueError(
            f"x={x!r} is not a covariate of law {law.id!r} (its covariates: "
            f"{', '.join(covariates)})"
        )
    if kind not in ("both", *BAND_NAMES):
        raise ValueError(f"kind must be 'both', 'observation' or 'mean', got {kind!r}")
    kinds = list(BAND_NAMES) if kind == "both" else [kind]
    if quantiles is None:
        quantiles = ((0.05, 0.95),) if kind == "both" else ((0.05, 0.95), (0.25, 0.75))
    if not np.isfinite(extend) or extend < 0:
        raise ValueError(f"extend must be a number of decades >= 0, got {extend!r}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    pairs = [(float(lo), float(hi)) for lo, hi in quantiles]
    for lo, hi in pairs:
        if not 0 < lo < hi < 1:
            raise ValueError(f"each band must be a pair 0 < low < high < 1, got ({lo}, {hi})")
    pairs.sort(key=lambda p: p[0] - p[1])  # widest first: drawn underneath
    qs = sorted({0.5, *(q for p in pairs for q in p)})

    tree = result.datatree_of()  # one fit's data, without the fit dimension
    observed = {c: np.asarray(tree.constant_data[c].values) for c in covariates}
    y_obs = np.asarray(tree.observed_data[law.response].values)
    x_obs = observed[x]
    x_lo, x_hi = float(x_obs.min()), float(x_obs.max())
    grid = _grid(x_lo, x_hi, float(extend), int(num))

    others = [c for c in covariates if c != x]
    slice_by = others[0] if others else None
    fixed = {c: float(np.exp(np.median(np.log(observed[c])))) for c in others[1:]}
    slice_values = _slice_values(observed[slice_by], slices) if slice_by else np.array([np.nan])

    new = {x: np.tile(grid, len(slice_values))}
    if slice_by:
        new[slice_by] = np.repeat(slice_values, len(grid))
    for c, v in fixed.items():
        new[c] = np.full(len(new[x]), v)
    # predict() stores its draws in the DataTree; predict on a shallow copy so that
    # plotting leaves the result's own ``predictions`` group untouched.
    scratch = Result(
        result.datatree.copy(deep=False), law, result.likelihood, result.columns, result.by
    )
    tables = {k: scratch.predict(new, quantiles=qs, kind=k) for k in kinds}

    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 4.8), layout="constrained")
    ax.set_xscale("log")
    ax.set_yscale("log")

    if slice_by:
        cmap = colors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.85, 256)))
        all_slice = np.concatenate([observed[slice_by], slice_values])
        norm = colors.LogNorm(vmin=all_slice.min(), vmax=all_slice.max())
        slice_colors = [cmap(norm(v)) for v in slice_values]
        points = ax.scatter(
            x_obs,
            y_obs,
            c=observed[slice_by],
            cmap=cmap,
            norm=norm,
            s=18,
            edgecolors="white",
            linewidths=0.4,
            zorder=3,
        )
        cbar = ax.figure.colorbar(points, ax=ax, pad=0.01)
        cbar.set_label(axis_label(result, slice_by))
    else:
        slice_colors = ["C0"]
        ax.scatter(x_obs, y_obs, color="k", s=14, zorder=3, label="data")

    # a lighter predictive band under a darker credible band; each kind's pairs graded
    if kind == "both":
        alphas = {"observation": np.linspace(0.18, 0.25, len(pairs)), "mean": [0.45] * len(pairs)}
    else:
        alphas = {kind: np.linspace(0.15, 0.35, len(pairs)) if len(pairs) > 1 else [0.25]}
    inside = grid <= x_hi
    outside = grid >= x_hi
    median_table = tables["mean" if "mean" in tables else kind]
    widths = {}  # (kind, pair) -> (slice, grid) log10 widths, for the visibility note
    handles = []
    for i, (value, color) in enumerate(zip(slice_values, slice_colors, strict=True)):
        rows_of = {k: t.iloc[i * len(grid) : (i + 1) * len(grid)] for k, t in tables.items()}
        for k in kinds:
            for (lo, hi), alpha in zip(pairs, alphas[k], strict=True):
                low = rows_of[k][quantile_column(lo)].to_numpy()
                high = rows_of[k][quantile_column(hi)].to_numpy()
                ax.fill_between(
                    grid,
                    low,
                    high,
                    color=color,
                    alpha=alpha,
                    linewidth=0,
                    zorder=1,
                )
                widths.setdefault((k, (lo, hi)), []).append(np.log10(high / low))
        rows = median_table.iloc[i * len(grid) : (i + 1) * len(grid)]
        median = rows[quantile_column(0.5)].to_numpy()
        ax.plot(grid[inside], median[inside], color=color, lw=LINE_WIDTH, zorder=2)
        if outside.sum() > 1:
            ax.plot(grid[outside], median[outside], color=color, lw=LINE_WIDTH, ls="--", zorder=2)
        if slice_by:
            handles.append(
                Line2D([], [], color=color, lw=LINE_WIDTH, label=f"{slice_by} = {value:.3g}")
            )

    which = "law" if "mean" in tables else "new run"
    if slice_by:
        handles.append(Line2D([], [], ls="none", marker="o", color="0.4", label="data"))
    else:
        handles = [
            Line2D([], [], ls="none", marker="o", color="k", markersize=4, label="data"),
            Line2D([], [], color="C0", lw=LINE_WIDTH, label=f"posterior median of the {which}"),
        ]
    base = slice_colors[0] if not slice_by else "0.45"
    for k in kinds:
        for (lo, hi), alpha in zip(pairs, alphas[k], strict=True):
            handles.append(
                Patch(color=base, alpha=alpha, label=f"{100 * (hi - lo):g}% {BAND_NAMES[k]}")
            )

    mark_data_end(ax, x_hi, side="right" if extend > 0 else "left")
    if extend > 0:
        ax.axvspan(x_hi, grid[-1], color="0.5", alpha=0.1, linewidth=0, zorder=0)
        ax.text(
            x_hi,
            0.98,
            f"extrapolation\n(+{extend:g} dec)",
            transform=offset_copy(
                blended_transform_factory(ax.transData, ax.transAxes),
                ax.figure,
                x=16,
                y=0,
                units="points",
            ),
            ha="left",
            va="top",
            fontsize="small",
            color="0.25",
        )
    plain_log_ticks(ax)
    ax.set_xlim(grid[0] / 10 ** (0.02 * np.log10(grid[-1] / grid[0])), grid[-1])
    ax.set_xlabel(axis_label(result, x))
    ax.set_ylabel(axis_label(result, law.response))
    title = law.title
    if fixed:
        title += "\n" + ", ".join(f"{c} = {v:.3g}" for c, v in fixed.items()) + " (data median)"
    set_title(ax, result, title)
    # the legend goes where the data leave room, left of the end of the data and its labels
    lo, hi = np.log10(ax.get_xlim())
    inside_width = (np.log10(x_hi) - lo) / (hi - lo) if extend > 0 else 1.0
    ax.legend(
        handles=handles,
        fontsize="small",
        loc="best",
        framealpha=0.8,
        bbox_to_anchor=(0.0, 0.0, inside_width, 1.0),
    )
    _note_invisible_bands(ax, widths, result.method)
    return ax


def _note_invisible_bands(ax, widths: dict, method: str) -> None:
    """Write under the axes which bands are narrower than the median's line everywhere (their
    widest point, in points, below :data:`LINE_WIDTH`): drawn, but not visible."""
    fig = root_figure(ax)
    fig.draw_without_rendering()  # final limits and layout
    lo, hi = np.log10(ax.get_ylim())
    height = ax.get_window_extent().height * 72.0 / fig.dpi  # points
    lines = []
    for (k, (q_lo, q_hi)), w in widths.items():
        widest = float(np.nanmax(w)) / (hi - lo) * height
        if widest < LINE_WIDTH:
            lines.append(
                f"the {100 * (q_hi - q_lo):g}% {BAND_NAMES[k]} is narrower than the line "
                f"(at most {widest:.2g} pt wide): not visible"
            )
    if lines and method == "map":
        lines.append("(a MAP fit is one draw: no posterior spread)")
    if lines:
        ax.text(
            0.5,
            -0.14,
            "\n".join(lines),
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize="small",
            color="0.15",
            bbox={"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "0.6"},
            zorder=5,
        )
