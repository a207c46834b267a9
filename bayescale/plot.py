"""Plots of a fit: data with posterior bands (and the extrapolation), corner and forest plots.

Matplotlib is imported only when a function is called, and nothing here calls ``show``, so
the module works under the non-interactive ``Agg`` backend (scripts, CI, the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import xarray as xr

from bayescale.result import Result, quantile_column

__all__ = [
    "axis_label",
    "bands",
    "corner",
    "forest",
    "frontier",
    "mark_data_end",
    "root_figure",
    "save_figure",
    "set_title",
    "status_text",
]

#: The figure formats :func:`save_figure` writes, chosen by the file suffix.
FIGURE_SUFFIXES = (".png", ".pdf")
_SLICE_QUANTILES = (0.1, 0.5, 0.9)


def _label(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


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


#: What :func:`bands` draws for each ``kind``.
BAND_NAMES = {"observation": "predictive band of a new run", "mean": "credible band of the law"}
#: Line width of the posterior median (points); a band narrower than this cannot be seen.
LINE_WIDTH = 1.8


def axis_label(result: Result, variable: str) -> str:
    """The data column a law variable was fitted from, with the law's unit: ``"Model Size
    [parameters]"``."""
    return _label(str(result.columns.get(variable, variable)), result.law.units.get(variable, ""))


def mark_data_end(ax, x_end: float, text: str = "end of data") -> None:
    """A dashed vertical line at ``x_end`` (the largest fitted value of the horizontal axis's
    quantity), labelled ``text`` along it."""
    from matplotlib.transforms import blended_transform_factory

    ax.axvline(x_end, color="0.3", ls="--", lw=1.0, zorder=1)
    ax.text(
        x_end,
        0.98,
        text + " ",
        transform=blended_transform_factory(ax.transData, ax.transAxes),
        rotation=90,
        ha="right",
        va="top",
        fontsize="small",
        color="0.25",
    )


def status_text(result: Result) -> str:
    """``""`` for a converged fit (or draws without a sampler's record); otherwise a line
    naming its status and numbers."""
    if result.method == "nuts" and "sample_stats" not in result.datatree.children:
        return ""
    d = result.diagnostics.iloc[0]
    if d["status"] == "converged":
        return ""
    if result.method != "nuts":
        return f"{result.method} fit failed: {d['reason']}"
    ess = min(d["min_ess_bulk"], d["min_ess_tail"])
    return (
        f"NOT CONVERGED ({d['status']}): r-hat {d['max_rhat']:.3f}, ESS {ess:.0f}, "
        f"{d['num_divergent']} divergent" + (f"; {d['reason']}" if d["reason"] else "")
    )


def set_title(ax, result: Result, title: str) -> None:
    """Title ``title``, preceded by the fit's label for one curve of a ``by=`` fit; a fit
    that did not converge gets a red title with its numbers (:func:`status_text`) and a red
    frame."""
    if result.by is not None:
        title = f"{result.dim} = {result.labels[0]}: {title}"
    warning = status_text(result)
    if warning:
        title = f"{warning}\n{title}"
        for spine in ax.spines.values():
            spine.set_edgecolor("red")
            spine.set_linewidth(2.0)
    ax.set_title(title, fontsize="medium", color="red" if warning else "black")


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
    law :math:`f(x;\\theta)` itself, narrower).  The default ``"both"`` draws the two,
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
    from matplotlib.transforms import blended_transform_factory

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

    mark_data_end(ax, x_hi)
    if extend > 0:
        ax.axvspan(x_hi, grid[-1], color="0.5", alpha=0.1, linewidth=0, zorder=0)
        ax.text(
            x_hi * 10 ** (0.02 * (np.log10(grid[-1]) - np.log10(grid[0]))),
            0.97,
            f"extrapolation\n(+{extend:g} dec)",
            transform=blended_transform_factory(ax.transData, ax.transAxes),
            ha="left",
            va="top",
            fontsize="small",
            color="0.25",
        )
    _plain_log_ticks(ax)
    ax.set_xlim(grid[0] / 10 ** (0.02 * np.log10(grid[-1] / grid[0])), grid[-1])
    ax.set_xlabel(axis_label(result, x))
    ax.set_ylabel(axis_label(result, law.response))
    title = law.title
    if fixed:
        title += "\n" + ", ".join(f"{c} = {v:.3g}" for c, v in fixed.items()) + " (data median)"
    set_title(ax, result, title)
    ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.8)
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


