"""Scaling laws: the :class:`Law` type, the catalogue (``models/*.toml``) and the safe parser."""

from bayescale.laws.formula import Formula, FormulaError, parse_formula
from bayescale.laws.law import (
    COVARIATE_NAMES,
    Law,
    LawError,
    Parameter,
    Prior,
    catalogue,
    get_law,
    law_from_formula,
    law_from_spec,
    law_from_toml,
)

__all__ = [
    "COVARIATE_NAMES",
    "Formula",
    "FormulaError",
    "Law",
    "LawError",
    "Parameter",
    "Prior",
    "catalogue",
    "get_law",
    "law_from_formula",
    "law_from_spec",
    "law_from_toml",
    "parse_formula",
    "table",
]


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
        for law in catalogue().values()
    ]
    return pd.DataFrame(rows)
