"""The per-chunk reduction on the device, bucketed chunk sizes, and float32 batches."""

import warnings

import arviz_stats as azs
import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale
from bayescale import NUTS
from bayescale.convergence import SUMMARY_QUANTILES, convergence_numbers
from bayescale.data import prepare
from bayescale.infer.batch import chunk_layout, run_batch
from bayescale.infer.nuts import SamplerOptions, build_sampler
from bayescale.infer.parallel import bucket, bucket_below, stack
from bayescale.infer.reduce import build_reduction
from bayescale.laws import get_law
from bayescale.model import Posterior, with_noise
from bayescale.predict import quantile_column
from bayescale.simulate import simulate


def _posterior():
    return Posterior(get_law("kaplan_per_token"), with_noise("student_t", "constant"))


def _ar_draws(rng, fits, chains, draws, dim):
    """Unconstrained AR(1) draws ``(fit, chain, draw, dim)``, some chains shifted."""
    phi = rng.uniform(0.0, 0.95, (fits, 1, dim))
    z = np.zeros((fits, chains, draws, dim))
    eps = rng.standard_normal(z.shape)
    for t in range(draws):
        z[:, :, t] = (phi * z[:, :, t - 1] if t else 0.0) + eps[:, :, t]
    return 0.3 * z + rng.choice([0.0, 0.4], (fits, 1, 1, 1)) * np.arange(chains)[:, None, None]


