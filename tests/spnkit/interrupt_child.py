"""A process for test_interrupt.py to Ctrl-C: loads its kernels, prints READY, then runs one long solve.

``python interrupt_child.py map METHOD NET`` runs ``spnkit.map``; ``batch METHOD NET`` runs ``spnkit.map_batch``
over ``EASY`` quick queries followed by ``HARD`` long ones. NET is ``mixture`` or ``chain`` (``NETS``). What
happened is printed as one JSON line: whether ``spnkit.Interrupted`` came, and what its ``partial`` held.
"""

from __future__ import annotations

import json
import sys
import time

import spnkit
from spnkit import synthetic
from spnkit.query import Query

NETS = {"mixture": lambda: synthetic.mixture(40, 200, seed=1), "chain": lambda: synthetic.chain(10_000, seed=0)}
EASY, HARD = 6, 4


def hard_query(spn, method: str) -> Query:
    """Minutes of work: every variable a query variable (brute force: 25 of them, its limit)."""
    n = spn.n_vars
    return Query(n, query=range(25), hidden=range(25, n)) if method == "brute" else Query(n)


def queries(spn, method: str) -> tuple[list[Query], list[Query]]:
    """(easy, hard): easy ones have two query variables."""
    n = spn.n_vars
    return [Query(n, query=[i, i + 1], evidence={i + 2: 1}) for i in range(EASY)], [hard_query(spn, method)] * HARD


def main(kind: str, method: str, net: str) -> None:
    spn = NETS[net]()
    easy, hard = queries(spn, method)
    spnkit.map(spn, easy[0], method)                 # kernels loaded (or compiled) before READY
    spnkit.map_batch(spn, easy[:2], method)
    print("READY", flush=True)
    t0 = time.perf_counter()
    out: dict = {"interrupted": False}
    try:
        if kind == "map":
            spnkit.map(spn, hard[0], method)
        else:
            spnkit.map_batch(spn, easy + hard, method)
    except spnkit.Interrupted as e:
        p = e.partial
        out = {"interrupted": True, "message": str(e), "seconds": time.perf_counter() - t0}
        if kind == "map":
            out.update(log_value=p.log_value, exact=p.exact, assignment=p.assignment.tolist())
        else:
            out.update(query=p["query"].tolist(), log_value=p["log_value"].tolist(), exact=p["exact"].tolist())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
