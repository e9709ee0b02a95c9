"""Exact MAP by depth-first branch and bound over the query variables of a MAX instance (Mei, Jiang & Tu 2018).

Every search node is a set of *domains*: ``mask[v, k]`` says whether value k of variable v is still allowed. The
network evaluated at those indicator settings, ``S(mask)``, sums over every completion and so bounds the best
one from above (complete, decomposable, non-negative weights). Four variants, as in the authors' code:

* ``MC`` (marginal checking): variables in index order, values in increasing order; a child is pruned when its
  marginal ``S(mask)`` is no better than the incumbent.
* ``FC`` (forward checking): one upward and one derivative pass give ``d[v, k] = S(mask with X_v := k)`` for
  every open variable and value at once; values with ``d <= incumbent`` are removed until a fixpoint, a
  variable left with one value is assigned, a variable left with none prunes the node. Branches on the first
  open variable, values in increasing order.
* ``FCO``: FC + ordering: branch on the open variable with the largest ``max_k d[v, k]``, best value first.
* ``FCOS``: FCO + staging: once 5 or more variables have been assigned since the last staging and more than
  one is open, the MAP->MAX reduction compiles the assigned ones into constants, so later passes run on a
  smaller network (the authors' ``stage``; their threshold of 5). The staged networks are stacked in an arena
  in the search's buffers (``ARENA`` times the largest network); one that does not fit is not made, and the
  search goes on with the network it has (the same answer, more slowly; ``stats`` counts the stagings made).

The search allocates nothing (``search_network``: its arrays are views of buffers made once per network or per
``map_batch`` worker), so it is compiled without reference counting.

Unlike the authors' (binary-only, value-only) code, every variant handles categorical variables, returns the
optimal *assignment*, and is anytime: at the deadline it returns the incumbent and an upper bound, the best
bound among the search nodes not yet explored. Values tied with the incumbent are pruned (``<=``): the search
proves that nothing beats the incumbent, and returns the first optimum it meets.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .clock import now, stop_requested
from .coop import offer
from .derivative import derivatives_mask_scaled
from .passes import log_value_mask_fast
from .reduce import constants_log, count_reduced, fill_reduced, kept_nodes
from .scaled import split_weights_into
from .workqueue import load_atomic, raise_to

MC = 0
FC = 1
FCO = 2
FCOS = 3
STAGE_EVERY = 5          # variables assigned since the last staging before the next one (authors' constant)

PRUNED = 0
OPEN = 1
COMPLETE = 2


@nb.njit(cache=True, inline="always")
def _n_allowed(mask, cards, v):
    """How many values of variable ``v`` are still allowed (1: assigned; 0: the node is infeasible)."""
    c = 0
    for k in range(cards[v]):
        c += mask[v, k]
    return c


@nb.njit(cache=True, _nrt=False)
def _n_open(mask, cards):
    """Number of variables with more than one allowed value."""
    c = 0
    for v in range(cards.shape[0]):
        c += _n_allowed(mask, cards, v) > 1
    return c


@nb.njit(cache=True, _nrt=False)
def _forward_check(nt, ptr, ch, W, We, lv, lval, mask, cards, inc, val, dr, d, e, de, dvm, dve):
    """Prune values whose derivative bound is no better than ``inc`` until nothing changes.

    ``nt`` ... ``lval``: the network, its weights as scaled numbers (``scaled.split_weights``); the derivative
    passes run on scaled numbers (``e``, ``de``, ``dvm``, ``dve``: their integer and per-value buffers).
    Returns ``(status, root bound, derivative passes run)``; ``mask`` is narrowed in place and ``d`` holds
    the last pass (valid for the final ``mask`` when the status is OPEN or COMPLETE).
    """
    passes = 0
    while True:
        root = derivatives_mask_scaled(nt, ptr, ch, W, We, lv, lval, mask, val, dr, e, de, dvm, dve, d)
        passes += 1
        if root <= inc:
            return PRUNED, root, passes
        changed = False
        n_open = 0
        for v in range(cards.shape[0]):
            if _n_allowed(mask, cards, v) <= 1:
                continue
            left = 0
            for k in range(cards[v]):
                if mask[v, k]:
                    if d[v, k] <= inc:
                        mask[v, k] = False
                        changed = True
                    else:
                        left += 1
            if left == 0:
                return PRUNED, root, passes
            if left > 1:
                n_open += 1
        if not changed:
            return (OPEN if n_open > 0 else COMPLETE), root, passes


@nb.njit(cache=True, _nrt=False)
def _record(trace, n_trace, t, best, ub):
    """Append a trace row; when the trace is full, overwrite its last row (the latest state matters most)."""
    if trace.shape[0] == 0:
        return 0
    k = min(n_trace, trace.shape[0] - 1)
    trace[k, 0] = t
    trace[k, 1] = best
    trace[k, 2] = ub
    return k + 1


@nb.njit(cache=True, _nrt=False)
def _pick_branch(mask, cards, d, ordering):
    """Branching variable: the first open one, or (``ordering``) the one with the largest ``max_k d``."""
    best_v = -1
    best_d = -np.inf
    for v in range(cards.shape[0]):
        if _n_allowed(mask, cards, v) > 1:
            top = -np.inf
            for k in range(cards[v]):
                if mask[v, k] and d[v, k] > top:
                    top = d[v, k]
            if not ordering:
                return v
            if best_v == -1 or top > best_d:
                best_v = v
                best_d = top
    return best_v


ARENA = 8     # staged networks held at once, in units of the largest one: a staging that does not fit is skipped


@nb.njit(cache=True, inline="always")
def bb_scratch_size(n, m, nv, K):
    """The float64, int64, bool and int8 lengths ``search_network`` works in for a network of up to ``n`` nodes
    and ``m`` edges over ``nv`` variables of at most ``K`` values (``_layout`` cuts them in the same order)."""
    nl, ml, D, L = n + 1, m + 1, nv + 2, nv // STAGE_EVERY + 2
    NA, EA = ARENA * nl, ARENA * ml
    return (3 * nl + 2 * nv * K + D * K + 2 * EA,
            5 * D + D * K + 4 * nl + nv * K + 4 * L + 3 * NA + L + 2 * EA + 2 * nv,
            nv + nv * K + D * nv * K + nl + L,
            NA + nv)


@nb.njit(cache=True, inline="always")
def _layout(fscr, iscr, bscr, tscr, n, m, nv, K):
    """The search's arrays as views of its four buffers (sized by ``bb_scratch_size(n, m, nv, K)``). Inlined:
    the views are made without reference counts in ``search_network``."""
    nl, ml, D, L = n + 1, m + 1, nv + 2, nv // STAGE_EVERY + 2
    NA, EA = ARENA * nl, ARENA * ml
    o = 3 * nl
    d = fscr[o:o + nv * K].reshape((nv, K))
    dvm = fscr[o + nv * K:o + 2 * nv * K].reshape((nv, K))
    o += 2 * nv * K
    f_bnd = fscr[o:o + D * K].reshape((D, K))
    o += D * K
    fl = (fscr[:nl], fscr[nl:2 * nl], fscr[2 * nl:3 * nl], d, dvm, f_bnd, fscr[o:o + EA], fscr[o + EA:o + 2 * EA])
    f_int = iscr[:5 * D].reshape((5, D))
    o = 5 * D
    f_vals = iscr[o:o + D * K].reshape((D, K))
    o += D * K
    e, de, order, new_id = iscr[o:o + nl], iscr[o + nl:o + 2 * nl], iscr[o + 2 * nl:o + 3 * nl], \
        iscr[o + 3 * nl:o + 4 * nl]
    o += 4 * nl
    dve = iscr[o:o + nv * K].reshape((nv, K))
    o += nv * K
    lv_tab = iscr[o:o + 4 * L].reshape((4, L))
    o += 4 * L
    a_ptr = iscr[o:o + NA + L]
    o += NA + L
    a_var, a_val, a_ch, a_we = iscr[o:o + NA], iscr[o + NA:o + 2 * NA], iscr[o + 2 * NA:o + 2 * NA + EA], \
        iscr[o + 2 * NA + EA:o + 2 * NA + 2 * EA]
    o += 2 * NA + 2 * EA
    it = (f_int, f_vals, e, de, order, new_id, dve, lv_tab, a_ptr, a_var, a_val, a_ch, a_we, iscr[o:o + nv],
          iscr[o + nv:o + 2 * nv])
    o = nv + nv * K
    bl = (bscr[:nv], bscr[nv:o].reshape((nv, K)), bscr[o:o + D * nv * K].reshape((D, nv, K)),
          bscr[o + D * nv * K:o + D * nv * K + nl], bscr[o + D * nv * K + nl:o + D * nv * K + nl + L])
    return fl, it, bl, (tscr[:NA], tscr[NA:NA + nv])


@nb.njit(cache=True, inline="always")
def _level(k, lv_tab, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var, a_val):
    """Level ``k``'s network as views of the arena: ``(node_type, child_ptr, children, log_w, W, We, leaf_var,
    leaf_val)``. Level k's pointers start k slots after its nodes (each level has one more pointer than nodes)."""
    no, eo, nn, ne = lv_tab[0, k], lv_tab[1, k], lv_tab[2, k], lv_tab[3, k]
    return (a_t[no:no + nn], a_ptr[no + k:no + k + nn + 1], a_ch[eo:eo + ne], a_w[eo:eo + ne], a_W[eo:eo + ne],
            a_We[eo:eo + ne], a_var[no:no + nn], a_val[no:no + nn])


