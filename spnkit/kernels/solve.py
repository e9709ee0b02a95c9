"""One compiled call per query: MAP->MAX reduction, the chosen solver, and the exact value of its answer.

Every method starts with ``kernels.linear.upward`` (one sweep, over the relevant nodes only when most variables
are hidden). BT and NG then descend and re-evaluate the query nodes; the others build the reduced network from
its constants, solve, and re-evaluate only the query nodes at their answer.

A query's kernel (``*_one``: ``_linear_one``, ``_exact_one``, ``_amap_one``, ...) takes the network's arrays,
``role``/``value`` (int8/int64 (n_vars,) as in ``spnkit.Query``), the method's options and the caller's buffers,
and writes the answer into ``x_full`` (int64, (n_vars,)): evidence values, the MAP values on query variables, -1
on hidden ones. It returns ``(status, log_value, exact, upper_bound, stats, n_trace, ticks)``: ``status`` 0,
``TIMED_OUT``, ``INTERRUPTED``, ``NO_QUERY_IN_SCOPE`` (no query variable occurs in the network) or ``BAD_QUERY``
(the query does not fit it: checked here, a loop over the variables, instead of several numpy calls per query
in Python); ``stats`` a tuple of ``N_STATS`` counters; ``n_trace`` the rows the exact searches wrote into
``trace`` (float64, (rows, 3)); times in ``clock.now()`` ticks. (A tuple and the caller's buffers instead of new
arrays: an array made here and returned to Python costs ~0.4 us, three times an ``np.empty`` in Python.)

Fusing the three into one compiled call keeps the Python layer out of the per-query path: ``spnkit.map`` makes
one call (``query_*``), and ``spnkit.map_batch``'s workers (``batch_*``, run on threads by ``spnkit.batch``) call
the same ``*_one`` kernels, so a batch gives the answers single calls give (its searches may share a query's
subtrees between threads, ``kernels.coop``). Each method family has its own entry points, so that a first call
compiles only the solver it runs.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types

from .beam import beam_search
from .clock import RUN, now, stop_word
from .coop import BUSY, IDLE, merge, release, take
from .exact import FCOS, _layout, _max_card, bb_scratch_size, search_network
from .k_best import k_best_tree_map
from .linear import carry_constants, evaluate_kept, keep_uni_leaves, linear_map_fast, upward
from .maxprod import (
    argmax_product,
    assignment_at,
    best_tree,
    brute_force,
    brute_range,
    enumeration_size,
    times_card,
)
from .passes import linear_weights_safe, log_value
from .reduce import count_reduced, fill_reduced, reduced_int_size, reduced_views
from .workqueue import claim, fetch_add, load_atomic

BT = 0
NG = 1
AMAP = 2
BS = 3
KBT = 4
BRUTE = 5
EXACT_MC = 6
EXACT_FC = 7
EXACT_FCO = 8
EXACT_FCOS = 9
EXACT = 10          # the best variant (FCOS) started from max-product's answer

METHOD_CODES = {"bt": BT, "ng": NG, "amap": AMAP, "bs": BS, "kbt": KBT, "brute": BRUTE, "exact-mc": EXACT_MC,
                "exact-fc": EXACT_FC, "exact-fco": EXACT_FCO, "exact-fcos": EXACT_FCOS, "exact": EXACT}
EXACT_METHODS = frozenset({"brute", "exact-mc", "exact-fc", "exact-fco", "exact-fcos", "exact"})
N_STATS = 7         # expansions, passes, stagings, max depth, staged nodes, reduced network's node count,
#                     subtrees handed to other workers (map_batch's searches, kernels.coop)
NO_QUERY_IN_SCOPE = -1
BRUTE_SPLIT = 4096  # map_batch splits a brute-force query over its threads from this many assignments on
BAD_QUERY = -2      # wrong length, an evidence value out of range or no query variable (Query.check says which)
TIMED_OUT = 1       # the deadline came first: the row holds the best answer met so far
INTERRUPTED = 2     # kernels were asked to stop (clock.request_stop, Ctrl-C): the best answer met so far
NOT_RUN = 3         # (map_batch) the stop came before this row began


@nb.njit(cache=True, _nrt=False, inline="always")
def _cut_status():
    """The status of a query its solver cut short: ``INTERRUPTED`` when asked to stop, else ``TIMED_OUT``."""
    return INTERRUPTED if stop_word() != RUN else TIMED_OUT


@nb.njit(cache=True, inline="always")
def _fits(cards, role, value):
    """The checks of ``Query.check``: length, evidence values within the cardinalities, a query variable."""
    nv = cards.shape[0]
    if role.shape[0] != nv or value.shape[0] != nv:
        return False
    n_query = 0
    for v in range(nv):
        r = role[v]
        if r == 1 and not 0 <= value[v] < cards[v]:
            return False
        n_query += r == 0
    return n_query > 0


@nb.njit(cache=True, inline="always")
def _as_tuple(stats):
    return stats[0], stats[1], stats[2], stats[3], stats[4], stats[5], stats[6]


@nb.njit(cache=True)
def scratch(n, m, nv, K):
    """The buffers a query's kernel needs for a network of ``n`` nodes and ``m`` edges over ``nv`` variables of at
    most ``K`` values: ``(fbuf, ibuf, kept, tbuf)`` (float64, int64, bool, int8). Made once per network
    (``FlatSPN.kernel_net`` holds one set for ``spnkit.map``, whose kernel holds the GIL, so no two calls share
    it: were the ``query_*`` kernels ever made ``nogil``, these must become per call) and once per worker of
    ``spnkit.batch``, not once per query.

    Layout: ``fbuf`` = the sweep's values and carried constants (2 n), the reduced network's weights (m + 1),
    the search's floats; ``ibuf`` = exponents and descent stack or kept-node order (2 n), ``N_STATS`` counters,
    four per-variable arrays (4 nv), the reduced network's integers (``reduce.reduced_int_size``), the
    search's integers;
    ``kept`` = the sweep's flags (n), the search's masks; ``tbuf`` = the reduced network's node types (n + 1),
    the search's (staged networks' node types, the staging's roles); ``exact.bb_scratch_size`` gives the
    search's part.
    With these a small exact query allocates almost nothing (each allocation, with its reference counts, cost
    ~0.1 us of a 3 us query)."""
    nf, ni, nb_, nt = bb_scratch_size(n + 1, m + 1, nv, K)
    return (np.empty(2 * n + m + 1 + nf),
            np.empty(2 * n + N_STATS + 4 * nv + reduced_int_size(n, m) + ni, dtype=np.int64),
            np.empty(n + nb_, dtype=np.bool_), np.empty(n + 1 + nt, dtype=np.int8))


# numba counts references to every array it passes or slices: atomic operations that took half of a BT query
# on a 157-node network (perf: NRT_incref/NRT_decref). The linear methods allocate nothing, so their kernels
# are compiled without reference counting (``_nrt=False``); so are the sweeps that every method shares
# (``kernels.linear``, ``maxprod.descend_into``), the value/derivative passes and the searches (``_exact_one``,
# ``exact.search_network``; "exact"'s warm start is counted in ``_warm_start``). A callee without its own flag is compiled with the
# caller's, so nothing below an ``_nrt=False`` kernel may allocate: tests/spnkit/test_nrt_audit.py checks the
# source, test_refcounts.py that every method frees what it allocates. An ``_nrt=False`` function must not
# return an array to a counting caller (which would release a reference it never took): the helpers that
# return views (``_views``, ``reduce.reduced_views``, ``exact._layout``, ``exact._level``) are inlined instead,
# so each caller makes the views under its own flags.
@nb.njit(cache=True, _nrt=False)
def _linear_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
                use_max, x_full, fbuf, ibuf, kept):
    """BT (``use_max``) or NG on one query."""
    t0 = now()
    x_full[:] = -1
    if not _fits(cards, role, value):
        return BAD_QUERY, -np.inf, False, np.nan, (0, 0, 0, 0, 0, 0, 0), 0, now() - t0
    n = node_type.shape[0]
    lv, n_kept = linear_map_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan,
                                 role, value, use_max, x_full, fbuf[:n], ibuf[:n], ibuf[n:2 * n], kept)
    status = 0 if n_kept > 0 else NO_QUERY_IN_SCOPE
    return status, lv, False, np.nan, (0, 0, 0, 0, 0, n_kept, 0), 0, now() - t0


@nb.njit(cache=True, inline="always")
def _views(n, m, nv, fbuf, ibuf, kept, tbuf):
    """A query's working arrays as views of the ``scratch`` buffers for a network of ``n`` nodes and ``m``
    edges over ``nv`` variables. Inlined: a kernel without reference counts makes them without any."""
    o = 2 * n + N_STATS
    nr = reduced_int_size(n, m)
    q = o + 4 * nv
    return (fbuf[:n], ibuf[:n], fbuf[n:2 * n], ibuf[n:2 * n], ibuf[2 * n:o], ibuf[o:o + nv], ibuf[o + nv:o + 2 * nv],
            ibuf[o + 2 * nv:o + 3 * nv], ibuf[o + 3 * nv:q], kept[:n], tbuf[:n + 1], ibuf[q:q + nr],
            fbuf[2 * n:2 * n + m + 1], (fbuf[2 * n + m + 1:], ibuf[q + nr:], kept[n:], tbuf[n + 1:]))


@nb.njit(cache=True, _nrt=False)
def _prepare(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value, x_full,
             u, ue, ck, order, stats, qindex, qvars, rcards, flags, red_t, red_i, red_f):
    """Every method but BT/NG starts here: check the query, number its query variables (``qindex``; ``qvars``
    and ``rcards`` get each one's variable and cardinality), one ``upward`` sweep, and the reduced network built
    from its constants into ``red_t``/``red_i``/``red_f`` (``reduce.reduced_views`` from offset n).
    Returns ``(status, query variables, reduced nodes, reduced edges, scaled)``."""
    x_full[:] = -1
    stats[:] = 0
    if not _fits(cards, role, value):
        return BAD_QUERY, 0, 0, 0, False
    nq = 0
    for v in range(cards.shape[0]):
        qindex[v] = -1
        if role[v] == 0:
            qindex[v] = nq
            qvars[nq] = v
            rcards[nq] = cards[v]
            nq += 1
    flags[:] = False
    no_max = nq < 0     # False, typed bool and not the literal False: the sweeps BT/NG compiled serve here too
    found, scaled = upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value,
                           no_max, u, ue, flags)
    n = node_type.shape[0]
    if found == 0 or not flags[n - 1]:
        return NO_QUERY_IN_SCOPE, nq, 0, 0, scaled
    keep_uni_leaves(plan, child_ptr, children, role, flags)
    n_kept = carry_constants(node_type, child_ptr, children, u, ue, flags, scaled, ck, order)
    new_id = red_i[:n]
    total, n_e, wrap = count_reduced(node_type, child_ptr, children, flags, ck, order, n_kept, new_id)
    t, ptr, ch, w, var, val = reduced_views(red_t, red_i, red_f, n, total, n_e)
    fill_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, flags, ck, order, n_kept, new_id,
                 wrap, t, ptr, ch, w, var, val)
    stats[5] = total
    return 0, nq, total, n_e, scaled


@nb.njit(cache=True, inline="always")
def _start(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value, x_full,
           fbuf, ibuf, kept, tbuf):
    """``_prepare`` on the ``scratch`` buffers: ``(status, query variables, scaled, stats, qvars, rcards, init_x,
    u, ue, flags, the search's buffers, the reduced network as reduce.reduced_views)``. Inlined, so that each
    caller makes the views under its own flags."""
    n = node_type.shape[0]
    u, ue, ck, order, stats, qindex, qvars, rcards, init_x, flags, red_t, red_i, red_f, bb = _views(
        n, children.shape[0], cards.shape[0], fbuf, ibuf, kept, tbuf)
    status, nq, total, n_e, scaled = _prepare(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val,
                                              plan, cards, role, value, x_full, u, ue, ck, order, stats, qindex,
                                              qvars, rcards, flags, red_t, red_i, red_f)
    return (status, nq, scaled, stats, qvars, rcards, init_x, u, ue, flags, bb,
            reduced_views(red_t, red_i, red_f, n, total, n_e))


@nb.njit(cache=True, _nrt=False)
def _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x_full, qvars, xq, u,
            ue, flags, scaled):
    """The answer in ``x_full`` (evidence values, ``xq`` on the query variables) and its exact log value: every
    method's answer is evaluated the same way (the searches' own values can differ in the last bit, and
    comparisons between methods must not count rounding as a win)."""
    for v in range(role.shape[0]):
        if role[v] == 1:
            x_full[v] = value[v]
    for i in range(xq.shape[0]):
        x_full[qvars[i]] = xq[i]
    lv, _ = evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, x_full, u, ue,
                          flags, scaled)
    return lv


WARM = EXACT - EXACT_MC      # _exact_one's variant for "exact": FCOS from max-product's answer


@nb.njit(cache=True, _nrt=False, inline="always")
def _search_variant(variant):
    """The search an exact variant runs: ``WARM`` (``"exact"``) is FCOS, after its warm start."""
    return FCOS if variant == WARM else variant


@nb.njit(cache=True, _nrt=False)
def _exact_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
               variant, timeout_ticks, check_every, trace, x_full, fbuf, ibuf, kept, tbuf, coop, owner, row, helper):
    """The branch-and-bound methods on one query: ``variant`` ``exact.MC`` ... ``FCOS`` (no warm start, as
    in the authors' experiments) or ``WARM`` (``"exact"``: FCOS started from max-product's answer). Nothing is
    allocated here, so nothing is reference-counted (on a 157-node network at 1:1:8 the counts were half of the
    query); only the warm start's max-product pass allocates, counted in ``_warm_start``.

    ``coop`` (``map_batch``; None for ``spnkit.map``, which then runs a version compiled without any of this):
    worker ``owner`` searches query ``row`` with idle workers' help (``kernels.coop``), then helps, on its
    ``helper`` buffers (``_help``), until every subtree it handed out is done, and keeps the best answer of them
    all. (None and not a placeholder state: reading a tuple of arrays out of ``FlatSPN.kernel_net`` counts a
    reference to each, +0.8 us on a 5 us query.)"""
    t0 = now()
    n = node_type.shape[0]
    status, nq, scaled, stats, qvars, rcards, init_x, u, ue, flags, bb, red = _start(
        node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value, x_full, fbuf,
        ibuf, kept, tbuf)
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    xq = init_x[:nq]
    if variant == WARM:
        start = _warm_start(t, ptr, ch, w, var, val, xq)
    else:
        xq[:] = 0
        start = -np.inf
    variant = _search_variant(variant)
    if coop is not None:
        coop[6][owner] = start
        coop[7][owner, :] = -np.inf
        coop[9][owner, :] = 0
    best, exact, ub, n_trace = search_network(t, ptr, ch, w, var, val, rcards[:nq], variant, xq, start,
                                              t0 + timeout_ticks, check_every, trace, n + 1, children.shape[0] + 1,
                                              bb[0], bb[1], bb[2], bb[3], xq, stats, coop, owner, row, row < 0)
    if coop is not None:
        _help(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, variant, check_every,
              coop, owner, helper)
        mv, mx, ms = coop[7], coop[8], coop[9]
        if mv[owner, 0] > best:
            for i in range(nq):
                xq[i] = mx[owner, i]
        if ms[owner, 5]:
            exact = False
            ub = max(ub, mv[owner, 1])
        for j in range(5):
            stats[j] = max(stats[j], ms[owner, j]) if j == 3 else stats[j] + ms[owner, j]
        stats[6] = ms[owner, 6]
    lv = _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x_full, qvars, xq,
                 u, ue, flags, scaled)
    if exact:
        ub = max(ub, lv)      # the search's own value and the re-evaluation can differ in the last bit
    return 0 if exact else _cut_status(), lv, exact, ub, _as_tuple(stats), n_trace, now() - t0


@nb.njit(cache=True, _nrt=True)     # it allocates: counted even when called from _exact_one
def _warm_start(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x):
    """Max-product's answer on a reduced network into ``x``, and its exact log value: the first incumbent of
    ``"exact"``."""
    bt, _ = best_tree(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x.shape[0])
    for i in range(x.shape[0]):       # a loop: an array slice assignment compiles numba's shape-error path (~3 s)
        x[i] = bt[i]
    return log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, bt, np.empty(node_type.shape[0]))


@nb.njit(cache=True, _nrt=False)
def _help(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, variant, check_every,
          coop, owner, helper):
    """Search subtrees that other searches hand out (``kernels.coop``) until worker ``owner`` has none left out
    (``owner`` >= 0), or until no worker takes queries any more (``owner`` < 0). ``helper``: ``(roles, values,
    fbuf, ibuf, kept, tbuf, x, no trace)``, the batch's queries and this worker's second set of buffers."""
    roles, values, fbuf, ibuf, kept, tbuf, hx, no_trace = helper
    counters, info, smask = coop[0], coop[2], coop[3]
    n, m = node_type.shape[0], children.shape[0]
    fetch_add(counters, IDLE, 1)
    while (load_atomic(coop[4], owner) > 0) if owner >= 0 else (load_atomic(counters, BUSY) > 0):
        s = take(coop)
        if s < 0:
            continue
        fetch_add(counters, IDLE, -1)
        row, for_owner, deadline = info[s, 0], info[s, 1], info[s, 2]
        _, nq, _, stats, _, rcards, init_x, _, _, _, bb, red = _start(
            node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, roles[row],
            values[row], hx, fbuf, ibuf, kept, tbuf)
        rc = rcards[:nq]
        K = _max_card(rc)
        mask = _layout(bb[0], bb[1], bb[2], bb[3], n + 1, m + 1, nq, K)[2][1]
        for v in range(nq):
            for k in range(K):
                mask[v, k] = smask[s, v, k]
        release(coop, s)
        t, ptr, ch, w, var, val = red
        xq = init_x[:nq]
        xq[:] = 0
        value, exact, ub, _ = search_network(t, ptr, ch, w, var, val, rc, variant, xq, -np.inf, deadline,
                                             check_every, no_trace, n + 1, m + 1, bb[0], bb[1], bb[2], bb[3], xq,
                                             stats, coop, for_owner, row, s >= 0)
        merge(coop, for_owner, value, xq, exact, ub, stats)
        fetch_add(counters, IDLE, 1)
    fetch_add(counters, IDLE, -1)


OPTIONS = ("method", "k", "beam", "seed", "max_rounds", "deadline", "check_every")   # the kernels' opts array


@nb.njit(cache=True, inline="always")
def _net(net):
    """A ``KernelNet``'s arrays as the tuple the per-query and batch kernels take (``FlatSPN.kernel_arrays``):
    ``(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards)``. A tuple, not the
    struct, because a struct's fields are read through reference counts, which the batch workers go without."""
    return (net.node_type, net.child_ptr, net.children, net.log_w, net.W, net.lin_ok, net.leaf_var, net.leaf_val,
            (net.uni, net.tab, net.rest, net.uni_index, net.var_ptr, net.z, net.scope64), net.cards)


# One kernel per method family from here on, so that a first call compiles only the solver it runs (a kernel that
# chose its solver at run time compiled all of them: 58 s for the first spnkit.map of any method). For a query:
# ``*_one`` (the reduction, the solver, the answer's exact value); for spnkit.map: ``query_*``, on the network's
# own scratch (``QUERY_ENTRIES``); for map_batch: ``batch_*``, one worker's share of a batch (``spnkit.batch``
# runs them on threads).
@nb.njit(cache=True, inline="always")
def _approx_start(net, role, value, x, fbuf, ibuf, kept, tbuf):
    """``_start`` for AMAP, BS, KBT and brute force: ``(t0, the tuple _start returns)``."""
    t0 = now()
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = net
    return t0, _start(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
                      x, fbuf, ibuf, kept, tbuf)


@nb.njit(cache=True, inline="always")
def _approx_done(net, role, value, x, st, xq, cut, exact, ub, t0):
    """The answer ``xq`` of a solver run on ``_approx_start``'s reduction ``st``: the query kernel's result."""
    node_type, child_ptr, children, log_w, W, _, leaf_var, leaf_val, plan, _ = net
    _, _, scaled, stats, qvars, _, _, u, ue, flags, _, _ = st
    lv = _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x, qvars, xq, u, ue,
                 flags, scaled)
    if exact:
        ub = max(ub, lv)      # the search's own value and the re-evaluation can differ in the last bit
    return _cut_status() if cut else 0, lv, exact, ub, _as_tuple(stats), 0, now() - t0


