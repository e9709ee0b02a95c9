"""K-best tree (KBT, Mei, Jiang & Tu 2018): the K induced trees of largest value, decoded and evaluated.

Every node keeps its K best partial trees, sorted by log value: a leaf has one (value 0); a sum node merges
its children's lists shifted by the edge weights; a product node folds its children pairwise with the classic
K-best sums of two sorted lists. The K root trees are decoded into assignments, each is evaluated exactly, and
the best is returned. K = 1 is max-product (same tie rule: the first child, then the earlier entry).

Layout: ``val[i, :cnt[i]]`` is node i's list. A sum entry points at (edge, entry of that child). A product with
children c0..cm (edges a..a+m) stores fold step s (1..m) at edge a+s: entry t combines entry ``fl[a+s, t]`` of
the previous step (or of c0 when s = 1) with entry ``fr[a+s, t]`` of child cs. The product's list is its last
step (or c0's list when it has one child).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .clock import expired
from .passes import log_value


@nb.njit(cache=True, inline="always")
def _better(v1, a1, b1, v2, a2, b2):
    """Heap order: larger value first, then smaller first key, then smaller second key (deterministic ties)."""
    if v1 != v2:
        return v1 > v2
    if a1 != a2:
        return a1 < a2
    return b1 < b2


@nb.njit(cache=True, _nrt=False)
def _push(hv, ha, hb, size, v, a, b):
    k = size
    hv[k], ha[k], hb[k] = v, a, b
    while k > 0:
        p = (k - 1) // 2
        if _better(hv[k], ha[k], hb[k], hv[p], ha[p], hb[p]):
            hv[k], hv[p] = hv[p], hv[k]
            ha[k], ha[p] = ha[p], ha[k]
            hb[k], hb[p] = hb[p], hb[k]
            k = p
        else:
            break
    return size + 1


@nb.njit(cache=True, _nrt=False)
def _pop(hv, ha, hb, size):
    v, a, b = hv[0], ha[0], hb[0]
    size -= 1
    hv[0], ha[0], hb[0] = hv[size], ha[size], hb[size]
    k = 0
    while True:
        lc, rc, m = 2 * k + 1, 2 * k + 2, k
        if lc < size and _better(hv[lc], ha[lc], hb[lc], hv[m], ha[m], hb[m]):
            m = lc
        if rc < size and _better(hv[rc], ha[rc], hb[rc], hv[m], ha[m], hb[m]):
            m = rc
        if m == k:
            break
        hv[k], hv[m] = hv[m], hv[k]
        ha[k], ha[m] = ha[m], ha[k]
        hb[k], hb[m] = hb[m], hb[k]
        k = m
    return v, a, b, size


@nb.njit(cache=True, inline="always")
def _copy(src, dst, n):
    """``dst[:n] = src[:n]`` as a loop: an array slice assignment compiles numba's shape-error path (~3 s cold)."""
    for t in range(n):
        dst[t] = src[t]


@nb.njit(cache=True)
def kbt_scratch(n, n_e, K):
    """Buffers ``(floats, ints)`` for ``k_best_trees`` on networks of up to ``n`` nodes and ``n_e`` edges.
    ``map_batch`` makes one set per worker: made per query, these megabytes were mapped and page-faulted anew
    each time (nltcs at 10:0:0, K = 100: 2.1 million page faults over 700 queries, a batch query 9.7 ms on one
    thread against 5.9 ms alone)."""
    return np.empty((n + n_e) * K), np.empty(2 * (n + n_e) * K + n + n_e, dtype=np.int64)


