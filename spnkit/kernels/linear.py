"""BT and NG straight on the original network: reduction, solver and evaluation fused into two sweeps.

The MAP->MAX reduction need not be built for the linear methods. One upward sweep computes, for every node,
``u[i]``: for a node with no query variable in its scope the constant the reduction would fold it into (its
sum-product value at the evidence, hidden variables summed out), and for a node with query variables the
solver's score (max-product value for BT, marginal for NG) *including* the constants the reduction would push
into the edge weights above it. At a query sum node, ``log_w[j] + u[child_j]`` is then exactly the reduced
network's ``w'_j + score(child_j)``, so the top-down pass makes the reduced network's choices. A second sweep
re-evaluates only the query part at the chosen assignment, reusing the constants: one exp per sum edge in all.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .passes import product_edges, sum_edges


@nb.njit(cache=True)
def _upward(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u, kept):
    """Fill ``u`` and ``kept`` (has a query variable below); returns False when no query variable is kept."""
    n = node_type.shape[0]
    for i in range(n):
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            r = role[leaf_var[i]]
            kept[i] = r == 0
            u[i] = -np.inf if (r == 1 and value[leaf_var[i]] != leaf_val[i]) else 0.0
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
def _descend(node_type, child_ptr, children, log_w, leaf_var, leaf_val, u, kept, x, stack):
    """From the root through query nodes: the best child at sums (first on ties), every query child at
    products; each reached leaf sets its variable in ``x``."""
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
            best = -np.inf
            bj = a
            for j in range(a, b):
                s = log_w[j] + u[children[j]]
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


@nb.njit(cache=True)
def _reevaluate(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u, kept):
    """Overwrite ``u`` on query nodes with their value at ``x`` (query variables assigned); constants stay."""
    n = node_type.shape[0]
    for i in range(n):
        if not kept[i]:
            continue
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            u[i] = 0.0 if x[leaf_var[i]] == leaf_val[i] else -np.inf
        elif t == 1:
            u[i] = sum_edges(a, b, children, log_w, u)
        else:
            u[i] = product_edges(a, b, children, u)
    return u[n - 1]


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
    for v in range(x.shape[0]):
        x[v] = value[v] if role[v] == 1 else (0 if role[v] == 0 else -1)
    _descend(node_type, child_ptr, children, log_w, leaf_var, leaf_val, u, kept, x, np.empty(n, dtype=np.int64))
    n_kept = 0
    for i in range(n):
        if kept[i]:
            n_kept += 1
    return _reevaluate(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u, kept), n_kept
