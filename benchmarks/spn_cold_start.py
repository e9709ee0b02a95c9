"""A new user's first calls: how long spnkit's numba kernels take to compile, and where that time goes.

    python benchmarks/spn_cold_start.py [--spn spn/maxspn/nltcs.spn] [--methods bt,exact] [--top 15]

Each row is one fresh Python process (``subprocess``) with its own ``NUMBA_CACHE_DIR``: ``cold`` starts from an
empty cache (a first install), ``warm`` reuses the cache the cold process just wrote (every later session). The
process imports spnkit, loads the SPN, then calls ``spnkit.map`` once and ``spnkit.map_batch`` once (2 queries)
per method. Columns: ``import_s``, ``load_s``, ``first_map_s`` / ``first_batch_s`` (per method, in the order
given), ``rss_mb`` (the process's peak resident memory). Goal (issue 20): cold first ``map`` under 10 s and cold
first ``map_batch`` under 30 s; warm unchanged.

A second table (``spn_cold_start_compiles``) lists the kernels whose compilation took longest in the cold
process, from numba's ``numba:compile`` events (``numba.core.event``): ``seconds`` is inclusive (a kernel's
compile includes the kernels it calls that were not compiled yet), ``signatures`` how many type signatures
were compiled for it.

The SPN is read through ``$SPNKIT_DATA`` (``make`` sets it to ``../shared/data`` when present).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import pandas as pd
from _report import report

CHILD = r"""
import json, resource, sys, time
from collections import defaultdict
t0 = time.perf_counter()
from numba.core import event
compiles = defaultdict(lambda: [0.0, 0])
starts = {}

class Listener(event.Listener):
    def on_start(self, ev):
        starts[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.perf_counter()
    def on_end(self, ev):
        d = ev.data["dispatcher"]
        t = starts.pop((id(d), str(ev.data["args"])), None)
        if t is not None:
            c = compiles[f"{d.py_func.__module__}.{d.py_func.__qualname__}"]
            c[0] += time.perf_counter() - t
            c[1] += 1

event.register("numba:compile", Listener())
import spnkit
from spnkit.datasets import data_path
t1 = time.perf_counter()
spn = spnkit.load(data_path(SPN))
t2 = time.perf_counter()
out = {"import_s": t1 - t0, "load_s": t2 - t1}
q = spnkit.Query(spn.n_vars, query=range(spn.n_vars // 2), hidden=range(spn.n_vars // 2, spn.n_vars))
for m in METHODS:
    a = time.perf_counter()
    spnkit.map(spn, q, method=m)
    b = time.perf_counter()
    spnkit.map_batch(spn, [q, q], method=m)
    c = time.perf_counter()
    out[f"first_map_s {m}"] = b - a
    out[f"first_batch_s {m}"] = c - b
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["compiles"] = {k: v for k, v in compiles.items()}
print(json.dumps(out))
"""


def run(spn: str, methods: list[str], cache: str) -> dict:
    code = CHILD.replace("SPN", repr(spn)).replace("METHODS", repr(methods))
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"the child process failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spn", default="spn/maxspn/nltcs.spn", help="path under $SPNKIT_DATA")
    ap.add_argument("--methods", default="bt,exact", help="comma list; each gets a first map and map_batch")
    ap.add_argument("--top", type=int, default=15, help="rows of the compile-time table")
    args = ap.parse_args()
    methods = args.methods.split(",")
    rows, compiles = [], None
    with tempfile.TemporaryDirectory(prefix="spnkit_cold_") as cache:
        for kind in ("cold", "warm"):
            r = run(args.spn, methods, cache)
            if kind == "cold":
                compiles = r["compiles"]
            rows.append({"run": kind, "spn": args.spn, **{k: round(v, 2) for k, v in r.items() if k != "compiles"}})
            print(rows[-1], file=sys.stderr, flush=True)
    report(pd.DataFrame(rows), "spn_cold_start")
    print()
    c = pd.DataFrame([{"kernel": k, "seconds": round(s, 2), "signatures": n} for k, (s, n) in compiles.items()])
    c = c.sort_values("seconds", ascending=False).head(args.top)
    report(c, "spn_cold_start_compiles")


if __name__ == "__main__":
    main()