@nb.njit(cache=True)
def k_best_trees(node_type, child_ptr, children, log_w, K, fscr, iscr, deadline):
    """Upward K-best pass. Returns ``(val, cnt, src_e, src_k, fl, fr, cut)`` (see the module docstring), views of
    ``fscr``/``iscr`` (``kbt_scratch``) when they are large enough, else of new arrays. Once ``deadline`` passes
    or kernels are asked to stop (``clock.expired``, every 64 nodes), ``cut`` is set and the nodes left keep one
    tree each (max-product's), so that the root still has trees to decode."""
    n = node_type.shape[0]
    n_e = children.shape[0]
    nf = (n + n_e) * K
    if fscr.shape[0] < nf or iscr.shape[0] < 2 * nf + n + n_e:
        fscr, iscr = kbt_scratch(n, n_e, K)
    # only entries below cnt / fcnt are ever read: no fill (with K = 100 these are megabytes per query, and
    # filling them cost more than the search, and serialised parallel queries on page faults)
    val = fscr[:n * K].reshape((n, K))
    fval = fscr[n * K:nf].reshape((n_e, K))
    src_e = iscr[:n * K].reshape((n, K))
    src_k = iscr[n * K:2 * n * K].reshape((n, K))
    o = 2 * n * K
    fl = iscr[o:o + n_e * K].reshape((n_e, K))
    fr = iscr[o + n_e * K:o + 2 * n_e * K].reshape((n_e, K))
    o += 2 * n_e * K
    cnt = iscr[o:o + n]
    fcnt = iscr[o + n:o + n + n_e]
    cnt[:] = 0
    fcnt[:] = 0
    max_deg = 1
    for i in range(n):
        max_deg = max(max_deg, child_ptr[i + 1] - child_ptr[i])
    cap = max(2 * K + 2, max_deg + 1)
    hv = np.empty(cap)
    ha = np.empty(cap, dtype=np.int64)
    hb = np.empty(cap, dtype=np.int64)
    prev = np.empty(K)
    keep = K                                       # trees kept per node: 1 once cut
    for i in range(n):
        if keep > 1 and (i & 63) == 0 and expired(deadline):
            keep = 1
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            val[i, 0] = 0.0
            cnt[i] = 1
        elif t == 1:                               # merge the children's lists shifted by their weights
            size = 0
            for j in range(a, b):
                c = children[j]
                if cnt[c] > 0:
                    size = _push(hv, ha, hb, size, log_w[j] + val[c, 0], j, 0)
            m = 0
            while size > 0 and m < keep:
                v, j, k, size = _pop(hv, ha, hb, size)
                val[i, m], src_e[i, m], src_k[i, m] = v, j, k
                m += 1
                c = children[j]
                if k + 1 < cnt[c]:
                    size = _push(hv, ha, hb, size, log_w[j] + val[c, k + 1], j, k + 1)
            cnt[i] = m
        else:                                      # fold the children pairwise: K best sums of two lists
            n_prev = cnt[children[a]]
            _copy(val[children[a]], prev, n_prev)
            for e in range(a + 1, b):
                c = children[e]
                m = 0
                if n_prev > 0 and cnt[c] > 0:
                    size = _push(hv, ha, hb, 0, prev[0] + val[c, 0], 0, 0)
                    while size > 0 and m < keep:
                        v, x, y, size = _pop(hv, ha, hb, size)
                        fval[e, m], fl[e, m], fr[e, m] = v, x, y
                        m += 1
                        if x + 1 < n_prev:                 # (x+1, y) always; (0, y+1) only from x = 0:
                            size = _push(hv, ha, hb, size, prev[x + 1] + val[c, y], x + 1, y)
                        if x == 0 and y + 1 < cnt[c]:      # every pair is generated exactly once
                            size = _push(hv, ha, hb, size, prev[0] + val[c, y + 1], 0, y + 1)
                fcnt[e] = m
                n_prev = m
                _copy(fval[e], prev, m)
            cnt[i] = n_prev
            _copy(prev, val[i], n_prev)
    return val, cnt, src_e, src_k, fl, fr, keep < K


@nb.njit(cache=True)
def decode(node_type, child_ptr, children, leaf_var, leaf_val, src_e, src_k, fl, fr, entry, n_vars):
    """Assignment (int64, n_vars) of the root's tree number ``entry``; variables not reached stay 0."""
    n = node_type.shape[0]
    x = np.zeros(n_vars, dtype=np.int64)
    sn = np.empty(n, dtype=np.int64)
    sk = np.empty(n, dtype=np.int64)
    top = 1
    sn[0], sk[0] = n - 1, entry
    while top > 0:
        top -= 1
        i, k = sn[top], sk[top]
        t = node_type[i]
        if t == 0:
            x[leaf_var[i]] = leaf_val[i]
        elif t == 1:
            sn[top], sk[top] = children[src_e[i, k]], src_k[i, k]
            top += 1
        else:
            a, b = child_ptr[i], child_ptr[i + 1]
            for e in range(b - 1, a, -1):              # unwind the fold steps, last child first
                sn[top], sk[top] = children[e], fr[e, k]
                top += 1
                k = fl[e, k]
            sn[top], sk[top] = children[a], k
            top += 1
    return x


@nb.njit(cache=True)
def k_best_tree_map(node_type, child_ptr, children, log_w, leaf_var, leaf_val, n_vars, K, fscr, iscr, deadline):
    """KBT: ``(best x, its exact log value, number of trees decoded, cut)``; ties keep the earlier tree. ``fscr``,
    ``iscr``: ``kbt_scratch`` buffers to work in (empty ones: new arrays). ``deadline``: as ``k_best_trees``;
    decoding then stops too (after the first tree), and ``cut`` says the answer is the best met so far."""
    val, cnt, src_e, src_k, fl, fr, cut = k_best_trees(node_type, child_ptr, children, log_w, K, fscr, iscr,
                                                       deadline)
    root = node_type.shape[0] - 1
    buf = np.empty(node_type.shape[0])
    best_x = np.zeros(n_vars, dtype=np.int64)
    best = -np.inf
    n_done = 0
    for entry in range(cnt[root]):
        if entry > 0 and expired(deadline):
            cut = True
            break
        n_done += 1
        x = decode(node_type, child_ptr, children, leaf_var, leaf_val, src_e, src_k, fl, fr, entry, n_vars)
        v = log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, buf)
        if v > best or entry == 0:
            best = v
            best_x = x
    return best_x, best, n_done, cut
