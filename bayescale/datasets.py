"""Loaders for the public scaling data the tests, benchmarks and notebooks use.

The files are not shipped with bayescale (see ``../shared/data/README.md`` for their
provenance and licences); each loader reads one from ``folder`` and applies the preparation
the published analyses used, in one place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bayescale.data import DataError, thin_log_spaced

__all__ = ["DATA_FOLDER", "chinchilla", "polypythia"]

DATA_FOLDER = Path("../shared/data")
POLYPYTHIA_FILE = "polypythia_train_lm_loss_every10steps.csv"
CHINCHILLA_FILE = "chinchilla_epoch_svg_extracted.csv"
INIT_LOSS_MIN = 9.0  # nats: a PolyPythia log starting below this did not start at initialisation


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


def polypythia(
    folder: str | Path | None = None, *, min_step: int = 100, num_steps: int = 40
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

    Columns ``model``, ``seed``, ``step``, ``train_lm_loss``, ``from_init``.
    """
    raw = _read(folder, POLYPYTHIA_FILE)
    first = raw.sort_values("step").groupby(["model", "seed"])["train_lm_loss"].first()
    from_init = (first >= INIT_LOSS_MIN).rename("from_init").reset_index()
    curves = thin_log_spaced(
        raw, "step", by=["model", "seed"], num=num_steps, min_value=min_step
    ).reset_index(drop=True)
    return curves.merge(from_init, on=["model", "seed"], how="left")
