"""DeeProb-kit / NeuPI SPN JSON (networkx node-link data).

``nodes``: ``{"id", "class": "Sum"|"Product"|"Bernoulli"|"Categorical"|"Indicator", "scope", "weights" | "params"}``;
``links``: ``{"source": child, "target": parent, "idx": position in the parent's children}``.
A Bernoulli(p) leaf on X becomes a sum node ``(1 - p) [X=0] + p [X=1]`` over shared indicators (exact).
"""

from __future__ import annotations

import json

from ..errors import SPNFormatError
from ..flat_spn import FlatSPN
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
            if cls == "Sum":
                g.sum(nid, ch, [float(w) for w in node["weights"]], linear=True, where=where)
            elif cls == "Product":
                g.product(nid, ch, where)
            elif cls in ("Bernoulli", "Categorical"):
                (var,) = scope
                params = node["params"]
                probs = [1.0 - float(params["p"]), float(params["p"])] if cls == "Bernoulli" else \
                    [float(p) for p in params["p"]]
                g.sum(nid, [g.shared_indicator(int(var), x) for x in range(len(probs))], probs, linear=True,
                      where=where)
            elif cls == "Indicator":
                (var,) = scope
                g.indicator(nid, int(var), int(node["params"]["value"]), where)
            else:
                raise SPNFormatError(f"{source}{where}: unsupported node class {cls!r}; supported: Sum, Product, "
                                     "Bernoulli, Categorical, Indicator")
        except (KeyError, TypeError, ValueError) as exc:
            raise SPNFormatError(f"{source}: malformed node {node!r:.80}: {exc}") from None
    return g.build(meta={"format": "json"}, n_vars=n_vars)
