"""BT and NG straight on the original network: reduction, solver and evaluation fused into two sweeps.

The MAP->MAX reduction need not be built for the linear methods. One upward sweep computes, for every node,
``u[i]``: for a node with no query variable in its scope the constant the reduction would fold it into (its
sum-product value at the evidence, hidden variables summed out), and for a node with query variables the
solver's score (max-product value for BT, marginal for NG) *including* the constants the reduction would push
into the edge weights above it. At a query sum node, ``log_w[j] + u[child_j]`` is then exactly the reduced
network's ``w'_j + score(child_j)``, so the top-down pass makes the reduced network's choices. A second sweep
re-evaluates only the query part at the chosen assignment, reusing the constants: one exp per sum edge in all.

Both sweeps first run in the linear domain (``passes.lin_value``'s fast path and range checks: no exp or log
at all) and fall back to the log domain for the query when a value leaves the safe range.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .maxprod import descend_into
from .passes import leaf_role, lin_product, lin_sum, node_value, out_of_range, product_edges, sum_edges


@nb.njit(cache=True)
def _upward(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u, kept):
    """Fill ``u`` and ``kept`` (has a query variable below); returns False when no query variable is kept."""
    n = node_type.shape[0]
    for i in range(n):
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            kept[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
            u[i] = -np.inf if off else 0.0
        elif t == 1:
            k = kept[children[a]]                  # completeness: all children alike
            kept[i] = k
            if k and use_max:
                best = -np.inf
                for j in range(a, b):
                    s = log_w[j] + u[children[j]]
                    if s > best:
                        best = s
                u[i] = best
            else:
                u[i] = sum_edges(a, b, children, log_w, u)
        else:
            k = False
            for j in range(a, b):
                if kept[children[j]]:
                    k = True
                    break
            kept[i] = k
            u[i] = product_edges(a, b, children, u)
    return kept[n - 1]


@nb.njit(cache=True)
def _reevaluate(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u, kept):
    """Overwrite ``u`` on query nodes with their value at ``x`` (query variables assigned); constants stay."""
    for i in range(node_type.shape[0]):
        if kept[i]:
            node_value(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u)
    return u[node_type.shape[0] - 1]


@nb.njit(cache=True)
def _upward_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, role, value, use_max, u, kept):
    """``_upward`` with linear values; returns 0 (no query variable), 1 (done) or -1 (out of range).

    Written without query-dependent branches (a sum computes both its total and its best term and then
    picks one): the branch predictor cannot learn the pattern of a new query, and mispredictions cost more
    than the arithmetic saved.
    """
    n = node_type.shape[0]
    bad = False
    for i in range(n):
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            kept[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
            u[i] = 1.0 - np.float64(off)
        elif t == 1:
            k = kept[children[a]]
            kept[i] = k
            tot = 0.0
            best = 0.0
            for j in range(a, b):
                s = W[j] * u[children[j]]
                tot += s
                best = max(best, s)
            v = best if (k & use_max) else tot
            bad |= out_of_range(v, True)
            u[i] = v
        else:
            k = False
            for j in range(a, b):
                k |= kept[children[j]]
            kept[i] = k
            v, zero = lin_product(a, b, children, u)
            bad |= out_of_range(v, zero)
            u[i] = v
    if bad:
        return -1
    return 1 if kept[n - 1] else 0


@nb.njit(cache=True)
def _reevaluate_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, x, u, kept, klist):
    """``_reevaluate`` with linear values, over the query nodes only (listed first in a branch-free loop);
    returns ``(log value, ok, number of query nodes)``."""
    n = node_type.shape[0]
    nk = 0
    for i in range(n):
        klist[nk] = i
        nk += kept[i]
    bad = False
    for p in range(nk):
        i = klist[p]
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            u[i] = np.float64(x[leaf_var[i]] == leaf_val[i])
        elif t == 1:
            v = lin_sum(a, b, children, W, u)
            bad |= out_of_range(v, True)
            u[i] = v
        else:
            v, zero = lin_product(a, b, children, u)
            bad |= out_of_range(v, zero)
            u[i] = v
    if bad:
        return 0.0, False, nk
    return np.log(u[n - 1]), True, nk


@nb.njit(cache=True)
def _start_answer(x, role, value):
    """Evidence values, 0 on query variables (until the descent sets them), -1 on hidden ones."""
    for v in range(x.shape[0]):
        x[v] = value[v] if role[v] == 1 else (0 if role[v] == 0 else -1)


@nb.njit(cache=True)
def linear_map_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, role, value, use_max,
                    x):
    """``linear_map`` through the linear-domain fast path when it stays in range (``W = exp(log_w)``,
    ``lin_ok = passes.linear_weights_safe(W)``), else in the log domain. Same return values."""
    if lin_ok:
        n = node_type.shape[0]
        u = np.empty(n)
        kept = np.empty(n, dtype=np.bool_)
        status = _upward_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, role, value, use_max, u, kept)
        if status == 0:
            return -np.inf, 0
        if status == 1:
            _start_answer(x, role, value)
            stack = np.empty(n, dtype=np.int64)
            descend_into(node_type, child_ptr, children, W, True, leaf_var, leaf_val, u, kept, x, stack)
            lv, ok, n_kept = _reevaluate_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, x, u, kept,
                                             stack)
            if ok:
                return lv, n_kept
    return linear_map(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, x)


@nb.njit(cache=True)
def linear_map(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, x):
    """BT (``use_max``) or NG for one query on the original network. ``x`` (int64, (n_vars,)) receives the
    evidence values, the answer on query variables (0 where unreached) and -1 on hidden ones.

    Returns ``(log P(answer, evidence) with hidden summed out, number of query nodes)``; the count is 0 when
    no query variable occurs in the network (then ``x`` is not filled).
    """
    n = node_type.shape[0]
    u = np.empty(n)
    kept = np.empty(n, dtype=np.bool_)
    if not _upward(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u, kept):
        return -np.inf, 0
    _start_answer(x, role, value)
    descend_into(node_type, child_ptr, children, log_w, False, leaf_var, leaf_val, u, kept, x,
                 np.empty(n, dtype=np.int64))
    n_kept = 0
    for i in range(n):
        if kept[i]:
            n_kept += 1
    return _reevaluate(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u, kept), n_kept