def _plain_log_ticks(ax) -> None:
    """Label a log y-axis spanning at most a decade with plain numbers (2, 3, 4 ...).

    Matplotlib's default would write ``2 x 10^0``; a loss axis usually spans less than a
    decade, where plain labels read better.
    """
    from matplotlib.ticker import LogFormatter

    lo, hi = ax.get_ylim()
    if 0 < lo and hi / lo <= 10 and lo >= 1e-2 and hi <= 1e4:
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _var_names(result: Result, var_names) -> list[str]:
    names = list(result.law.parameter_names) if var_names is None else list(var_names)
    unknown = [n for n in names if n not in result.datatree.posterior]
    if unknown:
        raise ValueError(
            f"unknown variable(s) {unknown}; the posterior has {', '.join(result.parameter_names)}"
        )
    if not names:
        raise ValueError("var_names is empty")
    return names


def _log10_tree(result: Result, names: list[str], log10) -> tuple[xr.DataTree, list[str]]:
    """A DataTree whose posterior holds ``names``, positive ones as ``log10(name)`` if asked.

    ``log10``: True (every positive variable), False (none), None (those whose draws span
    more than a decade or whose median lies outside [1e-3, 1e3]) or a list of names.
    """
    one = result.datatree_of()
    post = one.posterior.dataset
    out, labels = {}, []
    for n in names:
        da = post[n]
        positive = bool((da > 0).all())
        if log10 is None:
            median = float(da.median()) if positive else 0.0
            use = positive and (float(da.max() / da.min()) > 10.0 or not 1e-3 <= median <= 1e3)
        elif isinstance(log10, bool):
            use = log10 and positive
        else:
            use = n in log10
            if use and not positive:
                raise ValueError(f"cannot take log10 of {n!r}: it has draws <= 0")
        label = f"log10({n})" if use else n
        out[label] = np.log10(da) if use else da
        labels.append(label)
    tree = {"posterior": xr.Dataset(out, attrs=post.attrs)}
    if "sample_stats" in one.children:
        tree["sample_stats"] = one.sample_stats.to_dataset()
    return xr.DataTree.from_dict(tree), labels


