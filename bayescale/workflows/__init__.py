"""The seed analyses of Kaplan et al. (2020), each a thin layer over ``fit``.

* :mod:`~bayescale.workflows.batch_scan` — batch-size scans -> posteriors of
  :math:`S_{\\min}`, :math:`E_{\\min}` and :math:`B_{\\rm crit} = E_{\\min}/S_{\\min}` per
  target loss (seed chart 001).
* :mod:`~bayescale.workflows.bcrit` — the critical batch size law
  :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}` fitted to those per-level posteriors, and the
  gradient noise scale :math:`B_{\\rm simple}` (seed chart 000).
* :mod:`~bayescale.workflows.propagate` — carry a first fit's posterior into a second fit
  (pooled multiple imputation, all imputations in one batched call).
* :mod:`~bayescale.workflows.frontier` — the C_min and S_min adjustments with B_crit's
  posterior propagated, and the compute-efficient frontier N_opt, S_min, B, D vs C_min
  (seed chart 002).
* :mod:`~bayescale.workflows.isoflop` — isoFLOP profiles: a parabola per budget, its vertex
  N*(C) per draw, then N* ∝ C^a with the vertices' uncertainty carried (Porian et al. 2024).
* :mod:`~bayescale.workflows.loss_n_steps` — L(N, S_min) and the families of loss-vs-N curves
  at fixed steps and at fixed compute (seed chart 003).
* :mod:`~bayescale.workflows.per_token` — per-token loss a + b·T^-c for every model size in
  one batched call and the trends of a, b, c in N (seed chart 004).

Each workflow's simulator (Kaplan et al.'s raw runs are not public) lives beside it:
:mod:`~bayescale.workflows.batch_scan_sim` (batch-size scans and gradient norms, for
``batch_scan`` and ``bcrit``), :func:`~bayescale.workflows.per_token.simulate_per_token`,
:mod:`~bayescale.workflows.isoflop_sim`, :func:`~bayescale.workflows.frontier.simulate_frontier`.
"""

from bayescale.workflows import (
    frontier,
    isoflop,
    loss_n_steps,
    per_token,
    propagate,
)
from bayescale.workflows.batch_scan import BatchScanResult, fit_batch_scan, steps_to_target
from bayescale.workflows.bcrit import (
    CriticalBatchSizeResult,
    fit_critical_batch_size,
    gradient_noise_scale,
)

__all__ = [
    "BatchScanResult",
    "CriticalBatchSizeResult",
    "fit_batch_scan",
    "fit_critical_batch_size",
    "frontier",
    "gradient_noise_scale",
    "isoflop",
    "loss_n_steps",
    "per_token",
    "propagate",
    "steps_to_target",
]
