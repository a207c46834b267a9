"""The :class:`Law` type, prior specifications and the catalogue of published laws.

A law is data: a TOML file in ``models/`` (shipped inside the wheel as
``bayescale/models``) giving the formula, the response, the covariates with units, the
parameters with default priors and the paper's reference values, the source, and a typical
design used to simulate data.  :func:`get_law` accepts a catalogue id, a path to such a file,
a formula string or a :class:`Law`.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpyro.distributions as dist

from bayescale.families import PriorFamily, get_prior_family, parse_prior
from bayescale.laws.formula import Formula, FormulaError, parse_formula

__all__ = [
    "COVARIATE_NAMES",
    "Law",
    "LawError",
    "Parameter",
    "Prior",
    "catalogue",
    "get_law",
    "law_from_formula",
    "law_from_spec",
    "law_from_toml",
]

#: Covariate (and response) names understood without declaration.
COVARIATE_NAMES = {
    "n_params": "parameters (non-embedding)",
    "n_tokens": "tokens",
    "flops": "FLOP",
    "flops_min": "PF-days",
    "steps": "optimizer steps",
    "batch_size": "tokens",
    "token_index": "token position",
    "lr_area": "steps at the peak learning rate",
    "lr_annealing_area": "steps at the peak learning rate",
    "loss": "nats/token",
    "critical_batch_size": "tokens",
    "x": "",
    "y": "",
}


class LawError(ValueError):
    """A law that cannot be found or is malformed."""


@dataclass(frozen=True)
class Prior:
    """A prior written as text, e.g. ``"lognormal(0.5, 1.0)"``: a family and its arguments.

    ``lognormal(mu, s)``: :math:`\\log\\theta \\sim \\mathcal N(\\mu, s)`;
    ``normal(mu, s)``; ``halfnormal(s)``; ``uniform(a, b)``; ``gamma(k, rate)``;
    ``beta(a, b)``.  Each family is one class of :mod:`bayescale.families.priors`
    (:attr:`family`); the methods here pass this prior's arguments to it.
    """

    kind: str
    args: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Prior:
        """Parse and check ``text``; :class:`LawError` naming it and the bad value otherwise."""
        try:
            return cls(*parse_prior(text))
        except ValueError as err:
            raise LawError(str(err)) from None

    @property
    def family(self) -> PriorFamily:
        return get_prior_family(self.kind)

    @property
    def positive(self) -> bool:
        """Whether every draw is > 0 (the parameter may then appear inside a log)."""
        return self.family.positive(self.args)

    def distribution(self) -> dist.Distribution:
        """The NumPyro distribution."""
        return self.family.distribution(self.args)

    def transform(self, z):
        """``(value, log_value, log_density)`` at unconstrained ``z``
        (:meth:`~bayescale.families.priors.PriorFamily.transform`)."""
        return self.family.transform(self.args, z)

    def unconstrained_draws(self, eps):
        """Unconstrained points spread like the prior from standard-normal ``eps``."""
        return self.family.unconstrained_draws(self.args, eps)

    def sample(self, rng, num: int):
        """``num`` exact numpy draws from generator ``rng``."""
        return self.family.sample(self.args, rng, num)

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(f'{a:g}' for a in self.args)})"


@dataclass(frozen=True)
class Parameter:
    """One parameter of a law: its prior, the paper's reference value and a description."""

    name: str
    prior: Prior
    reference: float | None = None
    description: str = ""
    unit: str = ""


