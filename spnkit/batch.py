"""``spnkit.map_batch``'s engine: one serial, GIL-free worker kernel per thread.

A batch runs its method's worker kernel (``kernels.solve.BATCH_WORKERS``) on ``workers`` threads at once: the
calling thread and daemon threads of ``spnkit.interrupt.TEAM``. Each worker claims blocks of rows from a shared
counter (guided scheduling, ``kernels.workqueue``) and solves them on its own scratch; a branch-and-bound worker out of rows takes
subtrees that the other searches hand out (``kernels.coop``); a long brute-force enumeration is split over all
workers afterwards. The kernels release the GIL, so the threads run on all cores.

Why threads and not numba's ``parallel=True``: the kernels are the same, but compiling the ``prange`` body that
dispatched among every method took ~185 s of a new user's first ``map_batch`` (``benchmarks/spn_cold_start.py``);
a serial worker per method family compiles in seconds, and only for the method asked for.
"""

from __future__ import annotations

import numpy as np

from .interrupt import TEAM
from .kernels.clock import RUN, stop_state
from .kernels.coop import BUSY, make_coop
from .kernels.k_best import kbt_scratch
from .kernels.solve import (
    BATCH_WORKERS,
    BRUTE,
    EXACT,
    EXACT_MC,
    KBT,
    batch_setup,
    scratch,
    split_finish,
    split_prepare,
    split_range,
)


def solve_batch(net, roles, values, opts: np.ndarray, workers: int) -> tuple:
    """Every row of ``roles``/``values`` (shape (m, n_vars)) on the network ``net`` (``FlatSPN.kernel_arrays``)
    solved with ``opts`` (``kernels.solve.OPTIONS``) on
    ``workers`` threads: ``(status, xs, lvs, exact, ubs, stats, secs)`` as ``kernels.solve.batch_setup`` makes
    them. When a row does not fit the network (``BAD_QUERY``), none is solved. Once kernels are asked to stop
    (``clock.request_stop``) no worker starts another row (those stay ``NOT_RUN``) and the rows running end at
    their next check point (``INTERRUPTED``)."""
    method = int(opts[0])
    m, nv = roles.shape
    workers = max(1, int(workers))
    out, n_bad, split = batch_setup(net, roles, values, method, workers)
    n, e, K = net[0].shape[0], net[2].shape[0], int(net[9].max())
    if n_bad:
        return out
    searches = EXACT_MC <= method <= EXACT
    n_split = int(split.sum())
    # idle workers help searches and split enumerations; otherwise a worker per row at most
    team = workers if searches or n_split else min(workers, m)
    ctl = np.zeros(1, dtype=np.int64)
    fn = BATCH_WORKERS[method]
    if searches:
        coop = make_coop(team, nv if team > 1 else 0, K if team > 1 else 1)
        coop[0][BUSY] = team                # before any worker starts: none may think the others are done
        no_trace = np.empty((0, 3))
    calls = []
    for w in range(team):
        fbuf, ibuf, kept, tbuf = scratch(n, e, nv, K)
        # KBT's own (a reduced network has at most one node and one edge more)
        kf, ki = kbt_scratch(n + 1, e + 1, int(opts[1])) if method == KBT else (fbuf[:0], ibuf[:0])
        args = (net, roles, values, opts, out, (fbuf, ibuf, kept, tbuf, kf, ki), ctl, team, w)
        if searches:     # a second set of buffers to search subtrees the others hand out
            hf, hi, hk, ht = scratch(n, e, nv, K) if team > 1 else scratch(0, 0, 0, 1)
            args += (coop, (roles, values, hf, hi, hk, ht, np.empty(nv, dtype=np.int64), no_trace))
        elif method == BRUTE:
            args += (split,)
        calls.append((fn, args))
    TEAM.run(calls)
    if n_split:
        _split_rows(net, roles, values, opts, out, np.flatnonzero(split), team, n, e, K)
    return out


def _split_rows(net, roles, values, opts, out, rows, team: int, n: int, e: int, K: int) -> None:
    """The long brute-force rows, one at a time, each enumeration split into ``team`` ranges run at once."""
    nv = roles.shape[1]
    fbuf, ibuf, kept, tbuf = scratch(n, e, nv, K)
    Wr = np.empty(e + 1)
    for r in rows:
        if stop_state() != RUN:          # asked to stop: the rows left stay NOT_RUN
            return
        t0, s, nq, total, n_e, scaled, lin, size, Kq = split_prepare(net, roles[r], values[r], out[1][r], fbuf, ibuf,
                                                                     kept, tbuf, Wr)
        best, at, cuts = np.full(team, -np.inf), np.zeros(team, dtype=np.int64), np.zeros(team, dtype=np.bool_)
        if s == 0:
            chunk = (size + team - 1) // team
            deadline = t0 + int(opts[5])
            calls = []
            for c in range(team):
                lo = min(size, c * chunk)
                calls.append((split_range, (n, e, nv, fbuf, ibuf, kept, tbuf, nq, total, n_e, Wr, lin, lo,
                                            min(size, lo + chunk), np.zeros((nq, Kq), dtype=np.bool_),
                                            np.zeros(nq, dtype=np.int64), np.empty(total), deadline)))
            for c, (b, i, cut) in enumerate(TEAM.run(calls)):
                best[c], at[c], cuts[c] = b, i, cut
        split_finish(net, roles[r], values[r], out, r, fbuf, ibuf, kept, tbuf, s, nq, scaled, best, at, cuts, t0)
