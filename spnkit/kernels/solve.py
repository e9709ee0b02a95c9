"""One kernel per query: MAP->MAX reduction, the chosen solver, and the exact value of its answer.

Every method starts with ``kernels.linear.upward`` (one sweep, over the relevant nodes only when most variables
are hidden). BT and NG then descend and re-evaluate the query nodes; the others build the reduced network from
its constants, solve, and re-evaluate only the query nodes at their answer.

Fusing the three into a single compiled call keeps the Python layer out of the per-query path (``spnkit.map``
makes one call; ``spnkit.map_batch`` runs this same function over a ``prange`` of queries, so a batch gives
the answers single calls give; its searches may share a query's subtrees between threads, ``kernels.coop``).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types

from .beam import beam_search
from .clock import RUN, now, stop_word
from .coop import BUSY, IDLE, make_coop, merge, release, take
from .exact import FCOS, _layout, _max_card, bb_scratch_size, search_network
from .k_best import k_best_tree_map, kbt_scratch
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
NOT_RUN = 3         # (solve_batch) the stop came before this row began


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
    """The buffers ``solve_one`` needs for a network of ``n`` nodes and ``m`` edges over ``nv`` variables of at
    most ``K`` values: ``(fbuf, ibuf, kept, tbuf)`` (float64, int64, bool, int8). Made once per network
    (``FlatSPN.kernel_net`` holds one set for ``spnkit.map``, whose kernel holds the GIL, so no two calls share
    it: were ``solve_query`` ever made ``nogil``, these must become per call) and once per worker in
    ``solve_batch``, not once per query.

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
    """``solve_one`` for BT (``use_max``) and NG."""
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
    """``solve_one``'s working arrays as views of the ``scratch`` buffers for a network of ``n`` nodes and ``m``
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
    found, scaled = upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value,
                           False, u, ue, flags)
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
    """``solve_one`` for the branch-and-bound methods: ``variant`` ``exact.MC`` ... ``FCOS`` (no warm start, as
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
    x[:] = bt
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


OPTIONS = ("method", "k", "beam", "seed", "max_rounds", "deadline", "check_every")   # solve_query's opts array


@nb.njit(cache=True)
def solve_query(net, role, value, opts, trace, x):
    """Answer one MAP query on ``net`` (a ``kernels.net.KernelNet``, ``FlatSPN.kernel_net``). ``opts``: int64
    array of the ``OPTIONS`` (method code, k, beam, seed, max_rounds, deadline in ``clock.now()`` ticks,
    check_every). One struct and one array instead of 24 arguments: numba types each argument on every call.
    ``x``: the caller's int64 (n_vars,) array for the answer. Arguments and result as for ``solve_one``.
    BT/NG and the four searches go straight to their kernels without reference counts."""
    method = opts[0]
    plan = (net.uni, net.tab, net.rest, net.uni_index, net.var_ptr, net.z, net.scope64)
    if method == BT or method == NG:
        return _linear_one(net.node_type, net.child_ptr, net.children, net.log_w, net.W, net.lin_ok, net.leaf_var,
                           net.leaf_val, plan, net.cards, role, value, method == BT, x, net.scratch_f,
                           net.scratch_i, net.scratch_b)
    if EXACT_MC <= method <= EXACT:
        return _exact_one(net.node_type, net.child_ptr, net.children, net.log_w, net.W, net.lin_ok, net.leaf_var,
                          net.leaf_val, plan, net.cards, role, value, method - EXACT_MC, opts[5], opts[6], trace, x,
                          net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t, None, np.int64(-1),
                          np.int64(0), None)
    return solve_one(net.node_type, net.child_ptr, net.children, net.log_w, net.W, net.lin_ok, net.leaf_var,
                     net.leaf_val, net.uni, net.tab, net.rest, net.uni_index, net.var_ptr, net.z, net.scope64,
                     net.cards, role, value, method, opts[1], opts[2], opts[3], opts[4], opts[5], opts[6], trace, x,
                     net.scratch_f, net.scratch_i, net.scratch_b, net.scratch_t, net.scratch_f[:0], net.scratch_i[:0])


QUERY_ARG_TYPES = (types.Array(types.int8, 1, "C", readonly=True), types.Array(types.int64, 1, "C", readonly=True),
                   types.Array(types.int64, 1, "C", readonly=True), types.Array(types.float64, 2, "C"),
                   types.Array(types.int64, 1, "C"))


def query_entry(net):
    """``solve_query``'s compiled function for ``net`` and the argument types ``spnkit.map`` passes
    (``QUERY_ARG_TYPES``: ``Query.role``/``value``, the read-only options, a trace buffer, a new ``x``), to be
    called without the dispatcher. The dispatcher types all six arguments on every call, 0.55 us, a third of a
    query on a 157-node network; the caller guarantees the types instead. Loaded from numba's cache, or
    compiled, once per network type. Without the JIT (``NUMBA_DISABLE_JIT``), ``solve_query`` itself."""
    if not hasattr(solve_query, "overloads"):
        return solve_query
    sig = (nb.typeof(net), *QUERY_ARG_TYPES)
    solve_query.compile(sig)
    return solve_query.overloads[sig].entry_point


@nb.njit(cache=True, _nrt=True)     # it allocates: counted even when called from _solve_rows
def solve_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, uni, tab, rest,
              uni_index, var_ptr, z, scope64, cards, role, value, method, k, beam, seed, max_rounds, timeout_ticks,
              check_every, trace, x_full, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i):
    """Answer one MAP query on the network given by the node arrays (``W = exp(log_w)`` and ``lin_ok`` as
    ``passes.linear_weights_safe(W, log_w)`` enable the scaled-number sweeps; ``uni`` ... ``scope64`` are
    ``FlatSPN.map_plan``).

    role/value: int8/int64 (n_vars,) as in ``spnkit.Query``; the answer goes into ``x_full`` (int64, (n_vars,)):
    evidence values, the MAP values on query variables, -1 on hidden ones. Returns ``(status, log_value, exact,
    upper_bound, stats, n_trace, ticks)``: ``stats`` a tuple of ``N_STATS`` counters, ``n_trace`` the rows the
    exact solvers wrote into ``trace`` (float64, (rows, 3); give (0, 3) for none), times ``clock.now()`` ticks
    (a tuple and the caller's buffers instead of new arrays: an array made here and returned to Python costs
    ~0.4 us, three times an ``np.empty`` in Python). ``fbuf``, ``ibuf``, ``kept``, ``tbuf``: ``scratch``
    for this network, overwritten; ``kbt_f``, ``kbt_i``: ``k_best.kbt_scratch`` buffers for KBT (empty: KBT
    allocates its own).
    ``status`` is 0; ``NO_QUERY_IN_SCOPE`` when no query variable occurs in the network; ``BAD_QUERY`` when the
    query does not fit it (checked here, a loop over the variables, instead of several numpy calls per query in
    Python).
    """
    plan = (uni, tab, rest, uni_index, var_ptr, z, scope64)
    n = node_type.shape[0]
    if method == BT or method == NG:
        return _linear_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role,
                           value, method == BT, x_full, fbuf, ibuf, kept[:n])
    if EXACT_MC <= method <= EXACT:
        return _exact_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role,
                          value, method - EXACT_MC, timeout_ticks, check_every, trace, x_full, fbuf, ibuf, kept, tbuf,
                          None, np.int64(-1), np.int64(0), None)
    t0 = now()
    status, nq, scaled, stats, qvars, rcards, init_x, u, ue, flags, bb, red = _start(
        node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value, x_full, fbuf,
        ibuf, kept, tbuf)
    if status != 0:
        return status, -np.inf, False, np.nan, _as_tuple(stats), 0, now() - t0
    t, ptr, ch, w, var, val = red
    rcards = rcards[:nq]
    exact = False
    ub = np.nan
    n_trace = 0
    deadline = t0 + timeout_ticks
    if method == AMAP:
        xq, evals, cut = argmax_product(t, ptr, ch, w, var, val, nq, deadline)
        stats[1] = evals
    elif method == BS:
        xq, _, rounds, cut = beam_search(t, ptr, ch, w, var, val, rcards, beam, seed, max_rounds, deadline)
        stats[0] = rounds
    elif method == KBT:
        xq, _, n_trees, cut = k_best_tree_map(t, ptr, ch, w, var, val, nq, k, kbt_f, kbt_i, deadline)
        stats[0] = n_trees
    else:                      # BRUTE
        xq, best, cut = brute_force(t, ptr, ch, w, var, val, rcards, deadline)
        exact = not cut
        ub = best if exact else np.nan
    lv = _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x_full, qvars, xq,
                 u, ue, flags, scaled)
    if exact:
        ub = max(ub, lv)      # the search's own value and the re-evaluation can differ in the last bit
    return _cut_status() if cut else 0, lv, exact, ub, _as_tuple(stats), n_trace, now() - t0