@nb.njit(cache=True, _nrt=True)     # the solvers allocate: counted even when called from a batch worker
def _amap_one(net, role, value, opts, x, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i):
    """AMAP on one query (``opts``: the ``OPTIONS`` array; ``net``: ``_net``'s tuple)."""
    t0, st = _approx_start(net, role, value, x, fbuf, ibuf, kept, tbuf)
    status, nq, stats, red = st[0], st[1], st[3], st[11]
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    xq, evals, cut = argmax_product(t, ptr, ch, w, var, val, nq, t0 + opts[5])
    stats[1] = evals
    return _approx_done(net, role, value, x, st, xq, cut, False, np.nan, t0)


@nb.njit(cache=True, _nrt=True)
def _bs_one(net, role, value, opts, x, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i):
    """Beam search on one query (``opts``: beam, seed, max_rounds)."""
    t0, st = _approx_start(net, role, value, x, fbuf, ibuf, kept, tbuf)
    status, nq, stats, rcards, red = st[0], st[1], st[3], st[5], st[11]
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    xq, _, rounds, cut = beam_search(t, ptr, ch, w, var, val, rcards[:nq], opts[2], opts[3], opts[4], t0 + opts[5])
    stats[0] = rounds
    return _approx_done(net, role, value, x, st, xq, cut, False, np.nan, t0)


