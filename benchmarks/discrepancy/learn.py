"""Learn the discrepancy's hyperprior by leave-future-out (held-out) predictive performance.

The hyperprior of ``Model(discrepancy="ou_rw")`` is chosen by how well the curves' early
parts predict their rest (the splits of ``run.py``), not by how well it fits inside the data
(empirical Bayes by the in-range marginal likelihood under-covers:
``benchmarks/results/discrepancy_loso.md``).  Two families: ``--family r`` (default, the
package's): ``log r ~ N(m_r, sd_r)``, ``w ~ U(0, 1)`` (roughness and walk share,
:func:`bayescale.model.discrepancy.scales`); ``--family sq``: ``log s ~ N(m_s, sd)``,
``log q ~ N(m_q, sd)``, with an optional growth ``g`` of the walk beyond the data.

Every candidate hyperprior is scored without refitting, by quadrature over the scales: per
curve and node (s, q) of a log-spaced grid (``NODES``), the MAP of the law's parameters and
the noise scale under the ``ou_rw`` model with normal noise (``models.neg_log_post``, dense;
Newton from the curve's joint MAP), its Laplace evidence and the Laplace mixture of the
Gaussian-process conditional at the held-out points.  A hyperprior weights the nodes by
evidence x hyperprior (the posterior of s, q that NUTS samples, on the grid); its
predictive is the weighted mixture (resampled to ``R`` components), optionally with the
random walk's variance beyond the fitted range multiplied by ``g**2`` (a faster-growing
discrepancy).  Scores as in ``run.summarise`` (log score per curve, coverage, MSCE, width,
interval score, error ratio).

* ``--family r``: the choice on the training-curve sources (``--learn-from``, default
  :data:`TRAINING`) printed as the ``HYPERPRIORS`` of
  ``bayescale/model/discrepancy.py``, and for each source the choice on the OTHER such sources
  (``results/learn_loso_<by>_r.csv``, read by ``loso.py``'s ``ou_rw_lfo`` arm).
* ``--family sq --loso``: for each source, the hyperprior on the grid with the best mean
  log score over the OTHER sources (each weighted equally), and its scores on the source.
* ``--family sq --batch``: the in-batch choice: each held-out source also learns from its own fitted
  range (the first 60% of each curve's fitted points predict the rest), its per-curve log
  score times the number of curves as the likelihood of the centre, the corpus choice with
  sd ``TAU`` as the centre's prior.

Usage (from the worktree root)::

    nice -n 5 python benchmarks/discrepancy/learn.py [--family r|sq] [--loso] [--batch]
        [--cache DIR] [--by lpd] [--growth 1]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import run  # noqa: E402

import models  # noqa: E402

OUT = HERE / "results"
#: The hyperprior log s, log q ~ N(PROP_M, PROP_SD) under which the proposal is built.
PROP_M, PROP_SD = float(np.log(0.01)), 1.5
#: Proposal: Student-t (DF) around the joint MAP, Laplace sd x INFL.
DF, INFL = 4.0, 1.5
#: Candidate hyperpriors: centres of s and q, their common log-sd, and the growth g.
CENTRES = tuple(
    float(np.log(v)) for v in (0.0015, 0.002, 0.003, 0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04)
)
SDS = (0.5, 0.8)
GROWTHS = (1.0, 1.5, 2.0, 3.0)
#: Nodes of s and q (log-spaced), Newton iterations from the joint MAP, Laplace draws per
#: node, components of each resampled predictive mixture.
NODES = tuple(0.0015 * 2.0 ** np.arange(6))
ITERS, D, R = 15, 30, 150
#: The inner (in-batch) split: the first INNER of a curve's fitted points predict the rest;
#: curves with fewer than INNER_MIN fitted points take no part.
INNER, INNER_MIN = 0.6, 7
#: sd of the centre (log) around the corpus choice, the prior of the in-batch choice.
TAU = 0.5


def _neg_joint(z6, curve):
    """Negative log posterior of (z, log s, log q) under the proposal's normal hyperprior."""
    ls = z6[models.NUM_PARAMS :]
    prior = 0.5 * jnp.sum(((ls - PROP_M) / PROP_SD) ** 2)
    return models.neg_log_post(z6[: models.NUM_PARAMS], "ou_rw", jnp.exp(ls), curve) + prior