@nb.njit(cache=True, _nrt=False)
def _solve_rows(start, stop, node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, uni, tab, rest,
                uni_index, var_ptr, z, scope64, cards, roles, values, method, k, beam, seed, max_rounds, timeout_ticks,
                check_every, trace, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i, split, status, xs, lvs, exact, ubs, stats,
                secs, coop, worker, helper):
    """``solve_batch``'s rows ``start:stop`` but those marked in ``split``, each into its row of the outputs.
    Without reference counts: in a batch, the counts on the arrays both workers share were atomic operations on
    the same cache lines (BT on a 157-node network gained 1.58x from a second thread). BT/NG and the four searches go straight to their
    kernels; the other methods through ``solve_one``, which counts its own."""
    plan = (uni, tab, rest, uni_index, var_ptr, z, scope64)
    n = node_type.shape[0]
    for r in range(start, stop):
        if split[r]:
            continue
        if stop_word() != RUN:          # asked to stop: the rows left stay NOT_RUN
            return
        if method == BT or method == NG:
            s, lv, ex, ub, st, _n, sec = _linear_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var,
                                                     leaf_val, plan, cards, roles[r], values[r], method == BT, xs[r],
                                                     fbuf, ibuf, kept[:n])
        elif EXACT_MC <= method <= EXACT:
            s, lv, ex, ub, st, _n, sec = _exact_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var,
                                                    leaf_val, plan, cards, roles[r], values[r], method - EXACT_MC,
                                                    timeout_ticks, check_every, trace, xs[r], fbuf, ibuf, kept, tbuf,
                                                    coop, worker, r, helper)
        else:
            s, lv, ex, ub, st, _n, sec = solve_one(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var,
                                                   leaf_val, uni, tab, rest, uni_index, var_ptr, z, scope64, cards,
                                                   roles[r], values[r], method, k, beam, seed, max_rounds,
                                                   timeout_ticks, check_every, trace, xs[r], fbuf, ibuf, kept, tbuf,
                                                   kbt_f, kbt_i)
        status[r] = s
        lvs[r] = lv
        exact[r] = ex
        ubs[r] = ub
        for j in range(N_STATS):
            stats[r, j] = st[j]
        secs[r] = sec


