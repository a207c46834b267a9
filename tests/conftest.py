"""Shared fixtures: the real-data folder and reference data sets."""

from pathlib import Path

import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Files whose tests are independent of each other and each long (executed notebooks): under
# pytest-xdist (``--dist loadgroup``) each test is its own scheduling unit and they go first.
SPLIT_FILES = ("test_notebooks.py",)


def pytest_collection_modifyitems(config, items):
    """Schedule whole files on one worker each (module fixtures hold shared fits), but the
    tests of ``SPLIT_FILES`` one by one, ahead of the rest so no worker idles at the end."""
    for item in items:
        file = item.nodeid.split("::")[0]
        split = Path(file).name in SPLIT_FILES
        item.add_marker(pytest.mark.xdist_group(item.nodeid if split else file))
    items.sort(key=lambda item: Path(item.nodeid.split("::")[0]).name not in SPLIT_FILES)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def chinchilla_frame(shared_data) -> pd.DataFrame:
    """Epoch's extraction of Hoffmann et al.'s Fig. 4, 5 highest-loss rows dropped (240)."""
    from bayescale import datasets

    return datasets.chinchilla(shared_data)


FULL = __import__("os").environ.get("BAYESCALE_FULL") == "1"


def scaled(full, bounded):
    """The size of a long statistical test: ``full`` with ``BAYESCALE_FULL=1``, else the
    bounded form the default run (and CI) executes.  Mark such tests ``@pytest.mark.slow``."""
    return full if FULL else bounded
