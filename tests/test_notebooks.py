"""Every notebook in notebooks/ runs top to bottom (with bounded draw settings).

Each ``notebooks/*.ipynb`` is executed with nbclient in a kernel of this interpreter
(``sys.executable``, through a kernelspec installed into a temporary folder, so neither a
kernelspec in the user's home nor the user's home itself is involved), with the working
directory ``notebooks/`` and the bounded-mode environment variables that notebooks read their
draw settings from.  A notebook whose metadata has ``"bayescale": {"needs_shared_data": true}``
is skipped where ``../shared/data`` (beside the project) is absent.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SHARED_DATA = ROOT.parent / "shared" / "data"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600
BOUNDED = {
    "BAYESCALE_NB_CHAINS": "2",
    "BAYESCALE_NB_WARMUP": "200",
    "BAYESCALE_NB_SAMPLES": "200",
    "BAYESCALE_NB_BOUNDED": "1",  # notebooks may also cut their data (fewer curves) with it
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory) -> dict[str, str]:
    """Environment under which ``KERNEL_NAME`` starts this interpreter's ipykernel.

    The kernelspec (argv ``[sys.executable, "-m", "ipykernel_launcher", ...]``) is written
    into a temporary data folder put first on JUPYTER_PATH; IPython's profile and the
    connection files go to temporary folders too.
    """
    from ipykernel.kernelspec import write_kernel_spec

    base = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(base / "data" / "kernels" / KERNEL_NAME)
    return {
        "JUPYTER_PATH": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
    }


def _run_notebook(path: Path, kernel_env, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    needs = nb.metadata.get("bayescale", {})
    if needs.get("needs_shared_data") and not SHARED_DATA.is_dir():
        pytest.skip(
            f"{path.name} needs the real data folder {SHARED_DATA}, which is absent "
            "(it sits beside the project)"
        )
    for key, value in {**BOUNDED, **kernel_env}.items():
        monkeypatch.setenv(key, value)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        err.add_note(f"in notebook {path.relative_to(ROOT)}")
        raise


def _notebook_class(path: Path) -> type:
    """A test class for one notebook: pytest-xdist (``--dist loadscope``) schedules each class
    on its own, so the notebooks spread over the workers, while the tests of every other file
    (module functions) stay together with their module's shared fits."""

    def test_notebook_runs(self, kernel_env, monkeypatch):
        _run_notebook(path, kernel_env, monkeypatch)

    name = "Test_" + path.stem
    return type(name, (), {"test_notebook_runs": test_notebook_runs, "__doc__": path.name})


for _path in NOTEBOOKS:
    globals()["Test_" + _path.stem] = _notebook_class(_path)
