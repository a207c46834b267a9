"""Compute-optimal allocation and the design of next runs (bayescale.plan).

Most checks run on posteriors given as draws (a ``Result`` built from an ArviZ DataTree,
no sampling), so that the allocation and the design criterion are tested against closed
forms; the campaign test fits and refits simulated campaigns with ``fit(..., by=)``.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arviz_base import from_dict
from conftest import scaled
from scipy import optimize, stats

from bayescale import DataError, Result, plan
from bayescale.laws import get_law

EPOCH = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.348, "beta": 0.366}
CHINCHILLA_FLOPS = 5.76e23


def draws_result(law, draws: dict, likelihood: str = "normal") -> Result:
    """A Result holding the given posterior draws (``{name: (chain, draw)}``)."""
    law = get_law(law)
    dt = from_dict(
        {"posterior": draws},
        attrs={
            "/": {
                "law": json.dumps(law.to_spec(), default=float),
                "law_id": law.id,
                "likelihood": likelihood,
                "columns": json.dumps({c: c for c in (*law.covariates, law.response)}),
            }
        },
    )
    return Result(dt, law, likelihood, {c: c for c in (*law.covariates, law.response)})


def lognormal_draws(center: dict, rel_sd: float, shape=(2, 1000), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: v * np.exp(rel_sd * rng.standard_normal(shape)) for k, v in center.items()}


def attention_flops(n, d):
    """A FLOP formula with an attention-like term: C = 6ND + 6 * 2048 * 96 * D."""
    return 6 * n * d + 6 * 2048 * 96 * d


@pytest.fixture(scope="module")
def chinchilla_draws():
    return draws_result("chinchilla", lognormal_draws({**EPOCH, "sigma": 0.02}, 0.05))


# ---------------------------------------------------------------------------- allocation
def test_allocation_closed_form_equals_numeric_minimum(chinchilla_draws):
    """Hoffmann's closed form, the numeric grid + parabola path (forced by a FLOP formula
    equal to 6ND) and a scipy minimisation of the law along C = 6ND agree per draw."""
    budgets = [1e20, CHINCHILLA_FLOPS, 1e26]
    closed = plan.allocation_draws(chinchilla_draws, budgets)
    numeric = plan.allocation_draws(chinchilla_draws, budgets, flops_formula=lambda n, d: 6 * n * d)
    for name in ("n_params", "n_tokens", "tokens_per_param", "loss"):
        assert closed[name].shape == (2, 1000, 3)
        np.testing.assert_allclose(numeric[name], closed[name], rtol=2e-3)
    np.testing.assert_allclose(
        6 * closed["n_params"] * closed["n_tokens"],
        np.broadcast_to(budgets, (2, 1000, 3)),
        rtol=1e-10,
    )
    draws = chinchilla_draws.draws()
    for i in range(5):
        v = {k: float(x[0, i]) for k, x in draws.items()}

        def loss(log_n, c=CHINCHILLA_FLOPS, v=v):
            n = math.exp(log_n)
            return v["E"] + v["A"] * n ** -v["alpha"] + v["B"] * (c / (6 * n)) ** -v["beta"]

        best = optimize.minimize_scalar(
            loss, bounds=(10, 40), method="bounded", options={"xatol": 1e-10}
        )
        assert closed["n_params"][0, i, 1] == pytest.approx(math.exp(best.x), rel=1e-4)
        assert closed["loss"][0, i, 1] == pytest.approx(best.fun, rel=1e-9)


def test_allocate_grid_of_budgets_bands(chinchilla_draws):
    budgets = np.geomspace(1e20, 1e26, 7)
    table = plan.allocate(chinchilla_draws, budgets)
    assert len(table) == 7 * 4
    n_opt = table[table.quantity == "n_params"]
    assert np.all(np.diff(n_opt["q50"]) > 0)  # more compute -> bigger model
    assert np.all((n_opt["q5"] < n_opt["q50"]) & (n_opt["q50"] < n_opt["q95"]))
    # Epoch's rounded constants at Chinchilla's budget, by hand: D/N = G^-2 (C/6)^((a-b)/(a+b))
    point = draws_result(
        "chinchilla", {k: np.full((1, 4), v) for k, v in {**EPOCH, "sigma": 0.02}.items()}
    )
    a, b = EPOCH["alpha"], EPOCH["beta"]
    g = (a * EPOCH["A"] / (b * EPOCH["B"])) ** (1 / (a + b))
    expected = g**-2 * (CHINCHILLA_FLOPS / 6) ** ((a - b) / (a + b))
    row = plan.allocate(point, CHINCHILLA_FLOPS).set_index("quantity").loc["tokens_per_param"]
    assert row["q5"] == pytest.approx(expected, rel=1e-9)
    assert row["q95"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="flops must be positive"):
        plan.allocate(chinchilla_draws, [1e20, -1.0])


def test_kaplan_nd_allocation_gives_batch_size_and_steps():
    """A kaplan_* law: numeric optimum (checked against scipy), and B = B_crit(L_opt),
    S = D_opt / B with the published B_crit constants (DOMAIN.md)."""
    law = get_law("kaplan_nd")
    result = draws_result(law, lognormal_draws({**law.reference, "sigma": 0.02}, 0.02, (1, 50)))
    c = 1e21
    out = plan.allocation_draws(result, c)
    assert {"batch_size", "steps"} <= set(out)
    ref = get_law("kaplan_bcrit").reference
    expected_b = ref["B_star"] * out["loss"] ** (-1 / ref["alpha_B"])
    np.testing.assert_allclose(out["batch_size"], expected_b, rtol=1e-10)
    np.testing.assert_allclose(out["steps"] * out["batch_size"], out["n_tokens"], rtol=1e-10)
    v = {k: float(x[0, 0]) for k, x in result.draws().items()}

    def loss(log_n):
        n = math.exp(log_n)
        d = c / (6 * n)
        return ((v["N_c"] / n) ** (v["alpha_N"] / v["alpha_D"]) + v["D_c"] / d) ** v["alpha_D"]

    best = optimize.minimize_scalar(loss, bounds=(5, 45), method="bounded", options={"xatol": 1e-9})
    assert out["n_params"][0, 0, 0] == pytest.approx(math.exp(best.x), rel=5e-3)
    # B_crit from a kaplan_bcrit posterior instead (constants unlike the published ones):
    # the batch size follows those draws, the allocation itself does not change
    bcrit = draws_result(
        "kaplan_bcrit",
        {
            "B_star": np.full((1, 7), 1.5e8),
            "alpha_B": np.full((1, 7), 0.25),
            "sigma": np.ones((1, 7)),
        },
    )
    fitted = plan.allocation_draws(result, c, bcrit=bcrit)
    np.testing.assert_allclose(fitted["batch_size"], 1.5e8 * out["loss"] ** -4.0, rtol=1e-10)
    np.testing.assert_allclose(fitted["steps"] * fitted["batch_size"], out["n_tokens"])
    np.testing.assert_array_equal(fitted["n_params"], out["n_params"])
    with pytest.raises(ValueError, match="kaplan_bcrit"):
        plan.allocation_draws(result, c, bcrit=result)


def test_user_flops_formula_is_spent_exactly(chinchilla_draws):
    """A FLOP formula with an attention-like term, C = 6ND + 6 * 2048 * 96 * D: the optimum
    spends the budget exactly and lies on the law's minimum along that budget curve."""
    flops = attention_flops
    c = 1e22
    out = plan.allocation_draws(chinchilla_draws, c, flops_formula=flops)
    np.testing.assert_allclose(flops(out["n_params"], out["n_tokens"]), c, rtol=1e-9)
    v = {k: float(x[0, 0]) for k, x in chinchilla_draws.draws().items()}

    def loss(log_n):
        n = math.exp(log_n)
        d = c / (6 * n + 6 * 2048 * 96)
        return v["E"] + v["A"] * n ** -v["alpha"] + v["B"] * d ** -v["beta"]

    best = optimize.minimize_scalar(
        loss, bounds=(10, 40), method="bounded", options={"xatol": 1e-9}
    )
    assert out["n_params"][0, 0, 0] == pytest.approx(math.exp(best.x), rel=5e-3)


