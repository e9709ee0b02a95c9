"""Bottom-up passes over the FlatSPN arrays, in the log domain, with ``-inf`` handled exactly.

Linear-domain fast path: the evaluation passes spend most of their time in ``exp``/``log`` (one per sum edge
and sum node). ``lin_value`` computes the same value with linear weights (sums of products, no transcendental
calls: about 8x faster on nltcs) and gives up, so that the caller falls back to the log domain, as soon as a
non-zero value leaves ``[2^-900, 2^900]``. With every non-zero weight in ``[2^-100, 2^100]`` (checked once per
network, ``linear_weights_safe``), no sum term can then underflow or overflow, and products are checked
directly, so the fast path never returns a value the log domain would not (up to rounding, ~1e-15
relative); zeros are exact zeros either way.
"""

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
def leaf_role(i, leaf_var, leaf_val, role, value):
    """For leaf ``i`` under a query: ``(is a query indicator, is an evidence indicator that is off)``."""
    var = leaf_var[i]
    r = role[var]
    return r == 0, (r == 1) & (value[var] != leaf_val[i])


@nb.njit(cache=True, inline="always")
def product_edges(a, b, children, vals):
    """``Σ_j vals[children[j]]`` over edges a..b-1, stopping at the first -inf."""
    acc = 0.0
    for j in range(a, b):
        acc += vals[children[j]]
        if acc == -np.inf:
            break
    return acc


@nb.njit(cache=True, inline="always")
def node_value(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out):
    """``out[i]`` from its children's ``out`` (log domain) or, for a leaf, from ``x`` (-1 marginalises)."""
    t = node_type[i]
    if t == 0:
        xv = x[leaf_var[i]]
        out[i] = 0.0 if (xv < 0 or xv == leaf_val[i]) else -np.inf
    elif t == 1:
        out[i] = sum_edges(child_ptr[i], child_ptr[i + 1], children, log_w, out)
    else:
        out[i] = product_edges(child_ptr[i], child_ptr[i + 1], children, out)


@nb.njit(cache=True, fastmath=False)
def log_value_upto(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out, upto):
    """Evaluate nodes ``0..upto`` (the prefix network up to ``upto``) at ``x``; returns ``out[upto]``.

    ``x`` : int64 array, shape (n_vars,); -1 marginalises a variable (all its indicators are 1).
    Sum nodes use a max-shifted logsumexp, so an all ``-inf`` sum stays ``-inf`` without NaNs.
    """
    for i in range(upto + 1):
        node_value(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out)
    return out[upto]


@nb.njit(cache=True, _nrt=False)
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


@nb.njit(cache=True, _nrt=False)
def log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out):
    """Evaluate ``log S`` at one assignment; fills ``out`` (float64, shape (n_nodes,)) and returns the root's."""
    return log_value_upto(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out, node_type.shape[0] - 1)


LIN_LO = 2.0 ** -900
LIN_HI = 2.0 ** 900
W_LO = 2.0 ** -100
W_HI = 2.0 ** 100


@nb.njit(cache=True, _nrt=False)
def linear_weights_safe(W, log_w):
    """True when every weight is a true zero (``log_w = -inf``) or lies in ``[2^-100, 2^100]`` (the fast path's
    precondition). Judged on ``log_w``: a finite log weight below ~-745 underflows to ``W = 0`` and would
    otherwise pass for a zero edge (seen on a reduced network whose constants were ~e^-740)."""
    for j in range(W.shape[0]):
        lw = log_w[j]
        if lw != -np.inf and not (W_LO <= W[j] <= W_HI):
            return False
    return True


@nb.njit(cache=True, inline="always")
def lin_sum(a, b, children, W, vals):
    acc = 0.0
    for j in range(a, b):
        acc += W[j] * vals[children[j]]
    return acc


