"""The seed analyses of Kaplan et al. (2020), each a thin layer over ``fit`` / ``fit_batch``.

* :mod:`~bayescale.workflows.batch_scan` — batch-size scans -> posteriors of
  :math:`S_{\\min}`, :math:`E_{\\min}` and :math:`B_{\\rm crit} = E_{\\min}/S_{\\min}` per
  target loss (seed chart 001).
* :mod:`~bayescale.workflows.bcrit` — the critical batch size law
  :math:`B_{\\rm crit}(L) = B_* L^{-1/\\alpha_B}` fitted to those per-level posteriors, and the
  gradient noise scale :math:`B_{\\rm simple}` (seed chart 000).
"""

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
    "gradient_noise_scale",
    "steps_to_target",
]
