"""Several ``map_batch`` workers on one branch-and-bound search, so that a batch's last long query does not leave
the other cores idle.

A worker whose queue of queries is empty becomes *idle* and says so in a shared counter. A search that sees an
idle worker (at its deadline checks, every ``check_every`` expansions) *offers* the last unexplored child of its
shallowest open frame: its domains go into a free slot, and the search drops it from its own stack. An idle
worker *takes* it, reduces the same query on its own buffers, and searches that subtree from its domains. All
the workers on one query share its incumbent (``inc``: each prunes with the best value any of them has found)
and the owner of the query waits, taking offered subtrees itself, until every subtree it gave away is done; then
it keeps the best answer of them all (``merged``).

Every subtree is either searched to the end or pruned against a value that some worker reached, so the answer
is still optimal; on a tie the optimum kept may differ from the single-thread search's (whose first optimum
depends on the order it met them), and the counters sum over the workers. Slots hold a subtree from the moment
its domains are written (``WRITING``) until a taker has copied them out (``TAKEN``), so no subtree is lost or
taken twice; the owner's ``pending`` count keeps it from finishing while any of its subtrees is out.

No worker waits on a subtree nobody can take: a waiting owner takes offered subtrees itself (its own included),
and a worker out of queries stops once no worker is still taking queries (``BUSY`` 0), since a subtree exists
only while its owner, busy until then, waits for it. ``BUSY`` starts at the number of workers, set before any
starts (``spnkit.batch``): counted as each started, a first worker through its queries before the second began
would find ``BUSY`` 0 and leave the second alone.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .workqueue import compare_swap, fetch_add, load_atomic, store_atomic

IDLE = 0        # counters: workers looking for a subtree, slots holding one, workers still taking queries
FULL = 1
BUSY = 2
EMPTY, WRITING, READY, TAKEN = 0, 1, 2, 3       # slot states
ROW, OWNER, DEADLINE = 0, 1, 2                  # slot_info columns
N_MERGED = 7    # merged per owner: expansions, passes, stagings, max depth, staged nodes, timed out, subtrees


@nb.njit(cache=True)
def make_coop(workers, nv, K):
    """The shared state for ``workers`` workers on queries of up to ``nv`` query variables of at most ``K``
    values: ``(counters, slot_state, slot_info, slot_mask, pending, lock, inc, merged_val, merged_x,
    merged_stats)``; the last six per owner (worker)."""
    return (np.zeros(3, dtype=np.int64), np.zeros(workers, dtype=np.int64), np.zeros((workers, 3), dtype=np.int64),
            np.zeros((workers, nv, K), dtype=np.bool_), np.zeros(workers, dtype=np.int64),
            np.zeros(workers, dtype=np.int64), np.full(workers, -np.inf), np.full((workers, 2), -np.inf),
            np.zeros((workers, nv), dtype=np.int64), np.zeros((workers, N_MERGED), dtype=np.int64))


@nb.njit(cache=True, _nrt=False)
def offer(coop, row, owner, deadline, f_mask, f_var, f_vals, f_bnd, f_next, f_cnt, top, best, nv, K):
    """At a deadline check of the search on ``row`` (for ``owner``): if more workers are idle than subtrees wait,
    hand over the last child of the shallowest frame that has one left (and whose bound beats ``best``), and
    drop it from the stack. True when one was handed over."""
    counters, state, info, smask, pending = coop[0], coop[1], coop[2], coop[3], coop[4]
    if load_atomic(counters, IDLE) <= load_atomic(counters, FULL):
        return False
    for f in range(top + 1):
        if f_next[f] >= f_cnt[f]:
            continue
        j = f_cnt[f] - 1
        if f_bnd[f, j] <= best:
            continue
        for s in range(state.shape[0]):
            if load_atomic(state, s) == EMPTY and compare_swap(state, s, EMPTY, WRITING):
                for v in range(nv):
                    for k in range(K):
                        smask[s, v, k] = f_mask[f, v, k]
                v = f_var[f]
                for k in range(K):
                    smask[s, v, k] = False
                smask[s, v, f_vals[f, j]] = True
                info[s, ROW], info[s, OWNER], info[s, DEADLINE] = row, owner, deadline
                fetch_add(pending, owner, 1)
                fetch_add(counters, FULL, 1)
                store_atomic(state, s, READY)
                f_cnt[f] = j
                return True
        return False
    return False


@nb.njit(cache=True, _nrt=False)
def take(coop):
    """A slot whose subtree this worker now holds (copy it out, then ``release``), or -1 when none waits."""
    state = coop[1]
    if load_atomic(coop[0], FULL) <= 0:
        return -1
    for s in range(state.shape[0]):
        if load_atomic(state, s) == READY and compare_swap(state, s, READY, TAKEN):
            return s
    return -1


@nb.njit(cache=True, _nrt=False)
def release(coop, s):
    """Slot ``s`` copied out: free for the next subtree."""
    fetch_add(coop[0], FULL, -1)
    store_atomic(coop[1], s, EMPTY)


@nb.njit(cache=True, _nrt=False)
def merge(coop, owner, value, x, exact, ub, stats):
    """Fold one finished subtree's answer (``value`` at ``x``, ``exact``, ``ub``, search counters) into
    ``owner``'s merged answer, then count the subtree as done."""
    lock = coop[5]
    while not compare_swap(lock, owner, 0, 1):
        pass
    mv, mx, ms = coop[7], coop[8], coop[9]
    if value > mv[owner, 0]:
        mv[owner, 0] = value
        for v in range(x.shape[0]):
            mx[owner, v] = x[v]
    if not exact:
        mv[owner, 1] = max(mv[owner, 1], ub)
        ms[owner, 5] = 1
    for j in range(5):
        ms[owner, j] = max(ms[owner, j], stats[j]) if j == 3 else ms[owner, j] + stats[j]
    ms[owner, 6] += 1
    store_atomic(lock, owner, 0)
    fetch_add(coop[4], owner, -1)
