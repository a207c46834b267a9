"""The vectorised batch diagnostics equal arviz-stats series by series."""

import warnings

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

from bayescale import diagnostics


def _series(rng, chains, draws, batch):
    """Series from white noise to strongly autocorrelated AR(1), some chains shifted."""
    phi = rng.uniform(-0.5, 0.99, batch)
    x = np.zeros((chains, draws, batch))
    eps = rng.standard_normal((chains, draws, batch))
    for t in range(draws):
        x[:, t] = (phi * x[:, t - 1] if t else 0.0) + eps[:, t]
    x += rng.choice([0.0, 0.0, 1.5], size=batch) * np.arange(chains)[:, None, None]
    return x


def _arviz(x, fn, **kwargs):
    da = xr.DataArray(x, dims=("chain", "draw", "fit"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(xr.Dataset({"p": da}), **kwargs)["p"].values)


@pytest.mark.parametrize(("chains", "draws"), [(1, 7), (2, 4), (2, 5), (4, 100), (1, 501)])
def test_equal_to_arviz_stats(chains, draws):
    rng = np.random.default_rng(chains * 1000 + draws)
    x = _series(rng, chains, draws, 40)
    x[..., 0] = 3.0  # a constant series
    x[0, 1, 1] = np.nan  # a series with a NaN
    x[..., 2] = np.round(x[..., 2])  # ties
    ours = {
        "bulk": diagnostics.ess_bulk(x),
        "tail": diagnostics.ess_tail(x),
    }
    theirs = {
        "bulk": _arviz(x, azs.ess, method="bulk"),
        "tail": _arviz(x, azs.ess, method="tail"),
    }
    if chains >= 2:
        ours["rhat"] = diagnostics.rhat(x)
        theirs["rhat"] = _arviz(x, azs.rhat)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-9, err_msg=name)
    assert np.isnan(ours["bulk"][1])


def test_rhat_flags_chains_that_disagree():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 200, 2))
    x[0, :, 1] += 3.0
    r = diagnostics.rhat(x)
    assert r[0] < 1.02 and r[1] > 1.1  # one chain 3 sd off: far above the 1.01 threshold