@nb.njit(cache=True, inline="always")
def lin_product(a, b, children, vals):
    """``(product of the children's values, whether one of them is 0)``. Two interleaved partial products: a
    product node has ~10 children on learned SPNs, and one chain of dependent multiplies waits ~4 cycles each."""
    acc0 = 1.0
    acc1 = 1.0
    zero = False
    j = a
    while j + 1 < b:
        f0 = vals[children[j]]
        f1 = vals[children[j + 1]]
        zero |= (f0 == 0.0) | (f1 == 0.0)
        acc0 *= f0
        acc1 *= f1
        j += 2
    if j < b:
        f0 = vals[children[j]]
        zero |= f0 == 0.0
        acc0 *= f0
    return acc0 * acc1, zero


@nb.njit(cache=True, inline="always")
def out_of_range(v, zero_ok):
    """``v`` outside ``[2^-900, 2^900]`` (NaN included), unless it is 0 and ``zero_ok`` (a sum, whose terms
    cannot underflow, or a product with a zero factor: a true zero). A product that reached 0 otherwise
    underflowed; one whose factors overflowed to inf before meeting a zero factor is NaN (inf * 0). Branch-free,
    so a pass accumulates it and checks once at the end (values after a bad one are discarded anyway)."""
    return (not ((v >= LIN_LO) & (v <= LIN_HI))) & ((not zero_ok) | (v != 0.0))


@nb.njit(cache=True)
def assignment_mask(x, max_card):
    """Indicator settings of an assignment: row v one-hot at ``x[v]``, all True where ``x[v] == -1``."""
    nv = x.shape[0]
    mask = np.zeros((nv, max_card), dtype=np.bool_)
    for v in range(nv):
        if x[v] < 0:
            mask[v, :] = True
        else:
            mask[v, x[v]] = True
    return mask


@nb.njit(cache=True, _nrt=False)
def lin_value_mask(node_type, child_ptr, children, W, leaf_var, leaf_val, mask, out):
    """``(log S(mask), ok)`` by the linear-domain fast path (indicators as in ``log_value_mask``); ``ok`` False
    means a value left the safe range: use the log-domain pass instead."""
    n = node_type.shape[0]
    bad = False
    for i in range(n):
        t = node_type[i]
        if t == 0:
            out[i] = np.float64(mask[leaf_var[i], leaf_val[i]])
        elif t == 1:
            v = lin_sum(child_ptr[i], child_ptr[i + 1], children, W, out)
            bad |= out_of_range(v, True)
            out[i] = v
        else:
            v, zero = lin_product(child_ptr[i], child_ptr[i + 1], children, out)
            bad |= out_of_range(v, zero)
            out[i] = v
    if bad:
        return 0.0, False
    return np.log(out[n - 1]), True


@nb.njit(cache=True, _nrt=False)
def log_value_mask_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, mask, out):
    """``log S(mask)``, through the linear fast path when allowed and in range."""
    if lin_ok:
        v, ok = lin_value_mask(node_type, child_ptr, children, W, leaf_var, leaf_val, mask, out)
        if ok:
            return v
    return log_value_mask(node_type, child_ptr, children, log_w, leaf_var, leaf_val, mask, out)


@nb.njit(cache=True)
def log_value_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, x, max_card, out):
    """``log S(x)``: the linear fast path when the network allows it and the values stay in range, else the
    log-domain pass. ``W = exp(log_w)``; ``lin_ok = linear_weights_safe(W, log_w)``; ``max_card`` = the largest
    cardinality."""
    if lin_ok:
        v, ok = lin_value_mask(node_type, child_ptr, children, W, leaf_var, leaf_val, assignment_mask(x, max_card),
                               out)
        if ok:
            return v
    return log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, out)


@nb.njit(cache=True)
def log_value_batch(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, X, max_card):
    """``log S(x)`` for every row of ``X`` (int64, shape (n, n_vars)), each by ``log_value_fast``."""
    n_rows = X.shape[0]
    res = np.empty(n_rows, dtype=np.float64)
    buf = np.empty(node_type.shape[0], dtype=np.float64)
    for r in range(n_rows):
        res[r] = log_value_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, X[r],
                                max_card, buf)
    return res
