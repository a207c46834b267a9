"""Loaders for the public scaling data the tests, benchmarks and notebooks use.

The files are not shipped with bayescale (see ``../shared/data/README.md`` for their
provenance and licences); each loader reads one from ``folder`` and applies the preparation
the published analyses used, in one place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.data import DataError, thin_log_spaced

__all__ = [
    "DATA_FOLDER",
    "PYTHIA_SCHEDULE",
    "chinchilla",
    "lr_schedule_areas",
    "polypythia",
    "pythia_lr_schedule",
]

DATA_FOLDER = Path("../shared/data")
POLYPYTHIA_FILE = "polypythia_train_lm_loss_every10steps.csv"
CHINCHILLA_FILE = "chinchilla_epoch_svg_extracted.csv"
INIT_LOSS_MIN = 9.0  # nats: a PolyPythia log starting below this did not start at initialisation
#: Pythia's learning-rate schedule (GPT-NeoX configs ``models/*/pythia-*.yml`` of
#: github.com/EleutherAI/pythia: ``train-iters`` = ``lr-decay-iters`` = 143000,
#: ``warmup`` = 0.01, ``lr-decay-style`` = cosine, ``min_lr`` = 0.1 x ``lr``).
PYTHIA_SCHEDULE = {"num_steps": 143_000, "warmup_fraction": 0.01, "min_lr_ratio": 0.1}
#: Tissue et al. (2024)'s decay factor of the annealing momentum.
ANNEALING_DECAY = 0.999


def _read(folder: str | Path | None, name: str) -> pd.DataFrame:
    path = Path(DATA_FOLDER if folder is None else folder) / name
    if not path.is_file():
        raise DataError(f"{path} is absent (the shared data folder; see its README.md)")
    return pd.read_csv(path)


def chinchilla(folder: str | Path | None = None) -> pd.DataFrame:
    """Epoch AI's extraction of Hoffmann et al. (2022) Fig. 4, prepared as Epoch did.

    The 5 highest-loss rows are dropped (240 remain) and ``n_tokens`` :math:`= C/(6N)` is
    added; columns ``Model Size`` (:math:`N`), ``Training FLOP`` (:math:`C`), ``loss``.
    Fit with ``columns={"n_params": "Model Size"}``.
    """
    df = _read(folder, CHINCHILLA_FILE)
    df = df.sort_values("loss").iloc[:-5].reset_index(drop=True)
    df["n_tokens"] = df["Training FLOP"] / (6 * df["Model Size"])
    return df


def pythia_lr_schedule(
    steps,
    *,
    num_steps: int = PYTHIA_SCHEDULE["num_steps"],
    warmup_fraction: float = PYTHIA_SCHEDULE["warmup_fraction"],
    min_lr_ratio: float = PYTHIA_SCHEDULE["min_lr_ratio"],
) -> np.ndarray:
    """Learning rate relative to its peak at each step, GPT-NeoX's warm-up + cosine schedule.

    With :math:`W` = ``warmup_fraction`` :math:`\\cdot T` warm-up steps (:math:`T` =
    ``num_steps``) and :math:`r` = ``min_lr_ratio``:

    .. math::

        \\eta_s = \\begin{cases} s / W & s < W \\\\
        r + \\tfrac{1 - r}{2}\\bigl(1 + \\cos(\\pi \\tfrac{s - W}{T - W})\\bigr)
        & W \\le s \\le T \\\\ r & s > T \\end{cases}

    Pythia's defaults (:data:`PYTHIA_SCHEDULE`): :math:`T = 143{,}000`, :math:`W = 1{,}430`,
    :math:`r = 0.1` (the configs in github.com/EleutherAI/pythia, ``models/``).

    Parameters
    ----------
    steps : array-like of int
        Optimizer steps :math:`s \\ge 0`.

    Returns
    -------
    ndarray
        :math:`\\eta_s / \\eta_{\\max}`, the same shape as ``steps``.
    """
    s = np.asarray(steps, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise DataError("pythia_lr_schedule: steps must be finite and >= 0")
    if not 0 <= warmup_fraction < 1 or not 0 <= min_lr_ratio <= 1 or num_steps < 1:
        raise ValueError(
            f"need num_steps >= 1, 0 <= warmup_fraction < 1, 0 <= min_lr_ratio <= 1; got "
            f"{num_steps}, {warmup_fraction}, {min_lr_ratio}"
        )
    warmup = warmup_fraction * num_steps
    progress = np.clip((s - warmup) / (num_steps - warmup), 0.0, 1.0)
    cosine = min_lr_ratio + 0.5 * (1 - min_lr_ratio) * (1 + np.cos(np.pi * progress))
    return np.where(s < warmup, s / max(warmup, 1.0), cosine)


def lr_schedule_areas(learning_rate, *, decay: float = ANNEALING_DECAY) -> pd.DataFrame:
    """Forward and annealing areas of a learning-rate schedule (Tissue et al. 2024).

    ``learning_rate[i]`` is :math:`\\eta_i`, the rate (relative to its peak) used at step
    :math:`i = 0, 1, \\dots`.  Row :math:`s` of the result holds

    .. math::

        S_1(s) = \\sum_{i=1}^{s} \\eta_i, \\qquad
        S_2(s) = \\sum_{i=1}^{s} m_i, \\quad
        m_i = \\lambda\\, m_{i-1} + (\\eta_{i-1} - \\eta_i)
        = \\sum_{k \\le i} (\\eta_{k-1} - \\eta_k)\\,\\lambda^{i-k},

    the covariates of the law with learning-rate annealing
    :math:`L(s) = E + A\\,S_1^{-\\alpha} - C\\,S_2` (Tissue et al. 2024, arXiv:2408.11029,
    eq. 1; ``models/lr_annealing.toml``), :math:`\\lambda` = ``decay`` (0.999 in the paper).
    :math:`S_1` is in steps at the peak rate.  The annealing momentum starts at the peak of the
    schedule (:math:`m_i = 0` up to it): the rising rate of a warm-up is not annealing, and
    counted it would make :math:`S_2 < 0` (a loss above the power law) during the warm-up.

    Parameters
    ----------
    learning_rate : array-like
        One rate per step from step 0, e.g. :func:`pythia_lr_schedule` ``(np.arange(T + 1))``.
    decay : float
        :math:`\\lambda \\in [0, 1)`.

    Returns
    -------
    DataFrame
        Columns ``lr_area`` (:math:`S_1`) and ``lr_annealing_area`` (:math:`S_2`), index the
        step.
    """
    from scipy.signal import lfilter

    eta = np.asarray(learning_rate, dtype=float)
    if eta.ndim != 1 or len(eta) < 2:
        raise DataError(f"learning_rate must be 1-D with >= 2 steps, got shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise DataError("learning_rate must be finite and >= 0 at every step")
    if not 0 <= decay < 1:
        raise ValueError(f"decay must lie in [0, 1), got {decay!r}")
    drop = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    drop[: int(np.argmax(eta)) + 1] = 0.0  # no annealing before the peak
    momentum = lfilter([1.0], [1.0, -decay], drop)
    forward = np.concatenate([[0.0], np.cumsum(eta[1:])])
    return pd.DataFrame(
        {"lr_area": forward, "lr_annealing_area": np.cumsum(momentum)},
        index=pd.RangeIndex(len(eta), name="step"),
    )


def polypythia(
    folder: str | Path | None = None,
    *,
    min_step: int = 100,
    num_steps: int = 40,
    lr_areas: bool = False,
) -> pd.DataFrame:
    """PolyPythia training loss per (model, seed), thinned to log-spaced steps.

    * steps below ``min_step`` are dropped: in the first ~100 steps the loss falls from the
      initialisation plateau (:math:`\\ln 50{,}000 \\approx 10.8` nats) by warm-up dynamics,
      not by a power law in steps;
    * each curve keeps about ``num_steps`` logged steps nearest log-spaced targets
      (:func:`bayescale.data.thin_log_spaced`), so the early part and the long tail weigh
      alike;
    * ``from_init`` marks the logs that start at initialisation (first logged loss
      :math:`\\ge 9` nats).  The others (160m seed 4, 410m seeds 0-2, 70m seeds 5-8) restart
      their step counter on a resumed run and begin near their final loss: their ``step`` is
      not the step since initialisation, so a power law in it does not measure the
      curve's exponent.
    * ``lr_areas=True`` adds the columns ``lr_area`` and ``lr_annealing_area``
      (:func:`lr_schedule_areas` of :func:`pythia_lr_schedule`), the covariates of
      ``models/lr_annealing.toml``; they are NaN on the logs not ``from_init`` (their step
      since initialisation, hence their place on the schedule, is unknown).

    Columns ``model``, ``seed``, ``step``, ``train_lm_loss``, ``from_init`` (and the areas).
    """
    raw = _read(folder, POLYPYTHIA_FILE)
    first = raw.sort_values("step").groupby(["model", "seed"])["train_lm_loss"].first()
    from_init = (first >= INIT_LOSS_MIN).rename("from_init").reset_index()
    curves = thin_log_spaced(
        raw, "step", by=["model", "seed"], num=num_steps, min_value=min_step
    ).reset_index(drop=True)
    curves = curves.merge(from_init, on=["model", "seed"], how="left")
    if lr_areas:
        last = int(raw["step"].max())
        areas = lr_schedule_areas(pythia_lr_schedule(np.arange(last + 1)))
        known = curves["from_init"].to_numpy(dtype=bool)
        for col in areas.columns:
            values = areas[col].to_numpy()[curves["step"].to_numpy(dtype=int)]
            curves[col] = np.where(known, values, np.nan)
    return curves
