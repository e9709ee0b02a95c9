"""Structure check of a FlatSPN in one children-first sweep: order, leaves, weights, scopes, root.

Scopes are bitsets, ``uint64`` array of shape (n_nodes, ceil(n_vars / 64)). Completeness compares each
sum child's scope with the first child's; decomposability checks that product children are disjoint.
"""

from __future__ import annotations

import numba as nb
import numpy as np

STRUCT_OK = 0
STRUCT_BAD_TYPE = 1
STRUCT_CHILD_ORDER = 2
STRUCT_LEAF_CHILDREN = 3
STRUCT_NO_CHILDREN = 4
STRUCT_LEAF_VAR = 5
STRUCT_LEAF_VAL = 6
STRUCT_WEIGHT = 7
STRUCT_INCOMPLETE = 8
STRUCT_NOT_DECOMPOSABLE = 9
STRUCT_MULTI_ROOT = 10


@nb.njit(cache=True)
def check_structure(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cardinalities):
    """Return ``(code, node, extra)``: ``STRUCT_OK`` or the first violation found, at which node.

    ``extra`` is the offending child, variable or value (see the codes above).
    """
    n = node_type.shape[0]
    n_vars = cardinalities.shape[0]
    words = (n_vars + 63) // 64
    if words == 0:
        words = 1
    scope = np.zeros((n, words), dtype=np.uint64)
    has_parent = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        t = node_type[i]
        a = child_ptr[i]
        b = child_ptr[i + 1]
        if t == 0:
            if b > a:
                return STRUCT_LEAF_CHILDREN, i, -1
            v = leaf_var[i]
            if v < 0 or v >= n_vars:
                return STRUCT_LEAF_VAR, i, v
            x = leaf_val[i]
            if x < 0 or x >= cardinalities[v]:
                return STRUCT_LEAF_VAL, i, x
            scope[i, v // 64] = np.uint64(1) << np.uint64(v % 64)
        elif t == 1 or t == 2:
            if b == a:
                return STRUCT_NO_CHILDREN, i, -1
            for j in range(a, b):
                c = children[j]
                if c < 0 or c >= i:
                    return STRUCT_CHILD_ORDER, i, c
                has_parent[c] = True
                if t == 1:
                    w = log_w[j]
                    if np.isnan(w) or w == np.inf:
                        return STRUCT_WEIGHT, i, c
            if t == 1:
                first = children[a]
                for j in range(a + 1, b):
                    c = children[j]
                    for k in range(words):
                        if scope[c, k] != scope[first, k]:
                            return STRUCT_INCOMPLETE, i, c
                for k in range(words):
                    scope[i, k] = scope[first, k]
            else:
                for j in range(a, b):
                    c = children[j]
                    for k in range(words):
                        if scope[i, k] & scope[c, k]:
                            return STRUCT_NOT_DECOMPOSABLE, i, c
                        scope[i, k] |= scope[c, k]
        else:
            return STRUCT_BAD_TYPE, i, t
    for i in range(n - 1):
        if not has_parent[i]:
            return STRUCT_MULTI_ROOT, i, -1
    return STRUCT_OK, -1, -1
