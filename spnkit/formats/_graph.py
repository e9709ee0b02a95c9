"""Shared by readers whose files name nodes by id in any order: collect, sort children-first, build."""

from __future__ import annotations

import math

import numpy as np

from ..errors import SPNFormatError, SPNStructureError
from ..flat_spn import LEAF, PRODUCT, SUM, FlatSPN


class GraphBuilder:
    """Nodes by id: indicator leaves, sums (log weights) and products; ``build()`` orders them children first.

    Indicators for the same (variable, value) are shared, as in a network polynomial.
    """

    def __init__(self, source: str):
        self.source = source
        self.kind: dict[object, int] = {}
        self.kids: dict[object, list] = {}
        self.logw: dict[object, list[float]] = {}
        self.leaf: dict[object, tuple[int, int]] = {}
        self.where: dict[object, str] = {}           # node id -> where the file defines it (":12", " node 5")
        self._indicator_ids: dict[tuple[int, int], object] = {}

    def _new(self, nid, kind: int, where: str) -> None:
        if nid in self.kind:
            raise SPNFormatError(f"{self.source}{where}: node id {nid!r} is defined twice (first at "
                                 f"{self.label(nid)})")
        self.kind[nid] = kind
        self.where[nid] = where

    def label(self, nid) -> str:
        """The file's name for a node: ``node 17 (line 23)``; an indicator spnkit added for a categorical or
        Bernoulli leaf reads ``the indicator X3 = 1``."""
        if isinstance(nid, tuple) and nid and nid[0] == "__indicator__":
            return f"the indicator X{nid[1]} = {nid[2]}"
        w = self.where.get(nid, "")
        return f"node {nid!r}" + (f" (line {w[1:]})" if w.startswith(":") else "")

    def distribution(self, nid, var: int, probs: list[float], what: str, where: str = "") -> None:
        """A categorical leaf (``probs[x]`` = P(X_var = x)) as a sum over shared indicators; each probability
        must lie in [0, 1] (``what`` names the leaf kind in the error, e.g. "Bernoulli p")."""
        for x, p in enumerate(probs):
            if not 0.0 <= p <= 1.0:
                raise SPNFormatError(f"{self.source}{where}: {what} = {p!r} for X{var} = {x}; expected a "
                                     "probability in [0, 1]")
        self.sum(nid, [self.shared_indicator(var, x, where) for x in range(len(probs))], probs, linear=True,
                 where=where)

    def indicator(self, nid, var: int, val: int, where: str = "") -> None:
        if var < 0 or val < 0:
            raise SPNFormatError(f"{self.source}{where}: indicator of variable {var} value {val}; both must be >= 0")
        self._new(nid, LEAF, where)
        self.leaf[nid] = (var, val)

    def shared_indicator(self, var: int, val: int, where: str = ""):
        key = (var, val)
        if key not in self._indicator_ids:
            nid = ("__indicator__", var, val)
            self.indicator(nid, var, val, where)
            self._indicator_ids[key] = nid
        return self._indicator_ids[key]

    def sum(self, nid, children: list, weights: list[float], linear: bool, where: str = "") -> None:
        if len(children) != len(weights) or not children:
            raise SPNFormatError(f"{self.source}{where}: a sum node needs one weight per child and >= 1 child")
        logs = []
        for w in weights:
            if linear:
                if not w >= 0 or math.isinf(w):
                    raise SPNFormatError(f"{self.source}{where}: weight {w!r} is not a finite number >= 0")
                logs.append(math.log(w) if w > 0 else -math.inf)
            else:
                if math.isnan(w):
                    raise SPNFormatError(f"{self.source}{where}: log-weight is NaN")
                logs.append(w)
        self._new(nid, SUM, where)
        self.kids[nid], self.logw[nid] = list(children), logs

    def product(self, nid, children: list, where: str = "") -> None:
        if not children:
            raise SPNFormatError(f"{self.source}{where}: a product node needs >= 1 child")
        self._new(nid, PRODUCT, where)
        self.kids[nid], self.logw[nid] = list(children), [0.0] * len(children)

    def build(self, meta: dict | None = None, n_vars: int | None = None) -> FlatSPN:
        if not self.kind:
            raise SPNFormatError(f"{self.source}: no nodes")
        for nid, ch in self.kids.items():
            for c in ch:
                if c not in self.kind:
                    raise SPNFormatError(f"{self.source}: {self.label(nid)} has child {c!r}, which is never defined")
        has_parent = {c for ch in self.kids.values() for c in ch}
        roots = [n for n in self.kind if n not in has_parent]
        if not roots:                                # every node has a parent: there is a cycle
            raise SPNStructureError(f"{self.source}: no root (every node has a parent): {self._cycle()}")
        if len(roots) > 1:
            raise SPNStructureError(f"{self.source}: {len(roots)} nodes have no parent, e.g. "
                                    f"{', '.join(self.label(r) for r in roots[:4])}; an SPN has exactly one root")
        if self._numbered_children_first():
            order = sorted(self.kind)                # the file's own order (keeps load(save(spn)) exact)
            return self._arrays(order, meta, n_vars)
        order, state = [], {}                        # iterative DFS post-order = children first
        stack = [(roots[0], 0)]
        while stack:
            nid, k = stack.pop()
            if k == 0:
                if state.get(nid) == 2:
                    continue
                state[nid] = 1
            ch = self.kids.get(nid, [])
            if k < len(ch):
                stack.append((nid, k + 1))
                c = ch[k]
                if state.get(c) == 1:
                    path = [n for n, _ in stack if state.get(n) == 1]
                    loop = path[path.index(c):] + [c] if c in path else [nid, c]
                    raise SPNStructureError(f"{self.source}: cycle " + " -> ".join(self.label(n) for n in loop))
                if state.get(c) != 2:
                    stack.append((c, 0))
            else:
                state[nid] = 2
                order.append(nid)
        if len(order) != len(self.kind):
            unreachable = [n for n in self.kind if n not in state][:4]
            raise SPNStructureError(f"{self.source}: nodes not reachable from the root, e.g. "
                                    f"{', '.join(self.label(n) for n in unreachable)}")
        return self._arrays(order, meta, n_vars)

    def _cycle(self) -> str:
        """A cycle, as the file names its nodes (for a graph in which every node has a parent)."""
        start = next((n for n in self.kind if self.kids.get(n)), next(iter(self.kind)))
        path, seen = [start], {start: 0}
        while True:                                  # follow first children: with no leaf reachable, it loops
            ch = self.kids.get(path[-1], [])
            nxt = next((c for c in ch if self.kind.get(c) != LEAF), ch[0] if ch else None)
            if nxt is None:
                return "the nodes form a cycle"
            if nxt in seen:
                loop = path[seen[nxt]:] + [nxt]
                return "cycle " + " -> ".join(self.label(n) for n in loop)
            seen[nxt] = len(path)
            path.append(nxt)

    def _numbered_children_first(self) -> bool:
        """Ids are exactly 0..n-1 (ints) and every child's id is below its parent's (the root is n-1)."""
        n = len(self.kind)
        if not all(type(k) is int for k in self.kind) or set(self.kind) != set(range(n)):
            return False
        return all(type(c) is int and c < p for p, ch in self.kids.items() for c in ch)

    def _arrays(self, order: list, meta: dict | None, n_vars: int | None) -> FlatSPN:
        index = {nid: i for i, nid in enumerate(order)}
        node_type = np.array([self.kind[n] for n in order], dtype=np.int8)
        counts = [len(self.kids.get(n, [])) for n in order]
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        children = np.array([index[c] for n in order for c in self.kids.get(n, [])], dtype=np.int64)
        log_w = np.array([w for n in order for w in self.logw.get(n, [])], dtype=np.float64)
        leaf_var = np.array([self.leaf[n][0] if n in self.leaf else -1 for n in order], dtype=np.int64)
        leaf_val = np.array([self.leaf[n][1] if n in self.leaf else -1 for n in order], dtype=np.int64)
        nv = n_vars if n_vars is not None else int(leaf_var.max()) + 1
        cards = np.ones(nv, dtype=np.int64)
        for v, x in self.leaf.values():
            if v < nv:
                cards[v] = max(cards[v], x + 1)
        return FlatSPN(node_type=node_type, child_ptr=ptr, children=children, log_w=log_w, leaf_var=leaf_var,
                       leaf_val=leaf_val, cardinalities=cards,
                       meta={"source": self.source, **(meta or {}), "node_labels": _Labels(self, order)})


class _Labels:
    """``FlatSPN.meta["node_labels"]``: node index -> the file's name for it, built when an error asks."""

    def __init__(self, g: GraphBuilder, order: list):
        self._label, self._order = g.label, order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i: int) -> str:
        return self._label(self._order[i])
