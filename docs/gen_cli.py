"""Generate the command-line reference (``cli-reference.md``) from ``bayescale``'s own parser.

Run by the ``gen-files`` plugin of ``mkdocs build``: the help text of every subcommand is
printed by :func:`bayescale.cli.build_parser`, so the page cannot drift from the CLI.
"""

from __future__ import annotations

import argparse

import mkdocs_gen_files

from bayescale.cli import build_parser


def _columns_80(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=88)
    return parser.format_help()


def cli_reference() -> str:
    parser = build_parser()
    out = [
        "# Command-line reference",
        "",
        "The help of `bayescale` and each of its commands, printed by the parser itself at "
        "every docs build (`docs/gen_cli.py`). The [command line guide](cli.md) shows them "
        "at work.",
        "",
        "```text",
        _columns_80(parser).rstrip(),
        "```",
        "",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out += [f"## `bayescale {name}`", "", "```text", _columns_80(p).rstrip(), "```", ""]
    return "\n".join(out)


with mkdocs_gen_files.open("cli-reference.md", "w") as f:
    f.write(cli_reference())
mkdocs_gen_files.set_edit_path("cli-reference.md", "gen_cli.py")
