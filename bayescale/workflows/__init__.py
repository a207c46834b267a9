"""The seed analyses, each a thin layer over :func:`bayescale.fit` / :func:`bayescale.fit_batch`.

* :mod:`~bayescale.workflows.propagate` — carry a first fit's posterior into a second fit
  (pooled multiple imputation, all imputations in one batched call);
* :mod:`~bayescale.workflows.frontier` — the C_min and S_min adjustments with B_crit's
  posterior propagated, and the compute-efficient frontier N_opt, S_min, B, D vs C_min
  (seed chart 002);
* :mod:`~bayescale.workflows.isoflop` — isoFLOP profiles: a parabola per budget, its vertex
  N*(C) per draw, then N* ∝ C^a with the vertices' uncertainty carried (Porian et al. 2024);
* :mod:`~bayescale.workflows.loss_n_steps` — L(N, S_min) and the families of loss-vs-N curves
  at fixed steps and at fixed compute (seed chart 003);
* :mod:`~bayescale.workflows.per_token` — per-token loss a + b·T^-c for every model size in one
  batched call and the trends of a, b, c in N (seed chart 004).
"""

from bayescale.workflows import (  # noqa: F401
    frontier,
    isoflop,
    loss_n_steps,
    per_token,
    propagate,
)
