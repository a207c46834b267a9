"""Copy ``notebooks/*.ipynb`` into the site's sources at build time (``gen-files`` plugin).

``mkdocs-jupyter`` then renders each with its stored outputs (``execute: false``: nothing
is run during the build). The notebooks stay where they are; no copy is committed.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

for path in sorted(NOTEBOOKS.glob("*.ipynb")):
    with mkdocs_gen_files.open(f"notebooks/{path.name}", "wb") as f:
        f.write(path.read_bytes())