@pytest.mark.parametrize("on_device", [True, False], ids=["device", "host"])
@pytest.mark.parametrize("chains", [1, 4])
def test_reduction_equals_arviz_on_the_same_draws(chains, on_device):
    """``keep`` reduced in the compiled program (``jax.numpy``, float64) or on the host
    (NumPy): per fit r̂, bulk/tail ESS equal arviz-stats (a one-chain fit: r̂ of its
    halves), mean/sd/quantiles equal NumPy's, draws thinned."""
    posterior = _posterior()
    rng = np.random.default_rng(chains)
    fits, draws = 5, 200
    z = _ar_draws(rng, fits, chains, draws, posterior.dim)
    diverging = rng.random((fits, chains, draws)) < 0.01
    samples = {
        "z": z,
        "diverging": diverging,
        "lp": rng.standard_normal((fits, chains, draws)),
        "map_potential": rng.standard_normal(fits),
        "inverse_mass_matrix": np.tile(np.eye(posterior.dim), (fits, chains, 1, 1)),
    }
    with jax.enable_x64(True):
        reduction = build_reduction(posterior, 20, jax.devices()[:1], on_device=on_device)
        assert reduction.on_device is on_device
        inputs = jax.device_put(samples) if on_device else samples
        out = jax.device_get(reduction.fn(inputs))
        values = {k: np.asarray(v) for k, v in posterior.constrain(z).items()}
    index = np.linspace(0, draws - 1, 20).round().astype(int)
    np.testing.assert_array_equal(out["z"], z[:, :, index])
    np.testing.assert_array_equal(out["inverse_mass_matrix"], samples["inverse_mass_matrix"])
    summary = out["all_draws"]
    for name, v in values.items():
        ds = xr.Dataset({"p": (("fit", "chain", "draw"), v)})
        if chains == 1:
            halves = np.stack([v[:, 0, : draws // 2], v[:, 0, draws // 2 :]], axis=1)
            rhat = azs.rhat(xr.Dataset({"p": (("fit", "chain", "draw"), halves)}))["p"]
        else:
            rhat = azs.rhat(ds)["p"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = azs.ess(ds, method="bulk")["p"].values
            tail = azs.ess(ds, method="tail")["p"].values
        flat = v.reshape(fits, -1)
        for q in SUMMARY_QUANTILES:
            got = summary[f"{name}_{quantile_column(q)}"]
            np.testing.assert_allclose(got, np.quantile(flat, q, axis=1), rtol=1e-12)
        np.testing.assert_allclose(summary[f"{name}_mean"], flat.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(summary[f"{name}_sd"], flat.std(axis=1), rtol=1e-12)
        per_fit = {"rhat": rhat.values, "bulk": bulk, "tail": tail}
        for stat, expect in per_fit.items():
            one = convergence_numbers({name: v}, [name], diverging)
            key = {"rhat": "max_rhat", "bulk": "min_ess_bulk", "tail": "min_ess_tail"}[stat]
            np.testing.assert_allclose(one[key], expect, rtol=1e-9, err_msg=f"{name} {stat}")
    host = convergence_numbers(values, posterior.site_names, diverging)
    for key, expect in host.items():
        np.testing.assert_allclose(summary[key], expect, rtol=1e-9, err_msg=key)
    np.testing.assert_array_equal(summary["num_divergent"], diverging.sum(axis=(1, 2)))


def test_buckets():
    assert [bucket(n) for n in (1, 2, 3, 5, 7, 9, 13, 17, 100, 1000)] == [
        1, 2, 3, 6, 8, 12, 16, 24, 128, 1024,
    ]  # fmt: skip
    for n in range(1, 3000):
        assert n <= bucket(n) and 3 * (bucket(n) - n) < bucket(n)  # waste under a third
        assert bucket_below(n) <= n and bucket(bucket_below(n)) == bucket_below(n)
        assert bucket(bucket_below(n) + 1) > n  # the largest bucket size <= n
    assert chunk_layout(10_000, 4096, 1) == 4096  # 3 chunks of 3,334 -> 4,096 each
    assert chunk_layout(5_000, 4096, 1) == 3072  # 2 chunks of 2,500 -> 3,072 each
    assert chunk_layout(5, 100, 2) == chunk_layout(6, 100, 2) == 6
    assert chunk_layout(7, 100, 2) == 8
    assert chunk_layout(100, 7, 2) == 6  # at most the limit (one fit per device at least)
    assert chunk_layout(3, 1, 2) == 2


def _stacked_curves(count):
    fits = []
    for seed in range(count):
        df = simulate("kaplan_per_token", params={"a": 3.0, "b": 4.0, "c": 0.5}, seed=seed)
        fits.append(prepare(df.iloc[:20], get_law("kaplan_per_token"), None))
    return stack(fits)


def test_two_batch_sizes_in_one_bucket_compile_once(float64):
    """5 and 6 fits (on 2 CPU devices: 3 per device, bucket 3) run the same compiled
    sampler program, and a device-side reduction one program: one executable each."""
    posterior = _posterior()
    options = SamplerOptions(num_chains=1, num_warmup=30, num_samples=30, num_starts=2)
    devices = jax.devices()[:2]
    for count in (5, 6):
        data = _stacked_curves(count)
        keys = jax.random.split(jax.random.key(count), count)
        out = run_batch(posterior, options, keys, data, devices=devices, keep=10)
        assert out["z"].shape == (count, 1, 10, posterior.dim)
        assert out["all_draws"]["max_rhat"].shape == (count,)
    filled = options._replace(vectorized=False, group_size=32)
    run = build_sampler(posterior, filled, devices=devices if len(devices) > 1 else None)
    assert run._cache_size() == 1
    reduction = build_reduction(posterior, 10, devices, on_device=True)
    for count in (5, 6):  # the sampler's output shapes of the two calls: (6, 1, 30, ...)
        padded = chunk_layout(count, 100, len(devices))
        z = np.zeros((padded, 1, 30, posterior.dim)) + np.arange(30)[:, None] * 0.01
        fake = {"z": z, "diverging": np.zeros((padded, 1, 30), bool)}
        reduction.fn(jax.device_put(fake))
    assert reduction.fn._cache_size() == 1


CURVES = {"m0": (4.0, 3.2, 0.47), "m1": (3.4, 4.0, 0.56), "m2": (2.3, 5.4, 0.62)}


def _curves():
    frames = []
    for seed, (label, (a, b, c)) in enumerate(CURVES.items()):
        df = simulate("kaplan_per_token", params={"a": a, "b": b, "c": c}, seed=seed)
        frames.append(df.iloc[:30].assign(size=label))
    return pd.concat(frames, ignore_index=True)


def test_float32_batch_agrees_with_float64_within_mcse():
    """``NUTS(dtype="float32")``: float32 draws whose per-fit means and 5%/95% quantiles
    agree with the float64 batch's within Monte Carlo error (|z| < 4.5 over 3 curves x 4
    parameters x 3 statistics), its chains mixed (r-hat < 1.05, bulk ESS >= 100) with at most
    two more divergences per fit."""
    with pytest.raises(ValueError, match=r"NUTS\(dtype='float16'\)"):
        NUTS(dtype="float16")
    settings = {"num_chains": 2, "num_warmup": 400, "num_samples": 400}
    runs = {
        dtype: bayescale.fit(
            _curves(),
            "kaplan_per_token",
            by="size",
            seed=0,
            warn=False,
            inference=NUTS(dtype=dtype, **settings),
        )
        for dtype in ("float32", "float64")
    }
    post32 = runs["float32"].datatree.posterior.dataset
    post64 = runs["float64"].datatree.posterior.dataset
    assert post32["c"].dtype == np.float32 and post64["c"].dtype == np.float64
    for name in runs["float64"].parameter_names:
        for stat, mcse_kw in (("mean", {}), ("q05", {"method": "quantile", "prob": 0.05}),
                              ("q95", {"method": "quantile", "prob": 0.95})):  # fmt: skip
            if stat == "mean":
                values = [p[name].mean(("chain", "draw")).values for p in (post32, post64)]
            else:
                q = 0.05 if stat == "q05" else 0.95
                values = [p[name].quantile(q, ("chain", "draw")).values for p in (post32, post64)]
            se = [
                azs.mcse(p[[name]].astype(float), **mcse_kw)[name].values for p in (post32, post64)
            ]
            z = (values[0] - values[1]) / np.hypot(*se)
            assert np.all(np.abs(z) < 4.5), (name, stat, z)
    # float32 chains mix: bounds clear of r-hat's Monte Carlo noise at these draws (the
    # converged status's 1.01 is not)
    diag = runs["float32"].diagnostics
    assert (diag["max_rhat"] < 1.05).all() and (diag["min_ess_bulk"] >= 100).all(), diag
    assert (diag["num_divergent"] <= runs["float64"].diagnostics["num_divergent"] + 2).all()


def test_host_numbers_in_blocks_on_threads_equal_one_pass():
    """Many fits are reduced block by block on threads: the numbers are those of one pass
    of :mod:`bayescale.diagnostics` over every fit (one chain: r̂ of the halves)."""
    from bayescale import diagnostics
    from bayescale.convergence import FITS_PER_BLOCK

    rng = np.random.default_rng(5)
    fits = 2 * FITS_PER_BLOCK + 37  # three blocks, the last shorter
    for chains in (1, 2):
        values = {n: rng.standard_normal((fits, chains, 40)).cumsum(-1) for n in "ab"}
        diverging = rng.random((fits, chains, 40)) < 0.01
        got = convergence_numbers(values, ["a", "b"], diverging, 0.89)
        x = np.stack([np.moveaxis(values[n], 0, -1) for n in "ab"], -1)
        halves = x if chains > 1 else np.concatenate([x[:, :20], x[:, 20:]], axis=0)
        expect = {
            "max_rhat": diagnostics.rhat(halves).max(-1),
            "min_ess_bulk": diagnostics.ess_bulk(x).min(-1),
            "min_ess_tail": diagnostics.ess_tail(x, 0.89).min(-1),
            "num_divergent": diverging.sum(axis=(1, 2)),
        }
        for key, value in expect.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{key}, {chains} chain(s)")
