"""Scaling laws: the :class:`Law` type, the catalogue (``models/*.toml``) and the safe parser."""

from bayescale.laws import law as law_module
from bayescale.laws.formula import Formula, FormulaError, parse_formula
from bayescale.laws.law import *  # noqa: F403  (the Law type and the catalogue: law_module.__all__)

__all__ = [*law_module.__all__, "Formula", "FormulaError", "parse_formula", "table"]


def table():
    """The catalogue as a pandas DataFrame: id, formula, response, covariates, parameters."""
    import pandas as pd

    rows = [
        {
            "id": law.id,
            "response": law.response,
            "formula": law.formula.text,
            "covariates": ", ".join(law.covariates),
            "parameters": ", ".join(law.parameters),
            "source": law.source.get("citation", ""),
        }
        for law in law_module.catalogue().values()
    ]
    return pd.DataFrame(rows)
