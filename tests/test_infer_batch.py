"""Batched fits (issue 4): each fit of a batch is the fit of its curve alone."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import NUTS
from bayescale.model import delta_conditional, scales
from bayescale.simulate import simulate

SETTINGS = {"num_chains": 2, "num_warmup": 400, "num_samples": 400}
SAMPLER = NUTS(**SETTINGS)
CURVES = {"m0": (4.0, 3.2, 0.47), "m1": (3.4, 4.0, 0.56), "m2": (2.3, 5.4, 0.62)}


def _curves(lengths=(30, 24, 18)):
    frames = []
    for (label, (a, b, c)), n, seed in zip(CURVES.items(), lengths, range(3), strict=True):
        df = simulate("kaplan_per_token", params={"a": a, "b": b, "c": c}, seed=seed)
        frames.append(df.iloc[:n].assign(size=label))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def batch():
    return bayescale.fit(_curves(), "kaplan_per_token", by="size", seed=0, inference=SAMPLER)


def test_labels_dims_and_padding(batch):
    assert batch.labels == ["m0", "m1", "m2"]
    post = batch.datatree.posterior
    assert post["c"].dims == ("size", "chain", "draw")
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 400
    loss = batch.datatree.observed_data["loss"].values
    assert np.isnan(loss[2, 18:]).all() and not np.isnan(loss[2, :18]).any()
    assert batch["m2"].datatree.observed_data["loss"].shape == (1, 18)
    assert batch["m2"].labels == ["m2"] and batch["m2"].dim == "size"


def test_each_fit_matches_fitting_its_curve_alone(batch):
    """Posterior means agree within Monte Carlo error (MCSE of both runs, 4.5 sigma)."""
    import arviz_stats as azs

    data = _curves()
    for label in CURVES:
        alone = bayescale.fit(
            data[data["size"] == label].drop(columns="size"),
            "kaplan_per_token",
            seed=1,
            inference=SAMPLER,
        )
        one, alone = batch.datatree_of(label), alone.datatree_of()
        for name in ("a", "b", "c"):
            m1 = float(one.posterior[name].mean())
            m2 = float(alone.posterior[name].mean())
            se1 = float(azs.mcse(one.posterior.dataset[[name]])[name])
            se2 = float(azs.mcse(alone.posterior.dataset[[name]])[name])
            z = (m1 - m2) / np.hypot(se1, se2)
            assert abs(z) < 4.5, f"{label}.{name}: batch {m1:.4g} vs alone {m2:.4g} (z={z:.1f})"


def test_batch_diagnostics_equal_each_fits_own(batch):
    """The vectorised per-fit table equals each fit's arviz-stats diagnostics."""
    table = batch.diagnostics
    for label in CURVES:
        own = batch[label].diagnostics
        assert list(own.index) == [label]
        for column in ("max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergent"):
            assert table.loc[label, column] == pytest.approx(own.loc[label, column], rel=1e-9)


def test_exponents_recovered(batch):
    summary = batch.summary(quantiles=(0.005, 0.995)).set_index(["size", "parameter"])
    for label, (_, _, c) in CURVES.items():
        lo, hi = summary.loc[(label, "c"), ["q0.5", "q99.5"]]
        assert lo < c < hi, (label, lo, hi)


def test_pathological_curve_fails_alone():
    data = _curves()
    tiny = simulate("kaplan_per_token", seed=7).iloc[:3].assign(size="tiny")
    flat = simulate("kaplan_per_token", seed=8).assign(size="flat", loss=3.0)
    # chunk_size=4: two chunks (the second padded) of the program the `batch` fixture
    # compiled (3 curves rounded up to a multiple of the 2 CPU devices): nothing new compiles
    with pytest.warns(bayescale.ConvergenceWarning, match="tiny: failed"):
        r = bayescale.fit(
            pd.concat([data, tiny, flat]),
            "kaplan_per_token",
            by="size",
            seed=0,
            inference=NUTS(chunk_size=4, **SETTINGS),
        )
    diag = r.diagnostics
    assert diag.loc["tiny", "status"] == "failed"
    assert "3 points" in diag.loc["tiny", "reason"]
    for label in CURVES:
        assert diag.loc[label, "max_rhat"] < 1.05, diag
        assert diag.loc[label, "num_divergent"] == 0, diag
    assert "tiny" in r.failed
    assert r.status is bayescale.Status.failed  # the worst over the fits


def test_predict_keeps_group_columns(batch):
    new = pd.DataFrame({"size": ["m2", "m0", "m2"], "token_index": [10.0, 10.0, 1e4]})
    pred = batch.predict(new)
    assert list(pred["size"]) == ["m2", "m0", "m2"]
    assert pred["q50"].iloc[0] < pred["q50"].iloc[1]  # the larger model has lower loss
    assert pred["decades_beyond"].iloc[2] > 0
    with pytest.raises(bayescale.DataError, match="size"):
        batch.predict(pd.DataFrame({"token_index": [10.0]}))