@jax.jit
def _reference(fit):
    """Joint MAP and Laplace covariance of (z, log s, log q) of every curve."""

    def one(curve):
        obj = lambda z6: _neg_joint(z6, curve)  # noqa: E731
        st = models.starts(curve)
        st = jnp.concatenate([st, jnp.full((len(st), 2), PROP_M)], axis=1)
        zs, fs = jax.vmap(lambda z0: models.damped_newton(obj, z0))(st)
        z = zs[jnp.argmin(jnp.where(jnp.isfinite(fs), fs, jnp.inf))]
        h = jax.hessian(obj)(z)
        vals, vecs = jnp.linalg.eigh(0.5 * (h + h.T))
        cov = (vecs / jnp.maximum(vals, 1e-4)) @ vecs.T
        return z, cov

    return jax.vmap(one)(fit)


@jax.jit
def _node(hyper, fit, new_log_x, z0, keys):
    """At fixed (s, q) = ``hyper``: every curve's MAP (Newton from ``z0``), its Laplace log
    evidence (up to a constant shared by all nodes) and the predictive components."""

    def one(curve, nx, z, key):
        obj = lambda zz: models.neg_log_post(zz, "ou_rw", hyper, curve)  # noqa: E731
        z, f = models.damped_newton(obj, z, iters=ITERS)
        h = jax.hessian(obj)(z)
        vals, vecs = jnp.linalg.eigh(0.5 * (h + h.T))
        vals = jnp.maximum(vals, 1e-6)
        cov = (vecs / vals) @ vecs.T
        log_ev = -f - 0.5 * jnp.sum(jnp.log(vals))
        mean, sd = models.predict_one("ou_rw", hyper, 0.0, curve, z, cov, nx, key, num_draws=D)
        return mean, sd, jnp.where(jnp.isfinite(log_ev), log_ev, -jnp.inf)

    return jax.vmap(one)(fit, new_log_x, z0, keys)