@dataclass(frozen=True)
class Law:
    """A scaling law :math:`y = f(x; \\theta)`, evaluated in log space.

    Attributes
    ----------
    id : str
        Catalogue id (or ``"custom"``).
    formula : Formula
        Parsed right-hand side.
    response : str
        Name of the response column, e.g. ``"loss"``.
    covariates : tuple of str
        Names of the covariate columns, in order of appearance in the formula.
    parameters : dict of str to Parameter
        Parameters in declaration order.
    units : dict of str to str
        Unit of the response and of each covariate.
    sigma_prior : Prior
        Prior of the noise scale of log-response residuals.
    design : dict
        Typical design: ``{covariate: (low, high)}`` ranges (log-uniform), ``num_points``,
        ``noise`` (sigma of log residuals) used by :mod:`bayescale.simulate`.
    scales : dict of str to float or "data"
        The unit in which the formula reads a covariate: :math:`f` is evaluated at
        :math:`x / s` (``scale = s`` under ``[variables]``).  ``"data"`` (the generic
        families) lets :func:`bayescale.fit` choose :math:`s` as a power of 1000 from the
        fitted data (:meth:`with_data_scales`), so that the priors of parameters that carry
        the unit of :math:`x` (a coefficient :math:`A` of :math:`x^{-\\alpha}`, a break location)
        mean the same for tokens as for parameters; until then it reads :math:`s = 1`.
    """

    id: str
    title: str
    formula: Formula
    response: str
    covariates: tuple[str, ...]
    parameters: dict[str, Parameter]
    units: dict[str, str] = field(default_factory=dict)
    sigma_prior: Prior = field(default_factory=lambda: Prior("halfnormal", (0.1,)))
    design: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    description: str = ""
    toml: str = ""
    scales: dict = field(default_factory=dict)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.parameters)

    @property
    def reference(self) -> dict[str, float]:
        """The paper's reference values (only those the law file gives)."""
        return {k: p.reference for k, p in self.parameters.items() if p.reference is not None}

    def log_mean(self, params: Mapping, log_covariates: Mapping):
        """:math:`\\log f(x;\\theta)` from parameter values and log-covariates.

        Broadcasting follows JAX: parameters of shape ``(..., 1)`` against covariates of
        shape ``(n,)`` give ``(..., n)``.
        """
        import jax.numpy as jnp

        logs = self.in_units(log_covariates)
        values = {k: jnp.exp(v) for k, v in logs.items()}
        for k in self.parameters:
            values[k] = params[k]
            logs[k] = jnp.log(params[k])
        return self.formula.log(values, logs)

    def in_units(self, log_covariates: Mapping) -> dict:
        """The log covariates in the units the formula reads: :math:`\\log x - \\log s` for
        each covariate with a numeric :attr:`scales` entry, the others unchanged."""
        fixed = self.fixed_scales
        return {k: v - math.log(fixed[k]) if k in fixed else v for k, v in log_covariates.items()}

    @property
    def fixed_scales(self) -> dict[str, float]:
        """The covariates read in a fixed unit and that unit (``"data"`` entries left out)."""
        return {c: s for c, s in self.scales.items() if not isinstance(s, str)}

    def with_data_scales(self, log_covariates: Sequence[Mapping]) -> Law:
        """A copy whose ``"data"`` scales are fixed from fitted data.

        ``log_covariates`` holds one mapping (covariate -> natural log of its values) per
        fit.  The scale of a covariate is the largest power of 1000 (an SI prefix: 1, 1e3,
        1e6, 1e9 ...; 1e-3 ...) at or below the median over the fits of each fit's smallest
        value: the covariate is read in the unit one would label its axis with, which lies
        at most three decades below where the data begin.  Laws without a ``"data"`` scale
        are returned unchanged.
        """
        pending = [c for c in self.covariates if self.scales.get(c) == "data"]
        if not pending:
            return self
        scales = dict(self.scales)
        for c in pending:
            firsts = [float(np.min(lx[c])) for lx in log_covariates if np.size(lx.get(c, ()))]
            # (a value of exactly 1e9 reads log(1e9) / log(1000) = 2.9999999999999996)
            k = math.floor(float(np.median(firsts)) / math.log(1000.0) + 1e-9) if firsts else 0
            scales[c] = float(1000.0**k)
        return replace(self, scales=scales)

    def with_priors(self, priors: Mapping[str, str | Prior] | None) -> Law:
        """A copy with some priors replaced (``{"alpha": "lognormal(-1, 0.5)"}``)."""
        if not priors:
            return self
        params = dict(self.parameters)
        sigma = self.sigma_prior
        for name, spec in priors.items():
            prior = spec if isinstance(spec, Prior) else Prior.parse(spec)
            if name == "sigma":
                sigma = prior
            elif name not in params:
                raise LawError(
                    f"prior given for {name!r}, which is not a parameter of law {self.id!r}; "
                    f"parameters: {', '.join(params)}"
                )
            else:
                params[name] = replace(params[name], prior=prior)
        return replace(self, parameters=params, sigma_prior=sigma)

    def to_spec(self) -> dict:
        """A plain mapping (TOML/JSON-able) from which :func:`law_from_spec` rebuilds the law."""
        params = {}
        for name, p in self.parameters.items():
            params[name] = {"prior": str(p.prior), "description": p.description}
            if p.reference is not None:
                params[name]["reference"] = p.reference
        return {
            "id": self.id,
            "title": self.title,
            "formula": self.formula.text,
            "response": self.response,
            "variables": {
                k: {"unit": u, **({"scale": self.scales[k]} if k in self.scales else {})}
                for k, u in self.units.items()
            },
            "parameters": params,
            "likelihood": {"sigma_prior": str(self.sigma_prior)},
            "design": dict(self.design),
            "source": dict(self.source),
            "description": self.description,
        }

    def __repr__(self) -> str:
        units = "".join(f"; {c} in units of {s:g}" for c, s in self.fixed_scales.items())
        return f"Law({self.id!r}: {self.response} = {self.formula.text}{units})"


