"""DeeProb-kit / NeuPI SPN JSON (networkx node-link data).

``nodes``: ``{"id", "class": "Sum"|"Product"|"Bernoulli"|"Categorical"|"Indicator", "scope", "weights" | "params"}``;
``links``: ``{"source": child, "target": parent, "idx": position in the parent's children}``.
A Bernoulli(p) leaf on X becomes a sum node ``(1 - p) [X=0] + p [X=1]`` over shared indicators (exact).

spnkit's writer adds, beside the linear ``weights`` other tools read, ``log_weights`` (``null`` for a zero
weight) and ``graph.spnkit.cardinalities``; the reader prefers them, so ``parse(dumps(spn))`` is exact.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..errors import SPNFormatError
from ..flat_spn import LEAF, SUM, FlatSPN
from ._graph import GraphBuilder


def looks_like(text: str) -> bool:
    return text.lstrip().startswith("{")


def parse(text: str, source: str = "<string>") -> FlatSPN:
    try:
        data = json.loads(text)
        nodes, links = data["nodes"], data["links"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SPNFormatError(f"{source}: not node-link SPN JSON ({exc}); expected 'nodes' and 'links'") from None
    kids: dict[object, dict[int, object]] = {}
    for k, ln in enumerate(links):
        try:
            kids.setdefault(ln["target"], {})[int(ln.get("idx", len(kids.get(ln["target"], {}))))] = ln["source"]
        except (KeyError, TypeError, ValueError):
            raise SPNFormatError(f"{source}: link #{k} needs 'source' (child) and 'target' (parent)") from None
    g = GraphBuilder(source)
    n_vars = 0
    for node in nodes:
        try:
            nid, cls = node["id"], node["class"]
            where = f" node {nid!r}"
            ch = [kids.get(nid, {})[i] for i in sorted(kids.get(nid, {}))]
            scope = node.get("scope", [])
            n_vars = max([n_vars, *[int(v) + 1 for v in scope]])
            if cls == "Sum" and "log_weights" in node:
                g.sum(nid, ch, [-math.inf if w is None else float(w) for w in node["log_weights"]], linear=False,
                      where=where)
            elif cls == "Sum":
                g.sum(nid, ch, [float(w) for w in node["weights"]], linear=True, where=where)
            elif cls == "Product":
                g.product(nid, ch, where)
            elif cls in ("Bernoulli", "Categorical"):
                (var,) = scope
                params = node["params"]
                if cls == "Bernoulli":
                    p = float(params["p"])
                    if not 0.0 <= p <= 1.0:
                        raise SPNFormatError(f"{source}{where}: Bernoulli p = {params['p']!r}; expected a "
                                             "probability in [0, 1]")
                    g.distribution(nid, int(var), [1.0 - p, p], "Bernoulli P", where)
                else:
                    g.distribution(nid, int(var), [float(p) for p in params["p"]], "Categorical p", where)
            elif cls == "Indicator":
                (var,) = scope
                g.indicator(nid, int(var), int(node["params"]["value"]), where)
            else:
                raise SPNFormatError(f"{source}{where}: unsupported node class {cls!r}; supported: Sum, Product, "
                                     "Bernoulli, Categorical, Indicator")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SPNFormatError):
                raise
            raise SPNFormatError(f"{source}: malformed node {node!r:.80}: {exc}") from None
    spn = g.build(meta={"format": "json"}, n_vars=n_vars)
    cards = (data.get("graph") or {}).get("spnkit", {}).get("cardinalities") if isinstance(data, dict) else None
    if cards is not None:
        cards = np.asarray(cards, dtype=np.int64)
        if cards.shape != (spn.n_vars,) or np.any(cards < spn.cardinalities):
            raise SPNFormatError(f"{source}: graph.spnkit.cardinalities {cards.tolist()[:10]} does not fit the "
                                 f"indicators (at least {spn.cardinalities.tolist()[:10]})")
        spn = FlatSPN(node_type=spn.node_type, child_ptr=spn.child_ptr, children=spn.children, log_w=spn.log_w,
                      leaf_var=spn.leaf_var, leaf_val=spn.leaf_val, cardinalities=cards, meta=spn.meta)
    return spn


def dumps(spn: FlatSPN) -> str:
    """Node-link JSON of ``spn``: node ids are spnkit's indices (children first), every node has its scope."""
    scope: list[int] = []                               # bitset per node, as a Python int
    nodes, links = [], []
    for i in range(spn.n_nodes):
        t = int(spn.node_type[i])
        a, b = int(spn.child_ptr[i]), int(spn.child_ptr[i + 1])
        ch = [int(c) for c in spn.children[a:b]]
        if t == LEAF:
            scope.append(1 << int(spn.leaf_var[i]))
        else:
            bits = 0
            for c in ch:
                bits |= scope[c]
            scope.append(bits)
        node = {"id": i, "class": ("Indicator", "Sum", "Product")[t],
                "scope": [v for v in range(spn.n_vars) if scope[i] >> v & 1]}
        if t == LEAF:
            node["params"] = {"value": int(spn.leaf_val[i])}
        elif t == SUM:
            lw = [float(w) for w in spn.log_w[a:b]]
            node["weights"] = [math.exp(w) for w in lw]
            node["log_weights"] = [None if w == -math.inf else w for w in lw]
        nodes.append(node)
        links.extend({"source": c, "target": i, "idx": k} for k, c in enumerate(ch))
    data = {"directed": True, "multigraph": False,
            "graph": {"spnkit": {"cardinalities": [int(c) for c in spn.cardinalities]}},
            "nodes": nodes, "links": links}
    return json.dumps(data, allow_nan=False)
