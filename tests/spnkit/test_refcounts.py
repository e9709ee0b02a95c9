"""The MAP kernels free everything they allocate.

The sweeps and passes that allocate nothing are compiled without numba's reference counting (``_nrt=False``:
the atomic increments and decrements took half of a small query). A mistake there (a function that allocates,
or hands an array to one that does not count it) leaks or frees twice. numba's runtime counts allocations and
frees when ``NUMBA_NRT_STATS=1`` is set before it starts, so this runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from numba.core.runtime import rtsys
    import spnkit
    from spnkit.map_api import METHODS
    from spnkit.protocol import protocol_queries
    sys.path.insert(0, {tests!r})
    from random_spns import random_spn
    nets = {{"nltcs": spnkit.load({nltcs!r}), "random categorical": random_spn(5, n_vars=6, max_card=3)}}
    out = []
    for name, spn in nets.items():
        ql = protocol_queries(spn.cardinalities, "2:3:5", 12, seed=1)
        batch = spnkit.QueryBatch.from_queries(ql)
        for m in METHODS:
            spnkit.map(spn, ql[0], m); spnkit.map_batch(spn, batch[:2], m)      # compile / load first
            s0 = rtsys.get_allocation_stats()
            for q in ql:
                spnkit.map(spn, q, m)
            spnkit.map_batch(spn, batch, m)
            spnkit.map_batch(spn, ql, m)
            s1 = rtsys.get_allocation_stats()
            d = [b - a for a, b in zip(s0, s1)]
            out.append([name, m, d[0], d[1], d[2], d[3]])
    print(json.dumps(out))
""")


def test_every_method_frees_what_it_allocates(nltcs_path):
    tests = os.path.dirname(__file__)
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests, nltcs=str(nltcs_path))], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == 2 * 11
    for name, method, alloc, free, mi_alloc, mi_free in rows:
        assert alloc > 0, (name, method)          # the batches' outputs at least: the counters are on
        assert (alloc, mi_alloc) == (free, mi_free), (name, method, alloc, free, mi_alloc, mi_free)
