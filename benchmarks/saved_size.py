"""Size of a saved result of the Chinchilla fit: default ``save``, ``save(full=True)`` and
the uncompressed DataTree, with the save/load times and a check that ``load`` gives back the
fit's groups.

Run ``python benchmarks/saved_size.py`` from the repository root (needs ``../shared/data``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import bayescale
from bayescale import datasets


def main() -> None:
    bayescale.configure()
    frame = datasets.chinchilla(Path("../shared/data"))
    r = bayescale.fit(frame, "chinchilla", columns={"n_params": "Model Size"}, seed=0, warn=False)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.nc"
        r.datatree.to_netcdf(raw, engine="h5netcdf")
        print(f"uncompressed, every group: {raw.stat().st_size:,} bytes")
        for full in (True, False):
            t0 = time.perf_counter()
            path = r.save(Path(folder) / f"full{full}.nc", full=full)
            t1 = time.perf_counter()
            loaded = bayescale.load(path)
            t2 = time.perf_counter()
            same = all(
                loaded.datatree[g].dataset.identical(node.dataset)
                for g, node in r.datatree.children.items()
            )
            print(
                f"save(full={full}): {path.stat().st_size:,} bytes, save {t1 - t0:.2f} s, "
                f"load {t2 - t1:.2f} s, groups identical after load: {same}"
            )


if __name__ == "__main__":
    main()
