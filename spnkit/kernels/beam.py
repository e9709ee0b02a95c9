"""Beam search (BS, Mei, Jiang & Tu 2018): hill climbing over single-variable flips with a beam.

Starts from B assignments sampled top-down from the network (child chosen with probability ∝ w·Z(child)).
Each round, one derivative pass per beam element scores every single-variable flip at once; the improving
flips, deduplicated, form the next generation, of which the best B are kept. Stops when nothing improves.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .clock import expired
from .derivative import derivatives
from .passes import log_value


@nb.njit(cache=True)
def sample_assignments(node_type, child_ptr, children, log_w, leaf_var, leaf_val, n_vars, n, seed):
    """``n`` ancestral samples (int64, (n, n_vars)); sum children drawn ∝ w_j · Z(child_j)."""
    np.random.seed(seed)
    m = node_type.shape[0]
    z = np.empty(m)
    log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, np.full(n_vars, -1, np.int64), z)
    out = np.zeros((n, n_vars), dtype=np.int64)
    stack = np.empty(m, dtype=np.int64)
    for s in range(n):
        top = 1
        stack[0] = m - 1
        while top > 0:
            top -= 1
            i = stack[top]
            t = node_type[i]
            a, b = child_ptr[i], child_ptr[i + 1]
            if t == 0:
                out[s, leaf_var[i]] = leaf_val[i]
            elif t == 1:
                mx = -np.inf
                for j in range(a, b):
                    mx = max(mx, log_w[j] + z[children[j]])
                tot = 0.0
                for j in range(a, b):
                    tot += np.exp(log_w[j] + z[children[j]] - mx)
                r = np.random.random() * tot
                pick = b - 1
                for j in range(a, b):
                    r -= np.exp(log_w[j] + z[children[j]] - mx)
                    if r < 0:
                        pick = j
                        break
                stack[top] = children[pick]
                top += 1
            else:
                for j in range(a, b):
                    stack[top] = children[j]
                    top += 1
    return out


@nb.njit(cache=True)
def _top_unique(cand, score, n_cand, B, out, out_score):
    """Best ``B`` distinct rows of ``cand[:n_cand]`` by score (ties: earlier row); returns how many."""
    order = np.argsort(-score[:n_cand], kind="mergesort")
    k = 0
    for idx in order:
        dup = False
        for q in range(k):
            same = True
            for v in range(cand.shape[1]):
                if out[q, v] != cand[idx, v]:
                    same = False
                    break
            if same:
                dup = True
                break
        if not dup:
            out[k] = cand[idx]
            out_score[k] = score[idx]
            k += 1
            if k == B:
                break
    return k


@nb.njit(cache=True)
def beam_search(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cards, B, seed, max_rounds, deadline):
    """Returns ``(best x, its log value, rounds run, cut)``; stops after ``max_rounds``, or, with ``cut``, once
    ``deadline`` (a ``clock.now()`` tick count) has passed or kernels were asked to stop (``clock.expired``,
    checked before each beam entry's derivative pass): the best assignment met so far."""
    nv = cards.shape[0]
    max_card = 1
    for v in range(nv):
        max_card = max(max_card, cards[v])
    m = node_type.shape[0]
    val = np.empty(m)
    dr = np.empty(m)
    starts = sample_assignments(node_type, child_ptr, children, log_w, leaf_var, leaf_val, nv, B, seed)
    s_score = np.empty(B)
    for s in range(B):
        s_score[s] = log_value(node_type, child_ptr, children, log_w, leaf_var, leaf_val, starts[s], val)
    beam = np.empty((B, nv), dtype=np.int64)
    b_score = np.empty(B)
    nb_ = _top_unique(starts, s_score, B, B, beam, b_score)
    best_x = beam[0].copy()
    best = b_score[0]
    cap = B * (nv * max_card)
    cand = np.empty((max(cap, 1), nv), dtype=np.int64)
    c_score = np.empty(max(cap, 1))
    rounds = 0
    cut = False
    while rounds < max_rounds and not cut:
        rounds += 1
        nc = 0
        for e in range(nb_):
            if expired(deadline):
                cut = True
                break
            d = derivatives(node_type, child_ptr, children, log_w, leaf_var, leaf_val, beam[e], max_card, val, dr)
            for v in range(nv):
                for k in range(cards[v]):
                    if k != beam[e, v] and d[v, k] > b_score[e]:
                        cand[nc] = beam[e]
                        cand[nc, v] = k
                        c_score[nc] = d[v, k]
                        nc += 1
        if nc == 0:            # (a cut round still offers the neighbours it scored)
            break
        nb_ = _top_unique(cand, c_score, nc, B, beam, b_score)
        if b_score[0] > best:
            best = b_score[0]
            best_x = beam[0].copy()
    return best_x, best, rounds, cut
