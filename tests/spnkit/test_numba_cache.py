"""The @njit(cache=True) kernels compile once and are loaded from numba's on-disk cache afterwards."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np
from spnkit.kernels.passes import log_value_batch
from spnkit.flat_spn import FlatSPN
spn = FlatSPN(node_type=[0, 0, 1], child_ptr=[0, 0, 0, 2], children=[0, 1], log_w=np.log([0.25, 0.75]),
              leaf_var=[0, 0, -1], leaf_val=[0, 1, -1], cardinalities=[2])
v = spn.log_prob(np.array([[0], [1], [-1]]))
assert np.allclose(np.exp(v), [0.25, 0.75, 1.0]), v
print(sum(log_value_batch.stats.cache_hits.values()), sum(log_value_batch.stats.cache_misses.values()))
"""


def test_kernels_run_and_are_served_from_cache_on_the_second_process():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
            for _ in range(2)]
    hits, misses = map(int, runs[1].stdout.split())
    assert hits >= 1 and misses == 0, f"second run: {hits} cache hits, {misses} misses"


STALE_SCRIPT = """
import numpy as np
from spnkit.kernels.maxprod import normalized_greedy
from spnkit.flat_spn import FlatSPN
spn = FlatSPN(node_type=[0, 0, 1], child_ptr=[0, 0, 0, 2], children=[0, 1], log_w=np.log([0.25, 0.75]),
              leaf_var=[0, 0, -1], leaf_val=[0, 1, -1], cardinalities=[2])
x = normalized_greedy(spn.node_type, spn.child_ptr, spn.children, spn.log_w, spn.leaf_var, spn.leaf_val, 1)
assert x.tolist() == [1], x
print(sum(normalized_greedy.stats.cache_hits.values()), sum(normalized_greedy.stats.cache_misses.values()))
"""


def test_a_kernel_is_recompiled_when_a_kernel_it_calls_in_another_file_changes(tmp_path):
    """numba alone would reuse normalized_greedy's cached machine code after passes.py changed."""
    import shutil
    from pathlib import Path

    import spnkit

    pkg = tmp_path / "spnkit"
    shutil.copytree(Path(spnkit.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}

    def run():
        out = subprocess.run([sys.executable, "-c", STALE_SCRIPT], capture_output=True, text=True, check=True,
                             env=env, cwd=tmp_path)
        return tuple(map(int, out.stdout.split()))

    assert run()[1] == 1                      # first process compiles
    assert run() == (1, 0)                    # second loads from the cache
    with open(pkg / "kernels" / "passes.py", "a") as f:
        f.write("\n# a change in a callee's file\n")
    assert run()[1] == 1                      # the caller's cache is stale now: recompiled, not loaded
