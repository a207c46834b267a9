"""What every plot of a fit carries: axis labels from the user's columns, the end of the
data, the fit's label and convergence in the title; and writing a figure to a file."""

from __future__ import annotations

from pathlib import Path

from bayescale.result import Result

__all__ = [
    "FIGURE_SUFFIXES",
    "axis_label",
    "mark_data_end",
    "plain_log_ticks",
    "root_figure",
    "save_figure",
    "set_title",
    "status_text",
    "unit_label",
]

#: The figure formats :func:`save_figure` writes, chosen by the file suffix.
FIGURE_SUFFIXES = (".png", ".pdf")


def unit_label(name: str, unit: str) -> str:
    """``"name [unit]"``, or ``name`` without a unit."""
    return f"{name} [{unit}]" if unit else name


def axis_label(result: Result, variable: str) -> str:
    """The data column a law variable was fitted from, with the law's unit: ``"Model Size
    [parameters]"``."""
    return unit_label(
        str(result.columns.get(variable, variable)), result.law.units.get(variable, "")
    )


def mark_data_end(ax, x_end: float, text: str = "end of data", *, side: str = "right") -> None:
    """A dashed vertical line at ``x_end`` (the largest fitted value of the horizontal axis's
    quantity), labelled ``text`` along it, on its ``side`` (``"right"``: inside the
    extrapolated region, ``"left"``)."""
    from matplotlib.transforms import blended_transform_factory, offset_copy

    ax.axvline(x_end, color="0.3", ls="--", lw=1.0, zorder=1)
    shift = 2.0 if side == "right" else -2.0
    ax.text(
        x_end,
        0.98,
        text,
        transform=offset_copy(
            blended_transform_factory(ax.transData, ax.transAxes),
            ax.figure,
            x=shift,
            y=0,
            units="points",
        ),
        rotation=90,
        ha="left" if side == "right" else "right",
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


def plain_log_ticks(ax) -> None:
    """Label a log y-axis spanning at most a decade with plain numbers (2, 3, 4 ...).

    Matplotlib's default would write ``2 x 10^0``; a loss axis usually spans less than a
    decade, where plain labels read better.
    """
    from matplotlib.ticker import LogFormatter

    lo, hi = ax.get_ylim()
    if 0 < lo and hi / lo <= 10 and lo >= 1e-2 and hi <= 1e4:
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


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
