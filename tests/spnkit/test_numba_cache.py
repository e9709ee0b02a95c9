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
