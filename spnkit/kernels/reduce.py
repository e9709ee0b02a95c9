"""The linear-time MAP -> MAX reduction (Mei, Jiang & Tu 2018, Theorem; ``MAP2MAX`` in their code).

Evidence indicators become 1/0, hidden ones 1; every sub-network without a query variable collapses to a
constant, which is pushed into its parent's sum-edge weight (or carried up through products). The result is an
SPN over the query variables whose value at q is ``S(q, e)`` with the hidden variables summed out.

This is the reference version (log domain, whole network), for ``spnkit.reduce`` and the exact solvers'
staging. Per query, ``kernels.solve`` gets the constants from ``kernels.linear.upward`` instead (scaled numbers,
relevant nodes only) and calls ``build_reduced`` on them.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .passes import leaf_role, sum_edges


@nb.njit(cache=True, _nrt=False)
def constants_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, keep, c):
    """Fill ``keep`` (has a query variable below) and ``c`` (constant log-factor carried by the node)."""
    for i in range(node_type.shape[0]):
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            keep[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
            c[i] = -np.inf if off else 0.0
        elif t == 1:
            if keep[children[a]]:              # completeness: then every child is kept
                keep[i] = True
                c[i] = 0.0
            else:
                keep[i] = False
                c[i] = sum_edges(a, b, children, log_w, c)
        else:
            s = 0.0
            kept = False
            for j in range(a, b):
                s += c[children[j]]
                kept |= keep[children[j]]
            c[i] = s
            keep[i] = kept


@nb.njit(cache=True)
def reduce_to_max(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, qindex):
    """Return the reduced network's arrays ``(node_type, child_ptr, children, log_w, leaf_var, leaf_val)``,
    or empty arrays when no query variable is in the root's scope.

    role : int8 (n_vars,) 0 query / 1 evidence / 2 hidden; value : int64 evidence values;
    qindex : int64 (n_vars,), compact index of each query variable (-1 for the others).
    """
    n = node_type.shape[0]
    keep = np.zeros(n, dtype=np.bool_)
    c = np.zeros(n, dtype=np.float64)          # constant log-factor carried by node i
    constants_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, keep, c)
    order = np.empty(n, dtype=np.int64)
    n_kept = kept_nodes(keep, order)
    return build_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, keep, c, order, n_kept,
                         np.empty(0, dtype=np.int8), order[:0], c[:0])      # (no buffers: new arrays)


@nb.njit(cache=True, _nrt=False)
def kept_nodes(keep, order):
    """The kept nodes in increasing order into ``order[:count]`` (int64, (n_nodes,)); returns the count.
    A branch-free loop: a query keeps few nodes, and a branch per node on ``keep`` mispredicts."""
    count = 0
    for i in range(keep.shape[0]):
        order[count] = i
        count += keep[i]
    return count


@nb.njit(cache=True, inline="always")
def reduced_int_size(n, m):
    """The int64 length ``build_reduced`` works in for a network of ``n`` nodes and ``m`` edges: the renumbering
    (n) and the reduced network's pointers, variables, values and children (at most n + 1 nodes, m + 1 edges)."""
    return 4 * n + m + 5


@nb.njit(cache=True, _nrt=False)
def count_reduced(node_type, child_ptr, children, keep, c, order, n_new, new_id):
    """The reduced network's size ``(nodes, edges, wrap)`` for the kept nodes ``order[:n_new]`` of a network whose
    root is kept, numbering them in ``new_id`` (int64, (n_nodes,); read only for kept nodes). ``wrap``: a new sum
    root is added to carry the root's constant factor."""
    root = node_type.shape[0] - 1
    wrap = node_type[root] != 1 and c[root] != 0.0
    n_edges = 0
    for k in range(n_new):
        i = order[k]
        new_id[i] = k
        if node_type[i] == 1:
            n_edges += child_ptr[i + 1] - child_ptr[i]
        elif node_type[i] == 2:
            for j in range(child_ptr[i], child_ptr[i + 1]):
                n_edges += keep[children[j]]
    return n_new + (1 if wrap else 0), n_edges + (1 if wrap else 0), wrap