@nb.njit(cache=True, _nrt=True)
def _kbt_one(net, role, value, opts, x, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i):
    """K-best tree on one query (``opts``: k), in ``kbt_f``/``kbt_i`` (``k_best.kbt_scratch``; empty: its own)."""
    t0, st = _approx_start(net, role, value, x, fbuf, ibuf, kept, tbuf)
    status, nq, stats, red = st[0], st[1], st[3], st[11]
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    xq, _, n_trees, cut = k_best_tree_map(t, ptr, ch, w, var, val, nq, opts[1], kbt_f, kbt_i, t0 + opts[5])
    stats[0] = n_trees
    return _approx_done(net, role, value, x, st, xq, cut, False, np.nan, t0)


@nb.njit(cache=True, _nrt=True)
def _brute_one(net, role, value, opts, x, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i):
    """Brute force on one query: exact unless cut short."""
    t0, st = _approx_start(net, role, value, x, fbuf, ibuf, kept, tbuf)
    status, nq, stats, rcards, red = st[0], st[1], st[3], st[5], st[11]
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    xq, best, cut = brute_force(t, ptr, ch, w, var, val, rcards[:nq], t0 + opts[5])
    return _approx_done(net, role, value, x, st, xq, cut, not cut, np.nan if cut else best, t0)


