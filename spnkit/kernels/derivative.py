"""Derivative (backward) pass: for every variable and value at once, ``log S(x with X_v := val)``.

S is multilinear in the indicators and no monomial holds two indicators of one variable, so
``dS/dλ[v, val]`` evaluated at x equals S with X_v set to val and every other variable as in x (marginalised
ones stay marginalised). One upward and one downward pass give all of them (Darwiche 2003).
Exact zeros (SPN_MAP.md §1.4): at a product node, with no zero child each child gets ``dr[parent] *
value(parent) / value(child)``; with exactly one zero child only that child gets ``dr[parent] * Π(other
children)``; with two or more, no child gets anything.

Two versions: log domain (``derivatives_mask``) and scaled numbers (``derivatives_mask_scaled``,
``kernels.scaled``: no exp or log per edge, about 2x faster on nltcs's reduced networks).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .passes import assignment_mask, log_value_mask
from .scaled import BLOCK, E_ZERO, normalize, pow2, product_node, to_log


@nb.njit(cache=True, _nrt=False)
def _lae(a, b):
    """log(exp(a) + exp(b)) with -inf handled."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@nb.njit(cache=True, _nrt=False)
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


@nb.njit(cache=True, inline="always")
def _add(m1, e1, m2, e2):
    """(m1, e1) + (m2, e2) in scaled numbers (either may be unnormalised, zeros at exponent E_ZERO)."""
    emax = max(e1, e2)
    return normalize(m1 * pow2(e1 - emax) + m2 * pow2(e2 - emax), emax)


@nb.njit(cache=True, _nrt=False)
def derivatives_mask_scaled(node_type, child_ptr, children, W, We, leaf_var, leaf_val, mask, m, dm, e, de, dvm,
                            dve, d):
    """``derivatives_mask`` in scaled numbers, for any weights: weight j is ``W[j] * 2^We[j]``
    (``scaled.split_weights``). Node values in ``m``/``e``, derivatives in ``dm``/``de`` (float64 and int64,
    (n_nodes,)), ``dvm``/``dve`` ((n_vars, max_card)) scratch; ``d`` and the return value in the log domain, as
    ``derivatives_mask`` gives them."""
    n = node_type.shape[0]
    for i in range(n):         # the node bodies written out, as in kernels.linear: a call per node passed ~30
        t = node_type[i]       # array fields (a sum aligns its terms, weights' exponents included, to the largest;
        a, b = child_ptr[i], child_ptr[i + 1]      # a product is scaled.product_node's arithmetic, bit for bit)
        if t == 0:
            on = mask[leaf_var[i], leaf_val[i]]
            m[i] = 1.0 if on else 0.0
            e[i] = 0 if on else E_ZERO
        elif t == 1:
            emax = E_ZERO
            for j in range(a, b):
                ec = We[j] + e[children[j]]
                emax = ec if ec > emax else emax
            tot = 0.0
            for j in range(a, b):
                c = children[j]
                tot += W[j] * m[c] * pow2(We[j] + e[c] - emax)
            m[i], e[i] = normalize(tot, emax)
        elif b - a > BLOCK:
            m[i], e[i] = product_node(a, b, children, m, e)
        else:
            acc = 1.0
            ex = 0
            for j in range(a, b):
                c = children[j]
                acc *= m[c]
                ex += e[c]
            m[i], e[i] = normalize(acc, ex)
    dm[:n] = 0.0
    de[:n] = E_ZERO
    dvm[:] = 0.0
    dve[:] = E_ZERO
    dm[n - 1] = 1.0
    de[n - 1] = 0
    for i in range(n - 1, -1, -1):
        gm = dm[i]
        if gm == 0.0:
            continue
        ge = de[i]
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            v, k = leaf_var[i], leaf_val[i]
            dvm[v, k], dve[v, k] = _add(dvm[v, k], dve[v, k], gm, ge)
        elif t == 1:
            for j in range(a, b):
                c = children[j]
                dm[c], de[c] = _add(dm[c], de[c], W[j] * gm, ge + We[j])
        else:
            zeros = 0
            zc = -1
            for j in range(a, b):
                c = children[j]
                if m[c] == 0.0:
                    zeros += 1
                    zc = c
            if zeros == 0:                     # the others' product: the node's value over the child's
                for j in range(a, b):
                    c = children[j]
                    dm[c], de[c] = _add(dm[c], de[c], gm * (m[i] / m[c]), ge + e[i] - e[c])
            elif zeros == 1:
                rm, re = 1.0, 0
                for j in range(a, b):
                    c = children[j]
                    if c != zc:
                        rm, re = normalize(rm * m[c], re + e[c])
                dm[zc], de[zc] = _add(dm[zc], de[zc], gm * rm, ge + re)
    for v in range(d.shape[0]):
        for k in range(d.shape[1]):
            d[v, k] = to_log(dvm[v, k], dve[v, k])
    return to_log(m[n - 1], e[n - 1])
