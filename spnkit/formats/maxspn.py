"""The authors' maxspn text format (Mei, Jiang & Tu; ``LoadSPN`` / ``Save`` in their Go code).

::

    (2 2 2 ... 2)                       line 1: cardinality of each variable
    v <var> <value>                     indicator leaf; node id = 0-based line index after line 1
    + <child> <logw> <child> <logw> ... sum node, natural-log weights
    * <child> <child> ...               product node
    EOF

Children come before parents; the root is the last node.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SPNFormatError
from ..flat_spn import LEAF, PRODUCT, SUM, FlatSPN


def looks_like(text: str) -> bool:
    """True when ``text`` starts like a maxspn file (a parenthesised cardinality line)."""
    return text.lstrip().startswith("(")


def cardinality_line(lines: list[str], source: str) -> list[int]:
    """The ``(2 2 ... 2)`` first line shared by maxspn and Libra ``.ac`` files; SPNFormatError names line 1."""
    if not lines or not lines[0].strip().startswith("("):
        raise SPNFormatError(f"{source}:1: expected the cardinality line '(2 2 ... 2)', got {lines[0][:60]!r}"
                             if lines else f"{source}: the file is empty")
    head = lines[0].strip()
    if not head.endswith(")"):
        raise SPNFormatError(f"{source}:1: the cardinality line must end with ')': {head[:60]!r}")
    try:
        cards = [int(tok) for tok in head[1:-1].split()]
    except ValueError as exc:
        raise SPNFormatError(f"{source}:1: cardinalities must be integers: {exc}") from None
    if not cards or min(cards) < 1:
        raise SPNFormatError(f"{source}:1: expected one cardinality >= 1 per variable, got {head[:60]!r}")
    return cards


def parse(text: str, source: str = "<string>") -> FlatSPN:
    """Parse maxspn text into a validated FlatSPN; raises SPNFormatError naming ``source:line``."""
    lines = text.splitlines()
    cards = cardinality_line(lines, source)

    node_type: list[int] = []
    child_ptr: list[int] = [0]
    children: list[int] = []
    log_w: list[float] = []
    leaf_var: list[int] = []
    leaf_val: list[int] = []
    node_line: list[int] = []
    saw_eof = False
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line == "EOF":
            saw_eof = True
            break
        tok = line.split()
        kind, args = tok[0], tok[1:]
        try:
            if kind == "v":
                if len(args) != 2:
                    raise ValueError("an indicator line is 'v <var> <value>'")
                node_type.append(LEAF)
                leaf_var.append(int(args[0]))
                leaf_val.append(int(args[1]))
            elif kind == "+":
                if not args or len(args) % 2:
                    raise ValueError("a sum line is '+ <child> <logw> [<child> <logw> ...]'")
                node_type.append(SUM)
                children.extend(int(c) for c in args[0::2])
                log_w.extend(_parse_float(w) for w in args[1::2])
                leaf_var.append(-1)
                leaf_val.append(-1)
            elif kind == "*":
                if not args:
                    raise ValueError("a product line is '* <child> [<child> ...]'")
                node_type.append(PRODUCT)
                children.extend(int(c) for c in args)
                log_w.extend([0.0] * len(args))
                leaf_var.append(-1)
                leaf_val.append(-1)
            else:
                raise ValueError(f"unknown node kind {kind!r}; expected 'v', '+', '*' or 'EOF'")
        except ValueError as exc:
            raise SPNFormatError(f"{source}:{lineno}: {exc} (line: {line[:80]!r})") from None
        child_ptr.append(len(children))
        node_line.append(lineno)
    if not saw_eof:
        raise SPNFormatError(f"{source}: no 'EOF' line; the file looks truncated")
    if not node_type:
        raise SPNFormatError(f"{source}: no nodes before 'EOF'")
    return FlatSPN(node_type=np.array(node_type), child_ptr=np.array(child_ptr), children=np.array(children),
                   log_w=np.array(log_w, dtype=np.float64), leaf_var=np.array(leaf_var),
                   leaf_val=np.array(leaf_val), cardinalities=np.array(cards),
                   meta={"format": "maxspn", "source": source, "node_labels": LineLabels(node_line)})


class LineLabels:
    """``FlatSPN.meta["node_labels"]`` for files whose node ids are their position: ``node 17 (line 19)``."""

    def __init__(self, lines: list[int]):
        self._lines = np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, i: int) -> str:
        return f"node {i} (line {int(self._lines[i])})"


def _parse_float(s: str) -> float:
    w = float(s)  # accepts 'inf', '-Inf', '1e-3'
    if math.isnan(w):
        raise ValueError(f"weight {s!r} is NaN")
    return w


def dumps(spn: FlatSPN) -> str:
    """maxspn text of ``spn``; weights written with ``repr`` so that ``parse(dumps(s))`` is exact."""
    out = ["(" + " ".join(str(int(c)) for c in spn.cardinalities) + ")"]
    for i in range(spn.n_nodes):
        t = spn.node_type[i]
        a, b = spn.child_ptr[i], spn.child_ptr[i + 1]
        if t == LEAF:
            out.append(f"v {spn.leaf_var[i]} {spn.leaf_val[i]}")
        elif t == SUM:
            out.append("+ " + " ".join(f"{spn.children[j]} {float(spn.log_w[j])!r}" for j in range(a, b)))
        else:
            out.append("* " + " ".join(str(spn.children[j]) for j in range(a, b)))
    out.append("EOF")
    return "\n".join(out) + "\n"