def corner(result: Result, *, var_names: Sequence[str] | None = None, log10=None):
    """Corner (pair) plot of the posterior: marginal densities on the diagonal, draws below.

    Drawn with :func:`arviz_plots.plot_pair` (divergent transitions highlighted).

    Parameters
    ----------
    result : Result
        Of one fit (one curve of a ``by=`` fit: ``result[label]``).
    var_names : sequence of str, optional
        Variables to show (default: the law's parameters; add ``"sigma"``/``"nu"`` to see
        the noise model).
    log10 : bool, sequence of str or None
        Show ``log10`` of positive variables: ``None`` (default) for those whose draws span
        more than a decade or whose median lies outside [1e-3, 1e3] (scale parameters such
        as ``A`` or ``N_c``), ``True`` for all, ``False`` for none, or the names listed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz_plots as azp
    from arviz_base import rc_context

    names = _var_names(result, var_names)
    dt, labels = _log10_tree(result, names, log10)
    n = len(labels)
    side = min(1.8 * n + 1.0, 16.0)
    with rc_context({"plot.max_subplots": max(40, n * n)}):
        pc = azp.plot_pair(
            dt,
            var_names=labels,
            backend="matplotlib",
            marginal=True,
            figure_kwargs={"figsize": (side, side)},
        )
    return pc.viz["figure"].item()


def forest(result: Result, *, var_names: Sequence[str] | None = None, log10=True):
    """Forest plot: posterior median with 50% and 94% (arviz default) intervals per variable.

    Drawn with :func:`arviz_plots.plot_forest`, chains combined.  Scaling-law parameters
    span many orders of magnitude (``N_c`` ~ 1e13 next to ``alpha`` ~ 0.1), so by default
    positive variables are shown as ``log10`` on the shared axis.

    Parameters
    ----------
    result : Result
        Of one fit (one curve of a ``by=`` fit: ``result[label]``).
    var_names : sequence of str, optional
        Variables to show (default: the law's parameters).
    log10 : bool, sequence of str or None
        As in :func:`corner`, but defaulting to ``True`` (every positive variable).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz_plots as azp

    names = _var_names(result, var_names)
    dt, labels = _log10_tree(result, names, log10)
    pc = azp.plot_forest(
        dt,
        var_names=labels,
        backend="matplotlib",
        combined=True,
        figure_kwargs={"figsize": (7.0, 0.5 * len(labels) + 1.2)},
    )
    return pc.viz["figure"].item()


def frontier(
    result: Result,
    flops=None,
    *,
    quantities: Sequence[str] = ("n_params", "n_tokens"),
    prob: float = 0.9,
    references: dict | None = None,
    ax=None,
    **allocation_kwargs,
):
    """The compute-optimal frontier with posterior bands: :math:`N_{opt}(C)`, :math:`D_{opt}(C)`.

    The largest fitted budget :math:`6ND` is marked by a dashed line ("end of data"); to
    its right the frontier is an extrapolation.  Quantities are named by the data columns
    they were fitted from; a fit that did not converge is marked as in :func:`bands`.

    Parameters
    ----------
    result : Result
        Of one fit (one curve of a ``by=`` fit: ``result[label]``).
        A fit of a law of ``n_params`` and ``n_tokens`` (see :func:`bayescale.plan.allocate`).
    flops : sequence of float, optional
        Budgets (FLOP); default 40 log-spaced budgets from the smallest fitted run's
        :math:`6ND` to 1e4 times the largest.
    quantities : sequence of str
        Allocation quantities drawn (keys of :func:`bayescale.plan.allocation_draws`).
    prob : float
        Probability of the central band (the median is drawn as a line).
    references : dict, optional
        ``{label: {"flops": C, "n_params": N, ...}}`` point answers to mark (e.g. Hoffmann's).
    ax : matplotlib Axes, optional
    **allocation_kwargs
        Passed to :func:`bayescale.plan.allocation_draws` (``flops_formula``, ``bcrit``).

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    from bayescale.plan import allocation_draws

    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    tree = result.datatree_of()
    const = tree.constant_data if "constant_data" in tree.children else {}
    fitted = None
    if {"n_params", "n_tokens"} <= set(const):
        fitted = 6.0 * const["n_params"].values * const["n_tokens"].values
    if flops is None:
        if fitted is None:
            raise ValueError(
                f"frontier needs a law of n_params and n_tokens; got {result.law.id!r}"
            )
        flops = np.geomspace(np.nanmin(fitted), np.nanmax(fitted) * 1e4, 40)
    flops = np.asarray(flops, dtype=float)
    draws = allocation_draws(result, flops, **allocation_kwargs)
    unknown = [q for q in quantities if q not in draws]
    if unknown:
        raise ValueError(f"unknown allocation quantities {unknown}; choose from {list(draws)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    for i, name in enumerate(quantities):
        flat = draws[name].reshape(-1, flops.size)
        lo, med, hi = np.quantile(flat, [lo_q, 0.5, hi_q], axis=0)
        color = f"C{i}"
        label = result.columns.get(name, name)
        ax.fill_between(flops, lo, hi, color=color, alpha=0.25, lw=0)
        ax.plot(flops, med, color=color, label=f"{label} (median, {prob:.0%} band)")
    for j, (label, ref) in enumerate((references or {}).items()):
        for i, name in enumerate(quantities):
            if name in ref:
                ax.plot(
                    ref["flops"],
                    ref[name],
                    ls="none",
                    marker="osD^v"[j % 5],
                    color=f"C{i}",
                    mec="k",
                    label=f"{label}: {name}",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if fitted is not None:  # a result of draws only has no data to mark
        mark_data_end(ax, float(np.nanmax(fitted)), "end of data (largest 6ND fitted)")
    ax.set_xlabel("compute budget C [FLOP]")
    ax.set_ylabel("compute-optimal value")
    set_title(ax, result, f"compute-optimal frontier, law {result.law.id}")
    ax.legend(fontsize="small", loc="best", framealpha=0.8)
    return ax


def root_figure(artist):
    """The top-level Figure of an Axes, SubFigure or Figure (matplotlib >= 3.9)."""
    try:
        return artist.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: no ``root``; walk up the subfigures
        fig = artist.get_figure() or artist
        while getattr(fig, "get_figure", None) and fig.get_figure() not in (None, fig):
            fig = fig.get_figure()
        return fig


def save_figure(fig_or_ax, path: str | Path) -> Path:
    """Write a figure (or the figure of an Axes) as PNG or PDF, chosen by the suffix.

    Parent folders are created.  Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ValueError(
            f"cannot save a figure as {str(path)!r}: the file name must end in "
            f"{' or '.join(FIGURE_SUFFIXES)}"
        )
    fig = fig_or_ax
    if hasattr(fig, "viz"):  # arviz_plots PlotCollection / PlotMatrix
        fig = fig.viz["figure"].item()
    if hasattr(fig, "get_figure"):  # Axes, or a SubFigure: save the whole figure
        fig = root_figure(fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"expected a matplotlib Figure or Axes, got {type(fig_or_ax).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=suffix[1:], dpi=150 if suffix == ".png" else None)
    return path
