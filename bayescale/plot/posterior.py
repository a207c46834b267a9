"""Plots of the posterior itself: corner and forest plots, the compute-optimal frontier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from bayescale.plot.marks import mark_data_end, set_title, status_text
from bayescale.result import Result

__all__ = ["corner", "forest", "frontier"]


def _var_names(result: Result, var_names) -> list[str]:
    names = list(result.law.parameter_names) if var_names is None else list(var_names)
    unknown = [n for n in names if n not in result.group("posterior")]
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


def _marked(fig, result: Result):
    """``fig`` with a red suptitle naming the numbers of a fit that did not converge
    (:func:`~bayescale.plot.marks.status_text`)."""
    warning = status_text(result)
    if warning:
        fig.suptitle(warning, color="red", fontsize="medium")
    return fig


def corner(result: Result, *, var_names: Sequence[str] | None = None, log10=None):
    """Corner (pair) plot of the posterior: marginal densities on the diagonal, draws below;
    a fit that did not converge gets a red suptitle with its numbers.

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
    return _marked(pc.viz["figure"].item(), result)


def forest(result: Result, *, var_names: Sequence[str] | None = None, log10=True):
    """Forest plot: posterior median with 50% and 94% (arviz default) intervals per variable;
    a fit that did not converge gets a red suptitle with its numbers.

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
    return _marked(pc.viz["figure"].item(), result)


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
