"""``fit(..., by=)`` over two processes through ``jax.distributed`` (a localhost coordinator,
CPU collectives): each process holds its share of the curves, every process returns the
whole result, equal to one process running the same devices' worth of fits."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import pandas as pd
    import bayescale
    from bayescale.simulate import simulate

    # the law catalogue loads before jax.distributed.initialize: that may not start JAX's
    # backend (initialize would refuse)
    law = bayescale.laws.get_law("kaplan_per_token")
    bayescale.laws.catalogue()
    port, pid = sys.argv[1], int(sys.argv[2])
    if pid >= 0:
        from bayescale.infer.distributed import initialize
        initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    import jax
    frames = [
        simulate(law, params={"a": 3.0 + 0.2 * i, "b": 4.0, "c": 0.45 + 0.03 * i}, seed=i)
        .iloc[:24].assign(size=f"m{i}")
        for i in range(6)
    ]
    data = pd.concat(frames, ignore_index=True)
    settings = dict(num_chains=2, num_warmup=150, num_samples=100)
    full = bayescale.fit(data, law, by="size", seed=3, warn=False,
                         inference=bayescale.NUTS(**settings))
    kept = bayescale.fit(data, law, by="size", seed=3, warn=False,
                         inference=bayescale.NUTS(keep=10, **settings))
    post = full.datatree.posterior.dataset
    cols = ["max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergent"]
    print("RESULT " + json.dumps({
        "devices": jax.device_count(),
        "local": jax.local_device_count(),
        "draws": {k: post[k].values.tolist() for k in full.parameter_names},
        "kept": kept.datatree.posterior.dataset["c"].values.tolist(),
        "diag_full": full.diagnostics[cols].values.tolist(),
        "diag_kept": kept.diagnostics[cols].values.tolist(),
    }))
    """
)


def _run(args, devices_per_process, out_dir):
    """Start the script; its output goes to files (a full pipe would stall one process
    while the other waits for it in a collective)."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
    }
    name = "_".join(map(str, args))
    stdout, stderr = out_dir / f"{name}.out", out_dir / f"{name}.err"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, *map(str, args)], stdout=out, stderr=err, env=env
        )
    return proc, stdout, stderr


def _result(started, timeout=900):
    proc, stdout, stderr = started
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.read_text()[-4000:]
    line = [x for x in stdout.read_text().splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    port = _free_port()
    procs = [_run([port, pid], 2, tmp_path) for pid in (0, 1)]
    try:
        results = [_result(p) for p in procs]
    finally:  # one process failing leaves the other waiting in a collective
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
    single = _result(_run([0, -1], 4, tmp_path))  # one process, the same 4 devices' worth of blocks
    assert [r["devices"] for r in results] == [4, 4] and [r["local"] for r in results] == [2, 2]
    assert single["devices"] == 4
    for r in results:  # every process holds the whole result, equal to the single process's
        for key in ("draws", "kept", "diag_full", "diag_kept"):
            got, expect = r[key], single[key]
            if isinstance(got, dict):
                for name in expect:
                    np.testing.assert_array_equal(got[name], expect[name], err_msg=name)
            else:
                np.testing.assert_array_equal(got, expect, err_msg=key)
    assert np.asarray(single["draws"]["c"]).shape == (6, 2, 100)
    assert np.asarray(single["kept"]).shape == (6, 2, 10)