@nb.njit(cache=True, _nrt=False)
def _split_prepare(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, role, value,
                   x_full, fbuf, ibuf, kept, tbuf, Wr):
    """A brute-force query that ``solve_batch`` splits over its workers: ``_prepare`` into these buffers, and the
    reduced network's linear weights into ``Wr``. Returns ``_prepare``'s status, query variables, nodes, edges
    and ``scaled``, then ``lin_ok`` for ``Wr``, the enumeration's size and the largest cardinality."""
    n, nv = node_type.shape[0], cards.shape[0]
    u, ue, ck, order, st, qindex, qvars, rcards, _, flags, red_t, red_i, red_f, _ = _views(
        n, children.shape[0], nv, fbuf, ibuf, kept, tbuf)
    s, nq, total, n_e, scaled = _prepare(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan,
                                         cards, role, value, x_full, u, ue, ck, order, st, qindex, qvars, rcards,
                                         flags, red_t, red_i, red_f)
    if s != 0:
        return s, nq, total, n_e, scaled, False, 0, 1
    _, _, _, w, _, _ = reduced_views(red_t, red_i, red_f, n, total, n_e)
    for j in range(n_e):
        Wr[j] = np.exp(w[j])
    K = 1
    for i in range(nq):
        K = max(K, rcards[i])
    return s, nq, total, n_e, scaled, linear_weights_safe(Wr[:n_e], w), enumeration_size(rcards[:nq]), K


