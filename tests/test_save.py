"""Saved results: their size on a fit of a real data size, and what load gives back."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale
from bayescale import plot
from bayescale.result import PREDICTION_GROUPS, RECOMPUTED_GROUPS, Result

#: Bytes a saved 4 x 1000-draw fit of the 240 Chinchilla points may take (it was 16.9 MB
#: before the pointwise groups were left out and the rest compressed).
MAX_BYTES = 1_000_000


@pytest.fixture(scope="module")
def chinchilla(chinchilla_frame):
    return bayescale.fit(
        chinchilla_frame, "chinchilla", columns={"n_params": "Model Size"}, seed=0, warn=False
    )


def _groups(path) -> set:
    with xr.open_datatree(path, engine="h5netcdf") as dt:
        return set(dt.children)


def test_saved_fit_is_small_and_loads_back_whole(chinchilla, tmp_path):
    r = chinchilla
    new = pd.DataFrame({"Model Size": [1e9, 7e10, 1e12], "n_tokens": [2e10, 1.4e12, 1e14]})
    r.predict(new)  # leaves draws in the predictions group, which save does not keep
    path = r.save(tmp_path / "chinchilla.nc")
    assert path.stat().st_size < MAX_BYTES
    assert _groups(path).isdisjoint((*RECOMPUTED_GROUPS, *PREDICTION_GROUPS))
    full = r.save(tmp_path / "full.nc", full=True)
    assert full.stat().st_size > 10 * path.stat().st_size
    assert {*RECOMPUTED_GROUPS, *PREDICTION_GROUPS} <= _groups(full)

    loaded = bayescale.load(path)
    for name in RECOMPUTED_GROUPS:  # recomputed, draw for draw
        assert loaded.datatree[name].dataset.identical(r.datatree[name].dataset), name
    for name in ("posterior", "sample_stats", "observed_data", "constant_data", "prior"):
        assert loaded.datatree[name].dataset.identical(r.datatree[name].dataset), name
    for kind in ("observation", "mean"):
        pd.testing.assert_frame_equal(
            loaded.predict(new, kind=kind, seed=3), r.predict(new, kind=kind, seed=3)
        )
    pd.testing.assert_frame_equal(loaded.summary(), r.summary())
    pd.testing.assert_frame_equal(loaded.diagnostics, r.diagnostics)
    ax = plot.bands(loaded, num=20)  # and it plots
    assert ax.get_xlabel() == "Model Size [parameters]"
    plt.close("all")


def test_a_group_that_cannot_be_recomputed_is_kept(chinchilla, tmp_path):
    """A tree spliced from fits of other seeds: its predictive draws are not the ones its
    seed gives, so save keeps them rather than drawing others at load."""
    dt = chinchilla.datatree.copy(deep=True)
    ppc = dt["posterior_predictive"].to_dataset()
    ppc["loss"] = ppc["loss"][:, :, ::-1].assign_coords(draw=ppc["draw"])  # draws reordered
    dt["posterior_predictive"] = xr.DataTree(ppc)
    spliced = Result(dt, chinchilla.law, chinchilla.likelihood, chinchilla.columns)
    path = spliced.save(tmp_path / "spliced.nc")
    groups = _groups(path)
    assert "posterior_predictive" in groups and "log_likelihood" not in groups
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        assert json.loads(opened.attrs["dropped_groups"]) == [
            "log_likelihood",
            "prior_predictive",
        ]
    loaded = bayescale.load(path)
    np.testing.assert_array_equal(
        loaded.datatree.posterior_predictive["loss"].values, ppc["loss"].values
    )
    for name, node in spliced.datatree.children.items():
        if name not in PREDICTION_GROUPS:
            assert loaded.datatree[name].dataset.identical(node.dataset), name