@nb.njit(cache=True, _nrt=False)
def fill_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, keep, c, order, n_new, new_id,
                 wrap, o_type, o_ptr, o_ch, o_w, o_var, o_val):
    """Write the reduced network that ``count_reduced`` sized into the caller's arrays (at least its nodes,
    nodes + 1 and edges long): the kept nodes renumbered, each kept child's constant pushed into the sum edge
    above it. Allocates nothing, so the exact solvers' staging runs it without reference counts."""
    root = node_type.shape[0] - 1
    o_ptr[0] = 0
    e = 0
    for k in range(n_new):
        i = order[k]
        t = node_type[i]
        o_type[k] = t
        o_var[k] = -1
        o_val[k] = -1
        if t == 0:
            o_var[k] = qindex[leaf_var[i]]
            o_val[k] = leaf_val[i]
        elif t == 1:
            for j in range(child_ptr[i], child_ptr[i + 1]):
                ch = children[j]
                o_ch[e] = new_id[ch]
                o_w[e] = log_w[j] + c[ch]      # push the child's constant into the edge
                e += 1
        else:
            for j in range(child_ptr[i], child_ptr[i + 1]):
                ch = children[j]
                if keep[ch]:
                    o_ch[e] = new_id[ch]
                    o_w[e] = 0.0                       # (product edges carry no weight)
                    e += 1
        o_ptr[k + 1] = e
    if wrap:                                   # a new sum root keeps the root's constant factor
        o_type[n_new] = 1
        o_var[n_new] = -1
        o_val[n_new] = -1
        o_ch[e] = n_new - 1
        o_w[e] = c[root]
        e += 1
        o_ptr[n_new + 1] = e


@nb.njit(cache=True)
def build_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, keep, c, order, n_new, tbuf,
                  ibuf, fbuf):
    """The kept nodes (``order[:n_new]``, ``kept_nodes``), renumbered, with each kept child's constant pushed
    into the sum edge above it (``c``: every node's constant log-factor; ``keep``: has a query variable below).

    The arrays are views of ``tbuf`` (int8), ``ibuf`` (int64) and ``fbuf`` (float64) when these hold
    ``n_nodes + 1``, ``reduced_int_size`` and ``n_edges + 1`` (``solve.scratch``: a query's network
    then costs no allocation), else new arrays (give empty ones)."""
    n = node_type.shape[0]
    if not keep[n - 1]:
        e = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.int8), np.zeros(1, dtype=np.int64), e, np.zeros(0), e, e
    in_place = (tbuf.shape[0] >= n + 1 and ibuf.shape[0] >= reduced_int_size(n, children.shape[0])
                and fbuf.shape[0] >= children.shape[0] + 1)
    new_id = ibuf[:n] if in_place else np.empty(n, dtype=np.int64)
    total, n_e, wrap = count_reduced(node_type, child_ptr, children, keep, c, order, n_new, new_id)
    if in_place:
        o_type, o_ptr, o_ch, o_w, o_var, o_val = reduced_views(tbuf, ibuf, fbuf, n, total, n_e)
    else:           # four int arrays in one allocation (~50 ns each)
        o_type, o_ptr, o_ch, o_w, o_var, o_val = reduced_views(np.empty(total, dtype=np.int8),
                                                               np.empty(3 * total + 1 + n_e, dtype=np.int64),
                                                               np.empty(n_e), 0, total, n_e)
    fill_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, keep, c, order, n_new, new_id,
                 wrap, o_type, o_ptr, o_ch, o_w, o_var, o_val)
    return o_type, o_ptr, o_ch, o_w, o_var, o_val


@nb.njit(cache=True, inline="always")
def reduced_views(tbuf, ibuf, fbuf, o, total, n_e):
    """A reduced network of ``total`` nodes and ``n_e`` edges as views ``(node_type, child_ptr, children, log_w,
    leaf_var, leaf_val)`` of ``tbuf`` (int8), ``ibuf`` (int64, from ``o`` on: pointers, variables, values,
    children) and ``fbuf`` (float64), where ``build_reduced`` writes it. Inlined, so that a kernel without
    reference counts makes the views without them."""
    ints = ibuf[o:o + 3 * total + 1 + n_e]
    return (tbuf[:total], ints[:total + 1], ints[3 * total + 1:], fbuf[:n_e], ints[total + 1:2 * total + 1],
            ints[2 * total + 1:3 * total + 1])
