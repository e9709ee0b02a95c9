"""Per-query time of every spnkit MAP method, single thread and batched, against the authors' Go code.

    python benchmarks/spn_solvers.py                       # every SPN in $SPNKIT_DATA/spn, 6 settings x 100
    python benchmarks/spn_solvers.py --spns nltcs --go     # + the authors' Go solvers on the same queries
    python benchmarks/spn_solvers.py --methods bt,kbt --settings 5:2:3 --queries 20

For each SPN, Q:E:H setting (authors' protocol, ``spnkit.protocol``, numpy seed 0) and method:

* ``median_us`` / ``p90_us``: wall time of one ``spnkit.map`` call (reduction + solver + evaluation + Python),
  one thread, over the queries that fitted in ``--budget`` seconds, each query's time its median over
  ``--rounds`` passes over the list (``rounds``: the passes that completed; a single pass of microsecond
  queries moved a cell's median by +-15 % between runs); ``kernel_median_us``: the same calls'
  compiled-kernel time (``MapResult.kernel_seconds``: reduction + solver + evaluation, no Python), the scope
  the Go harness times (``time.Now()`` around ``MAP2MAX``, the solver and ``EvalX``, no parsing or output);
* ``batch_qps``: queries per second of ``spnkit.map_batch`` on all cores over a ``QueryBatch`` of ``batch_n``
  queries (those that did not time out on one thread, repeated up to >= 1000 queries or ~0.2 s of work; a batch
  too long to repeat holds a whole number of queries per thread), and ``batch_speedup`` against
  the same batch on one thread (each the best of 3 alternating rounds when a round takes under a second, else
  of ``--long-batch-rounds``, 1 by default);
  ``list_speedup``: the same with the queries as a list of ``Query`` objects (a Python step per query);
* ``timeouts``: exact methods that hit ``--timeout`` (their time is then the timeout);
* with ``--go``: the Go median / p90 on the same query lines (``GOMAXPROCS=1``), measured the same way (the
  list given ``--rounds`` times in one run, each query's median over its rounds; ``go_rounds`` the fewest), ``speedup`` = Go median /
  ours through ``spnkit.map``, ``kernel_speedup`` = Go median / our kernel median (the same timed scope), and ``max_abs_diff`` between the two sides' log values (0 up to rounding for the deterministic
  methods: bt, ng, amap, kbt and the exact ones; bs samples its starts with a different RNG).

Compile time is excluded from the timings and reported in a second table: first call in this process (numba
cache hit or not) and, with ``--cold``, a cold compile in a fresh process with an empty cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from _report import report

import spnkit
from spnkit.datasets import BENCHMARK_SPNS, data_path
from spnkit.kernels.solve import batch_linear, query_linear
from spnkit.protocol import BENCH_SETTINGS, protocol_queries, setting_name

HERE = Path(__file__).resolve().parent
SPNS = BENCHMARK_SPNS   # name -> path under $SPNKIT_DATA
METHODS = ("bt", "ng", "amap", "bs", "kbt", "exact-mc", "exact-fc", "exact-fco", "exact-fcos", "exact", "brute")
GO_METHODS = {"bt": "bt", "ng": "ng", "amap": "amap", "bs": "bs", "kbt": "kbt", "exact-mc": "exact-mc",
              "exact-fc": "exact-fc", "exact-fco": "exact-fco", "exact-fcos": "exact-fcos"}


def go_binary(tmp: Path) -> Path | None:
    """Build benchmarks/maxspn_go against $MAXSPN_SRC (a checkout of shtechair/maxspn); None if impossible."""
    src = os.environ.get("MAXSPN_SRC")
    if not src or not shutil.which("go") or not (Path(src) / "spn.go").exists():
        print("[go] skipped: set MAXSPN_SRC to a checkout of github.com/shtechair/maxspn and install Go "
              "(see benchmarks/maxspn_go/README.md)", file=sys.stderr)
        return None
    dst = HERE / "maxspn_go" / "maxspn_src"
    dst.mkdir(exist_ok=True)
    for name in ("spn.go", "approx.go", "exact.go", "LICENSE"):
        if (Path(src) / name).exists() and (Path(src) / name).resolve() != (dst / name).resolve():
            shutil.copy(Path(src) / name, dst / name)
    (dst / "go.mod").write_text("module github.com/shtechair/maxspn\n\ngo 1.19\n")
    exe = tmp / "maxspn_go"
    subprocess.run(["go", "build", "-o", str(exe), "."], cwd=HERE / "maxspn_go", check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod"})
    return exe


def run_go(exe: Path, spn_file: Path, queries: list[spnkit.Query], method: str, opts: dict, timeout: float,
           budget: float, rounds: int) -> pd.DataFrame:
    """Go's per-query value and seconds, the query list given ``rounds`` times (one file; a query's rows are
    its rounds); stops reading (and kills it) once ``budget`` seconds have passed."""
    qfile = spn_file.with_suffix(".q")
    qfile.write_text(("\n".join(q.to_line() for q in queries) + "\n") * rounds)
    param = {"kbt": opts.get("k", 100), "bs": opts.get("beam", 10)}.get(method, 0)
    proc = subprocess.Popen([str(exe), str(spn_file), str(qfile), GO_METHODS[method], str(param),
                             str(max(1, int(np.ceil(timeout))))], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "GOMAXPROCS": "1"})
    rows, t0 = [], time.perf_counter()
    for line in proc.stdout:
        i, v, s = line.strip().split(",")
        rows.append((int(i) % len(queries), float(v), float(s)))
        if time.perf_counter() - t0 > budget:
            break
    proc.kill()
    proc.wait()
    return pd.DataFrame(rows, columns=["query", "go_value", "go_seconds"])


BATCH_ROUNDS = 3


def bench_cell(spn, queries, method, opts, budget, rounds, long_rounds=1):
    """Single-thread spnkit.map times (``rounds`` passes over the queries, within ``budget`` seconds), then
    map_batch on 1 and on all threads (``long_rounds`` alternating rounds when a batch takes over a second)."""
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < min(0.5, budget / 4):    # warm: cache load, caches, clock speed
        for q in queries[:10]:
            spnkit.map(spn, q, method, **opts)
            if time.perf_counter() - t_start > budget / 4:
                break
    times, kernel = [[] for _ in queries], [[] for _ in queries]
    values, timed_out, n = [], [], 0
    t_start = time.perf_counter()
    for rnd in range(rounds):
        for i, q in enumerate(queries[:n] if rnd else queries):
            t0 = time.perf_counter()
            r = spnkit.map(spn, q, method, **opts)
            times[i].append(time.perf_counter() - t0)
            kernel[i].append(r.kernel_seconds)
            if not rnd:
                values.append(r.log_value)
                timed_out.append(bool(r.stats["timed_out"]))
                n += 1
            if time.perf_counter() - t_start > budget:
                break
        if time.perf_counter() - t_start > budget:
            break
    done_rounds = len(times[n - 1])                      # the last query's rounds: how many passes completed
    times = [float(np.median(t)) for t in times[:n]]     # each query's median over its rounds
    kernel = [float(np.median(t)) for t in kernel[:n]]
    done = queries[:n]
    threads = numba.config.NUMBA_NUM_THREADS
    timeouts = sum(timed_out)
    df = spnkit.map_batch(spn, done, method, **opts)
    assert np.array_equal(df["log_value"].to_numpy(), np.array(values)) or timeouts, method
    # throughput on a batch of >= 1000 queries (the same ones repeated) and >= ~0.2 s of work, so that the
    # batch's fixed cost (one DataFrame) does not hide the parallel part; of the queries that finished (one that
    # timed out takes the timeout on any number of threads: it would time the limit, not the solver)
    pool = [i for i in range(n) if not timed_out[i]] or list(range(n))
    work = float(np.sum([times[i] for i in pool]))
    reps = max(1, int(np.ceil(1000 / len(pool))), int(np.ceil(0.2 / max(1e-9, work))))
    reps = min(reps, max(1, int(budget / max(1e-9, work))))
    if reps == 1 and len(pool) > threads:
        # a few long queries, run once: a whole number per thread (7 equal queries on 2 threads cannot go
        # faster than 4 of them one after the other, 1.75x, whatever the solver does)
        pool = pool[:len(pool) - len(pool) % threads]
    big = [done[i] for i in pool] * reps
    work = float(np.sum([times[i] for i in pool])) * reps       # one thread's seconds for the batch
    batch = {}
    # alternate the thread counts and keep each one's best round: a 0.1 s measurement on a 2-core machine moves
    # by +-20 % (long batches, over a second, are steady and run once). Each as a QueryBatch (no Python step
    # per query) and as the list of Query objects.
    batch_rounds = BATCH_ROUNDS if work <= 1.0 else long_rounds
    for kind, qs in (("batch", spnkit.QueryBatch.from_queries(big)), ("list", big)):
        for _ in range(batch_rounds):
            for th in sorted({1, threads}):
                numba.set_num_threads(th)
                t0 = time.perf_counter()
                spnkit.map_batch(spn, qs, method, **opts)
                batch[kind, th] = max(batch.get((kind, th), 0.0), len(big) / (time.perf_counter() - t0))
    numba.set_num_threads(threads)
    t = np.array(times) * 1e6
    return {"n": n, "rounds": done_rounds, "median_us": float(np.median(t)), "p90_us": float(np.percentile(t, 90)),
            "kernel_median_us": float(np.median(kernel)) * 1e6,
            "batch_n": len(big), "batch_qps": batch["batch", threads],
            "batch_speedup": batch["batch", threads] / batch["batch", 1],
            "list_speedup": batch["list", threads] / batch["list", 1],
            "timeouts": timeouts,
            "mean_log_value": float(np.mean(values))}, np.array(values)


def first_calls(spn, q) -> pd.DataFrame:
    """First call of each kernel in this process (numba cache load or compile), and whether it hit the cache."""
    rows = []
    for name, fn, call in (("spnkit.map", query_linear, lambda: spnkit.map(spn, q, "bt")),
                           ("spnkit.map_batch", batch_linear, lambda: spnkit.map_batch(spn, [q], "bt"))):
        t0 = time.perf_counter()
        call()
        rows.append({"kernel": name, "first_call_s": round(time.perf_counter() - t0, 2),
                     "from_cache": sum(fn.stats.cache_hits.values()) > 0})
    return pd.DataFrame(rows)


COLD = """
import time, spnkit, numpy as np
spn = spnkit.load({path!r}); q = spnkit.Query(spn.n_vars)
t0 = time.perf_counter(); spnkit.map(spn, q, "bt"); t1 = time.perf_counter()
spnkit.map_batch(spn, [q], "bt"); t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def cold_compile(path: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", COLD.format(path=path)], capture_output=True, text=True,
                             check=True, env={**os.environ, "NUMBA_CACHE_DIR": d})
    a, b = map(float, out.stdout.split())
    return pd.DataFrame([{"kernel": "spnkit.map (cold)", "first_call_s": round(a, 1), "from_cache": False},
                         {"kernel": "spnkit.map_batch (cold)", "first_call_s": round(b, 1), "from_cache": False}])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spns", default=",".join(SPNS), help=f"comma list from {', '.join(SPNS)}")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--settings", default=",".join(BENCH_SETTINGS), help="Q:E:H in tenths, comma list")
    ap.add_argument("--queries", type=int, default=100, help="queries per setting (seeded, authors' protocol)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per query for exact methods and bs")
    ap.add_argument("--budget", type=float, default=30.0, help="seconds per (SPN, setting, method) cell")
    ap.add_argument("--rounds", type=int, default=5,
                    help="passes over a cell's queries on each side (within --budget); a query's time is its "
                         "median over them")
    ap.add_argument("--long-batch-rounds", type=int, default=1,
                    help="alternating 1-thread/all-thread rounds for batches over a second (shorter ones: "
                         f"{BATCH_ROUNDS}); each side keeps its best")
    ap.add_argument("--brute-max", type=int, default=20, help="skip brute above this many query variables")
    ap.add_argument("--go", action="store_true", help="also time the authors' Go code ($MAXSPN_SRC)")
    ap.add_argument("--cold", action="store_true", help="also measure a cold compile in a fresh process")
    ap.add_argument("--name", default="spn_solvers", help="CSV name under benchmarks/results/")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="spn_solvers_"))
    print(f"[spn_solvers] partial results in {tmp / 'partial.csv'}", file=sys.stderr)
    exe = go_binary(tmp) if args.go else None
    opts = {"timeout": args.timeout}
    rows = []
    compile_rows = []
    for name in args.spns.split(","):
        spn = spnkit.load(data_path(SPNS[name]))
        binary = bool(np.all(spn.cardinalities == 2))
        if not compile_rows:
            compile_rows.append(first_calls(spn, spnkit.Query(spn.n_vars)))
            if args.cold:
                compile_rows.append(cold_compile(str(data_path(SPNS[name]))))
        spn_file = tmp / f"{name}.spn"
        spnkit.save(spn, spn_file, format="maxspn")
        for setting in args.settings.split(","):
            queries = protocol_queries(spn.cardinalities, setting, args.queries, seed=0)
            n_q = len(queries[0].query_vars)
            for method in args.methods.split(","):
                if method == "brute" and n_q > args.brute_max:
                    continue
                m_opts = opts if method.startswith("exact") or method == "bs" else {}
                cell, values = bench_cell(spn, queries, method, m_opts, args.budget, args.rounds,
                                          args.long_batch_rounds)
                row = {"spn": name, "nodes": spn.n_nodes, "edges": spn.n_edges, "vars": spn.n_vars,
                       "setting": setting_name(setting), "method": method, **cell}
                if exe is not None and binary and method in GO_METHODS:
                    go = run_go(exe, spn_file, queries[:cell["n"]], method, m_opts, args.timeout, args.budget,
                                args.rounds)
                    if len(go):
                        g = go.groupby("query")["go_seconds"].median().to_numpy() * 1e6   # per query, over rounds
                        row.update(go_n=len(g), go_rounds=int(go.groupby("query").size().min()),
                                   go_median_us=float(np.median(g)), go_p90_us=float(np.percentile(g, 90)),
                                   speedup=float(np.median(g)) / cell["median_us"],
                                   kernel_speedup=float(np.median(g)) / cell["kernel_median_us"],
                                   max_abs_diff=float(np.max(np.abs(go["go_value"].to_numpy()
                                                                    - values[go["query"].to_numpy()]))))
                rows.append(row)
                pd.DataFrame(rows).to_csv(tmp / "partial.csv", index=False)   # survives a crash mid-run
                print(f"{name:14s} {setting_name(setting):7s} {method:10s} n={cell['n']:4d} "
                      f"median {cell['median_us']:10.1f} us" +
                      (f"  go {row['go_median_us']:10.1f} us  x{row['speedup']:.1f}" if "speedup" in row else ""),
                      flush=True)
    df = pd.DataFrame(rows)
    for c in ("median_us", "p90_us", "kernel_median_us", "go_median_us", "go_p90_us", "batch_qps"):
        if c in df:
            df[c] = df[c].round(1)
    for c in ("speedup", "kernel_speedup", "batch_speedup", "list_speedup", "mean_log_value"):
        if c in df:
            df[c] = df[c].round(3)
    report(df, args.name)
    report(pd.concat(compile_rows, ignore_index=True), args.name + "_compile")
    if "speedup" in df:
        summary = df.dropna(subset=["speedup"]).groupby("method").agg(
            go_median_us=("go_median_us", "median"), median_us=("median_us", "median"),
            min_speedup=("speedup", "min"), median_speedup=("speedup", "median"),
            min_kernel_speedup=("kernel_speedup", "min"), median_kernel_speedup=("kernel_speedup", "median"),
            max_abs_diff=("max_abs_diff", "max")).reset_index()
        report(summary.round({"go_median_us": 1, "median_us": 1, "min_speedup": 2, "median_speedup": 2,
                              "min_kernel_speedup": 2, "median_kernel_speedup": 2}),
               args.name + "_vs_go")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
