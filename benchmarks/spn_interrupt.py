"""How fast Ctrl-C stops a solve: a real SIGINT to a process running each method on a long query.

    python benchmarks/spn_interrupt.py [--repeats 3] [--after 1.0]

Each row is one fresh Python process per repeat: it loads its kernels, starts one long call, and is sent SIGINT
``--after`` seconds later. ``stop_ms`` is the time from ``os.kill`` to the process printing the
``spnkit.Interrupted`` it caught (its partial answer included): median and max over the repeats. The calls
(``spnkit.synthetic``; each runs for minutes, or for ``uninterrupted_s`` where shown, when left alone):

* ``map`` with every exact method on a 200-component mixture over 40 binary variables, all of them query
  variables (``spnkit.synthetic.mixture(40, 200)``), and beam search there with ``beam=400``;
* ``map`` brute force on the same mixture with 25 query variables (2^25 assignments);
* ``map`` AMAP on a 10,000-variable chain (``synthetic.chain``; 69,996 nodes);
* ``map`` K-best tree with ``k=2000`` on the mixture (0.85 s alone: SIGINT after 0.3 s);
* ``map_batch`` (2 threads) of 4 such exact queries.

The issue's goal: every call stops within ~0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _report import report

ROOT = Path(__file__).resolve().parents[1]
CASES = [("map", m, "mixture", {}) for m in ("exact", "exact-mc", "exact-fc", "exact-fco", "exact-fcos")] + [
    ("map", "bs", "mixture", {"beam": 400, "max_rounds": 10**9}), ("map", "brute", "mixture", {}),
    ("map", "amap", "chain", {}), ("map", "kbt", "mixture", {"k": 2000}), ("batch", "exact", "mixture", {})]
SHORT = {"kbt": 0.3}      # K-best tree with k=2000 ends after ~0.85 s: its SIGINT comes 0.3 s in


def child(kind: str, method: str, net: str, opts: str) -> None:
    import spnkit
    from spnkit import synthetic

    spn = synthetic.mixture(40, 200, seed=1) if net == "mixture" else synthetic.chain(10_000, seed=0)
    n = spn.n_vars
    q = spnkit.Query(n, query=range(25), hidden=range(25, n)) if method == "brute" else spnkit.Query(n)
    kw = json.loads(opts)
    small = spnkit.Query(n, query=[0, 1])
    spnkit.map(spn, small, method, **kw)                    # kernels loaded before READY
    spnkit.map_batch(spn, [small], method, **kw)
    print("READY", flush=True)
    t0 = time.perf_counter()
    try:
        if kind == "map":
            spnkit.map(spn, q, method, **kw)
        else:
            spnkit.map_batch(spn, [q] * 4, method, **kw)
        print(json.dumps({"interrupted": False, "seconds": time.perf_counter() - t0}), flush=True)
    except spnkit.Interrupted as e:
        print(json.dumps({"interrupted": True, "partial": e.partial is not None}), flush=True)


def one(kind: str, method: str, net: str, opts: dict, after: float) -> dict:
    p = subprocess.Popen([sys.executable, __file__, "--child", kind, method, net, json.dumps(opts)],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        if p.stdout.readline().strip() != "READY":
            raise RuntimeError(f"child {kind} {method} failed to start")
        time.sleep(after)
        t = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        line = p.stdout.readline()
        stop = time.monotonic() - t
        p.wait(60)
    finally:
        p.kill()
    out = json.loads(line)
    if not out["interrupted"]:
        return {"stop_ms": float("nan"), "uninterrupted_s": out["seconds"]}
    return {"stop_ms": stop * 1e3, "uninterrupted_s": float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--after", type=float, default=1.0, help="seconds between READY and SIGINT")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    for kind, method, net, opts in CASES:
        runs = [one(kind, method, net, opts, SHORT.get(method, args.after)) for _ in range(args.repeats)]
        ms = pd.Series([r["stop_ms"] for r in runs])
        rows.append({"call": f"spnkit.{'map' if kind == 'map' else 'map_batch'}", "method": method, "network": net,
                     "options": json.dumps(opts) if opts else "", "stop_ms_median": round(ms.median(), 1),
                     "stop_ms_max": round(ms.max(), 1), "stopped": int(ms.notna().sum()), "repeats": len(runs),
                     "uninterrupted_s": max((r["uninterrupted_s"] for r in runs), default=float("nan"))})
        print(rows[-1], flush=True)
    report(pd.DataFrame(rows), "spn_interrupt")


if __name__ == "__main__":
    main()