# spnkit.map's kernels: ``(net, role, value, opts, trace, x)`` -> the query kernel's result, on ``net``'s scratch
# (``FlatSPN.kernel_net`` holds one set for spnkit.map, whose kernels hold the GIL: no two calls share it).
@nb.njit(cache=True)
def query_linear(net, role, value, opts, trace, x):
    """BT (``opts[0] == BT``) or NG, without reference counts."""
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = _net(net)
    return _linear_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
                       opts[0] == BT, x, net.scratch_f, net.scratch_i, net.scratch_b)


@nb.njit(cache=True)
def query_exact(net, role, value, opts, trace, x):
    """The branch-and-bound methods (``EXACT_MC`` ... ``EXACT``), without reference counts."""
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = _net(net)
    return _exact_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
                      opts[0] - EXACT_MC, opts[5], opts[6], trace, x, net.scratch_f, net.scratch_i, net.scratch_b,
                      net.scratch_t, None, np.int64(-1), np.int64(0), None)


@nb.njit(cache=True)
def query_amap(net, role, value, opts, trace, x):
    return _amap_one(_net(net), role, value, opts, x, net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t,
                     net.scratch_f[:0], net.scratch_i[:0])


@nb.njit(cache=True)
def query_bs(net, role, value, opts, trace, x):
    return _bs_one(_net(net), role, value, opts, x, net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t,
                   net.scratch_f[:0], net.scratch_i[:0])


