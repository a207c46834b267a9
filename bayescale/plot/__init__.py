"""Plots of a fit: data with posterior bands (and the extrapolation), corner and forest
plots, the compute-optimal frontier.

Every plot of data marks where the data end, labels its axes with the data columns the
law's variables were fitted from, names the curve of a ``by=`` fit and marks a fit that
did not converge (:mod:`bayescale.plot.marks`).  Matplotlib is imported only when a function
is called, and nothing here calls ``show``, so the module works under the non-interactive
``Agg`` backend (scripts, CI, the CLI).
"""

from bayescale.plot.curve import BAND_NAMES, LINE_WIDTH, bands
from bayescale.plot.marks import (
    FIGURE_SUFFIXES,
    axis_label,
    mark_data_end,
    root_figure,
    save_figure,
    set_title,
    status_text,
)
from bayescale.plot.posterior import corner, forest, frontier

__all__ = [
    "BAND_NAMES",
    "FIGURE_SUFFIXES",
    "LINE_WIDTH",
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
