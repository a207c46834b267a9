"""Safe formula parser: a whitelisted Python expression tree compiled to JAX, in log space.

A scaling law is written as an ordinary arithmetic expression, e.g.
``"E + A * n_params**-alpha + B * n_tokens**-beta"``.  The text is parsed with
:mod:`ast` (never ``eval``); only numbers, names, ``+ - * / **``, unary minus and the
functions ``exp``, ``log`` and ``sqrt`` are accepted.

The compiled law returns :math:`\\log f`, computed without leaving log space wherever the
structure allows it:

* :math:`\\log(a + b + \\dots) = m + \\log(e^{\\log a - m} + e^{\\log b - m} + \\dots)`,
  :math:`m` the largest term
* :math:`\\log(a\\,b) = \\log a + \\log b`, :math:`\\log(a / b) = \\log a - \\log b`
* :math:`\\log(a^c) = c \\log a` (the exponent is evaluated as a plain value)
* :math:`\\log(a - b) = \\log a + \\operatorname{log1p}(-e^{\\log b - \\log a})`

so a term such as :math:`A N^{-\\alpha}` with :math:`N = 10^{11}` never under- or overflows,
in float64 or float32.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

__all__ = ["Formula", "FormulaError", "PowerTerm", "parse_formula"]

_FUNCTIONS = ("exp", "log", "sqrt")
_MAX_LENGTH = 2000


class FormulaError(ValueError):
    """A formula that cannot be parsed or uses something outside the whitelist."""


Env = tuple[Mapping[str, object], Mapping[str, object]]  # (values, log-values)
Fn = Callable[[Env], object]


@dataclass(frozen=True)
class PowerTerm:
    r"""A product :math:`P\,v^{e}` (or :math:`P / v^{-e}`) of a name and a power of a name.

    ``coefficient`` is :math:`P`, ``base`` is :math:`v`; ``exponent`` evaluates :math:`e`
    (sign included) from the environment and depends only on ``exponent_names``.  In log
    space the term is :math:`\log P + e \log v`: for a covariate :math:`v` and parameters
    :math:`P, e`, the pair :math:`(\log P, e)` is strongly correlated unless
    :math:`\log v` is centred (see :meth:`bayescale.model.Posterior.from_sampler`).
    """

    coefficient: str
    base: str
    exponent_names: frozenset[str]
    exponent: Callable


@dataclass(frozen=True)
class Formula:
    """A parsed formula.

    Attributes
    ----------
    text : str
        The source text.
    names : tuple of str
        Every identifier it uses, in order of first appearance.
    exponent_names : frozenset of str
        Identifiers that appear only inside an exponent (candidates for exponent priors).
    """

    text: str
    names: tuple[str, ...]
    exponent_names: frozenset[str]
    _log_fn: Fn
    _value_fn: Fn
    power_terms: tuple[PowerTerm, ...] = ()

    def log(self, values: Mapping[str, object], logs: Mapping[str, object]):
        """Return :math:`\\log f` given plain values and log-values of every name."""
        return self._log_fn((values, logs))

    def value(self, values: Mapping[str, object], logs: Mapping[str, object]):
        """Return :math:`f` itself (not in log space)."""
        return self._value_fn((values, logs))


def parse_formula(text: str) -> Formula:
    """Parse ``text`` into a :class:`Formula`.

    Raises
    ------
    FormulaError
        On syntax errors, empty text, or any construct outside the whitelist (attribute
        access, calls of other functions, comparisons, subscripts, keywords, strings ...);
        a constant that is not finite (``1e999``); a division by a constant expression that
        is zero or not finite (``A / 0``, ``A / (1 - 1)``).
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError(f"formula must be a non-empty string, got {text!r}")
    if len(text) > _MAX_LENGTH:
        raise FormulaError(f"formula is {len(text)} characters long; the limit is {_MAX_LENGTH}")
    source = text.strip().replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise FormulaError(
            f"formula {text!r} is not a valid expression: {err.msg} at column {err.offset}"
        ) from None
    names: list[str] = []
    in_exponent: dict[str, bool] = {}
    _check(tree.body, text, names, in_exponent, exponent=False)
    _check_constants(tree.body, source, text)
    exponent_names = frozenset(n for n, only in in_exponent.items() if only)
    return Formula(
        text=text.strip(),
        names=tuple(names),
        exponent_names=exponent_names,
        _log_fn=_compile_log(tree.body),
        _value_fn=_compile_value(tree.body),
        power_terms=_power_terms(tree.body),
    )