def law_from_spec(spec: Mapping) -> Law:
    """Rebuild a law from :meth:`Law.to_spec` output (used when loading saved results)."""
    return _make_law(dict(spec), origin="<saved spec>")


def _make_law(spec: dict, *, origin: str, toml_text: str = "") -> Law:
    """Build a :class:`Law` from the parsed TOML mapping ``spec``."""
    try:
        law_id = str(spec.get("id", "custom"))
        formula_text = spec["formula"]
        response = spec["response"]
    except KeyError as err:
        raise LawError(f"law file {origin} lacks the key {err.args[0]!r}") from None
    try:
        formula = parse_formula(formula_text)
    except FormulaError as err:
        raise LawError(f"law {law_id!r} ({origin}): {err}") from None
    raw_params = spec.get("parameters", {})
    if not raw_params:
        raise LawError(f"law {law_id!r} ({origin}) declares no [parameters]")
    variables = dict(spec.get("variables", {}))
    params = {}
    for name, p in raw_params.items():
        if not isinstance(p, dict) or "prior" not in p:
            raise LawError(f"law {law_id!r}: parameter {name!r} needs a prior = '...' entry")
        try:
            prior = Prior.parse(p["prior"])
        except LawError as err:
            raise LawError(f"law {law_id!r}, parameter {name!r}: {err}") from None
        params[name] = Parameter(
            name=name,
            prior=prior,
            reference=None if p.get("reference") is None else float(p["reference"]),
            description=str(p.get("description", "")),
            unit=str(p.get("unit", "")),
        )
    unused = [n for n in params if n not in formula.names]
    if unused:
        raise LawError(f"law {law_id!r}: parameter(s) {unused} do not appear in the formula")
    covariates = tuple(n for n in formula.names if n not in params)
    unknown = [n for n in covariates if n not in variables and n not in COVARIATE_NAMES]
    if unknown:
        raise LawError(
            f"law {law_id!r}: unknown name(s) {unknown} in formula {formula.text!r}; declare "
            f"them under [parameters] or [variables], or use a known covariate "
            f"({', '.join(sorted(COVARIATE_NAMES))})"
        )
    if not covariates:
        raise LawError(f"law {law_id!r}: formula {formula.text!r} has no covariate")
    if response in covariates or response in params:
        raise LawError(f"law {law_id!r}: response {response!r} also appears in the formula")
    units = {
        n: str(
            variables.get(n, {}).get("unit", COVARIATE_NAMES.get(n, ""))
            if isinstance(variables.get(n), dict)
            else variables.get(n, COVARIATE_NAMES.get(n, ""))
        )
        for n in (response, *covariates)
    }
    scales = {}
    for n in covariates:
        entry = variables.get(n)
        if isinstance(entry, dict) and "scale" in entry:
            scale = entry["scale"]
            ok = scale == "data" or (
                isinstance(scale, int | float) and not isinstance(scale, bool)
                and math.isfinite(scale) and scale > 0
            )  # fmt: skip
            if not ok:
                raise LawError(
                    f'law {law_id!r}: scale of {n!r} must be a positive number or "data", '
                    f"got {scale!r}"
                )
            scales[n] = scale if scale == "data" else float(scale)
    likelihood = spec.get("likelihood", {})
    sigma_prior = Prior.parse(likelihood.get("sigma_prior", "halfnormal(0.1)"))
    design = dict(spec.get("design", {}))
    for name in covariates:
        if name in design:
            lo, hi = design[name]
            if not (0 < lo < hi):
                raise LawError(f"law {law_id!r}: design range of {name!r} must be 0 < lo < hi")
    return Law(
        id=law_id,
        title=str(spec.get("title", law_id)),
        formula=formula,
        response=response,
        covariates=covariates,
        parameters=params,
        units=units,
        sigma_prior=sigma_prior,
        design=design,
        source=dict(spec.get("source", {})),
        description=str(spec.get("description", "")),
        toml=toml_text,
        scales=scales,
    )


