"""Max-product (best tree) and brute-force enumeration over a (reduced) FlatSPN."""

from __future__ import annotations

import numba as nb
import numpy as np

from .clock import expired
from .passes import linear_weights_safe, log_value, log_value_mask_fast, node_value
from .scaled import E_ZERO, pow2


@nb.njit(cache=True, _nrt=False)
def max_product_pass(node_type, child_ptr, children, log_w, out):
    """Upward pass with max at sum nodes (products add): ``out[i]`` = best induced-tree value below node i."""
    for i in range(node_type.shape[0]):
        t = node_type[i]
        if t == 0:
            out[i] = 0.0
        elif t == 1:
            best = -np.inf
            for j in range(child_ptr[i], child_ptr[i + 1]):
                s = log_w[j] + out[children[j]]
                if s > best:
                    best = s
            out[i] = best
        else:
            s = 0.0
            for j in range(child_ptr[i], child_ptr[i + 1]):
                s += out[children[j]]
            out[i] = s


@nb.njit(cache=True, _nrt=False)
def descend_into(node_type, child_ptr, children, weights, scaled, leaf_var, leaf_val, score, score_e, kept, x, stack,
                 uni_index, uni_var, uni_val):
    """Top-down from the root: at each reached sum node follow the child maximising ``weights[j] + score``
    (log domain) or, with ``scaled``, ``weights[j] * score`` in scaled numbers (``kernels.scaled``: mantissas
    ``score``, exponents ``score_e``; ``weights`` linear), the first one on ties; at products follow every
    child with ``kept[child]``; each reached leaf sets its variable in ``x``. ``stack``: int64 scratch,
    (n_nodes,). A reached sum with a row ``k = uni_index[i] >= 0`` sets ``x[uni_var[k]] = uni_val[k]`` instead
    (the univariate sums of ``linear.map_plan``, whose leaves the sweeps leave unscored); give an empty
    ``uni_index`` for none."""
    shortcut = uni_index.shape[0] > 0
    top = 1
    stack[0] = node_type.shape[0] - 1
    while top > 0:
        top -= 1
        i = stack[top]
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            x[leaf_var[i]] = leaf_val[i]
        elif t == 1:
            if shortcut and uni_index[i] >= 0:
                k = uni_index[i]
                x[uni_var[k]] = uni_val[k]
                continue
            if scaled:         # scaled.best_child, written out (a call passes ~30 array fields per sum node)
                emax = E_ZERO
                for j in range(a, b):
                    ec = score_e[children[j]]
                    emax = ec if ec > emax else emax
                best = -1.0
                bj = a
                for j in range(a, b):
                    c = children[j]
                    s = weights[j] * score[c] * pow2(score_e[c] - emax)
                    if s > best:
                        best = s
                        bj = j
            else:
                best = -np.inf
                bj = a
                for j in range(a, b):
                    s = weights[j] + score[children[j]]
                    if s > best:
                        best = s
                        bj = j
            stack[top] = children[bj]
            top += 1
        else:
            for j in range(a, b):
                c = children[j]
                if kept[c]:
                    stack[top] = c
                    top += 1


_NONE = np.empty(0, dtype=np.int64)


@nb.njit(cache=True)
def descend(node_type, child_ptr, children, log_w, leaf_var, leaf_val, score, n_vars):
    """``descend_into`` over a whole (reduced) network in the log domain; returns int64 (n_vars,), variables
    never reached stay 0."""
    n = node_type.shape[0]
    x = np.zeros(n_vars, dtype=np.int64)
    descend_into(node_type, child_ptr, children, log_w, False, leaf_var, leaf_val, score, np.empty(0, dtype=np.int64),
                 np.ones(n, dtype=np.bool_), x, np.empty(n, dtype=np.int64), _NONE, _NONE, _NONE)
    return x


@nb.njit(cache=True)
def best_tree(node_type, child_ptr, children, log_w, leaf_var, leaf_val, n_vars):
    """BT / max-product (Poon & Domingos 2011): ``(x, best tree log value)``. Tie rule: first child."""
    m = np.empty(node_type.shape[0], dtype=np.float64)
    max_product_pass(node_type, child_ptr, children, log_w, m)
    return descend(node_type, child_ptr, children, log_w, leaf_var, leaf_val, m, n_vars), m[-1]


