"""Synthetic SPNs whose size and hardness you choose: stress tests and scaling benchmarks for the solvers.

* :func:`mixture`: a mixture of ``components`` fully factorised distributions over binary variables (the root sum
  over products of one Bernoulli sum node per variable). MAP in a mixture is NP-hard: with a few dozen query
  variables and hundreds of components the exact searches and brute force run for minutes.
* :func:`chain`: a deep chain: the node over variables ``k..n-1`` is a sum of two products, each a Bernoulli
  over variable ``k`` times the *same* node over ``k+1..n-1``. Every sum node's sub-network is the whole
  network below it, so AMAP's cost (children x sub-network size per sum node) grows with the square of ``n``.

Both are normalised; the parameters come from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

from .errors import SPNStructureError
from .flat_spn import LEAF, PRODUCT, SUM, FlatSPN


class _Nodes:
    """Nodes appended children first; ``spn()`` packs them into a FlatSPN."""

    def __init__(self, n_vars: int):
        self.type: list[int] = []
        self.kids: list[list[int]] = []
        self.logw: list[list[float]] = []
        self.var: list[int] = []
        self.val: list[int] = []
        self.n_vars = n_vars
        self.leaves = [[self.add(LEAF, var=v, val=x) for x in (0, 1)] for v in range(n_vars)]

    def add(self, t: int, kids=(), logw=(), var: int = -1, val: int = -1) -> int:
        self.type.append(t)
        self.kids.append(list(kids))
        self.logw.append(list(logw) if len(logw) else [0.0] * len(kids))   # one per edge (products: 0)
        self.var.append(var)
        self.val.append(val)
        return len(self.type) - 1

    def bernoulli(self, v: int, p: float) -> int:
        return self.add(SUM, self.leaves[v], [np.log1p(-p), np.log(p)])

    def spn(self, source: str) -> FlatSPN:
        ptr = np.concatenate([[0], np.cumsum([len(k) for k in self.kids])]).astype(np.int64)
        return FlatSPN(node_type=np.array(self.type, dtype=np.int8), child_ptr=ptr,
                       children=np.array([c for k in self.kids for c in k], dtype=np.int64),
                       log_w=np.array([w for ws in self.logw for w in ws], dtype=np.float64),
                       leaf_var=np.array(self.var, dtype=np.int64), leaf_val=np.array(self.val, dtype=np.int64),
                       cardinalities=np.full(self.n_vars, 2, dtype=np.int64), meta={"source": source})


def _check(**sizes: int) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise SPNStructureError(f"{name}={v!r}; expected an integer >= 1")


def mixture(n_vars: int, components: int, seed: int = 0) -> FlatSPN:
    """A mixture of ``components`` products of independent Bernoullis over ``n_vars`` binary variables
    (``components * (n_vars + 1) + 2 * n_vars + 1`` nodes); mixing weights Dirichlet(1), each Bernoulli's
    p uniform in [0.05, 0.95]."""
    _check(n_vars=n_vars, components=components)
    rng = np.random.default_rng(seed)
    net = _Nodes(n_vars)
    prods = [net.add(PRODUCT, [net.bernoulli(v, p) for v, p in enumerate(rng.uniform(0.05, 0.95, n_vars))])
             for _ in range(components)]
    net.add(SUM, prods, np.log(rng.dirichlet(np.ones(components))))
    return net.spn(f"synthetic.mixture(n_vars={n_vars}, components={components}, seed={seed})")


def chain(n_vars: int, seed: int = 0) -> FlatSPN:
    """A chain over ``n_vars`` binary variables, ``5 * n_vars - 2`` nodes (see the module docstring): the
    node over ``k..n-1`` mixes two products ``Bernoulli_k * node(k+1..n-1)`` with Dirichlet(1) weights."""
    _check(n_vars=n_vars)
    rng = np.random.default_rng(seed)
    net = _Nodes(n_vars)
    below = net.bernoulli(n_vars - 1, rng.uniform(0.05, 0.95))
    for v in range(n_vars - 2, -1, -1):
        p, q = rng.uniform(0.05, 0.95, 2)
        prods = [net.add(PRODUCT, [net.bernoulli(v, p), below]), net.add(PRODUCT, [net.bernoulli(v, q), below])]
        below = net.add(SUM, prods, np.log(rng.dirichlet(np.ones(2))))
    return net.spn(f"synthetic.chain(n_vars={n_vars}, seed={seed})")
