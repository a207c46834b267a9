"""MkDocs hook: render the reST markup of bayescale's numpydoc docstrings in the API pages.

The docstrings use Sphinx roles (``:math:`...```, ``:func:`...```, ``:class:`~a.b```) and
``.. math::`` blocks, which mkdocstrings passes through as text. After each page is
converted, math becomes MathJax input (``\\( \\)``, ``\\[ \\]``) and cross-reference roles
become code (``~`` keeps the last component, as Sphinx does).
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(math|func|class|meth|mod|data|attr|exc|obj):<code>(~?)([^<]*)</code>")
_BLOCK = re.compile(
    r'<p>\.\. math::</p>\s*<div class="highlight"><pre><span></span><code>(.*?)</code></pre></div>',
    re.S,
)
_INLINE_BLOCK = re.compile(r"<p>\.\. math::\s+(.*?)</p>", re.S)


def _role(m: re.Match) -> str:
    role, tilde, text = m.groups()
    if role == "math":
        return f'<span class="arithmatex">\\({text}\\)</span>'
    return f"<code>{text.rsplit('.', 1)[-1] if tilde else text}</code>"


def render_rest(html: str) -> str:
    """``html`` with reST math roles/blocks as MathJax input and reference roles as code."""
    html = _BLOCK.sub(lambda m: f'<div class="arithmatex">\\[{m.group(1)}\\]</div>', html)
    html = _INLINE_BLOCK.sub(lambda m: f'<div class="arithmatex">\\[{m.group(1)}\\]</div>', html)
    return _ROLE.sub(_role, html)


def on_page_content(html: str, page, config, files) -> str:
    return render_rest(html)