def test_batched_predict_equals_each_fits_own_predict(batch):
    """All rows are evaluated in one pass over a padded (fits, rows) grid; each row must get
    exactly what its fit's own ``predict`` gives (law draws), whatever the row order."""
    new = pd.DataFrame(
        {"size": ["m1", "m0", "m1", "m2", "m1"], "token_index": [3.0, 1e3, 1e5, 20.0, 1e3]},
        index=[10, 11, 12, 13, 14],
    )
    pred = batch.predict(new, kind="mean")
    assert list(pred.index) == list(new.index)
    for i, row in new.iterrows():
        alone = batch[row["size"]].predict(new.loc[[i], ["token_index"]], kind="mean")
        for col in ("mean", "q5", "q50", "q95", "decades_beyond"):
            np.testing.assert_allclose(pred.loc[i, col], alone[col].iloc[0], rtol=1e-12)
        assert pred.loc[i, "extrapolation"] == alone["extrapolation"].iloc[0]
    draws = batch.predict_draws(new, kind="observation", seed=1)
    assert draws.shape == (2, 400, 5)
    law = batch.predict_draws(new, kind="mean")
    # observation draws scatter around the law's draws by the fitted noise and the default
    # discrepancy's delta given each fit's residuals: Var = E[sigma^2] + E[Var delta] +
    # Var E[delta] over the draws (delta_conditional, the smoother tested against the dense GP)
    spread = np.log(draws / law).std(axis=(0, 1))
    expected = []
    for size, x in zip(new["size"], new["token_index"], strict=True):
        one = batch[size].datatree_of()
        v = {k: one.posterior[k].values.reshape(-1) for k in ("sigma", "delta_r", "delta_w")}
        x_fit = one.constant_data["token_index"].values
        fitted = {"token_index": x_fit}
        log_f = np.log(batch[size].predict_draws(fitted, kind="mean")).reshape(-1, x_fit.size)
        r = np.log(one.observed_data["loss"].values) - log_f
        u = np.log10(x_fit / x_fit.min())
        mean, var = delta_conditional(
            r, u, v["sigma"][:, None] ** 2, np.ones(u.shape, bool),
            np.log10(np.full((1,), x) / x_fit.min()), *scales(v["delta_r"], v["delta_w"]),
        )  # fmt: skip
        expected.append(np.sqrt(np.mean(v["sigma"] ** 2) + var.mean() + mean.var()))
    np.testing.assert_allclose(spread, expected, rtol=0.25)
    with pytest.raises(bayescale.DataError, match="m9"):
        batch.predict(pd.DataFrame({"size": ["m9"], "token_index": [10.0]}))


def test_keep_thins_draws_but_reports_all_of_them(batch):
    """``keep`` holds 50 of 400 draws per chain; the diagnostics and summary still come from
    all 400 (the same program and seed as ``batch``: the same draws)."""
    kept = bayescale.fit(
        _curves(),
        "kaplan_per_token",
        by="size",
        seed=0,
        inference=NUTS(keep=50, **SETTINGS),
        warn=False,
    )
    assert kept.datatree.posterior.sizes["draw"] == 50
    full = batch.datatree.posterior["c"].values
    index = np.linspace(0, 399, 50).round().astype(int)
    np.testing.assert_array_equal(kept.datatree.posterior["c"].values, full[:, :, index])
    cols = ["max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergent", "num_draws"]
    pd.testing.assert_frame_equal(kept.diagnostics[cols], batch.diagnostics[cols])
    pd.testing.assert_frame_equal(kept.summary(), batch.summary())
    # a quantile not stored comes from the kept draws
    q10 = kept.summary(quantiles=(0.1,)).set_index(["size", "parameter"])["q10"]
    expect = np.quantile(full[:, :, index].reshape(3, -1), 0.1, axis=1)
    np.testing.assert_allclose(q10.xs("c", level="parameter").to_numpy(), expect)
    with pytest.raises(ValueError, match=r"NUTS\(keep=0\)"):
        NUTS(keep=0)
    with pytest.raises(ValueError, match=r"NUTS\(keep=50\).*single fit"):
        bayescale.fit(_curves(), "kaplan_per_token", inference=NUTS(keep=50))


def test_bad_curve_is_named():
    data = _curves()
    data.loc[5, "loss"] = np.nan
    with pytest.raises(bayescale.DataError, match="curve 'm0'"):
        bayescale.fit(data, "kaplan_per_token", by="size", inference=SAMPLER)
    with pytest.raises(bayescale.DataError, match="by= names"):
        bayescale.fit(_curves(), "kaplan_per_token", by="model", inference=SAMPLER)


SHARDED = textwrap.dedent(
    """
    import json, sys
    import arviz_stats as azs
    import jax
    import bayescale
    from test_infer_batch import SETTINGS, _curves
    r = bayescale.fit(_curves(), "kaplan_per_token", by="size", seed=0, warn=False,
                      inference=bayescale.NUTS(chunk_size=int(sys.argv[1]), **SETTINGS))
    post = r.datatree.posterior.dataset[["a", "b", "c"]]
    mcse = azs.mcse(post)
    print(json.dumps({"devices": jax.device_count(),
                      "mean": {k: post[k].mean(("chain", "draw")).values.tolist() for k in post},
                      "mcse": {k: mcse[k].values.tolist() for k in post}}))
    """
)


def test_two_devices_give_the_single_device_posterior(batch):
    """Sharded over 2 devices in 2 chunks (``chunk_size=2`` over 3 curves: the second chunk
    holds one curve and a prior-only padding fit), each fit has the posterior of the
    module's single-device batch.

    Same within Monte Carlo error, not the same draws: the per-device program is compiled
    separately and rounds differently in the last bit, which HMC trajectories amplify over
    hundreds of iterations.  So posterior means are compared, scaled by the MCSE of both
    runs.  The run is a subprocess because the device count is fixed when JAX starts.
    """
    import arviz_stats as azs

    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    )
    out = subprocess.run(
        [sys.executable, "-c", SHARDED, "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    two = json.loads(out.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2
    post = batch.datatree.posterior.dataset[["a", "b", "c"]]
    mcse = azs.mcse(post)
    for name in post:
        one = post[name].mean(("chain", "draw")).values
        se = np.hypot(mcse[name].values, two["mcse"][name])
        z = (np.array(two["mean"][name]) - one) / se
        assert np.all(np.abs(z) < 4.5), (name, z)
