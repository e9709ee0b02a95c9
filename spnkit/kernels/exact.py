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
  smaller network (the authors' ``stage``; their threshold of 5).

Unlike the authors' (binary-only, value-only) code, every variant handles categorical variables, returns the
optimal *assignment*, and is anytime: at the deadline it returns the incumbent and an upper bound, the best
bound among the search nodes not yet explored. Values tied with the incumbent are pruned (``<=``): the search
proves that nothing beats the incumbent, and returns the first optimum it meets.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.typed import List

from .clock import now
from .derivative import derivatives_mask_scaled
from .passes import log_value_mask_fast
from .reduce import reduce_to_max
from .scaled import split_weights, split_weights_into

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


@nb.njit(cache=True, inline="always")     # a call passes ~15 arrays, each refcounted: 0.5 us on a small query
def _forward_check(level, mask, cards, inc, val, dr, d, scratch):
    """Prune values whose derivative bound is no better than ``inc`` until nothing changes.

    ``level``: the network as ``(node_type, child_ptr, children, log_w, leaf_var, leaf_val, W, We, lin_ok)``
    (``scaled.split_weights``); its derivative passes run on scaled numbers (``scratch``: their integer and
    per-value buffers).
    Returns ``(status, root bound, derivative passes run)``; ``mask`` is narrowed in place and ``d`` holds
    the last pass (valid for the final ``mask`` when the status is OPEN or COMPLETE).
    """
    nt, ptr, ch, _, lv, lval, W, We, _ = level
    e, de, dvm, dve = scratch
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


@nb.njit(cache=True)
def _stage(level, mask, cards):
    """The MAP->MAX reduction of ``level``'s network with every assigned variable as evidence; the open
    variables keep their indices (and their narrowed domains stay in ``mask``). Returns the new level."""
    nt, ptr, ch, w, lv, lval, _, _, _ = level
    nv = cards.shape[0]
    role = np.zeros(nv, dtype=np.int8)
    value = np.full(nv, -1, dtype=np.int64)
    qindex = np.full(nv, -1, dtype=np.int64)
    assigned = _assignment(mask, cards)
    for v in range(nv):
        if _n_allowed(mask, cards, v) == 1:
            role[v] = 1
            value[v] = assigned[v]
        else:
            qindex[v] = v
    snt, sptr, sch, sw, slv, slval = reduce_to_max(nt, ptr, ch, w, lv, lval, role, value, qindex)
    sW, sWe, s_linear = split_weights(sw)
    return snt, sptr, sch, sw, slv, slval, sW, sWe, s_linear


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


@nb.njit(cache=True)
def _assignment(mask, cards):
    x = np.zeros(cards.shape[0], dtype=np.int64)
    for v in range(cards.shape[0]):
        for k in range(cards[v]):
            if mask[v, k]:
                x[v] = k
                break
    return x


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


@nb.njit(cache=True)
def bb_scratch_size(n, m, nv, K):
    """The float64, int64 and bool lengths ``branch_and_bound`` works in for a network of up to ``n`` nodes and
    ``m`` edges over ``nv`` variables of at most ``K`` values."""
    D = nv + 2
    return (2 * (n + 1) + 2 * nv * K + D * K + m, 5 + 5 * D + D * K + 2 * (n + 1) + nv * K + m,
            nv + nv * K + D * nv * K)


@nb.njit(cache=True)
def branch_and_bound(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cards, variant,
                     init_x, init_val, deadline, check_every, trace, fscr, iscr, bscr):
    """Solve ``max_x S(x)`` exactly over a MAX instance (every variable a query variable).

    ``init_x``/``init_val``: the initial incumbent (``init_val = -inf`` for none, the authors' protocol).
    ``deadline``: a ``clock.now()`` tick count (``clock.NEVER`` for none), checked every ``check_every``
    expansions.

    Returns ``(x, value, exact, upper_bound, stats, n_trace)``: stats = [expansions, derivative or upward
    passes, stagings, max depth, networks' summed node count]. ``trace`` (float64, shape (max rows, 3), filled
    here; ticks fit exactly up to 2**53) receives ``n_trace`` rows (clock ticks since start, incumbent, bound):
    one at every improvement, and at deadline checks when the bound moved or time grew by 5 %; when full, the
    last row keeps the latest state. ``fscr``, ``iscr``, ``bscr``: float64, int64 and bool buffers of at least
    ``bb_scratch_size`` for this network (``solve.scratch``: a small query then allocates nothing for its
    search), or empty ones (new arrays).
    """
    t0 = now()
    nv = cards.shape[0]
    K = 1
    for v in range(nv):
        K = max(K, cards[v])
    n_nodes0 = node_type.shape[0]
    max_depth = nv + 2
    ns, vs = (0, 0) if variant == MC else (n_nodes0 + 1, nv)        # MC runs no derivative pass
    # the search's arrays are views of three buffers: on a small query (a 157-node network at 1:1:8, ~4 us)
    # each allocation and free costs ~50 ns, and there were seventeen
    n1 = n_nodes0 + 1
    n_e = children.shape[0]
    nf, ni, nb_ = bb_scratch_size(n_nodes0, n_e, nv, K)
    if fscr.shape[0] < nf or iscr.shape[0] < ni or bscr.shape[0] < nb_:
        fscr, iscr, bscr = np.empty(nf), np.empty(ni, dtype=np.int64), np.empty(nb_, dtype=np.bool_)
    fbuf = fscr[:2 * n1 + nv * K + max_depth * K + vs * K]
    val, dr = fbuf[:n1], fbuf[n1:2 * n1]
    d = fbuf[2 * n1:2 * n1 + nv * K].reshape((nv, K))
    f_bnd = fbuf[2 * n1 + nv * K:2 * n1 + nv * K + max_depth * K].reshape((max_depth, K))
    ibuf = iscr[:5 + 5 * max_depth + max_depth * K + 2 * ns + vs * K]
    ibuf[:5 + 5 * max_depth] = 0               # the counters and frames; the rest is written before it is read
    stats = ibuf[:5]
    f_int = ibuf[5:5 + 5 * max_depth].reshape((5, max_depth))
    o = 5 + 5 * max_depth
    f_vals = ibuf[o:o + max_depth * K].reshape((max_depth, K))
    o += max_depth * K
    scratch = (ibuf[o:o + ns], ibuf[o + ns:o + 2 * ns], fbuf[fbuf.shape[0] - vs * K:].reshape((vs, K)),
               ibuf[o + 2 * ns:].reshape((vs, K)))
    bbuf = bscr[:nv + nv * K + max_depth * nv * K]
    bbuf[:nv + nv * K] = False                 # present and mask; a frame's mask is copied in before it is read
    present = bbuf[:nv]
    mask = bbuf[nv:nv + nv * K].reshape((nv, K))
    f_mask = bbuf[nv + nv * K:].reshape((max_depth, nv, K))
    for i in range(n_nodes0):
        if node_type[i] == 0:
            present[leaf_var[i]] = True

    W = fscr[nf - n_e:nf]
    We = iscr[ni - n_e:ni]
    lin_ok = split_weights_into(log_w, W, We)      # MC's passes take the linear fast path when lin_ok
    best_x = init_x.copy()
    best = init_val
    n_trace = 0
    last_t = 0.0                       # time and bound of the last trace row
    last_ub = np.inf

    base = (node_type, child_ptr, children, log_w, leaf_var, leaf_val, W, We, lin_ok)
    # FCOS keeps a stack of staged networks (a typed list: 0.3 us to make, a fifth of a small query's search);
    # staging needs more than STAGE_EVERY + 1 variables, so the other cases make none
    staging = variant == FCOS and nv > STAGE_EVERY + 1
    if staging:
        levels = List()
        levels.append(base)

    f_var, f_next, f_cnt, f_level, level_assigned = f_int[0], f_int[1], f_int[2], f_int[3], f_int[4]
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
        if variant == MC:               # MC never stages: the network's arrays are the base ones (unpacked once:
            bound = log_value_mask_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, mask,
                                        val)    # a tuple unpacked per expansion costs a reference count per array)
            stats[1] += 1
            if bound <= best:
                status = PRUNED
            elif _n_open(mask, cards) == 0:
                status = COMPLETE
            else:
                status = OPEN
        else:
            lvl = levels[parent_level] if staging else base
            status, bound, passes = _forward_check(lvl, mask, cards, best, val, dr, d, scratch)
            stats[1] += passes
        if status == COMPLETE:
            best = bound
            best_x = _assignment(mask, cards)
            last_t = now() - t0
            n_trace = _record(trace, n_trace, last_t, best, max(last_ub, best))
        elif status == OPEN:
            top += 1
            f_mask[top] = mask
            f_level[top] = parent_level
            if staging:
                n_open = _n_open(mask, cards)
                n_assigned = nv - n_open
                if n_open > 1 and n_assigned - level_assigned[parent_level] >= STAGE_EVERY:
                    staged = _stage(lvl, mask, cards)
                    levels.append(staged)
                    level_assigned[len(levels) - 1] = n_assigned
                    f_level[top] = len(levels) - 1
                    stats[2] += 1
                    stats[4] += staged[0].shape[0]
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
            if t > deadline:
                timed_out = True
                break

        # ---- next child: pop exhausted frames, skip children whose bound cannot beat the incumbent -------
        found = False
        while top >= 0:
            while f_next[top] < f_cnt[top] and f_bnd[top, f_next[top]] <= best:
                f_next[top] += 1
            if f_next[top] < f_cnt[top]:
                found = True
                break
            top -= 1
            if staging:
                while len(levels) > (f_level[top] + 1 if top >= 0 else 1):
                    levels.pop()
        if not found:
            break
        j = f_next[top]
        f_next[top] += 1
        mask[:] = f_mask[top]
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
    if best == -np.inf and not timed_out:
        # every completion has probability 0 (or the search found nothing above init_val = -inf)
        best_x = init_x.copy()
    n_trace = _record(trace, n_trace, now() - t0, best, ub)
    return best_x, best, not timed_out, ub, stats, n_trace