@nb.njit(cache=True)
def query_kbt(net, role, value, opts, trace, x, kbt_f, kbt_i):
    """K-best tree in the caller's ``k_best.kbt_scratch`` buffers (``spnkit.map`` keeps a set per network)."""
    return _kbt_one(_net(net), role, value, opts, x, net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t,
                    kbt_f, kbt_i)


@nb.njit(cache=True)
def query_brute(net, role, value, opts, trace, x):
    return _brute_one(_net(net), role, value, opts, x, net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t,
                      net.scratch_f[:0], net.scratch_i[:0])


QUERY_ENTRIES = {BT: query_linear, NG: query_linear, AMAP: query_amap, BS: query_bs, KBT: query_kbt,
                 BRUTE: query_brute, **{c: query_exact for c in range(EXACT_MC, EXACT + 1)}}
QUERY_ARG_TYPES = (types.Array(types.int8, 1, "C", readonly=True), types.Array(types.int64, 1, "C", readonly=True),
                   types.Array(types.int64, 1, "C", readonly=True), types.Array(types.float64, 2, "C"),
                   types.Array(types.int64, 1, "C"))
KBT_ARG_TYPES = (types.Array(types.float64, 1, "C"), types.Array(types.int64, 1, "C"))     # query_kbt's scratch


