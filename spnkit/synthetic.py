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
from .flat_spn import FlatSPN
from .formats._graph import GraphBuilder


class _Nodes(GraphBuilder):
    """A ``GraphBuilder`` whose node ids count up as nodes are added, children first (so ``build`` keeps that
    order), with the indicator leaves of ``n_vars`` binary variables made first."""

    def __init__(self, n_vars: int, source: str):
        super().__init__(source)
        self.n_vars, self._next = n_vars, 0
        self.leaves = [[self._id() for _ in (0, 1)] for _ in range(n_vars)]
        for v, ids in enumerate(self.leaves):
            for x, nid in enumerate(ids):
                self.indicator(nid, v, x)

    def _id(self) -> int:
        self._next += 1
        return self._next - 1

    def add_sum(self, kids: list[int], logw) -> int:
        nid = self._id()
        self.sum(nid, kids, list(logw), linear=False)
        return nid

    def add_product(self, kids: list[int]) -> int:
        nid = self._id()
        self.product(nid, kids)
        return nid

    def bernoulli(self, v: int, p: float) -> int:
        return self.add_sum(self.leaves[v], [np.log1p(-p), np.log(p)])

    def spn(self) -> FlatSPN:
        return self.build({"source": self.source}, self.n_vars)


def _check(**sizes: int) -> None:
    from .map_api import is_int

    for name, v in sizes.items():
        if not is_int(v) or v < 1:
            raise SPNStructureError(f"{name}={v!r}; expected an integer >= 1")


def mixture(n_vars: int, components: int, seed: int = 0) -> FlatSPN:
    """A mixture of ``components`` products of independent Bernoullis over ``n_vars`` binary variables
    (``components * (n_vars + 1) + 2 * n_vars + 1`` nodes); mixing weights Dirichlet(1), each Bernoulli's
    p uniform in [0.05, 0.95]."""
    _check(n_vars=n_vars, components=components)
    rng = np.random.default_rng(seed)
    net = _Nodes(n_vars, f"synthetic.mixture(n_vars={n_vars}, components={components}, seed={seed})")
    prods = [net.add_product([net.bernoulli(v, p) for v, p in enumerate(rng.uniform(0.05, 0.95, n_vars))])
             for _ in range(components)]
    net.add_sum(prods, np.log(rng.dirichlet(np.ones(components))))
    return net.spn()


def chain(n_vars: int, seed: int = 0) -> FlatSPN:
    """A chain over ``n_vars`` binary variables, ``7 * n_vars - 4`` nodes (see the module docstring): the
    node over ``k..n-1`` mixes two products ``Bernoulli_k * node(k+1..n-1)`` with Dirichlet(1) weights."""
    _check(n_vars=n_vars)
    rng = np.random.default_rng(seed)
    net = _Nodes(n_vars, f"synthetic.chain(n_vars={n_vars}, seed={seed})")
    below = net.bernoulli(n_vars - 1, rng.uniform(0.05, 0.95))
    for v in range(n_vars - 2, -1, -1):
        p, q = rng.uniform(0.05, 0.95, 2)
        prods = [net.add_product([net.bernoulli(v, p), below]), net.add_product([net.bernoulli(v, q), below])]
        below = net.add_sum(prods, np.log(rng.dirichlet(np.ones(2))))
    return net.spn()
