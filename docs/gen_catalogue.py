"""Generate the law catalogue page (``laws.md``) from ``models/*.toml`` at build time.

Run by the ``gen-files`` plugin of ``mkdocs build`` (see ``mkdocs.yml``); nothing here is
hand-copied: each law file adds one section and one row of the overview table.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import mkdocs_gen_files

MODELS = Path(__file__).resolve().parent.parent / "models"


def _cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _short_citation(citation: str) -> str:
    """Authors and year of a citation: "Kaplan et al. 2020, Scaling ..." -> "Kaplan et al. 2020"."""
    m = re.match(r"^(.*?\b(?:19|20)\d\d)\b", citation)
    return m.group(1) if m else citation


def _number(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def law_section(spec: dict) -> list[str]:
    """The Markdown section of one law file."""
    lid = spec["id"]
    source = spec.get("source", {})
    lines = [f"## `{lid}`", "", f"**{spec.get('title', lid)}**", ""]
    lines += ["```", f"{spec.get('response', 'loss')} = {spec['formula']}", "```", ""]
    if spec.get("description"):
        lines += [" ".join(spec["description"].split()), ""]
    if source.get("citation"):
        url = source.get("url")
        lines += [f"Source: {source['citation']}" + (f" (<{url}>)" if url else ""), ""]
    variables = spec.get("variables", {})
    if variables:
        lines += ["| variable | role | unit |", "|---|---|---|"]
        for name, meta in variables.items():
            role = "response" if name == spec.get("response", "loss") else "covariate"
            unit = _cell(meta.get("unit", ""))
            if meta.get("scale") == "data":
                unit = (
                    unit + "; " if unit else ""
                ) + "read in units of a power of 1000 at or below where the data begin"
            lines.append(f"| `{name}` | {role} | {unit} |")
        lines.append("")
    lines += ["| parameter | prior | reference value | description |", "|---|---|---|---|"]
    for name, p in spec.get("parameters", {}).items():
        lines.append(
            f"| `{name}` | `{_cell(p.get('prior', ''))}` | {_number(p.get('reference', ''))} "
            f"| {_cell(p.get('description', ''))} |"
        )
    sigma = spec.get("likelihood", {}).get("sigma_prior")
    if sigma:
        lines += ["", f"Noise scale of the log residuals: `sigma ~ {sigma}`."]
    design = spec.get("design", {})
    if design:
        ranges = ", ".join(
            f"`{k}` {_number(v[0])}–{_number(v[1])}"
            for k, v in design.items()
            if isinstance(v, list) and len(v) == 2
        )
        lines += [
            "",
            f"Design used by `bayescale.simulate`: {ranges}; {design.get('num_points', '?')} "
            f"points, log-noise sd {design.get('noise', '?')}.",
        ]
    return [*lines, ""]


def catalogue_page(models: Path = MODELS) -> str:
    """The whole page: an overview table, then one section per law file (sorted by id)."""
    specs = [tomllib.loads(p.read_text()) for p in sorted(models.glob("*.toml"))]
    out = [
        "# Law catalogue",
        "",
        f"The {len(specs)} laws shipped in `models/` (one TOML file each; installed with the "
        "package as `bayescale/models`). This page is generated from those files by "
        "`docs/gen_catalogue.py` at every build. `bayescale laws` lists the same ids on the "
        "command line; pass an id, a formula string or a path to your own TOML file as "
        "`law=` (see [the model](model.md) for how priors and the noise enter).",
        "",
        "| id | law | parameters | source |",
        "|---|---|---|---|",
    ]
    for s in specs:
        cite = s.get("source", {}).get("citation", "")
        out.append(
            f"| [`{s['id']}`](#{s['id']}) | {s.get('response', 'loss')} = "
            f"`{_cell(s['formula'])}` | {', '.join(s.get('parameters', {}))} "
            f"| {_cell(_short_citation(cite))} |"
        )
    out.append("")
    for s in specs:
        out += law_section(s)
    return "\n".join(out)


with mkdocs_gen_files.open("laws.md", "w") as f:
    f.write(catalogue_page())
mkdocs_gen_files.set_edit_path("laws.md", "gen_catalogue.py")
