"""Shared fixtures: the real-data folder and reference data sets."""

from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import bayescale

# The test process opts in to bayescale's recommended process settings (one JAX device per
# core, the persistent compilation cache), as the CLI and the notebooks do.
bayescale.configure()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Files whose tests are long and independent of each other (executed notebooks, one test
# class each so that ``--dist loadscope`` spreads them over the workers): they go first, so
# no worker idles at the end while the other finishes a long one.
FIRST_FILES = ("test_notebooks.py",)


def pytest_collection_modifyitems(config, items):
    """Run ``FIRST_FILES`` first; every other file keeps its order (stable sort)."""
    items.sort(key=lambda item: Path(item.nodeid.split("::")[0]).name not in FIRST_FILES)


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


# The draw settings of single fits to simulated data across test files.  A sampler program is
# fixed by (law, likelihood, settings, padded data length), so fits that share these settings
# share one compiled program: in one worker through bayescale's program cache, across the
# workers through the persistent compilation cache.  Each program costs ~15-25 s of CI to
# compile; sampling 2 x 1000 iterations of a small law costs ~1 s.
FIT_SETTINGS = {"num_chains": 2, "num_warmup": 500, "num_samples": 500}

FULL = __import__("os").environ.get("BAYESCALE_FULL") == "1"


def scaled(full, bounded):
    """The size of a long statistical test: ``full`` with ``BAYESCALE_FULL=1``, else the
    bounded form the default run (and CI) executes.  Mark such tests ``@pytest.mark.slow``."""
    return full if FULL else bounded


@pytest.fixture
def float64():
    """Compute in float64 inside the test (scoped, as bayescale's entry points do): for tests
    that call the log densities and samplers directly rather than through the public API."""
    with jax.enable_x64(True):
        yield


def ou_rw_kernel(u, v, s, q):
    """The dense covariance of the discrepancy delta at decades ``u`` x ``v``:
    s^2 exp(-|u - v|) + q^2 two-sided min (bayescale.model.discrepancy, one-decade OU)."""
    u, v = np.meshgrid(u, v, indexing="ij")
    same = (np.sign(u) == np.sign(v)) | (u == 0) | (v == 0)
    return s**2 * np.exp(-abs(u - v)) + q**2 * np.where(same, np.minimum(abs(u), abs(v)), 0.0)