def query_entry(net, method: int):
    """The compiled ``spnkit.map`` kernel for method code ``method`` on ``net`` (``QUERY_ENTRIES``), for the
    argument types ``spnkit.map`` passes (``QUERY_ARG_TYPES``: ``Query.role``/``value``, the read-only options, a
    trace buffer, a new ``x``; for KBT then its scratch, ``KBT_ARG_TYPES``), to be called without the dispatcher. The dispatcher types all six arguments on
    every call, 0.55 us, a third of a query on a 157-node network; the caller guarantees the types instead.
    Loaded from numba's cache, or compiled, once per method family and network type. Without the JIT
    (``NUMBA_DISABLE_JIT``), the Python function itself."""
    fn = QUERY_ENTRIES[method]
    if not hasattr(fn, "overloads"):
        return fn
    sig = (nb.typeof(net), *QUERY_ARG_TYPES, *(KBT_ARG_TYPES if method == KBT else ()))
    fn.compile(sig)
    return fn.overloads[sig].entry_point


# map_batch's workers: ``(net, roles, values, opts, out, work, ctl, workers, worker, ...)``. ``out`` =
# ``(status, xs, lvs, exact, ubs, stats, secs)`` (``batch_setup``), ``work`` = this worker's ``(fbuf, ibuf, kept,
# tbuf, kbt_f, kbt_i)`` (``scratch``, ``k_best.kbt_scratch``), ``ctl`` the int64 (1,) row counter that the
# ``workers`` workers claim blocks of rows from (``workqueue.claim``). Without reference counts: in a batch, the
# counts on the arrays every worker shares were atomic operations on the same cache lines (BT on a 157-node
# network gained 1.58x from a second thread). Once kernels are asked to stop (``clock.request_stop``) a worker
# starts no other row (they stay ``NOT_RUN``).
@nb.njit(cache=True, _nrt=False, inline="always")
def _store(out, r, res):
    status, _, lvs, exact, ubs, stats, secs = out
    s, lv, ex, ub, st, _, sec = res
    status[r], lvs[r], exact[r], ubs[r], secs[r] = s, lv, ex, ub, sec
    for j in range(N_STATS):
        stats[r, j] = st[j]


