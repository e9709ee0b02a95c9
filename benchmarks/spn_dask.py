"""``spnkit.map_batch`` locally against ``map_batch(..., client=)`` on a Dask ``LocalCluster`` of 2 worker processes.

    python benchmarks/spn_dask.py [--spn spn/maxspn/nltcs.spn] [--methods bt,exact] [--queries 20000,2000]
                                  [--repeats 3]

One batch per method of the authors' protocol queries (5:2:3, seed 0; ``--queries`` per method), solved
``--repeats`` times each way, best time kept: ``local 1 thread`` and ``local 2 threads`` (``numba.set_num_threads``),
then ``dask 2x1`` (two worker processes of one thread each on this machine; the SPN scattered once; default
chunks, about four per worker thread) after every worker has loaded its kernels (``spnkit.cluster.warm_workers``,
not timed). Columns: ``queries_per_s``, ``seconds``, ``same`` (every row's log value, exactness, upper bound and
assignment equal to the local one-thread run's).

Here the cluster can at best match the local two threads (same two cores); what it costs is the shipping: queries
pickled to the workers, results back, a frame built on the client. Its point is machines beyond this one.

The SPN is read through ``$SPNKIT_DATA`` (``make`` sets it to ``../shared/data`` when present).
"""

from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
import pandas as pd
from _report import report

import spnkit
from spnkit.cluster import warm_workers
from spnkit.datasets import data_path
from spnkit.protocol import protocol_queries


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = ("log_value", "exact", "upper_bound")
    return len(a) == len(b) and all(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True) for c in cols) \
        and np.array_equal(a["assignment"].array.rows, b["assignment"].array.rows)


def _best(fn, repeats: int) -> tuple[float, pd.DataFrame]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spn", default="spn/maxspn/nltcs.spn", help="path under $SPNKIT_DATA")
    ap.add_argument("--methods", default="bt,exact")
    ap.add_argument("--queries", default="20000,2000", help="queries per method, in the order of --methods")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    spn = spnkit.load(data_path(args.spn))
    methods = args.methods.split(",")
    counts = [int(c) for c in args.queries.split(",")]
    rows = []
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    try:
        for method, n in zip(methods, counts, strict=True):
            batch = spnkit.QueryBatch.from_queries(protocol_queries(spn.cardinalities, "5:2:3", n, seed=0))
            spnkit.map_batch(spn, batch[:4], method)
            ref = None
            for threads in (1, 2):
                numba.set_num_threads(threads)
                secs, df = _best(lambda m=method, b=batch: spnkit.map_batch(spn, b, m), args.repeats)
                ref = df if ref is None else ref
                rows.append({"method": method, "run": f"local {threads} thread(s)", "queries": n,
                             "seconds": round(secs, 3), "queries_per_s": round(n / secs), "same": _same(df, ref)})
                print(rows[-1], file=sys.stderr, flush=True)
            warm_workers(client, spn, [method])
            secs, df = _best(lambda m=method, b=batch: spnkit.map_batch(spn, b, m, client=client, progress=False),
                             args.repeats)
            rows.append({"method": method, "run": "dask 2x1", "queries": n, "seconds": round(secs, 3),
                         "queries_per_s": round(n / secs), "same": _same(df, ref)})
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        client.close()
        cluster.close()
    report(pd.DataFrame(rows), "spn_dask")


if __name__ == "__main__":
    main()