def law_from_toml(path_or_text: str | Path) -> Law:
    """Read a law from a TOML file (or TOML text).

    Raises
    ------
    LawError
        A missing file, invalid TOML, a missing ``formula`` or ``response`` key (no default
        response is assumed), or an invalid formula, prior or design range, naming the file.
    """
    path = None if "\n" in str(path_or_text) else Path(path_or_text)
    if path is not None:
        if not path.is_file():
            raise LawError(f"law file {str(path)!r} does not exist")
        text = path.read_text()
        origin = str(path)
    else:
        text, origin = str(path_or_text), "<toml text>"
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LawError(f"law file {origin} is not valid TOML: {err}") from None
    return _make_law(spec, origin=origin, toml_text=text)


_EXPONENT_PRIOR = "lognormal(-1.2, 1.0)"  # median 0.3, 95% in (0.04, 2.1)
_COEFFICIENT_PRIOR = "lognormal(0, 5)"  # any order of magnitude within 1e-4 .. 1e4 (2 sd)


def law_from_formula(
    text: str,
    *,
    response: str | None = None,
    covariates: list[str] | tuple[str, ...] | None = None,
    priors: Mapping[str, str] | None = None,
) -> Law:
    """Build a law from a formula string such as ``"E + A * n_params**-alpha"``.

    ``"loss = E + A * n_params**-alpha"`` names the response explicitly.  Covariates are
    the names listed in ``covariates`` or, by default, the known covariate names
    (``n_params``, ``n_tokens``, ``flops``, ...); every other name is a parameter.  A
    parameter that appears only in exponents gets the prior ``lognormal(-1.2, 1)`` (median
    0.3), any other ``lognormal(0, 5)``; override with ``priors``.
    """
    if not isinstance(text, str):
        raise LawError(f"a formula must be a string, got {type(text).__name__}")
    split = re.match(r"^\s*([^=<>!]*?)\s*=(?!=)(.*)$", text)
    if split:
        lhs, text = split.group(1), split.group(2)
        if not lhs.isidentifier():
            raise LawError(f"response {lhs!r} before '=' is not a name")
        response = response or lhs
    try:
        formula = parse_formula(text)
    except FormulaError as err:
        raise LawError(str(err)) from None
    known = set(covariates) if covariates is not None else set(COVARIATE_NAMES)
    covs = [n for n in formula.names if n in known]
    if covariates is not None:
        missing = [c for c in covariates if c not in formula.names]
        if missing:
            raise LawError(f"covariate(s) {missing} do not appear in formula {formula.text!r}")
    if not covs:
        raise LawError(
            f"formula {formula.text!r} has no covariate; use one of "
            f"{', '.join(sorted(COVARIATE_NAMES))} or pass covariates=[...]"
        )
    if response is None:
        response = "y" if "x" in covs else "loss"
    param_names = [n for n in formula.names if n not in covs]
    spec = {
        "id": "custom",
        "title": formula.text,
        "formula": formula.text,
        "response": response,
        "variables": {c: {"unit": COVARIATE_NAMES.get(c, "")} for c in covs},
        "parameters": {
            n: {"prior": _EXPONENT_PRIOR if n in formula.exponent_names else _COEFFICIENT_PRIOR}
            for n in param_names
        },
    }
    return _make_law(spec, origin="<formula>").with_priors(priors)


def _catalogue_dir() -> Path:
    packaged = importlib.resources.files("bayescale") / "models"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "models"  # source checkout / editable


@functools.cache
def catalogue() -> dict[str, Law]:
    """All laws of the catalogue, by id."""
    laws = {}
    for path in sorted(_catalogue_dir().glob("*.toml")):
        law = law_from_toml(path)
        if law.id != path.stem:
            raise LawError(f"catalogue file {path.name} declares id {law.id!r}")
        laws[law.id] = law
    return laws


def get_law(law: str | Path | Law, *, priors: Mapping[str, str] | None = None) -> Law:
    """Resolve a catalogue id, a law-file path, a formula string or a :class:`Law`."""
    if isinstance(law, Law):
        resolved = law
    elif isinstance(law, Path) or (isinstance(law, str) and law.strip().endswith(".toml")):
        resolved = law_from_toml(law)
    elif isinstance(law, str) and law.strip().isidentifier():
        laws = catalogue()
        if law not in laws:
            close = [k for k in laws if k.startswith(law[:5])] or list(laws)
            raise LawError(f"unknown law {law!r}; catalogue ids include: {', '.join(close)}")
        resolved = laws[law]
    elif isinstance(law, str):
        resolved = law_from_formula(law)
    else:
        raise LawError(f"a law must be an id, a path, a formula or a Law, got {type(law).__name__}")
    return resolved.with_priors(priors)