@nb.njit(cache=True, _nrt=False, inline="always")
def _next_rows(ctl, m, workers):
    """The next block of rows for this worker; ``(m, m)`` when none is left or kernels were asked to stop."""
    if stop_word() != RUN:
        return m, m
    return claim(ctl, m, workers)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_linear(net, roles, values, opts, out, work, ctl, workers, worker):
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = net
    fbuf, ibuf, kept = work[0], work[1], work[2][:node_type.shape[0]]
    use_max = opts[0] == BT
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            _store(out, r, _linear_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan,
                                       cards, roles[r], values[r], use_max, out[1][r], fbuf, ibuf, kept))
        lo, hi = _next_rows(ctl, m, workers)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_exact(net, roles, values, opts, out, work, ctl, workers, worker, coop, helper):
    """The searches' worker: it searches the rows it claims with idle workers' help (``kernels.coop``:
    ``coop`` from ``make_coop``, its ``BUSY`` count set to the number of workers before they start; ``helper``
    as ``_help``'s), then helps the others until no worker takes rows any more."""
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = net
    fbuf, ibuf, kept, tbuf = work[0], work[1], work[2], work[3]
    variant = opts[0] - EXACT_MC
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            if stop_word() != RUN:
                break
            _store(out, r, _exact_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan,
                                      cards, roles[r], values[r], variant, opts[5], opts[6], helper[7], out[1][r],
                                      fbuf, ibuf, kept, tbuf, coop, worker, r, helper))
        lo, hi = _next_rows(ctl, m, workers)
    fetch_add(coop[0], BUSY, -1)
    _help(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, _search_variant(variant),
          opts[6], coop, worker - workers, helper)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_amap(net, roles, values, opts, out, work, ctl, workers, worker):
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            if stop_word() != RUN:
                break
            _store(out, r, _amap_one(net, roles[r], values[r], opts, out[1][r], work[0], work[1], work[2], work[3],
                                     work[4], work[5]))
        lo, hi = _next_rows(ctl, m, workers)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_bs(net, roles, values, opts, out, work, ctl, workers, worker):
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            if stop_word() != RUN:
                break
            _store(out, r, _bs_one(net, roles[r], values[r], opts, out[1][r], work[0], work[1], work[2], work[3],
                                   work[4], work[5]))
        lo, hi = _next_rows(ctl, m, workers)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_kbt(net, roles, values, opts, out, work, ctl, workers, worker):
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            if stop_word() != RUN:
                break
            _store(out, r, _kbt_one(net, roles[r], values[r], opts, out[1][r], work[0], work[1], work[2], work[3],
                                    work[4], work[5]))
        lo, hi = _next_rows(ctl, m, workers)


@nb.njit(cache=True, _nrt=False, nogil=True)
def batch_brute(net, roles, values, opts, out, work, ctl, workers, worker, split):
    """Brute force's worker: the rows marked in ``split`` are left to ``split_*`` (afterwards, one at a time)."""
    m = roles.shape[0]
    lo, hi = _next_rows(ctl, m, workers)
    while lo < m:
        for r in range(lo, hi):
            if stop_word() != RUN:
                break
            if not split[r]:
                _store(out, r, _brute_one(net, roles[r], values[r], opts, out[1][r], work[0], work[1], work[2],
                                          work[3], work[4], work[5]))
        lo, hi = _next_rows(ctl, m, workers)


BATCH_WORKERS = {BT: batch_linear, NG: batch_linear, AMAP: batch_amap, BS: batch_bs, KBT: batch_kbt,
                 BRUTE: batch_brute, **{c: batch_exact for c in range(EXACT_MC, EXACT + 1)}}


