"""ChEES-HMC against NUTS on the same posteriors: per-fit means and 90% interval endpoints.

Run ``python benchmarks/chees_agreement.py`` (defaults: 256 curves of each of
``kaplan_per_token``, ``power_law_offset`` and ``kaplan_n``; ``--curves``, ``--laws`` to
change, e.g. ``--laws chinchilla``).
Each curve is ``bayescale.simulate.simulate(law, seed=i)`` (the law's reference parameters
and design); all curves of a law are fitted in one ``bayescale.fit(..., by="curve")`` call
per sampler, ``NUTS(num_chains=4, num_warmup=500, num_samples=500)`` and
``ChEES(num_chains=8, num_warmup=500, num_samples=250)`` (``--chees-thin``,
``--chees-trajectory-scale`` set its ``thin`` and ``trajectory_scale``), the same seed.

For every fit, parameter and statistic (the mean, the 5% and 95% quantiles) the difference of
the two estimates is scaled by its Monte Carlo error,
:math:`z = (\\hat s_{\\rm ChEES} - \\hat s_{\\rm NUTS}) /
\\sqrt{\\mathrm{MCSE}_{\\rm ChEES}^2 + \\mathrm{MCSE}_{\\rm NUTS}^2}` (arviz-stats' MCSE of the
mean and of the quantile); if both samplers target the same posterior, :math:`z` is about
standard normal.  Reported per law: the share of :math:`|z| > 2` and :math:`|z| > 3`
(expected 4.6% and 0.27%), the largest :math:`|z|`, and each sampler's share of fits with
bayescale's status ``converged``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

LAWS = ("kaplan_per_token", "power_law_offset", "kaplan_n")
STATISTICS = ("mean", "q05", "q95")


def curves(law: str, num: int) -> pd.DataFrame:
    """``num`` simulated curves of ``law`` (reference parameters, seeds 0..num-1)."""
    from bayescale.simulate import simulate

    return pd.concat([simulate(law, seed=i).assign(curve=i) for i in range(num)])


def estimates(result) -> dict[str, np.ndarray]:
    """Per statistic, ``(fits, parameters)`` estimates and their MCSE (``<stat>_mcse``)."""
    import arviz_stats as azs

    post = result.group("posterior")
    out: dict[str, list] = {}
    for name in result.parameter_names:
        x = np.asarray(post[name].values, dtype=float)  # (fit, chain, draw)
        flat = x.reshape(x.shape[0], -1)
        out.setdefault("mean", []).append(flat.mean(1))
        out.setdefault("mean_mcse", []).append(
            azs.mcse(x, method="mean", chain_axis=1, draw_axis=2)
        )
        for q, key in ((0.05, "q05"), (0.95, "q95")):
            out.setdefault(key, []).append(np.quantile(flat, q, axis=1))
            out.setdefault(f"{key}_mcse", []).append(
                azs.mcse(x, method="quantile", prob=q, chain_axis=1, draw_axis=2)
            )
    return {k: np.stack(v, axis=1) for k, v in out.items()}


def agreement(a, b) -> dict[str, np.ndarray]:
    """Statistic -> ``(fits, parameters)`` z-scores of ``a`` against ``b`` (two results of
    the same data, fits in the same order)."""
    ea, eb = estimates(a), estimates(b)
    return {
        s: (ea[s] - eb[s]) / np.sqrt(ea[f"{s}_mcse"] ** 2 + eb[f"{s}_mcse"] ** 2)
        for s in STATISTICS
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", type=int, default=256)
    parser.add_argument("--laws", default=",".join(LAWS))
    parser.add_argument("--chees-thin", type=int, default=1)
    parser.add_argument("--chees-trajectory-scale", type=float, default=1.0)
    args = parser.parse_args(argv)

    import jax

    import bayescale

    bayescale.configure(cache_dir=None)
    print(
        f"ChEES vs NUTS agreement: {args.curves} curves per law; {os.cpu_count()} CPU core(s) "
        f"({platform.machine()}), jax {jax.__version__}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    samplers = {
        "NUTS": bayescale.NUTS(num_chains=4, num_warmup=500, num_samples=500, progress_bar=False),
        "ChEES": bayescale.ChEES(
            num_chains=8,
            num_warmup=500,
            num_samples=250,
            thin=args.chees_thin,
            trajectory_scale=args.chees_trajectory_scale,
            progress_bar=False,
        ),
    }
    for law in args.laws.split(","):
        data = curves(law, args.curves)
        results, seconds = {}, {}
        for name, inference in samplers.items():
            t0 = time.time()
            results[name] = bayescale.fit(data, law, by="curve", inference=inference, warn=False)
            seconds[name] = time.time() - t0
        z = agreement(results["ChEES"], results["NUTS"])
        every = np.concatenate([v.ravel() for v in z.values()])
        converged = {
            k: float((r.diagnostics["status"] == "converged").mean()) for k, r in results.items()
        }
        print(
            f"{law}: {every.size} comparisons; |z| > 2: {np.mean(np.abs(every) > 2):.1%}, "
            f"|z| > 3: {np.mean(np.abs(every) > 3):.2%}, max |z| {np.nanmax(np.abs(every)):.2f}; "
            + "; ".join(f"{s} max |z| {np.nanmax(np.abs(v)):.2f}" for s, v in z.items())
            + "; converged "
            + ", ".join(f"{k} {v:.1%}" for k, v in converged.items())
            + "; wall "
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
