"""Bottom-up passes over the FlatSPN arrays, in the log domain, with ``-inf`` handled exactly."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def sum_edges(a, b, children, log_w, vals):
    """``log Σ_j exp(log_w[j] + vals[children[j]])`` over edges a..b-1; max-shifted, exactly -inf when all are."""
    m = -np.inf
    for j in range(a, b):
        m = max(m, log_w[j] + vals[children[j]])
    if m == -np.inf:
        return -np.inf
    acc = 0.0
    for j in range(a, b):
        acc += np.exp(log_w[j] + vals[children[j]] - m)
    return m + np.log(acc)


@nb.njit(cache=True, inline="always")
def product_edges(a, b, children, vals):
    """``Σ_j vals[children[j]]`` over edges a..b-1, stopping at the first -inf."""
    acc = 0.0
    for j in range(a, b):
        acc += vals[children[j]]
        if acc == -np.inf:
            break
    return acc


@nb.njit(cache=True, fastmath=False)
def log_value_upto(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out, upto):
    """Evaluate nodes ``0..upto`` (the prefix network up to ``upto``) at ``x``; returns ``out[upto]``.

    ``x`` : int64 array, shape (n_vars,); -1 marginalises a variable (all its indicators are 1).
    Sum nodes use a max-shifted logsumexp, so an all ``-inf`` sum stays ``-inf`` without NaNs.
    """
    for i in range(upto + 1):
        t = node_type[i]
        if t == 0:
            xv = x[leaf_var[i]]
            out[i] = 0.0 if (xv < 0 or xv == leaf_val[i]) else -np.inf
        elif t == 1:
            out[i] = sum_edges(child_ptr[i], child_ptr[i + 1], children, log_w, out)
        else:
            out[i] = product_edges(child_ptr[i], child_ptr[i + 1], children, out)
    return out[upto]


@nb.njit(cache=True)
def log_value_mask(node_type, child_ptr, children, log_w, leaf_var, leaf_val, mask, out):
    """Evaluate ``log S`` with indicator ``[X_v = k]`` set to ``mask[v, k]`` (bool, shape (n_vars, max_card)).

    A row with one True entry assigns the variable, an all-True row marginalises it, anything between sums
    over a subset of its values (how the exact solvers' domains are evaluated). Returns the root's value.
    """
    for i in range(node_type.shape[0]):
        t = node_type[i]
        if t == 0:
            out[i] = 0.0 if mask[leaf_var[i], leaf_val[i]] else -np.inf
        elif t == 1:
            out[i] = sum_edges(child_ptr[i], child_ptr[i + 1], children, log_w, out)
        else:
            out[i] = product_edges(child_ptr[i], child_ptr[i + 1], children, out)
    return out[node_type.shape[0] - 1]


@nb.njit(cache=True)
def log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out):
    """Evaluate ``log S`` at one assignment; fills ``out`` (float64, shape (n_nodes,)) and returns the root's."""
    return log_value_upto(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out, node_type.shape[0] - 1)


@nb.njit(cache=True)
def log_value_batch(node_type, child_ptr, children, log_w, leaf_var, leaf_val, X):
    """``log S(x)`` for every row of ``X`` (int64, shape (n, n_vars)); returns float64, shape (n,)."""
    n_rows = X.shape[0]
    res = np.empty(n_rows, dtype=np.float64)
    buf = np.empty(node_type.shape[0], dtype=np.float64)
    for r in range(n_rows):
        res[r] = log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, X[r], buf)
    return res