@nb.njit(cache=True, _nrt=False)
def _stage(k, mask, cards, lv_tab, lv_lin, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var, a_val, keep, c, order, new_id,
           role, value, qindex):
    """Stage level ``k`` (the top of the stack): the MAP->MAX reduction of its network with every assigned
    variable as evidence, written as level ``k + 1`` right after it in the arena (the open variables keep their
    indices; their narrowed domains stay in ``mask``). Returns the new network's node count, or 0 when it does
    not fit the arena or the level table (the search then goes on with level ``k``: slower, as exact)."""
    nt, ptr, ch, w, _, _, var, val = _level(k, lv_tab, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var, a_val)
    nn = nt.shape[0]
    if k + 1 >= lv_tab.shape[1] or nn > keep.shape[0]:
        return 0
    for v in range(cards.shape[0]):
        first, cnt = -1, 0
        for j in range(cards[v]):
            if mask[v, j]:
                cnt += 1
                if first < 0:
                    first = j
        role[v], value[v], qindex[v] = (1, first, -1) if cnt == 1 else (0, -1, v)
    kp, cc = keep[:nn], c[:nn]
    constants_log(nt, ptr, ch, w, var, val, role, value, kp, cc)
    if not kp[nn - 1]:
        return 0
    n_kept = kept_nodes(kp, order)
    total, n_e, wrap = count_reduced(nt, ptr, ch, kp, cc, order, n_kept, new_id)
    no, eo = lv_tab[0, k] + nn, lv_tab[1, k] + ch.shape[0]
    if no + total > a_var.shape[0] or eo + n_e > a_ch.shape[0]:
        return 0
    k1 = k + 1
    fill_reduced(nt, ptr, ch, w, var, val, qindex, kp, cc, order, n_kept, new_id, wrap, a_t[no:no + total],
                 a_ptr[no + k1:no + k1 + total + 1], a_ch[eo:eo + n_e], a_w[eo:eo + n_e], a_var[no:no + total],
                 a_val[no:no + total])
    lv_lin[k1] = split_weights_into(a_w[eo:eo + n_e], a_W[eo:eo + n_e], a_We[eo:eo + n_e])
    lv_tab[0, k1], lv_tab[1, k1], lv_tab[2, k1], lv_tab[3, k1] = no, eo, total, n_e
    return total


