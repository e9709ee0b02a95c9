"""Upward-pass (log S(x)) throughput of spnkit's numba kernel on the SPNs we can read.

    python benchmarks/spn_eval.py [--repeats 20]

Single thread; compile time is excluded (first call) and reported separately.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _report import report

import spnkit
from spnkit.datasets import data_path, load_debd

CASES = [("nltcs", "spn/maxspn/nltcs.spn", "nltcs")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    rows = []
    for name, rel, dataset in CASES:
        t0 = time.perf_counter()
        spn = spnkit.load(data_path(rel))
        t_load = time.perf_counter() - t0
        X = load_debd(dataset, "test").astype(np.int64)
        t0 = time.perf_counter()
        spn.log_prob(X[:1])
        t_first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            spn.log_prob(X)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        rows.append({"spn": name, "nodes": spn.n_nodes, "edges": spn.n_edges, "rows": len(X),
                     "load_ms": round(1e3 * t_load, 1), "first_call_ms": round(1e3 * t_first, 1),
                     "us_per_row": round(1e6 * t / len(X), 2), "ns_per_edge": round(1e9 * t / len(X) / spn.n_edges, 2),
                     "rows_per_s": round(len(X) / t)})
    report(pd.DataFrame(rows), "spn_eval")


if __name__ == "__main__":
    main()