@nb.njit(cache=True, _nrt=False)
def _split_range(fbuf, ibuf, kept, tbuf, n, m, nv, nq, total, n_e, Wr, lin, lo, hi, mask, x, buf, deadline):
    """``maxprod.brute_range`` over assignments ``lo:hi`` of the query ``_split_prepare`` reduced."""
    _, _, _, _, _, _, _, rcards, _, _, red_t, red_i, red_f, _ = _views(n, m, nv, fbuf, ibuf, kept, tbuf)
    t, ptr, ch, w, var, val = reduced_views(red_t, red_i, red_f, n, total, n_e)
    return brute_range(t, ptr, ch, w, Wr[:n_e], lin, var, val, rcards[:nq], lo, hi, mask, x, buf, deadline)


@nb.njit(cache=True, _nrt=False)
def _split_finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x_full, fbuf, ibuf,
                  kept, tbuf, nq, index, scaled):
    """The answer of a split brute-force query (its ``index``-th assignment) into ``x_full``; its log value."""
    u, ue, _, _, _, _, qvars, rcards, xq, flags, _, _, _, _ = _views(node_type.shape[0], children.shape[0],
                                                                      role.shape[0], fbuf, ibuf, kept, tbuf)
    assignment_at(rcards[:nq], index, xq[:nq])
    return _finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, value, x_full, qvars,
                   xq[:nq], u, ue, flags, scaled)


@nb.njit(cache=True, _nrt=False)
def _split_stats(n, m, nv, fbuf, ibuf, kept, tbuf, out):
    """The counters ``_split_prepare`` left in the buffers, into ``out``."""
    st = _views(n, m, nv, fbuf, ibuf, kept, tbuf)[4]
    for j in range(N_STATS):
        out[j] = st[j]


