"""Libra arithmetic circuits (``.ac``; Lowd & Rooshenas's Libra toolkit, also read by Mei et al.'s ``LoadAC``).

::

    (2 2 2 ... 2)               line 1: cardinality of each variable
    v <var> <value>             indicator; node id = 0-based line index after line 1
    n <number>                  constant, in the LINEAR domain (a parameter, e.g. 0.25)
    * <child> <child> ...       product
    + <child> <child> ...       sum (unweighted: weights are constants multiplied in below it)
    EOF                         anything after it (Libra's feature list) is ignored

An AC becomes an SPN the way the authors' ``AC2SPN`` does it: constants multiplied into a product are carried
up as a log factor and become the weight of the sum edge above; sub-circuits without variables fold into
constants. A sum whose children mix constants and variables is not complete and is refused. The writer is
the authors' ``SaveAsAC``: each weighted sum edge becomes ``n w`` and ``* n child``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SPNFormatError, SPNStructureError
from ..flat_spn import LEAF, PRODUCT, SUM, FlatSPN
from .maxspn import cardinality_line


def looks_like(text: str) -> bool:
    """A parenthesised cardinality line and at least one ``n`` (constant) line before ``EOF``."""
    if not text.lstrip().startswith("("):
        return False
    for line in text.splitlines()[1:]:
        s = line.strip()
        if s == "EOF":
            return False
        if s.startswith("n "):
            return True
    return False


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def parse(text: str, source: str = "<string>") -> FlatSPN:
    """Parse a Libra ``.ac`` into a validated FlatSPN; errors name ``source:line``."""
    lines = text.splitlines()
    cards = cardinality_line(lines, source)

    # Per AC node: its SPN node id (None for a pure constant) and the log factor carried above it.
    spn_id: list[int | None] = []
    carry: list[float] = []
    node_type: list[int] = []
    kids: list[list[int]] = []
    weights: list[list[float]] = []
    leaf: list[tuple[int, int]] = []
    indicator: dict[tuple[int, int], int] = {}

    def new(t: int, ch: list[int], w: list[float], lv: tuple[int, int] = (-1, -1)) -> int:
        node_type.append(t)
        kids.append(ch)
        weights.append(w)
        leaf.append(lv)
        return len(node_type) - 1

    saw_eof = False
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line == "EOF":
            saw_eof = True
            break
        kind, *args = line.split()
        where = f"{source}:{lineno}"
        try:
            if kind == "v":
                if len(args) != 2:
                    raise ValueError("an indicator line is 'v <var> <value>'")
                var, val = int(args[0]), int(args[1])
                if not (0 <= var < len(cards) and 0 <= val < cards[var]):
                    raise ValueError(f"indicator X{var}={val} is out of range for the cardinality line")
                if (var, val) not in indicator:
                    indicator[(var, val)] = new(LEAF, [], [], (var, val))
                spn_id.append(indicator[(var, val)])
                carry.append(0.0)
            elif kind == "n":
                if len(args) != 1:
                    raise ValueError("a constant line is 'n <number>'")
                c = float(args[0])
                if not c >= 0 or math.isinf(c):
                    raise ValueError(f"constant {args[0]!r} is not a finite number >= 0")
                spn_id.append(None)
                carry.append(math.log(c) if c > 0 else -math.inf)
            elif kind in ("*", "+"):
                if not args:
                    raise ValueError(f"a '{kind}' line needs at least one child")
                ch = [int(a) for a in args]
                bad = [c for c in ch if not 0 <= c < len(spn_id)]
                if bad:
                    raise ValueError(f"child {bad[0]} does not come before this node (node {len(spn_id)})")
                if kind == "*":
                    factor = sum(carry[c] for c in ch)
                    var_kids = [spn_id[c] for c in ch if spn_id[c] is not None]
                    if not var_kids:
                        spn_id.append(None)
                    elif len(var_kids) == 1:
                        spn_id.append(var_kids[0])
                    else:
                        spn_id.append(new(PRODUCT, var_kids, [0.0] * len(var_kids)))
                    carry.append(factor)
                else:
                    consts = [c for c in ch if spn_id[c] is None]
                    if len(consts) == len(ch):
                        spn_id.append(None)
                        carry.append(_logsumexp([carry[c] for c in ch]))
                    elif consts:
                        raise SPNStructureError(f"{where}: not complete: sum over children {ch[:6]} mixes "
                                                f"constants (e.g. node {consts[0]}) with variables")
                    else:
                        spn_id.append(new(SUM, [spn_id[c] for c in ch], [carry[c] for c in ch]))
                        carry.append(0.0)
            else:
                raise ValueError(f"unknown node kind {kind!r}; expected 'v', 'n', '*', '+' or 'EOF'")
        except SPNStructureError:
            raise
        except ValueError as exc:
            raise SPNFormatError(f"{where}: {exc} (line: {line[:80]!r})") from None
    if not saw_eof:
        raise SPNFormatError(f"{source}: no 'EOF' line; the file looks truncated")
    if not spn_id:
        raise SPNFormatError(f"{source}: no nodes before 'EOF'")
    root = spn_id[-1]
    if root is None:
        raise SPNStructureError(f"{source}: the circuit's output is a constant (no variable below it)")
    if carry[-1] != 0.0:                       # keep the output's constant factor
        root = new(SUM, [root], [carry[-1]])
    return _flatten(node_type, kids, weights, leaf, root, cards, source)


def _flatten(node_type, kids, weights, leaf, root, cards, source) -> FlatSPN:
    """Keep the nodes reachable from ``root`` (creation order is already children first)."""
    reach = np.zeros(len(node_type), dtype=bool)
    reach[root] = True
    for i in range(root, -1, -1):
        if reach[i]:
            for c in kids[i]:
                reach[c] = True
    new_id = np.cumsum(reach) - 1
    order = np.flatnonzero(reach)
    counts = [len(kids[i]) for i in order]
    return FlatSPN(node_type=np.array([node_type[i] for i in order], dtype=np.int8),
                   child_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   children=np.array([new_id[c] for i in order for c in kids[i]], dtype=np.int64),
                   log_w=np.array([w for i in order for w in weights[i]], dtype=np.float64),
                   leaf_var=np.array([leaf[i][0] for i in order], dtype=np.int64),
                   leaf_val=np.array([leaf[i][1] for i in order], dtype=np.int64),
                   cardinalities=np.array(cards, dtype=np.int64), meta={"format": "ac", "source": source})


def dumps(spn: FlatSPN) -> str:
    """Libra ``.ac`` text: weighted sum edges become ``n exp(w)`` times the child (the authors' ``SaveAsAC``).

    Not an exact round trip: weights pass through ``exp``/``log``.
    """
    out = ["(" + " ".join(str(int(c)) for c in spn.cardinalities) + ")"]
    ac_id = np.empty(spn.n_nodes, dtype=np.int64)
    for i in range(spn.n_nodes):
        t = spn.node_type[i]
        a, b = spn.child_ptr[i], spn.child_ptr[i + 1]
        if t == LEAF:
            out.append(f"v {spn.leaf_var[i]} {spn.leaf_val[i]}")
        elif t == SUM:
            terms = []
            for j in range(a, b):
                out.append(f"n {math.exp(float(spn.log_w[j]))!r}")
                out.append(f"* {len(out) - 2} {ac_id[spn.children[j]]}")
                terms.append(str(len(out) - 2))
            out.append("+ " + " ".join(terms))
        else:
            out.append("* " + " ".join(str(ac_id[spn.children[j]]) for j in range(a, b)))
        ac_id[i] = len(out) - 2
    out.append("EOF")
    return "\n".join(out) + "\n"
