"""The options of :func:`bayescale.fit`: the model, and how its posterior is computed.

Each is a small frozen, keyword-only object checked when it is made, so a wrong value fails
before anything is traced, with a message naming the argument and the value; and an option
that does not apply to a method is not one of its fields (``MAP(num_chains=2)`` is a
``TypeError`` naming ``num_chains``).

- :class:`Model`: the likelihood, the noise model, priors and the hierarchy (which law
  parameters are pooled across the fits that ``fit(..., by=)`` splits the data into).
- :class:`NUTS`: the posterior by NUTS (default), with the batch-execution settings of a
  ``by=`` fit (``devices``, ``chunk_size``, ``vectorized``, ``group_size``, ``keep``).
- :class:`ChEES`: the posterior by fixed-length HMC with cross-chain (ChEES) adaptation, a
  lock-step sampler for ``by=`` batches, with the same batch settings.
- :class:`MAP`: the posterior mode.  :class:`Laplace`: draws of the Gaussian at the mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["MAP", "NUTS", "ChEES", "Laplace", "Model"]

#: NUTS step-size target of a pooled model (``Model(pooled=...)``), whose population spread
#: has a funnel-shaped neck that larger steps diverge in (``benchmarks/target_accept.py``).
POOLED_TARGET_ACCEPT_PROB = 0.99
#: NUTS step-size target otherwise.
TARGET_ACCEPT_PROB = 0.8


def _positive_int(owner: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}({name}={value!r}): {name} must be a positive integer")


def _optional_positive_int(owner: str, name: str, value) -> None:
    if value is not None:
        _positive_int(owner, name, value)


def _flag(owner: str, name: str, value, *, optional: bool = False) -> None:
    if not (isinstance(value, bool) or (optional and value is None)):
        allowed = "True, False or None" if optional else "True or False"
        raise TypeError(f"{owner}({name}={value!r}): {name} must be {allowed}")


@dataclass(frozen=True, kw_only=True)
class Model:
    """The statistical model of a fit, beyond the law itself.

    The law is fitted in log space, :math:`\\log y_i = \\log f(x_i;\\theta) + \\varepsilon_i`.

    Parameters
    ----------
    likelihood : str
        Distribution of :math:`\\varepsilon_i`: ``"student_t"`` (default; :math:`\\nu`
        fitted), ``"student_t(4)"`` (fixed :math:`\\nu`), ``"normal"`` or ``"huber"``
        (:mod:`bayescale.model`).
    noise : {"constant", "loglinear"}
        One scale :math:`\\sigma` (default), or :math:`\\log\\sigma(x) = \\log\\sigma_0 +
        \\sum_c \\gamma_c u_c`, :math:`u_c` the standardised log covariates,
        :math:`\\gamma_c \\sim \\mathcal N(0, 0.5^2)` fitted (sites ``gamma_<covariate>``).
    priors : mapping of str to str, optional
        Replacement priors, e.g. ``{"alpha": "lognormal(-1, 0.5)", "sigma": "halfnormal(0.05)"}``
        (:class:`bayescale.laws.Prior` text).
    pooled : sequence of str
        Law parameters drawn from a population across the fits that ``fit(..., by=column)``
        splits the data into (seeds, datasets, architectures):
        :math:`z_{p,g} \\sim \\mathcal N(\\mu_p, \\tau_p)` on the unconstrained scale, every
        other parameter per fit (:class:`bayescale.model.PooledPosterior`).  Empty (default):
        the fits are independent.  Needs ``by=`` and :class:`NUTS`.
    discrepancy : str or None
        The law's own error :math:`\\delta(x)`, added to the log mean and correlated along
        the covariate (:mod:`bayescale.model.discrepancy`): ``"ou_rw"`` (an OU process of
        one-decade length plus a random walk in decades of :math:`x`, fitted as their
        roughness ``delta_r`` and the walk's share ``delta_w``), or ``"ou_rw(m_r, sd_r)"``
        with another log-normal hyperprior of the roughness.  It widens
        ``predict(kind="observation")`` beyond the data.  Laws of several covariates get
        none.  ``None``: the law is exact (residuals independent).

    Raises
    ------
    ValueError, TypeError
        For an unknown likelihood or noise model, a prior that does not parse, or a
        ``pooled`` that is not a sequence of names.
    """

    likelihood: str = "student_t"
    noise: str = "constant"
    priors: Mapping[str, str] | None = None
    pooled: tuple[str, ...] = ()
    discrepancy: str | None = None

    @property
    def observation(self) -> str:
        """The likelihood string of the posterior: family, noise model and discrepancy
        (:func:`bayescale.model.observation_name`)."""
        from bayescale.model import observation_name

        return observation_name(self.likelihood, self.noise, self.discrepancy)

    def __post_init__(self):
        from bayescale.laws import LawError, Prior
        from bayescale.model import likelihood_family, parse_discrepancy, with_noise

        if not isinstance(self.likelihood, str):
            raise TypeError(f"Model(likelihood={self.likelihood!r}): likelihood must be a string")
        if not isinstance(self.noise, str):
            raise TypeError(f"Model(noise={self.noise!r}): noise must be a string")
        try:
            likelihood_family(with_noise(self.likelihood, self.noise))
        except ValueError as err:
            raise ValueError(
                f"Model(likelihood={self.likelihood!r}, noise={self.noise!r}): {err}"
            ) from None
        if self.priors is not None:
            if not isinstance(self.priors, Mapping):
                raise TypeError(
                    f"Model(priors={self.priors!r}): priors must be a mapping of parameter "
                    "name to prior text"
                )
            for name, text in self.priors.items():
                try:
                    Prior.parse(text)
                except LawError as err:
                    raise ValueError(f"Model(priors={{{name!r}: {text!r}}}): {err}") from None
            object.__setattr__(self, "priors", dict(self.priors))
        pooled = self.pooled
        if isinstance(pooled, str) or not isinstance(pooled, Sequence):
            raise TypeError(
                f"Model(pooled={pooled!r}): pooled must be a sequence of parameter names, "
                "e.g. ('alpha',)"
            )
        if not all(isinstance(p, str) for p in pooled) or len(set(pooled)) != len(pooled):
            raise ValueError(f"Model(pooled={pooled!r}): pooled must name distinct parameters")
        object.__setattr__(self, "pooled", tuple(pooled))
        if self.discrepancy is not None:
            if not isinstance(self.discrepancy, str):
                raise TypeError(
                    f"Model(discrepancy={self.discrepancy!r}): discrepancy must be a string or None"
                )
            try:
                object.__setattr__(self, "discrepancy", parse_discrepancy(self.discrepancy)[1])
            except ValueError as err:
                raise ValueError(f"Model(discrepancy={self.discrepancy!r}): {err}") from None

    def __hash__(self):
        priors = None if self.priors is None else tuple(sorted(self.priors.items()))
        return hash((self.likelihood, self.noise, priors, self.pooled, self.discrepancy))


@dataclass(frozen=True, kw_only=True)
class _Batch:
    """Where the fits of a ``fit(..., by=)`` run: shared by the inference options."""

    devices: Sequence | None = field(default=None, compare=False)

    def _check_batch(self) -> None:
        if self.devices is not None and (
            isinstance(self.devices, str) or not isinstance(self.devices, Sequence)
        ):
            raise TypeError(
                f"{type(self).__name__}(devices={self.devices!r}): devices must be a "
                "sequence of JAX devices"
            )
        if self.devices is not None and not len(self.devices):
            raise ValueError(f"{type(self).__name__}(devices=[]): give at least one device")


@dataclass(frozen=True, kw_only=True)
class _Sampler(_Batch):
    """Settings shared by the MCMC options (:class:`NUTS`, :class:`ChEES`), documented there."""

    progress_bar: bool | None = field(default=None, compare=False)
    chunk_size: int | None = None
    vectorized: bool | None = None
    group_size: int | None = None
    keep: int | None = None
    dtype: str = "float64"

    def _check_sampler(self) -> None:
        owner = type(self).__name__
        for name in ("num_samples", "thin", "num_starts"):
            _positive_int(owner, name, getattr(self, name))
        w = self.num_warmup
        if not isinstance(w, int) or isinstance(w, bool) or w < 0:
            raise ValueError(
                f"{owner}(num_warmup={w!r}): num_warmup must be a non-negative integer"
            )
        _flag(owner, "dense_mass", self.dense_mass)
        _flag(owner, "progress_bar", self.progress_bar, optional=True)
        _flag(owner, "vectorized", self.vectorized, optional=True)
        _optional_positive_int(owner, "chunk_size", self.chunk_size)
        _optional_positive_int(owner, "group_size", self.group_size)
        k = self.keep
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 4):
            raise ValueError(f"{owner}(keep={k!r}): keep must be None or an integer >= 4")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"{owner}(dtype={self.dtype!r}): dtype must be 'float64' or 'float32'")
        self._check_batch()

    @property
    def batch_only(self) -> dict:
        """The batch-execution settings given (not ``None``), which need ``by=``."""
        names = ("chunk_size", "vectorized", "group_size", "keep")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True, kw_only=True)
class NUTS(_Sampler):
    """The posterior by NumPyro's NUTS, each fit's chains started around its MAP.

    Parameters
    ----------
    num_chains, num_warmup, num_samples, thin : int
        Draws kept per chain: ``num_samples`` (every ``thin``-th iteration after warm-up).
    dense_mass : bool
        Dense (default) or diagonal mass matrix, adapted per fit during warm-up.
    target_accept_prob : float, optional
        Step-size target in (0, 1).  Default (``None``): 0.8, or 0.99 for a pooled model
        (:data:`POOLED_TARGET_ACCEPT_PROB`).
    max_tree_depth : int
        NUTS tree depth limit, 1..15.
    num_starts : int
        Prior draws from which the MAP search that initialises the chains starts.
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.
    devices : sequence of jax devices, optional
        Default all: a single fit splits its chains over them, a ``by=`` fit its fits.
    chunk_size, vectorized, group_size, keep
        Batch execution of a ``by=`` fit (not allowed without ``by=``): fits per compiled
        call (default: what fits in ~4 GiB); chains vmapped together or run one by one and
        fits initialised together (defaults: :func:`bayescale.infer.batch.lockstep_defaults`);
        ``keep`` draws per chain held in the result, the convergence numbers and summary
        computed from all draws first, on the device (:func:`bayescale.convergence.keep_draws`,
        :mod:`bayescale.infer.reduce`).
    dtype : {"float64", "float32"}
        Precision of the sampler (log density, gradients, NUTS, adaptation, MAP start) and of
        the device-side reduction.  Default float64, which scaling-law posteriors need in
        general (losses differ in the fourth digit, parameters span decades); ``"float32"``
        halves memory and runs at accelerators' float32 rate, for curves whose fits agree
        with float64 within Monte Carlo error (check on a sample of them).  Draws are
        returned in this dtype; the result's diagnostics are computed in float64 on the
        host when draws are kept in full.

    Raises
    ------
    ValueError, TypeError
        Naming the argument and its value.
    """

    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    thin: int = 1
    dense_mass: bool = True
    target_accept_prob: float | None = None
    max_tree_depth: int = 10
    num_starts: int = 8

    def __post_init__(self):
        _positive_int("NUTS", "num_chains", self.num_chains)
        self._check_sampler()
        p = self.target_accept_prob
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 1
        ):
            raise ValueError(
                f"NUTS(target_accept_prob={p!r}): target_accept_prob must lie in (0, 1)"
            )
        d = self.max_tree_depth
        if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 15:
            raise ValueError(
                f"NUTS(max_tree_depth={d!r}): max_tree_depth must be an integer in 1..15"
            )

    def step_target(self, pooled: bool) -> float:
        """The step-size target used: the given one, else the default for the model."""
        if self.target_accept_prob is not None:
            return float(self.target_accept_prob)
        return POOLED_TARGET_ACCEPT_PROB if pooled else TARGET_ACCEPT_PROB


@dataclass(frozen=True, kw_only=True)
class ChEES(_Sampler):
    """The posterior by fixed-length HMC with ChEES adaptation (Hoffman, Radul & Sountsov
    2021), each fit's chains started around its MAP (:mod:`bayescale.infer.hmc`).

    All chains of a fit run the same number of leapfrog steps each iteration (a jittered
    trajectory length over the step size, no tree), so fits batched under ``vmap`` advance
    in lock step; the step size (dual averaging of the chains' harmonic-mean acceptance),
    trajectory length (the ChEES criterion across the chains) and mass matrix are adapted
    per fit during warm-up.  :class:`NUTS` stays the reference.

    Parameters
    ----------
    num_chains : int
        Chains per fit, at least 2 (the adaptation uses cross-chain statistics).
    num_warmup, num_samples, thin : int
        As in :class:`NUTS`.
    dense_mass : bool
        Dense (default) or diagonal mass matrix.
    target_accept_prob : float
        Target of the harmonic mean of the chains' acceptance probabilities, in (0, 1);
        default 0.8 (Hoffman et al. use 0.651, which diverges more often on these laws).
    max_leapfrog_steps : int
        Most leapfrog steps per iteration.
    num_starts, progress_bar, devices, chunk_size, vectorized, group_size, keep, dtype
        As in :class:`NUTS`; ``vectorized`` puts the fits of a group under ``vmap``
        together (a fit's own chains always are); a single fit shows no progress bar.

    Raises
    ------
    ValueError, TypeError
        Naming the argument and its value.
    """

    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    thin: int = 1
    dense_mass: bool = True
    target_accept_prob: float = 0.8
    max_leapfrog_steps: int = 255
    num_starts: int = 8

    def __post_init__(self):
        c = self.num_chains
        if not isinstance(c, int) or isinstance(c, bool) or c < 2:
            raise ValueError(f"ChEES(num_chains={c!r}): num_chains must be an integer >= 2")
        _positive_int("ChEES", "max_leapfrog_steps", self.max_leapfrog_steps)
        self._check_sampler()
        p = self.target_accept_prob
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 1:
            raise ValueError(
                f"ChEES(target_accept_prob={p!r}): target_accept_prob must lie in (0, 1)"
            )


@dataclass(frozen=True, kw_only=True)
class MAP(_Batch):
    """The posterior mode :math:`\\hat z = \\arg\\min_z U(z)` of the potential in the
    unconstrained space, by L-BFGS from ``num_starts`` prior draws (vmapped), the best kept;
    one draw per fit (``chain`` and ``draw`` of size 1).

    Parameters
    ----------
    num_starts : int
        Starts of the mode search.
    num_steps : int
        L-BFGS steps per start.
    flat_priors : bool
        Maximise the likelihood alone (no priors).  With ``Model(likelihood="huber")`` this
        is Hoffmann et al.'s objective (:mod:`bayescale.model`).
    devices : sequence of jax devices, optional
        A ``by=`` fit's fits are split over them (default: all).
    """

    num_starts: int = 8
    num_steps: int = 500
    flat_priors: bool = False

    def __post_init__(self):
        _positive_int("MAP", "num_starts", self.num_starts)
        _positive_int("MAP", "num_steps", self.num_steps)
        _flag("MAP", "flat_priors", self.flat_priors)
        self._check_batch()


@dataclass(frozen=True, kw_only=True)
class Laplace(_Batch):
    """``num_chains`` x ``num_samples`` draws of :math:`\\mathcal N(\\hat z, H^{-1})`,
    :math:`H = \\nabla^2 U(\\hat z)` at the mode found as by :class:`MAP`, mapped to the
    constrained space.

    Parameters
    ----------
    num_starts, num_steps : int
        As in :class:`MAP`.
    num_chains, num_samples : int
        Shape of the draws.
    devices : sequence of jax devices, optional
        As in :class:`MAP`.
    """

    num_starts: int = 8
    num_steps: int = 500
    num_chains: int = 4
    num_samples: int = 1000

    def __post_init__(self):
        for name in ("num_starts", "num_steps", "num_chains", "num_samples"):
            _positive_int("Laplace", name, getattr(self, name))
        self._check_batch()


def method_name(inference) -> str:
    """``"nuts"``, ``"chees"``, ``"map"`` or ``"laplace"``: the name results record for
    ``inference``."""
    names = {NUTS: "nuts", ChEES: "chees", MAP: "map", Laplace: "laplace"}
    if type(inference) not in names:
        raise TypeError(
            f"inference={inference!r}: inference must be NUTS(...), ChEES(...), MAP(...) or "
            "Laplace(...)"
        )
    return names[type(inference)]