@nb.njit(cache=True, _nrt=False)
def _copy_mask(dst, src):
    """``dst[:, :] = src``, as a loop: numba's slice assignment copies the source first when the two might
    overlap, an allocation."""
    for v in range(src.shape[0]):
        for k in range(src.shape[1]):
            dst[v, k] = src[v, k]


@nb.njit(cache=True, inline="always")
def _max_card(cards):
    K = 1
    for v in range(cards.shape[0]):
        K = max(K, cards[v])
    return K


@nb.njit(cache=True, _nrt=False)
def search_network(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cards, variant, init_x, init_val,
                   deadline, check_every, trace, n_cap, m_cap, fscr, iscr, bscr, tscr, x, stats, coop, owner, row,
                   root_given):
    """The depth-first branch and bound, allocating nothing (so compiled without reference counts: they were
    half of a small query's time).

    ``init_x``/``init_val``: the initial incumbent (``init_val = -inf`` for none, the authors' protocol).
    ``deadline``: a ``clock.now()`` tick count (``clock.NEVER`` for none), checked every ``check_every``
    expansions, together with the stop word (``clock.stop_requested``: Ctrl-C). ``fscr``, ``iscr``, ``bscr``, ``tscr``: buffers of at least ``bb_scratch_size(n_cap, m_cap,
    n_vars, max card)``, with ``n_cap``/``m_cap`` at least the network's node/edge counts. The network is copied
    into the buffers' arena as level 0; FCOS's staged networks are stacked after it.

    The answer goes into ``x`` (int64, (n_vars,)) and the counters into ``stats`` (int64, 5: expansions,
    derivative or upward passes, stagings, max depth, staged networks' summed node count). Returns ``(value,
    exact, upper_bound, n_trace)``. ``trace`` (float64, shape (max rows, 3); ticks fit exactly up to 2**53)
    receives ``n_trace`` rows (clock ticks since start, incumbent, bound): one at every improvement, and at
    deadline checks when the bound moved or time grew by 5 %; when full, the last row keeps the latest state.

    ``coop`` (``coop.make_coop``'s state, ``map_batch``; None: alone, compiled apart without any of this): the
    search on ``row`` works with others for worker ``owner`` (``kernels.coop``). It prunes against the best value
    any of them has found (``inc[owner]``), publishes its own, and at its deadline checks hands subtrees to idle
    workers. With ``root_given`` it starts from the domains already in its buffers' ``mask`` (``_layout``), a
    subtree another search handed over. The value returned is the best this search reached itself (-inf if none;
    ``x`` holds its assignment). Every caller passes ``owner``, ``row`` and ``root_given`` as typed values, not
    literals: each literal would compile another copy of this loop (minutes of ``map_batch``'s cold compile).
    """
    t0 = now()
    nv = cards.shape[0]
    K = _max_card(cards)
    n0, m0 = node_type.shape[0], children.shape[0]
    fl, it, bl, tl = _layout(fscr, iscr, bscr, tscr, n_cap, m_cap, nv, K)
    val, dr, c_st, d, dvm, f_bnd, a_w, a_W = fl
    f_int, f_vals, e_s, de, order, new_id, dve, lv_tab, a_ptr, a_var, a_val, a_ch, a_We, st_value, st_qindex = it
    present, mask, f_mask, keep, lv_lin = bl
    a_t, st_role = tl
    f_int[:, :] = 0
    stats[:5] = 0
    present[:] = False
    for i in range(n0):                                     # level 0: the network itself
        a_t[i] = node_type[i]
        a_var[i] = leaf_var[i]
        a_val[i] = leaf_val[i]
        a_ptr[i] = child_ptr[i]
        if node_type[i] == 0:
            present[leaf_var[i]] = True
    a_ptr[n0] = child_ptr[n0]
    for j in range(m0):
        a_ch[j] = children[j]
        a_w[j] = log_w[j]
    lv_lin[0] = split_weights_into(log_w, a_W[:m0], a_We[:m0])   # MC's passes take the linear path when set
    lv_tab[0, 0], lv_tab[1, 0], lv_tab[2, 0], lv_tab[3, 0] = 0, 0, n0, m0
    nt0, ptr0, ch0, w0, W0, We0, var0, val0 = _level(0, lv_tab, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var, a_val)
    lin0 = lv_lin[0]
    for v in range(nv):
        x[v] = init_x[v]
    best = init_val                    # what prunes: the best value found here or (coop) by the others
    own = init_val                     # the best value found here (x holds its assignment)
    n_trace = 0
    last_t = 0.0                       # time and bound of the last trace row
    last_ub = np.inf
    # FCOS stacks staged networks in the arena; staging needs more than STAGE_EVERY + 1 variables
    staging = variant == FCOS and nv > STAGE_EVERY + 1
    n_levels = 1

    f_var, f_next, f_cnt, f_level, level_assigned = f_int[0], f_int[1], f_int[2], f_int[3], f_int[4]
    if not root_given:
        mask[:, :] = False
        for v in range(nv):
            if present[v]:
                mask[v, :cards[v]] = True
            else:
                mask[v, 0] = True      # the network does not depend on it: any value is optimal, take 0
    top = -1                       # index of the deepest frame
    timed_out = False
    expansions = 0
    parent_level = 0

    while True:
        # ---- expand the node described by ``mask`` (a child of frame ``top``, or the root) -------------
        expansions += 1
        if coop is not None:
            best = max(best, load_atomic(coop[6], owner))
        if variant == MC:               # MC never stages
            bound = log_value_mask_fast(nt0, ptr0, ch0, w0, W0, lin0, var0, val0, mask, val)
            stats[1] += 1
            if bound <= best:
                status = PRUNED
            elif _n_open(mask, cards) == 0:
                status = COMPLETE
            else:
                status = OPEN
        else:
            nt, ptr, ch, _, W, We, lv, lval = _level(parent_level, lv_tab, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var,
                                                     a_val)
            status, bound, passes = _forward_check(nt, ptr, ch, W, We, lv, lval, mask, cards, best, val, dr, d,
                                                   e_s, de, dvm, dve)
            stats[1] += passes
        if status == COMPLETE:
            best = bound
            own = bound
            if coop is not None:
                raise_to(coop[6], owner, bound)
            for v in range(nv):
                for k in range(cards[v]):
                    if mask[v, k]:
                        x[v] = k
                        break
            last_t = now() - t0
            n_trace = _record(trace, n_trace, last_t, best, max(last_ub, best))
        elif status == OPEN:
            top += 1
            _copy_mask(f_mask[top], mask)
            f_level[top] = parent_level
            if staging:
                n_open = _n_open(mask, cards)
                n_assigned = nv - n_open
                if n_open > 1 and n_assigned - level_assigned[parent_level] >= STAGE_EVERY:
                    size = _stage(parent_level, mask, cards, lv_tab, lv_lin, a_t, a_ptr, a_ch, a_w, a_W, a_We, a_var,
                                  a_val, keep, c_st, order, new_id, st_role, st_value, st_qindex)
                    if size > 0:
                        n_levels += 1
                        level_assigned[n_levels - 1] = n_assigned
                        f_level[top] = n_levels - 1
                        stats[2] += 1
                        stats[4] += size
            v = _pick_branch(mask, cards, d, variant >= FCO)
            f_var[top] = v
            cnt = 0
            for k in range(cards[v]):
                if mask[v, k]:
                    f_vals[top, cnt] = k
                    f_bnd[top, cnt] = bound if variant == MC else d[v, k]
                    cnt += 1
            if variant >= FCO:          # best value first (stable: ties keep increasing k)
                for a in range(1, cnt):
                    kv, kb = f_vals[top, a], f_bnd[top, a]
                    b = a - 1
                    while b >= 0 and f_bnd[top, b] < kb:
                        f_vals[top, b + 1] = f_vals[top, b]
                        f_bnd[top, b + 1] = f_bnd[top, b]
                        b -= 1
                    f_vals[top, b + 1] = kv
                    f_bnd[top, b + 1] = kb
            f_cnt[top] = cnt
            f_next[top] = 0
            if top + 1 > stats[3]:
                stats[3] = top + 1

        # ---- deadline -----------------------------------------------------------------------------------
        if expansions % check_every == 0:
            t = now()
            ub = best
            for f in range(top + 1):
                for j in range(f_next[f], f_cnt[f]):
                    if f_bnd[f, j] > ub:
                        ub = f_bnd[f, j]
            if ub < last_ub or t - t0 >= 1.05 * last_t:      # bound moved, or log-spaced in time
                last_t = t - t0
                last_ub = ub
                n_trace = _record(trace, n_trace, last_t, best, ub)
            if t > deadline or stop_requested():
                timed_out = True
                break
            if coop is not None:
                offer(coop, row, owner, deadline, f_mask, f_var, f_vals, f_bnd, f_next, f_cnt, top, best, nv, K)

        # ---- next child: pop exhausted frames, skip children whose bound cannot beat the incumbent -------
        found = False
        while top >= 0:
            while f_next[top] < f_cnt[top] and f_bnd[top, f_next[top]] <= best:
                f_next[top] += 1
            if f_next[top] < f_cnt[top]:
                found = True
                break
            top -= 1
            if staging:                 # the levels above the frame's own are no longer on the path
                n_levels = f_level[top] + 1 if top >= 0 else 1
        if not found:
            break
        j = f_next[top]
        f_next[top] += 1
        _copy_mask(mask, f_mask[top])
        v = f_var[top]
        mask[v, :] = False
        mask[v, f_vals[top, j]] = True
        parent_level = f_level[top]

    stats[0] = expansions
    ub = best
    if timed_out:
        for f in range(top + 1):
            for j in range(f_next[f], f_cnt[f]):
                if f_bnd[f, j] > ub:
                    ub = f_bnd[f, j]
    # (with no completion above init_val, x still holds init_x)
    n_trace = _record(trace, n_trace, now() - t0, best, ub)
    return own, not timed_out, ub, n_trace