@nb.njit(cache=True)
def normalized_greedy(node_type, child_ptr, children, log_w, leaf_var, leaf_val, n_vars):
    """NG: descend by ``log_w + log Z(child)`` with Z the marginal (every indicator 1) of each node.

    On a normalised SPN this follows the largest weight; on a reduced network evidence and hidden mass are
    folded into the weights. This is what SPFlow and deeprob-kit call "MPE". Tie rule: first child.
    """
    z = np.empty(node_type.shape[0], dtype=np.float64)
    ones = np.full(n_vars, -1, dtype=np.int64)
    log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, ones, z)
    return descend(node_type, child_ptr, children, log_w, leaf_var, leaf_val, z, n_vars)


BRUTE_CHECK = 256       # brute force looks at its deadline (and the stop word) every this many assignments
BRUTE_CAP = 1 << 62      # enumeration sizes are counted up to here (beyond it no enumeration would end anyway)


@nb.njit(cache=True, inline="always")
def times_card(size, card):
    """``size * card``, saturated at ``BRUTE_CAP``: one step of counting assignments."""
    return BRUTE_CAP if size > BRUTE_CAP // max(card, 1) else size * card


@nb.njit(cache=True, _nrt=False)
def enumeration_size(cards):
    """The number of assignments of variables with cardinalities ``cards``, saturated at ``BRUTE_CAP``."""
    size = 1
    for v in range(cards.shape[0]):
        size = times_card(size, cards[v])
    return size


@nb.njit(cache=True)
def brute_force(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cards, deadline):
    """Enumerate every assignment (mixed radix, last variable fastest); return ``(best_x, best_log_value, cut)``.

    Each assignment is evaluated by the linear fast path when it stays in range, else in the log domain.
    Tie rule: the first maximum in that order. ``deadline``: as ``brute_range``.
    """
    nv = cards.shape[0]
    K = 1
    for v in range(nv):
        K = max(K, cards[v])
    W = np.exp(log_w)
    x = np.zeros(nv, dtype=np.int64)
    best, at, cut = brute_range(node_type, child_ptr, children, log_w, W, linear_weights_safe(W, log_w), leaf_var,
                                leaf_val, cards, 0, enumeration_size(cards), np.zeros((nv, K), dtype=np.bool_), x,
                                np.empty(node_type.shape[0]), deadline)
    assignment_at(cards, at, x)
    return x, best, cut


@nb.njit(cache=True, _nrt=False)
def assignment_at(cards, index, x):
    """Write the ``index``-th assignment in mixed-radix order (last variable fastest) into ``x``."""
    for v in range(cards.shape[0] - 1, -1, -1):
        x[v] = index % cards[v]
        index //= cards[v]


@nb.njit(cache=True, _nrt=False)
def brute_range(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, cards, lo, hi, mask, x, buf,
                deadline):
    """The best of assignments ``lo`` ... ``hi - 1`` in mixed-radix order: ``(log value, index, cut)``, the first
    maximum (index ``lo`` when all are -inf). ``mask`` (bool, (n_vars, max card)), ``x`` (int64, (n_vars,)) and
    ``buf`` (float64, (n_nodes,)) are scratch. ``map_batch`` splits a long enumeration into ranges over its
    threads. Every ``BRUTE_CHECK`` assignments ``clock.expired(deadline)`` is asked; if so, ``cut`` and the best
    so far."""
    nv = cards.shape[0]
    assignment_at(cards, lo, x)
    for v in range(nv):
        for k in range(mask.shape[1]):
            mask[v, k] = False
        mask[v, x[v]] = True
    best, at = -np.inf, lo
    for i in range(lo, hi):
        if (i - lo) % BRUTE_CHECK == BRUTE_CHECK - 1 and expired(deadline):
            return best, at, True
        v = log_value_mask_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, mask, buf)
        if v > best:
            best, at = v, i
        k = nv - 1
        while k >= 0:
            mask[k, x[k]] = False
            x[k] += 1
            if x[k] < cards[k]:
                mask[k, x[k]] = True
                break
            x[k] = 0
            mask[k, 0] = True
            k -= 1
    return best, at, False


@nb.njit(cache=True)
def _sub_dag(node_type, child_ptr, children, root, mark, stack, out):
    """Node ids of the sub-network below ``root`` (itself included), in increasing (children-first) order,
    written to ``out``; returns how many. ``mark`` must not hold ``root`` for any node beforehand."""
    n_out = 0
    top = 1
    stack[0] = root
    mark[root] = root
    while top > 0:
        top -= 1
        i = stack[top]
        out[n_out] = i
        n_out += 1
        for j in range(child_ptr[i], child_ptr[i + 1]):
            c = children[j]
            if mark[c] != root:
                mark[c] = root
                stack[top] = c
                top += 1
    out[:n_out].sort()
    return n_out


