"""Random complete + decomposable SPNs for property tests, and a naive recursive evaluator as the oracle.

The oracle shares no code with spnkit's kernels: it evaluates the network polynomial in the linear domain,
recursively, with memoisation.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from spnkit.flat_spn import LEAF, PRODUCT, SUM, FlatSPN


class NetBuilder:
    """Nodes added children first (``add`` returns the new node's index); ``spn(cards)`` makes the FlatSPN."""

    def __init__(self):
        self.node_type, self.kids, self.weights, self.leaf_var, self.leaf_val = [], [], [], [], []

    def add(self, t, ch=(), w=(), var=-1, val=-1) -> int:
        self.node_type.append(t)
        self.kids.append(list(ch))
        self.weights.append(list(w))
        self.leaf_var.append(var)
        self.leaf_val.append(val)
        return len(self.node_type) - 1

    def spn(self, cards) -> FlatSPN:
        ptr = np.concatenate([[0], np.cumsum([len(k) for k in self.kids])])
        return FlatSPN(node_type=np.array(self.node_type), child_ptr=ptr,
                       children=np.array([c for k in self.kids for c in k], dtype=np.int64),
                       log_w=np.array(_edge_weights(self.node_type, self.kids, self.weights), dtype=np.float64),
                       leaf_var=np.array(self.leaf_var), leaf_val=np.array(self.leaf_val), cardinalities=cards)


def random_spn(seed: int, n_vars: int = 4, max_card: int = 3, zero_weight_prob: float = 0.1,
               normalised: bool = True) -> FlatSPN:
    rng = np.random.default_rng(seed)
    cards = rng.integers(2, max_card + 1, size=n_vars)
    net = NetBuilder()
    add = net.add
    leaf_id: dict[tuple[int, int], int] = {}

    def leaf(v, x):
        if (v, x) not in leaf_id:
            leaf_id[(v, x)] = add(LEAF, var=v, val=x)
        return leaf_id[(v, x)]

    def sum_over(children):
        w = rng.dirichlet(np.ones(len(children)))
        w[rng.random(len(children)) < zero_weight_prob] = 0.0
        if w.sum() == 0:
            w[0] = 1.0
        if normalised:
            w = w / w.sum()
        else:
            w = w * rng.uniform(0.2, 3.0)
        with np.errstate(divide="ignore"):
            return add(SUM, children, np.log(w))

    def build(scope, depth):
        if len(scope) == 1:
            v = int(scope[0])
            values = [x for x in range(int(cards[v])) if rng.random() < 0.8] or [0]
            return sum_over([leaf(v, x) for x in values])
        if depth <= 0 or rng.random() < 0.5:
            perm = rng.permutation(scope)
            n_parts = int(rng.integers(2, min(len(scope), 3) + 1))
            cuts = np.sort(rng.choice(np.arange(1, len(scope)), size=n_parts - 1, replace=False))
            return add(PRODUCT, [build(part, depth - 1) for part in np.split(perm, cuts)])
        return sum_over([build(scope, depth - 1) for _ in range(int(rng.integers(2, 4)))])

    build(np.arange(n_vars), depth=3)
    return net.spn(cards)


def _edge_weights(node_type, kids, weights):
    out = []
    for t, k, w in zip(node_type, kids, weights, strict=True):
        out.extend(w if t == SUM else [0.0] * len(k))
    return out


def naive_value(spn: FlatSPN, x) -> float:
    """S(x) in the linear domain by recursion from the root; x[v] = -1 marginalises v."""
    memo: dict[int, float] = {}

    def val(i: int) -> float:
        if i in memo:
            return memo[i]
        t = int(spn.node_type[i])
        a, b = int(spn.child_ptr[i]), int(spn.child_ptr[i + 1])
        if t == LEAF:
            xv = int(x[int(spn.leaf_var[i])])
            r = 1.0 if xv == -1 or xv == int(spn.leaf_val[i]) else 0.0
        elif t == SUM:
            r = sum(math.exp(float(spn.log_w[j])) * val(int(spn.children[j])) for j in range(a, b))
        else:
            r = 1.0
            for j in range(a, b):
                r *= val(int(spn.children[j]))
        memo[i] = r
        return r

    return val(spn.n_nodes - 1)


spn_seeds = st.integers(min_value=0, max_value=2**32 - 1)
