"""Scaled numbers: a value as ``m * 2^e`` with ``m`` in [1, 2) (or 0) and an int64 exponent ``e``.

Learned SPNs under evidence on hundreds of variables take values far below 2^-1022 (on ad, at random evidence,
e^-1400), so plain linear arithmetic underflows, and the log domain pays an ``exp`` per sum edge and a ``log``
per sum node. With an explicit exponent per node, a product multiplies mantissas and adds exponents; a sum
aligns its terms to its largest exponent by an exact power of two built from bits. No transcendental call, no
underflow, and every operation rounds as the linear one would (scaling by 2^k is exact), so the values agree
with the log-domain pass to ~1e-15 relative.

Terms more than 2^-900 below a sum's largest (before weights) are dropped: with every weight within
[2^-100, 2^100] (``passes.linear_weights_safe``), what they add is below 2^-700 of the sum, and dropping them
keeps every intermediate a normal number (denormal arithmetic is ~100x slower).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .passes import linear_weights_safe

E_ZERO = -(1 << 40)          # the exponent of 0: far below any real one, so it never wins a sum's alignment
LN2 = float(np.log(2.0))
_MANT = (1 << 52) - 1
_ONE = 1023 << 52
_DROP = -900                 # terms below 2^_DROP of a sum's largest are dropped (see above)
BLOCK = 512                  # product children multiplied between renormalisations: mantissas < 2^BLOCK


@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bits of a float64, as int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _from_bits(typingctx, b):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@nb.njit(cache=True)
def normalize(v, e):
    """``v * 2^e`` (``v`` finite, >= 0, normal or 0) as ``(m, e')`` with ``m`` in [1, 2), or ``(0, E_ZERO)``."""
    b = _bits(v)
    ex = (b >> 52) & 0x7FF
    nz = ex != 0                 # selects, not a branch: zeros come and go with the query
    return (_from_bits((b & _MANT) | _ONE) if nz else 0.0), (e + ex - 1023 if nz else E_ZERO)


@nb.njit(cache=True)
def pow2(d):
    """``2^d`` for an integer ``d <= 0``; 0 below ``2^-900``."""
    d = d if d >= _DROP else -1023
    return _from_bits((d + 1023) << 52)


@nb.njit(cache=True)
def to_log(m, e):
    """``log(m * 2^e)``: -inf for 0."""
    return np.log(m) + e * LN2 if m > 0.0 else -np.inf


@nb.njit(cache=True)
def from_log(lv):
    """A finite log value (or -inf) as ``(m, e)``; used for stored constants, not on the per-query path."""
    if lv == -np.inf:
        return 0.0, E_ZERO
    e = int(np.floor(lv / LN2))
    return normalize(np.exp(lv - e * LN2), e)


@nb.njit(cache=True, _nrt=False)
def best_child(a, b, children, W, m, e):
    """The edge ``j`` in a..b-1 with the largest ``W[j] * value(children[j])``, the first on ties."""
    emax = E_ZERO
    for j in range(a, b):
        ec = e[children[j]]
        emax = ec if ec > emax else emax
    best = -1.0
    bj = a
    for j in range(a, b):
        c = children[j]
        s = W[j] * m[c] * pow2(e[c] - emax)
        if s > best:
            best = s
            bj = j
    return bj


@nb.njit(cache=True, _nrt=False)
def product_node(a, b, children, m, e):
    """A product node's ``(m, e)``: mantissas multiplied in order, renormalised every ``BLOCK`` children so that
    they cannot overflow. (The sweeps of ``kernels.linear`` write this out for products of at most ``BLOCK``
    children, with the same arithmetic: one chain, one ``normalize`` at the end.)"""
    acc = 1.0
    ex = 0
    n_m = 0
    for j in range(a, b):
        c = children[j]
        acc *= m[c]
        ex += e[c]
        n_m += 1
        if n_m == BLOCK:
            acc, ex = normalize(acc, ex)
            n_m = 0
    return normalize(acc, ex)


@nb.njit(cache=True)
def split_weights(log_w):
    """Weights as scaled numbers ``(W, We, linear)``: weight j is ``W[j] * 2^We[j]``. When every weight is a
    true zero or within [2^-100, 2^100] (``passes.linear_weights_safe``), ``W = exp(log_w)`` and ``We = 0``
    (``linear`` True: the linear passes can use ``W`` as it is); otherwise ``W`` holds mantissas in [1, 2) (0
    for zero weights) and ``We`` the exponents, so that networks whose weights carry constants far below 2^-100
    (a reduced network under evidence on hundreds of variables) still run on scaled numbers."""
    n = log_w.shape[0]
    W = np.empty(n)
    We = np.empty(n, dtype=np.int64)
    return W, We, split_weights_into(log_w, W, We)


@nb.njit(cache=True, _nrt=False)
def split_weights_into(log_w, W, We):
    """``split_weights`` into the caller's ``W`` (float64) and ``We`` (int64), each at least ``log_w``'s
    length; returns ``linear``."""
    n = log_w.shape[0]
    for j in range(n):
        W[j] = np.exp(log_w[j])
        We[j] = 0
    linear = linear_weights_safe(W[:n], log_w)
    if not linear:
        for j in range(n):
            W[j], We[j] = from_log(log_w[j])
    return linear