@nb.njit(cache=True, _nrt=False)
def _log_value_on(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, nodes, n_nodes, out):
    """Evaluate only ``nodes[:n_nodes]`` (children first) at ``x``; returns the last one's value."""
    for p in range(n_nodes):
        node_value(nodes[p], node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out)
    return out[nodes[n_nodes - 1]]


@nb.njit(cache=True, _nrt=False)
def _candidate_into(node_type, child_ptr, children, leaf_var, leaf_val, chosen, root, x, stack, written):
    """AMAP's candidate of node ``root`` into ``x`` (-1 on every variable before): the assignment its tree gives,
    every child of a product and ``chosen[i]`` of a sum ``i``. Returns how many variables it set, their ids in
    ``written`` (to clear them again)."""
    top = 1
    stack[0] = root
    n_w = 0
    while top > 0:
        top -= 1
        i = stack[top]
        t = node_type[i]
        if t == 0:
            x[leaf_var[i]] = leaf_val[i]
            written[n_w] = leaf_var[i]
            n_w += 1
        elif t == 2:
            for j in range(child_ptr[i], child_ptr[i + 1]):
                stack[top] = children[j]
                top += 1
        else:
            stack[top] = chosen[i]
            top += 1
    return n_w


@nb.njit(cache=True)
def argmax_product(node_type, child_ptr, children, log_w, leaf_var, leaf_val, n_vars, deadline):
    """AMAP, ArgMax-Product (Conaty, Mauá & de Campos 2017): ``(x, n_evaluations, cut)``.

    Upward, each node gets a candidate assignment of its scope: a leaf its own value, a product the union of
    its children's, a sum the child candidate under which the sum node itself is largest. That value needs
    only the sum node's own sub-network (the authors evaluate the whole prefix of the node array up to it);
    still quadratic in the worst case. A candidate is kept as the child each sum chose, and written out (a
    descent, no longer than the evaluation it feeds) when it is evaluated: a table of every node's candidate
    was nodes x variables, ~37 MB per query on ``ad``. Tie rule: the first child. Unreached variables stay 0.

    Cost: each sum node evaluates its whole sub-network once per child, so the total is the sum over sum nodes of
    children x sub-network size: O(nodes x depth), quadratic on a deep chain. Nothing is shared between those
    evaluations: each is at a different candidate, and a sibling's value at it needs the sibling's whole
    sub-network (a node's value at its *own* candidate is known, but it is one term of the sum).

    ``deadline``: before each sum node ``clock.expired(deadline)`` is asked; once it is, ``cut`` is set and the sum
    nodes left choose as max-product does (the child of largest weight x best-tree value), so that the answer is
    an assignment all the same.
    """
    n = node_type.shape[0]
    chosen = np.empty(n, dtype=np.int64)
    x = np.full(n_vars, -1, dtype=np.int64)
    buf = np.empty(n)
    mark = np.full(n, -1, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    sub = np.empty(n, dtype=np.int64)
    written = np.empty(n, dtype=np.int64)
    evals = 0
    cut = False
    for i in range(n):
        if node_type[i] != 1:
            continue
        a, b = child_ptr[i], child_ptr[i + 1]
        if not cut and expired(deadline):
            cut = True
            max_product_pass(node_type, child_ptr, children, log_w, buf)
        if cut:
            bj = a
            for j in range(a + 1, b):
                if log_w[j] + buf[children[j]] > log_w[bj] + buf[children[bj]]:
                    bj = j
            chosen[i] = children[bj]
            continue
        n_sub = _sub_dag(node_type, child_ptr, children, i, mark, stack, sub)
        best = -np.inf
        bj = a
        for j in range(a, b):
            n_w = _candidate_into(node_type, child_ptr, children, leaf_var, leaf_val, chosen, children[j], x, stack,
                                  written)
            v = _log_value_on(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, sub, n_sub, buf)
            for p in range(n_w):
                x[written[p]] = -1
            evals += 1
            if v > best:
                best = v
                bj = j
        chosen[i] = children[bj]
    _candidate_into(node_type, child_ptr, children, leaf_var, leaf_val, chosen, n - 1, x, stack, written)
    for v in range(n_vars):
        if x[v] < 0:
            x[v] = 0
    return x, evals, cut