def test_frontier_plot_draws_bands_and_references(chinchilla_draws, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from bayescale import plot

    budgets = np.geomspace(1e20, 1e25, 12)
    refs = {"Hoffmann": {"flops": CHINCHILLA_FLOPS, "n_params": 70e9, "n_tokens": 1.4e12}}
    ax = plot.frontier(chinchilla_draws, budgets, references=refs)
    assert len(ax.collections) == 2  # one band per quantity
    median = ax.lines[0].get_ydata()
    q50 = np.median(plan.allocation_draws(chinchilla_draws, budgets)["n_params"].reshape(-1, 12), 0)
    np.testing.assert_allclose(median, q50)
    assert len(ax.lines) == 4  # two medians, two reference points
    path = plot.save_figure(ax, tmp_path / "frontier.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="unknown allocation quantities"):
        plot.frontier(chinchilla_draws, budgets, quantities=("n_best",))


def test_allocation_rejects_laws_without_n_and_d():
    result = draws_result(
        "power_law", lognormal_draws({"A": 5.0, "alpha": 0.3, "sigma": 0.02}, 0.1)
    )
    with pytest.raises(ValueError, match="n_params and n_tokens"):
        plan.allocate(result, 1e20)


# ---------------------------------------------------------------------------- targets
def test_parse_target_forms_and_errors():
    law = get_law("chinchilla")
    assert plan.parse_target(law, "n_opt@5.76e23") == plan.Target(
        "allocation", "n_opt", {"flops": 5.76e23}
    )
    assert plan.parse_target(law, ("loss_opt", 1e22)).quantity == "loss_opt"
    point = plan.parse_target(law, "n_params=1e11, n_tokens=2e12")
    assert point == plan.parse_target(law, {"n_params": 1e11, "n_tokens": 2e12})
    assert point.kind == "point" and point.quantity == "loss"
    with pytest.raises(ValueError, match="n_tokens"):
        plan.parse_target(law, {"n_params": 1e11})
    with pytest.raises(ValueError, match="QUANTITY"):
        plan.parse_target(law, "n_best@1e22")
    with pytest.raises(ValueError, match="not a number"):
        plan.parse_target(law, "n_opt@lots")
    bcrit = plan.parse_target(get_law("kaplan_bcrit"), {"loss": 2.0})
    assert bcrit.quantity == "critical_batch_size"


def test_target_draws_loss_at_a_point_and_at_a_budget(chinchilla_draws):
    """The loss at a target (N, D) is the law there; the loss at a target budget is the loss
    at that budget's optimum (``loss_opt@C``), per draw."""
    draws = chinchilla_draws.draws()
    n, d = 1e11, 2e12
    loss = plan.target_draws(chinchilla_draws, {"n_params": n, "n_tokens": d})
    expected = draws["E"] + draws["A"] * n ** -draws["alpha"] + draws["B"] * d ** -draws["beta"]
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    at_budget = plan.target_draws(chinchilla_draws, "loss_opt@5.76e23")
    optimum = plan.allocation_draws(chinchilla_draws, CHINCHILLA_FLOPS)["loss"][..., 0]
    np.testing.assert_allclose(at_budget, optimum, rtol=1e-12)


# ---------------------------------------------------------------------------- design
def gaussian_power_law(seed=0, num=4000):
    """Gaussian posterior of (log A, alpha) for y = A x^-alpha, fixed sigma: every quantity
    below is linear-Gaussian, so the expected posterior variance has a closed form."""
    rng = np.random.default_rng(seed)
    mean = np.array([math.log(5.0), 0.3])
    cov = np.array([[0.04, 0.006], [0.006, 0.0016]])
    z = rng.multivariate_normal(mean, cov, num)
    draws = {"A": np.exp(z[:, 0]), "alpha": z[:, 1], "sigma": np.full(num, 0.05)}
    return draws_result("power_law", {k: v.reshape(2, -1) for k, v in draws.items()}), z


def gaussian_bcrit(seed=0, num=4000):
    """Gaussian posterior of (log B*, 1 / alpha_B) for B_crit = B* L^(-1/alpha_B), fixed
    sigma: log B_crit at any loss is linear in them, so the criterion has a closed form.
    Var log B_crit(L) = 0.04 ((log L - 1.3)^2 + 1): best known inside the losses observed."""
    rng = np.random.default_rng(seed)
    mean = np.array([math.log(2.1e8), 1 / 0.21])
    cov = 0.04 * np.array([[1 + 1.3**2, 1.3], [1.3, 1.0]])
    z = rng.multivariate_normal(mean, cov, num)
    draws = {"B_star": np.exp(z[:, 0]), "alpha_B": 1 / z[:, 1], "sigma": np.full(num, 0.05)}
    return draws_result("kaplan_bcrit", {k: v.reshape(2, -1) for k, v in draws.items()}), z


def test_expected_variance_matches_linear_gaussian_closed_form():
    """The target B_crit at a target loss (``{"loss": 1.5}``, below the candidates' losses),
    candidates with their own costs.  For a linear-Gaussian problem the criterion is known
    exactly: Var[t] - Cov(t, f_c)^2 / (Var f_c + sigma^2).  The nested Monte Carlo estimate
    (no Gaussian assumption inside) must match it within its Monte Carlo error."""
    result, z = gaussian_bcrit()
    loss_t, sigma, num_outer = 1.5, 0.05, 512
    losses = np.geomspace(2.0, 7.0, 9)
    cands = pd.DataFrame({"loss": losses, "cost": (7.0 / losses) ** 4})
    scores = plan.score_candidates(result, {"loss": loss_t}, cands, num_outer=num_outer)
    t = z[:, 0] - z[:, 1] * math.log(loss_t)
    np.testing.assert_allclose(
        np.log(plan.target_draws(result, {"loss": loss_t}).ravel()), t, rtol=1e-12
    )
    assert scores.attrs["prior_variance"] == pytest.approx(np.var(t), rel=1e-9)
    np.testing.assert_array_equal(scores["cost"], cands["cost"])
    for loss, got in zip(losses, scores["variance_reduction"], strict=True):
        f = z[:, 0] - z[:, 1] * math.log(loss)
        exact = np.cov(t, f)[0, 1] ** 2 / (np.var(f) + sigma**2)
        # the estimate is a mean of num_outer squared deviations: chi-square-like relative sd
        # sqrt(2 / num_outer), 4 sd; near zero, the importance-sampling error of the inner
        # draws, of order Var[t] / num_draws
        tol = 4 * math.sqrt(2 / num_outer) * exact + 8 * np.var(t) / len(t)
        assert abs(got - exact) < tol, (loss, got, exact)


def test_next_runs_respects_budget_k_and_prefers_informative_runs():
    result, _ = gaussian_power_law(seed=1)
    xs = np.geomspace(1, 3e3, 30)
    cands = pd.DataFrame({"x": xs, "cost": xs})
    design = plan.next_runs(
        result, target={"x": 1e4}, candidates=cands, budget=3500.0, k=3, num_draws=1000
    )
    assert 1 <= len(design) <= 3
    assert design["cost"].sum() <= 3500.0
    assert design["x"].is_unique
    assert np.all(design["expected_variance"] >= 0)
    assert np.all(design["expected_sd_ratio"] < 1)
    assert np.all(design["ess"] >= 1)
    # one run only: for extrapolation to x = 1e4 the largest affordable x is the most informative
    one = plan.next_runs(result, target={"x": 1e4}, candidates=cands, budget=1000.0, k=1)
    assert one["x"].iloc[0] == xs[xs <= 1000.0].max()
    with pytest.raises(ValueError, match="no candidate run fits the budget"):
        plan.next_runs(result, target={"x": 1e4}, candidates=cands, budget=0.5, k=2)
    with pytest.raises(DataError, match="cost"):
        plan.next_runs(result, target={"x": 1e4}, candidates={"x": xs}, budget=10.0)
    with pytest.raises(DataError, match="cost"):
        plan.next_runs(result, target={"x": 1e4}, candidates={"x": xs, "cost": -xs}, budget=10.0)
    with pytest.raises(ValueError, match="k must be"):
        plan.next_runs(result, target={"x": 1e4}, candidates=cands, budget=10.0, k=0)


def test_next_runs_allocation_target_on_chinchilla(chinchilla_draws):
    """Target N_opt at a budget; candidates costed by 6ND by default, or by a user FLOP
    formula (which also defines the target's allocation).  600 draws, 128 outer draws,
    <= 32 candidates and k <= 3: the shapes of the campaign test's designs (one compiled
    scorer)."""
    n = np.geomspace(1e8, 3e9, 8)
    cands = pd.DataFrame(
        [(a, a * r) for a in n for r in (5.0, 20.0, 80.0)], columns=["n_params", "n_tokens"]
    )
    budget = 3e21
    kw = dict(candidates=cands, budget=budget, k=3, num_outer=128, num_draws=600)
    design = plan.next_runs(chinchilla_draws, target="n_opt@5.76e23", **kw)
    assert design["cost"].sum() <= budget
    np.testing.assert_allclose(design["cost"], 6 * design["n_params"] * design["n_tokens"])
    assert design.attrs["target"] == "n_opt@5.76e+23"
    user = plan.next_runs(
        chinchilla_draws, target="n_opt@5.76e23", flops_formula=attention_flops, **kw
    )
    assert user["cost"].sum() <= budget
    np.testing.assert_allclose(user["cost"], attention_flops(user["n_params"], user["n_tokens"]))


def test_next_runs_replicates_when_allowed():
    """``max_per_candidate`` caps how often one candidate is chosen: once by default, up to k
    with ``None`` (each replicate with its own simulated noise removes more variance).  The
    shapes (<= 32 candidates, k <= 3, 1,000 draws) are those of the test above: no
    recompilation."""
    result, _ = gaussian_power_law(seed=2)
    xs = np.geomspace(1, 3e3, 30)
    only = pd.DataFrame({"x": xs, "cost": np.where(np.arange(30) == 20, 1.0, 100.0)})
    kw = dict(target={"x": 1e4}, candidates=only, budget=10.0, k=3, num_draws=1000)
    assert plan.next_runs(result, **kw).attrs["candidate_index"] == [20]
    design = plan.next_runs(result, max_per_candidate=None, **kw)
    assert design.attrs["candidate_index"] == [20, 20, 20]
    assert np.all(np.diff(design["expected_variance"]) < 0)
    kw["candidates"] = pd.DataFrame({"x": xs, "cost": 1.0})
    assert plan.next_runs(result, max_per_candidate=2, **kw)["x"].value_counts().max() <= 2
    with pytest.raises(ValueError, match="max_per_candidate"):
        plan.next_runs(result, max_per_candidate=0, **kw)


def test_isoflop_candidates_spend_their_budget():
    cands = plan.isoflop_candidates([1e19, 3e19], tokens_per_param=(0.1, 1000.0), num=5)
    assert len(cands) == 10
    np.testing.assert_allclose(cands["cost"], np.repeat([1e19, 3e19], 5), rtol=1e-12)
    np.testing.assert_allclose(6 * cands.n_params * cands.n_tokens, cands["cost"], rtol=1e-12)
    ratio = (cands.n_tokens / cands.n_params).to_numpy()
    np.testing.assert_allclose(ratio, np.tile(np.geomspace(0.1, 1000.0, 5), 2), rtol=1e-12)
    with pytest.raises(ValueError, match="tokens_per_param"):
        plan.isoflop_candidates(1e19, tokens_per_param=(10.0, 1.0))


# ---------------------------------------------------------------------------- kaplan_ns
def test_kaplan_ns_allocation_spends_c_equal_6nbs_at_the_critical_batch():
    """L(N, S) under C = 6 N B S with B = B_crit(L) (published constants): the budget is spent
    exactly, B is the critical batch at the optimum's loss, D = B S, and the optimum is the
    minimum of L along that budget found by scipy (brentq for S, bounded search over N)."""
    law = get_law("kaplan_ns")
    result = draws_result(law, lognormal_draws({**law.reference, "sigma": 0.02}, 0.02, (1, 20)))
    budgets = [1e19, 1e22]
    out = plan.allocation_draws(result, budgets)
    ref = get_law("kaplan_bcrit").reference
    np.testing.assert_allclose(
        out["batch_size"], ref["B_star"] * out["loss"] ** (-1 / ref["alpha_B"]), rtol=1e-10
    )
    np.testing.assert_allclose(
        6 * out["n_params"] * out["batch_size"] * out["steps"],
        np.broadcast_to(budgets, (1, 20, 2)),
        rtol=1e-9,
    )
    np.testing.assert_allclose(out["n_tokens"], out["batch_size"] * out["steps"], rtol=1e-10)
    assert np.all(np.diff(out["n_params"], axis=-1) > 0)
    v = {k: float(x[0, 0]) for k, x in result.draws().items()}

    def loss(n, s):
        return (v["N_c"] / n) ** v["alpha_N"] + (v["S_c"] / s) ** v["alpha_S"]

    for j, c in enumerate(budgets):

        def log_steps(log_n, c=c):
            def excess(log_s):
                n, s = math.exp(log_n), math.exp(log_s)
                b = ref["B_star"] * loss(n, s) ** (-1 / ref["alpha_B"])
                return math.log(6 * n * b * s / c)

            return optimize.brentq(excess, -60, 80)

        best = optimize.minimize_scalar(
            lambda ln: loss(math.exp(ln), math.exp(log_steps(ln))),
            bounds=(5, 40),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert out["n_params"][0, 0, j] == pytest.approx(math.exp(best.x), rel=2e-3)
        assert out["steps"][0, 0, j] == pytest.approx(math.exp(log_steps(best.x)), rel=2e-3)
        assert out["loss"][0, 0, j] == pytest.approx(best.fun, rel=1e-6)
    with pytest.raises(ValueError, match="law of steps"):
        plan.allocation_draws(result, 1e20, flops_formula=lambda n, d: 6 * n * d)


# ---------------------------------------------------------------------------- campaigns
def test_simulate_runs_shares_noise_across_designs():
    """Outcomes at chosen runs: the law times log-normal noise, row i's noise the i-th normal
    of the seed (common random numbers across designs); errors name the column and row."""
    from bayescale.simulate import simulate_runs

    runs = pd.DataFrame({"n_params": [1e8, 1e9, 3e9], "n_tokens": [2e9, 2e10, 6e10]})
    exact = simulate_runs("chinchilla", runs, params=EPOCH, noise=0.0)
    v = EPOCH
    expected = v["E"] + v["A"] * runs.n_params ** -v["alpha"] + v["B"] * runs.n_tokens ** -v["beta"]
    np.testing.assert_allclose(exact["loss"], expected, rtol=1e-12)
    a = simulate_runs("chinchilla", runs, params=EPOCH, noise=0.02, seed=[3, 1])
    b = simulate_runs("chinchilla", runs.iloc[:2], params=EPOCH, noise=0.02, seed=[3, 1])
    np.testing.assert_allclose(a["loss"].iloc[:2], b["loss"])
    eps = np.log(a["loss"] / exact["loss"]) / 0.02
    np.testing.assert_allclose(eps, np.random.default_rng([3, 1]).standard_normal(3))
    with pytest.raises(ValueError, match="n_tokens"):
        simulate_runs("chinchilla", runs.drop(columns="n_tokens"))
    with pytest.raises(ValueError, match=r"'n_params'.*row 1"):
        simulate_runs("chinchilla", runs.assign(n_params=[1e8, -1.0, 1e9]))


TARGET_FLOPS = 1e22


def isoflop_start(budgets=(1e17, 3e17, 1e18, 3e18), sizes=5, spread=(0.2, 5.0)):
    """Small isoFLOP sweeps: per budget, ``sizes`` model sizes around 20 tokens/parameter."""
    n = np.array([f * math.sqrt(c / 120) for c in budgets for f in np.geomspace(*spread, sizes)])
    return pd.DataFrame({"n_params": n, "n_tokens": np.repeat(budgets, sizes) / (6 * n)})


@pytest.mark.slow
def test_campaigns_next_runs_shrink_the_target_more_than_random_and_grid(monkeypatch):
    """Seeded simulated campaigns (``benchmarks/campaigns.py``; truth: Epoch's Chinchilla
    constants): start from small isoFLOP sweeps, then spend the same compute on the runs
    ``next_runs`` chooses (iso-FLOP candidates at 1e19 and 3e19 FLOP, replicates allowed), on
    random candidates, or on a uniform grid (20 tokens per parameter); every design refitted
    in one ``fit(..., by=)`` call.  The target is N_opt at 1e22 FLOP, 3 decades beyond.

    Asserts that the median ratio of 90% interval widths (next / random, next / grid) is below
    one, with a one-sided sign test at 1% in the full size; that the refitted 90% intervals
    cover the truth at their nominal rate (one-sided binomial bounds at 0.1%, for the
    ``next_runs`` refits alone and for all refits); and in the full size (4 chains x 1,000)
    that most refits converge (r-hat < 1.01).  Campaigns whose starting fit gives non-finite
    target draws (a stuck chain) cannot be designed: they are skipped, reported and counted
    (the full size plans 60 and needs >= 50 designed); a refit with non-finite target draws
    counts against ``next_runs``."""
    num_planned = scaled(60, 4)
    fit = scaled(
        dict(num_chains=4, num_warmup=1000, num_samples=1000, target_accept_prob=0.95),
        dict(num_chains=2, num_warmup=300, num_samples=300),
    )
    monkeypatch.syspath_prepend(Path(__file__).resolve().parents[1] / "benchmarks")
    from campaigns import simulate_campaigns

    out = simulate_campaigns(
        "chinchilla",
        EPOCH,
        start=isoflop_start(),
        candidates=plan.isoflop_candidates([1e19, 3e19], num=scaled(31, 15)),
        target=("n_opt", TARGET_FLOPS),
        budget=3e19,
        k=3,
        num_campaigns=num_planned,
        noise=0.02,
        # the refits (3 designs per campaign) in chunks of the starting fits' size: one
        # compiled sampler for both fit(..., by=) calls
        fit_options={**fit, "chunk_size": num_planned},
        design_options={"num_outer": 128, "max_per_candidate": None},
        seed=0,
    )
    assert set(out.design) == {"start", "next", "random", "grid"}
    # a campaign whose starting fit has a stuck chain (non-finite target draws) cannot be
    # designed: it is skipped and reported; the full size plans 60 to keep >= 50
    skipped = out.attrs["skipped"]
    start = out[out.design == "start"].set_index("campaign")
    assert set(skipped) == set(start.index[start.num_nonfinite > 0]), skipped
    num = num_planned - len(skipped)
    assert num >= scaled(50, 3), skipped
    refits = out[out.design != "start"]
    assert refits.campaign.nunique() == num
    cost = refits.pivot(index="campaign", columns="design", values="cost")
    np.testing.assert_allclose(cost["random"], cost["next"], rtol=1e-9)
    np.testing.assert_allclose(cost["grid"], cost["next"], rtol=1e-9)
    assert np.all(cost["next"] <= 3e19 * (1 + 1e-9))
    width = refits.pivot(index="campaign", columns="design", values="width")
    for other in ("random", "grid"):
        # a refit with non-finite target draws has no interval: counted against next_runs
        ratio = (width["next"] / width[other]).fillna(np.inf)
        assert np.median(ratio) < 1, (other, np.median(ratio), ratio.tolist())
        if num >= 50:
            wins = int(np.sum(ratio < 1))
            assert wins > stats.binom.ppf(0.99, num, 0.5), (other, wins, num)
    # coverage of the truth, one-sided binomial bounds at 0.1%: the next_runs refits alone
    # (independent campaigns), and all refits pooled (the designs of a campaign share its start)
    covered_next = int(refits[refits.design == "next"].covered.sum())
    assert covered_next >= stats.binom.ppf(0.001, num, 0.9), (covered_next, num)
    covered = int(refits.covered.sum())
    assert covered >= stats.binom.ppf(0.001, len(refits), 0.9), (covered, len(refits))
    if num >= 50:
        assert np.mean(refits.max_rhat < 1.01) > 0.8, refits.max_rhat.describe()


def test_design_refuses_a_loglinear_noise_posterior():
    """Run design simulates constant-noise outcomes: a loglinear-noise posterior is refused."""
    from bayescale.model import Posterior, with_noise
    from bayescale.plan.design import compiled_scorer

    posterior = Posterior(get_law("chinchilla"), with_noise("student_t", "loglinear"))
    with pytest.raises(ValueError, match="noise='loglinear'"):
        compiled_scorer(posterior)