def _power_terms(root) -> tuple[PowerTerm, ...]:
    """Every ``P * v**e``, ``v**e * P`` and ``P / v**e`` in the tree (``P``, ``v`` names)."""

    def names(node):
        return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))

    found = []
    for node in ast.walk(root):
        if not isinstance(node, ast.BinOp) or not isinstance(node.op, ast.Mult | ast.Div):
            continue
        pairs = [(node.left, node.right)]
        if isinstance(node.op, ast.Mult):
            pairs.append((node.right, node.left))
        for coef, power in pairs:
            if not (
                isinstance(coef, ast.Name)
                and isinstance(power, ast.BinOp)
                and isinstance(power.op, ast.Pow)
                and isinstance(power.left, ast.Name)
            ):
                continue
            exponent = _compile_value(power.right)
            if isinstance(node.op, ast.Div):
                exponent = (lambda f: lambda env: -f(env))(exponent)
            found.append(PowerTerm(coef.id, power.left.id, names(power.right), exponent))
            break
    return tuple(found)


def _check(node, text, names, in_exponent, *, exponent):
    """Walk the tree, rejecting anything outside the whitelist and collecting names."""
    where = f" in formula {text!r}"
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.Pow):
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed{where}")
        _check(node.left, text, names, in_exponent, exponent=exponent)
        _check(
            node.right,
            text,
            names,
            in_exponent,
            exponent=exponent or isinstance(node.op, ast.Pow),
        )
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed{where}")
        _check(node.operand, text, names, in_exponent, exponent=exponent)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"constant {node.value!r} is not a number{where}")
    elif isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise FormulaError(f"{node.id!r} is a function and must be called{where}")
        if node.id.startswith("_"):
            raise FormulaError(f"name {node.id!r} may not start with an underscore{where}")
        if node.id not in in_exponent:
            names.append(node.id)
            in_exponent[node.id] = exponent
        else:
            in_exponent[node.id] = in_exponent[node.id] and exponent
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            shown = ast.unparse(node.func)
            raise FormulaError(
                f"function {shown!r} is not allowed{where}; allowed: {', '.join(_FUNCTIONS)}"
            )
        if node.keywords or len(node.args) != 1:
            raise FormulaError(f"{node.func.id}() takes exactly one argument{where}")
        _check(node.args[0], text, names, in_exponent, exponent=exponent)
    else:
        raise FormulaError(f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed{where}")


def _check_constants(root, source: str, text: str) -> None:
    """Refuse non-finite constants and divisions by a constant expression that is zero or
    not finite (see :func:`parse_formula`)."""
    where = f" in formula {text!r}"
    for node in ast.walk(root):
        if isinstance(node, ast.Constant) and not math.isfinite(node.value):
            shown = ast.get_source_segment(source, node)
            raise FormulaError(f"constant {shown} is not a finite number{where}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if any(isinstance(n, ast.Name) for n in ast.walk(node.right)):
                continue
            shown = ast.get_source_segment(source, node.right)
            try:
                value = float(_compile_value(node.right)(({}, {})))
            except (ZeroDivisionError, OverflowError):
                value = math.nan
            if value == 0 or not math.isfinite(value):
                raise FormulaError(f"division by {shown} (= {value}){where}")


def _compile_value(node) -> Fn:
    """Compile ``node`` to a function of the environment returning its plain value."""
    if isinstance(node, ast.Constant):
        c = float(node.value)
        return lambda env: c
    if isinstance(node, ast.Name):
        name = node.id
        return lambda env: env[0][name]
    if isinstance(node, ast.UnaryOp):
        f = _compile_value(node.operand)
        return (lambda env: -f(env)) if isinstance(node.op, ast.USub) else f
    if isinstance(node, ast.Call):
        f = _compile_value(node.args[0])
        if node.func.id == "log":
            g = _compile_log(node.args[0])
            return g
        if node.func.id == "exp":
            return lambda env: jnp.exp(f(env))
        return lambda env: jnp.sqrt(f(env))
    left, right = _compile_value(node.left), _compile_value(node.right)
    match node.op:
        case ast.Add():
            return lambda env: left(env) + right(env)
        case ast.Sub():
            return lambda env: left(env) - right(env)
        case ast.Mult():
            return lambda env: left(env) * right(env)
        case ast.Div():
            return lambda env: left(env) / right(env)
        case _:  # Pow: through log space when the base is a positive name or constant
            if isinstance(node.left, ast.Name | ast.Constant):
                log_base = _compile_log(node.left)
                return lambda env: jnp.exp(right(env) * log_base(env))
            return lambda env: jnp.power(left(env), right(env))


def _compile_log(node) -> Fn:
    """Compile ``node`` to a function returning the log of its (positive) value."""
    if isinstance(node, ast.Constant):
        c = float(node.value)
        lc = math.log(c) if c > 0 else math.nan  # plain float: parsing starts no JAX backend
        return lambda env: lc
    if isinstance(node, ast.Name):
        name = node.id
        return lambda env: env[1][name]
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.UAdd):
            return _compile_log(node.operand)
        f = _compile_value(node)
        return lambda env: jnp.log(f(env))  # NaN unless the operand is negative
    if isinstance(node, ast.Call):
        arg = node.args[0]
        if node.func.id == "exp":
            return _compile_value(arg)
        if node.func.id == "sqrt":
            f = _compile_log(arg)
            return lambda env: 0.5 * f(env)
        f = _compile_log(arg)
        return lambda env: jnp.log(f(env))
    if isinstance(node.op, ast.Pow):
        log_base, exponent = _compile_log(node.left), _compile_value(node.right)
        return lambda env: exponent(env) * log_base(env)
    if isinstance(node.op, ast.Add):
        terms = [_compile_log(t) for t in _flatten_sum(node)]
        return lambda env: _log_sum_exp([t(env) for t in terms])
    left, right = _compile_log(node.left), _compile_log(node.right)
    match node.op:
        case ast.Sub():
            return lambda env: _log_sub(left(env), right(env))
        case ast.Mult():
            return lambda env: left(env) + right(env)
        case _:  # Div
            return lambda env: left(env) - right(env)


def _flatten_sum(node) -> list:
    """The terms of ``a + b + c`` (however parenthesised) as a list of nodes."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _flatten_sum(node.left) + _flatten_sum(node.right)
    return [node]


def _log_sum_exp(terms):
    """``log(sum(exp(t)))`` of several terms at once: one exp per term and one log.

    Cheaper than chained ``logaddexp`` (which costs several transcendental calls per pair
    and per derivative); the shift by the (constant-gradient) maximum keeps it exact.
    """
    terms = jnp.broadcast_arrays(*terms)
    m = jax.lax.stop_gradient(terms[0])
    for t in terms[1:]:
        m = jnp.maximum(m, jax.lax.stop_gradient(t))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(sum(jnp.exp(t - m) for t in terms))


def _log_sub(la, lb):
    """``log(exp(la) - exp(lb))``; NaN where the difference is not positive."""
    d = lb - la
    safe = jnp.where(d < 0, d, -1.0)  # keeps the gradient finite in the masked branch
    return jnp.where(d < 0, la + jnp.log1p(-jnp.exp(safe)), jnp.nan)