@nb.njit(cache=True, parallel=True, nogil=True)
def solve_batch(net, roles, values, opts, workers):
    """``solve_query`` for every row of ``roles``/``values`` (shape (m, n_vars)), in parallel over rows on
    ``workers`` threads (``numba.get_num_threads()``, given by the caller: read in here, it keeps the kernel out
    of numba's cache). When a row does not fit the network (``BAD_QUERY``), none is solved and only ``status``
    is meaningful. Without the GIL, so that ``map_batch`` can run it in a helper thread and keep the main thread
    free for Ctrl-C; once kernels are asked to stop (``clock.request_stop``) no worker starts another row (they
    stay ``NOT_RUN``) and the rows running end at their next check point (``INTERRUPTED``)."""
    node_type, child_ptr, children, log_w, W, lin_ok = net.node_type, net.child_ptr, net.children, net.log_w, net.W, \
        net.lin_ok
    leaf_var, leaf_val, cards = net.leaf_var, net.leaf_val, net.cards
    uni, tab, rest, uni_index, var_ptr, z, scope64 = net.uni, net.tab, net.rest, net.uni_index, net.var_ptr, net.z, \
        net.scope64
    method, k, beam, seed, max_rounds, timeout_ticks, check_every = (opts[0], opts[1], opts[2], opts[3], opts[4],
                                                                      opts[5], opts[6])
    m, nv = roles.shape
    status = np.zeros(m, dtype=np.int64)
    xs = np.empty((m, nv), dtype=np.int64)
    lvs = np.empty(m)
    exact = np.zeros(m, dtype=np.bool_)
    ubs = np.empty(m)
    stats = np.zeros((m, N_STATS), dtype=np.int64)
    secs = np.empty(m)
    no_trace = np.empty((0, 3))
    n_bad = 0
    for r in nb.prange(m):          # every query is checked before any is solved: a bad last query must not
        fits = _fits(cards, roles[r], values[r])       # wait for the others (numba reduces n_bad over threads)
        status[r] = NOT_RUN if fits else BAD_QUERY
        n_bad += 0 if fits else 1
    if n_bad > 0:
        return status, xs, lvs, exact, ubs, stats, secs
    counter = np.zeros(1, dtype=np.int64)
    n = node_type.shape[0]
    split = np.zeros(m, dtype=np.bool_)     # brute force's long enumerations: split over the workers afterwards
    if method == BRUTE and workers > 1:     # (a few of them would otherwise leave a worker idle)
        for r in range(m):
            size = 1
            for v in range(nv):
                if roles[r, v] == 0:
                    size = times_card(size, cards[v])
            split[r] = size >= BRUTE_SPLIT
    # the four searches share their long queries with workers left without one (kernels.coop)
    searches = EXACT_MC <= method <= EXACT and workers > 1
    K = cards.max()
    coop = make_coop(workers, nv if searches else 0, K if searches else 1)
    plan = (uni, tab, rest, uni_index, var_ptr, z, scope64)
    for _w in nb.prange(workers):   # each worker takes blocks of rows as it goes (workqueue: queries differ in
        worker = np.int64(_w)               # (the index is uint64 in the compiled loop body: one type for both)
        fetch_add(coop[0], BUSY, 1)         # cost by orders of magnitude, so numba's one block per thread leaves
        fbuf, ibuf, kept, tbuf = scratch(n, children.shape[0], nv, K)   # one idle), with its own scratch;
        # KBT's too (a reduced network has at most one node and one edge more); a second set to help searches
        kbt_f, kbt_i = kbt_scratch(n + 1, children.shape[0] + 1, k) if method == KBT else kbt_scratch(0, 0, 0)
        hf, hi, hk, ht = scratch(n, children.shape[0], nv, K) if searches else scratch(0, 0, 0, 1)
        helper = (roles, values, hf, hi, hk, ht, np.empty(nv, dtype=np.int64), no_trace)
        while stop_word() == RUN:
            start, stop = claim(counter, m, workers)
            if start >= m:
                break
            _solve_rows(start, stop, node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, uni, tab,
                        rest, uni_index, var_ptr, z, scope64, cards, roles, values, method, k, beam, seed, max_rounds,
                        timeout_ticks, check_every, no_trace, fbuf, ibuf, kept, tbuf, kbt_f, kbt_i, split, status, xs,
                        lvs, exact, ubs, stats, secs, coop, worker, helper)
        fetch_add(coop[0], BUSY, -1)
        if searches:
            _help(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards,
                  _search_variant(method - EXACT_MC), check_every, coop, worker - workers, helper)
    if method == BRUTE:       # the long enumerations, one at a time, each split over the workers
        fbuf, ibuf, kept, tbuf = scratch(n, children.shape[0], nv, K)
        Wr = np.empty(children.shape[0] + 1)
        best = np.empty(workers)
        at = np.zeros(workers, dtype=np.int64)
        cuts = np.zeros(workers, dtype=np.bool_)
        for r in range(m):
            if not split[r] or stop_word() != RUN:
                continue
            t0 = now()
            s, nq, total, n_e, scaled, lin, size, K = _split_prepare(
                node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, cards, roles[r], values[r],
                xs[r], fbuf, ibuf, kept, tbuf, Wr)
            lvs[r], ubs[r], exact[r] = -np.inf, np.nan, False
            if s == 0:
                chunk = (size + workers - 1) // workers
                for c in nb.prange(workers):
                    lo = min(size, c * chunk)
                    best[c], at[c], cuts[c] = _split_range(
                        fbuf, ibuf, kept, tbuf, n, children.shape[0], nv, nq, total, n_e, Wr, lin, lo,
                        min(size, lo + chunk), np.zeros((nq, K), dtype=np.bool_), np.zeros(nq, dtype=np.int64),
                        np.empty(total), t0 + timeout_ticks)
                b = 0
                for c in range(1, workers):      # the first maximum in enumeration order, as brute_force
                    if best[c] > best[b]:
                        b = c
                lv = _split_finish(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, roles[r],
                                   values[r], xs[r], fbuf, ibuf, kept, tbuf, nq, at[b] if best[b] > -np.inf else 0,
                                   scaled)
                cut = cuts.any()
                lvs[r], ubs[r], exact[r] = lv, np.nan if cut else max(best[b], lv), not cut
                if cut:
                    s = _cut_status()
            status[r] = s
            _split_stats(n, children.shape[0], nv, fbuf, ibuf, kept, tbuf, stats[r])
            secs[r] = now() - t0
    return status, xs, lvs, exact, ubs, stats, secs