@nb.njit(cache=True)
def batch_setup(net, roles, values, method, workers):
    """A batch's outputs ``(status, xs, lvs, exact, ubs, stats, secs)``, the number of rows that do not fit the
    network (``BAD_QUERY``; the others start ``NOT_RUN``; every query is checked before any is solved: a bad last
    query must not wait for the others), and for brute force with several workers the rows long enough to split
    over them (at least ``BRUTE_SPLIT`` assignments: a few of them would otherwise leave a worker idle)."""
    cards = net[9]
    m, nv = roles.shape
    status = np.empty(m, dtype=np.int64)
    n_bad = 0
    for r in range(m):
        fits = _fits(cards, roles[r], values[r])
        status[r] = NOT_RUN if fits else BAD_QUERY
        n_bad += 0 if fits else 1
    split = np.zeros(m, dtype=np.bool_)
    if method == BRUTE and workers > 1:
        for r in range(m):
            size = 1
            for v in range(nv):
                if roles[r, v] == 0:
                    size = times_card(size, cards[v])
            split[r] = size >= BRUTE_SPLIT
    out = (status, np.empty((m, nv), dtype=np.int64), np.full(m, -np.inf), np.zeros(m, dtype=np.bool_),
           np.full(m, np.nan), np.zeros((m, N_STATS), dtype=np.int64), np.zeros(m))
    return out, n_bad, split


@nb.njit(cache=True, nogil=True)
def split_prepare(net, role, value, x, fbuf, ibuf, kept, tbuf, Wr):
    """A brute-force query that ``map_batch`` splits over its workers: ``_prepare`` into these buffers, and the
    reduced network's linear weights into ``Wr``. Returns ``(t0, status, query variables, nodes, edges, scaled,
    lin_ok for Wr, the enumeration's size, the largest cardinality)``."""
    t0 = now()
    node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards = net
    n, nv = node_type.shape[0], cards.shape[0]
    u, ue, ck, order, st, qindex, qvars, rcards, _, flags, red_t, red_i, red_f, _ = _views(
        n, children.shape[0], nv, fbuf, ibuf, kept, tbuf)
    s, nq, total, n_e, scaled = _prepare(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan,
                                         cards, role, value, x, u, ue, ck, order, st, qindex, qvars, rcards,
                                         flags, red_t, red_i, red_f)
    if s != 0:
        return t0, s, nq, total, n_e, scaled, False, 0, 1
    _, _, _, w, _, _ = reduced_views(red_t, red_i, red_f, n, total, n_e)
    for j in range(n_e):
        Wr[j] = np.exp(w[j])
    K = 1
    for i in range(nq):
        K = max(K, rcards[i])
    return t0, s, nq, total, n_e, scaled, linear_weights_safe(Wr[:n_e], w), enumeration_size(rcards[:nq]), K


@nb.njit(cache=True, _nrt=False, nogil=True)
def split_range(n, m, nv, fbuf, ibuf, kept, tbuf, nq, total, n_e, Wr, lin, lo, hi, mask, x, buf, deadline):
    """``maxprod.brute_range`` over assignments ``lo:hi`` of the query ``split_prepare`` reduced (one worker's
    share): ``(log value, index, cut)``."""
    _, _, _, _, _, _, _, rcards, _, _, red_t, red_i, red_f, _ = _views(n, m, nv, fbuf, ibuf, kept, tbuf)
    t, ptr, ch, w, var, val = reduced_views(red_t, red_i, red_f, n, total, n_e)
    return brute_range(t, ptr, ch, w, Wr[:n_e], lin, var, val, rcards[:nq], lo, hi, mask, x, buf, deadline)


@nb.njit(cache=True, nogil=True)
def split_finish(net, role, value, out, r, fbuf, ibuf, kept, tbuf, status, nq, scaled, best, at, cuts, t0):
    """Row ``r`` of ``out`` for a split brute-force query: ``status`` from ``split_prepare``; when 0, the workers'
    ``best`` values at enumeration indices ``at`` (``cuts``: whose range was cut short) give the answer, the
    first maximum in enumeration order, as ``brute_force``'s."""
    node_type, child_ptr, children, log_w, W, _, leaf_var, leaf_val, plan, cards = net
    n, nv = node_type.shape[0], cards.shape[0]
    u, ue, _, _, st, _, qvars, rcards, xq, flags, _, _, _, _ = _views(n, children.shape[0], nv, fbuf, ibuf, kept,
                                                                       tbuf)
    s, lv, ub, ex = status, -np.inf, np.nan, False
    if status == 0:
        b = 0
        for c in range(1, best.shape[0]):
            if best[c] > best[b]:
                b = c
        assignment_at(rcards[:nq], at[b] if best[b] > -np.inf else 0, xq[:nq])
        lv = _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, out[1][r],
                     qvars, xq[:nq], u, ue, flags, scaled)
        cut = cuts.any()
        ub, ex = np.nan if cut else max(best[b], lv), not cut
        if cut:
            s = _cut_status()
    _store(out, r, (s, lv, ex, ub, _as_tuple(st), 0, now() - t0))
