"""Derivative (backward) pass: for every variable and value at once, ``log S(x with X_v := val)``.

S is multilinear in the indicators and no monomial holds two indicators of one variable, so
``dS/dλ[v, val]`` evaluated at x equals S with X_v set to val and every other variable as in x (marginalised
ones stay marginalised). One upward and one downward pass give all of them (Darwiche 2003).
Log domain with exact zeros (SPN_MAP.md §1.4): at a product node, with no child at -inf each child gets
``dr[parent] + value(parent) - value(child)``; with exactly one zero child only that child gets
``dr[parent] + Σ(other children)``; with two or more, no child gets anything.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .passes import assignment_mask, log_value_mask


@nb.njit(cache=True)
def _lae(a, b):
    """log(exp(a) + exp(b)) with -inf handled."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@nb.njit(cache=True)
def derivatives_mask(node_type, child_ptr, children, log_w, leaf_var, leaf_val, mask, val, dr, d):
    """Upward pass at the indicator settings ``mask`` (bool (n_vars, max_card), see ``log_value_mask``) into
    ``val``, downward pass into ``dr`` (log dS/d node), and ``d[v, k] = log S(mask with row v := one-hot k)``
    (-inf where impossible), all filled in place. Returns ``log S(mask)``."""
    n = node_type.shape[0]
    root = log_value_mask(node_type, child_ptr, children, log_w, leaf_var, leaf_val, mask, val)
    dr[:] = -np.inf
    dr[n - 1] = 0.0
    d[:] = -np.inf
    for i in range(n - 1, -1, -1):
        g = dr[i]
        if g == -np.inf:
            continue
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            v, k = leaf_var[i], leaf_val[i]
            d[v, k] = _lae(d[v, k], g)
        elif t == 1:
            for j in range(a, b):
                c = children[j]
                dr[c] = _lae(dr[c], g + log_w[j])
        else:
            zeros = 0
            zc = -1
            rest = 0.0
            for j in range(a, b):
                c = children[j]
                if val[c] == -np.inf:
                    zeros += 1
                    zc = c
                else:
                    rest += val[c]
            if zeros == 0:
                for j in range(a, b):
                    c = children[j]
                    dr[c] = _lae(dr[c], g + rest - val[c])
            elif zeros == 1:
                dr[zc] = _lae(dr[zc], g + rest)
    return root


@nb.njit(cache=True)
def derivatives(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, max_card, val, dr):
    """Fill ``val`` (upward log values) and ``dr`` (log dS/d node), both float64 (n_nodes,), and return
    ``d``: float64 (n_vars, max_card) with ``d[v, k] = log S(x with X_v := k)``; -inf for impossible values.
    ``x[v] = -1`` marginalises variable v."""
    d = np.empty((x.shape[0], max_card))
    derivatives_mask(node_type, child_ptr, children, log_w, leaf_var, leaf_val, assignment_mask(x, max_card),
                     val, dr, d)
    return d