def nodes_pass(fit: dict, hx: np.ndarray, seed: int = 0) -> dict:
    """Per curve and node (s, q) of NODES x NODES: log evidence ``log_ev`` (curves, K) and the
    predictive components ``mean, sd`` (curves, K, D, m); ``log_s, log_q`` (K,)."""
    fit = jax.tree.map(jnp.asarray, fit)
    z6, _ = _reference(fit)
    z0 = z6[:, : models.NUM_PARAMS]
    keys = jax.random.split(jax.random.key(seed), len(fit["log_y"]))
    nodes = list(itertools.product(NODES, NODES))
    out = {"mean": [], "sd": [], "log_ev": []}
    t0 = time.time()
    for k, hyper in enumerate(nodes):
        mean, sd, log_ev = jax.device_get(_node(jnp.asarray(hyper), fit, jnp.asarray(hx), z0, keys))
        out["mean"].append(mean.astype(np.float32))
        out["sd"].append(sd.astype(np.float32))
        out["log_ev"].append(log_ev)
        if k % 9 == 0:
            print(f"node {k}/{len(nodes)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    nodes = np.log(np.array(nodes))
    stacked = {k: np.stack(v, 1) for k, v in out.items()}
    return {**stacked, "log_s": nodes[:, 0], "log_q": nodes[:, 1]}


def mixture(d: dict, hyper, dist: np.ndarray, seed: int = 0):
    """Resampled (mean, sd) components (curves, R, m) of the predictive under ``hyper`` =
    ``(m_s, m_q, sd, g)`` or, the shipped family, ``(m_r, sd_r)``: the nodes weighted by
    evidence x hyperprior, each node's Laplace components; and each curve's effective number
    of nodes."""
    if len(hyper) == 2:  # the shipped family: log r ~ N(m_r, sd_r), w ~ U(0, 1)
        m_r, sd_r = hyper
        g = 1.0
        r2 = 2 * np.exp(2 * d["log_s"]) + np.exp(2 * d["log_q"])
        w_walk = np.exp(2 * d["log_q"]) / r2
        # density on the (log s, log q) nodes: |d(log r, w) / d(log s, log q)| = 2 w (1 - w)
        logw = (
            d["log_ev"] - 0.5 * ((0.5 * np.log(r2) - m_r) / sd_r) ** 2
            + np.log(w_walk * (1 - w_walk))
        )  # fmt: skip
    else:
        m_s, m_q, sd, g = hyper
        logw = (
            d["log_ev"] - 0.5 * ((d["log_s"] - m_s) / sd) ** 2
            - 0.5 * ((d["log_q"] - m_q) / sd) ** 2
        )  # fmt: skip
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    ess = 1.0 / np.sum(w**2, axis=1)
    n_draws = d["mean"].shape[2]
    cdf = np.cumsum(np.repeat(w / n_draws, n_draws, axis=1), axis=1)
    grid = (np.arange(R) + np.random.default_rng(seed).uniform()) / R
    idx = np.array([np.minimum(np.searchsorted(c, grid), len(c) - 1) for c in cdf])
    c, m = d["mean"].shape[0], d["mean"].shape[-1]
    flat = lambda a: a.reshape(c, -1, m)  # noqa: E731
    take = lambda a: np.take_along_axis(flat(a), idx[..., None], axis=1)  # noqa: E731
    q2 = np.exp(2 * d["log_q"])[idx // n_draws][..., None]
    var = take(d["sd"]).astype(float) ** 2 + (g**2 - 1.0) * q2 * dist[:, None, :]
    return take(d["mean"]).astype(float), np.sqrt(var), ess


def candidates(growth: float | None = None):
    """``(m_s, m_q, sd, g)`` of every candidate (of growth ``growth`` only, when given)."""
    growths = GROWTHS if growth is None else (growth,)
    return list(itertools.product(CENTRES, CENTRES, SDS, growths))


def score_grid(d, hx, hy, hm, fit_max, lsq, sources, cands) -> pd.DataFrame:
    """Scores of every candidate hyperprior on every source (run.summarise's columns)."""
    dist = np.maximum(hx - fit_max[:, None], 0.0) / np.log(10.0)
    rows = []
    t0 = time.time()
    for i, h in enumerate(cands):
        mean, sd, ess = mixture(d, h, dist)
        s = run.score(mean, sd, hx, hy, hm, fit_max)
        for src in dict.fromkeys(sources):
            idx = np.flatnonzero(sources == src)
            rows.append({**dict(zip(NAMES[len(h)], h, strict=True)), "source": src,
                         **run.summarise(s, hy, hm, lsq, idx),
                         "ess_min": float(ess[idx].min())})  # fmt: skip
        if i % 50 == 0:
            print(f"{i}/{len(cands)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


#: Column names of a candidate of each family (by its length).
NAMES = {4: ["m_s", "m_q", "sd", "g"], 2: ["m_r", "sd_r"]}
#: The shipped family's candidates: centres of the roughness r and its log-sd.
R_CENTRES = tuple(float(np.log(v)) for v in (0.007, 0.01, 0.014, 0.02, 0.028, 0.04, 0.056))
R_SDS = (0.35, 0.5, 0.7)


def best(grid: pd.DataFrame, sources, by: str = "lpd") -> tuple:
    """The candidate with the best mean ``by`` over ``sources`` (each weighted equally)."""
    names = NAMES[2] if "m_r" in grid else NAMES[4]
    g = grid[grid.source.isin(sources)].groupby(names)[by].mean()
    return g.idxmax() if by == "lpd" else g.idxmin()


def text(h) -> str:
    """``ou_rw(m_r, sd_r)`` of a candidate of the shipped family; ``s,q(m_s, sd, m_q, sd)``
    (a description: not a model of the package) of the (s, q) family."""
    if len(h) == 2:
        return f"ou_rw({h[0]:.4f}, {h[1]:.4f})"
    return f"s,q({h[0]:.4f}, {h[2]:.4f}, {h[1]:.4f}, {h[2]:.4f})"


def inner_split(curves: list[dict]) -> list[dict]:
    """Each curve's fitted points, the first INNER of them fitted, the rest held out
    (curves with fewer than INNER_MIN fitted points dropped)."""
    out = []
    for c in curves:
        f = c["fit"]
        n = int(f.sum())
        if n < INNER_MIN:
            continue
        fit = np.arange(n) < int(np.ceil(INNER * n))
        out.append({**c, "x": c["x"][f], "y": c["y"][f], "fit": fit})
    return out


def prepare(curves, cache: Path, seed: int):
    """The node pass of ``curves`` (cached in ``cache``, an .npz) and the scoring arrays."""
    fit, hx, hy, hm = run.stack(curves)
    fit_max = np.array([np.log(c["x"][c["fit"]][-1]) for c in curves])
    lsq = run.least_squares_medians(curves, hx)
    if cache.exists():
        d = dict(np.load(cache))
    else:
        d = nodes_pass(fit, hx, seed)
        np.savez(cache, **d)
    sources = np.array([c["source"] for c in curves])
    return d, (hx, hy, hm, fit_max, lsq, sources)


COLS = ["cov50", "cov90", "msce", "width90", "iscore90", "err_ratio", "lpd", "ess_min"]


#: Sources whose curves run along one training run (loss against steps): the shipped
#: hyperprior is learnt on these.  The others are fits across model sizes.
TRAINING = ("polypythia", "nanogpt_speedrun")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="/tmp", help="folder of the node passes (.npz)")
    p.add_argument("--loso", action="store_true")
    p.add_argument("--batch", action="store_true")
    p.add_argument("--by", default="lpd", choices=["lpd", "msce", "iscore90"])
    p.add_argument("--growth", type=float, help="choose among this growth's candidates only")
    p.add_argument(
        "--family", default="r", choices=["r", "sq"],
        help="r: the shipped (roughness, walk share) hyperprior; sq: log-normal s and q",
    )  # fmt: skip
    p.add_argument(
        "--learn-from", nargs="+", default=list(TRAINING), metavar="SOURCE",
        help="--family r: the sources the hyperprior is learnt on (default: the training "
        "curves; the law's error along one run is larger than across model sizes)",
    )  # fmt: skip
    a = p.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    if a.family == "r":
        return main_r(a)
    t0 = time.time()
    path = OUT / "learn_grid.csv"
    curves = run.load_corpus()
    grid = pd.read_csv(path) if path.exists() else None
    todo = [h for h in candidates(a.growth) if grid is None or _at(grid, h).empty]
    if todo:  # score the candidates not yet in the grid
        d, args = prepare(curves, Path(a.cache) / "outer.npz", 0)
        print(f"nodes {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        grid = pd.concat([grid, score_grid(d, *args, todo)], ignore_index=True)
        grid.to_csv(path, index=False)
    srcs = list(run.SPLITS)
    if a.growth is not None:  # the choices among the candidates of this growth only
        grid = grid[np.isclose(grid.g, a.growth)]
    h_all = best(grid, srcs, a.by)
    print(f"\nwhole corpus ({a.by}): {text(h_all)} growth {h_all[3]}")
    print("HYPERPRIORS = {")
    for site, m in (("delta_s", h_all[0]), ("delta_q", h_all[1])):
        print(f'    "{site}": Prior("lognormal", (math.log({np.exp(m):.4g}), {h_all[2]:g})),')
    print("}")
    print(run.markdown(_at(grid, h_all)[["source", *COLS]]))
    if a.loso or a.batch:
        rows = []
        for src in srcs:
            h = best(grid, [s for s in srcs if s != src], a.by)
            rows.append({"source": src, "arm": "lfo", "hyperprior": text(h), "g": h[3],
                         **_at(grid, h, src)})  # fmt: skip
        loso = pd.DataFrame(rows)
    if a.batch:
        inner = inner_split(curves)
        ipath = OUT / "learn_inner.csv"
        igrid = pd.read_csv(ipath) if ipath.exists() else None
        todo = [h for h in candidates(a.growth) if igrid is None or _at(igrid, h).empty]
        if todo:
            d, args = prepare(inner, Path(a.cache) / "inner.npz", 1)
            igrid = pd.concat([igrid, score_grid(d, *args, todo)], ignore_index=True)
            igrid.to_csv(ipath, index=False)
        for src in srcs:
            h = best(grid, [s for s in srcs if s != src], a.by)
            hb = batch_choice(igrid, src, h)
            if hb is None:
                continue
            rows.append({"source": src, "arm": "lfo+batch", "hyperprior": text(hb), "g": hb[3],
                         **_at(grid, hb, src)})  # fmt: skip
        loso = pd.DataFrame(rows)
    if a.loso or a.batch:
        tag = "" if a.growth is None else f"_g{a.growth:g}"
        loso.to_csv(OUT / f"learn_loso_{a.by}{tag}.csv", index=False)
        print(run.markdown(loso[["source", "arm", "hyperprior", "g", *COLS]]))


def main_r(a) -> None:
    """The shipped family: grid ``results/learn_grid_r.csv``, choices
    ``results/learn_loso_<by>_r.csv``, the ``HYPERPRIORS`` printed."""
    path = OUT / "learn_grid_r.csv"
    curves = run.load_corpus()
    grid = pd.read_csv(path) if path.exists() else None
    cands = list(itertools.product(R_CENTRES, R_SDS))
    todo = [h for h in cands if grid is None or _at(grid, h).empty]
    if todo:
        d, args = prepare(curves, Path(a.cache) / "outer.npz", 0)
        grid = pd.concat([grid, score_grid(d, *args, todo)], ignore_index=True)
        grid.to_csv(path, index=False)
    srcs = list(run.SPLITS)
    learn = [s for s in srcs if s in a.learn_from]
    h_all = best(grid, learn, a.by)
    print(f"\nlearnt on {', '.join(learn)} ({a.by}): {text(h_all)}")
    print("HYPERPRIORS = {")
    print(f'    "delta_r": Prior("lognormal", (math.log({np.exp(h_all[0]):.4g}), {h_all[1]:g})),')
    print('    "delta_w": Prior("beta", (2.0, 2.0)),\n}')
    print(run.markdown(_at(grid, h_all)[["source", *COLS]]))
    rows = []
    for src in srcs:  # each source's choice made without it
        h = best(grid, [s for s in learn if s != src], a.by)
        rows.append({"source": src, "arm": "lfo", "hyperprior": text(h), **_at(grid, h, src)})
    loso = pd.DataFrame(rows)
    loso.to_csv(OUT / f"learn_loso_{a.by}_r.csv", index=False)
    print(run.markdown(loso[["source", "arm", "hyperprior", *COLS]]))


def batch_choice(igrid: pd.DataFrame, src: str, h) -> tuple | None:
    """The centre maximising the source's inner per-curve log score x its curves plus the
    normal log prior (sd TAU) around the corpus choice ``h``; sd and g as in ``h``."""
    g = igrid[(igrid.source == src) & (igrid.sd == h[2]) & (igrid.g == h[3])]
    if g.empty:
        return None
    obj = g.lpd * g.curves - 0.5 * ((g.m_s - h[0]) ** 2 + (g.m_q - h[1]) ** 2) / TAU**2
    r = g.loc[obj.idxmax()]
    return (r.m_s, r.m_q, r.sd, r.g)


def _at(grid, h, src=None):
    keep = np.ones(len(grid), bool)
    for name, v in zip(NAMES[len(h)], h, strict=True):
        keep &= np.isclose(grid[name], v)
    sel = grid[keep]
    if src is None:
        return sel
    return sel[sel.source == src].iloc[0][COLS].to_dict()


if __name__ == "__main__":
    main()
