"""pyspn / learned-spns / SPNetworks.jl text: one node per line, ``#`` starts a comment.

A line is ``<kind> <id> ...`` (pyspn, PAC-MAP's SPNs) or ``<id> <kind> ...`` (SPNetworks.jl's writer):

* ``+ <child> <w> ...`` — sum node, **linear** weights;
* ``* <child> ...`` — product node;
* ``indicator <var> <value>`` (also ``i``, ``l``) — indicator leaf;
* ``categorical <var> <p_1> <p_2> ...`` (also ``c``) — a distribution over the variable's values, read as a sum
  node over shared indicators (exact).

Node ids, variables and values are 0-based in pyspn files (the root, id 0, on the last line) and 1-based in
SPNetworks.jl's (the root, id 1, on the first line); SPNetworks.jl's ``load(offset=...)`` shifts all three
together. Here a file is read as 1-based when its smallest node id is 1 and no variable or indicator value is 0;
otherwise as 0-based (pyspn files may number nodes from anywhere). Variables and values become spnkit's 0-based.
Cardinalities are inferred from the largest value seen for each variable.
"""

from __future__ import annotations

from ..errors import SPNFormatError
from ..flat_spn import FlatSPN
from ._graph import GraphBuilder

KINDS = {"indicator": "i", "i": "i", "l": "i", "+": "+", "*": "*", "categorical": "c", "c": "c",
         "gaussian": "g", "g": "g"}


def _first_line(text: str) -> list[str]:
    for raw in text.splitlines():
        tok = raw.split("#", 1)[0].split()
        if tok:
            return tok
    return []


def looks_like(text: str) -> bool:
    tok = _first_line(text)
    if len(tok) < 2:
        return False
    return tok[0] in KINDS or (tok[0].lstrip("-").isdigit() and tok[1] in KINDS)


def _int(tok: str, what: str) -> int:
    try:
        return int(tok)
    except ValueError:
        x = float(tok)                       # SPNetworks.jl's nltcs.spn writes indicator values as "1.0"
        if not x.is_integer():
            raise ValueError(f"{what} {tok!r} is not an integer") from None
        return int(x)


def _least_index(lines) -> int:
    """The smallest variable or indicator value the leaf lines name (unparsable ones are left to the parser)."""
    least = 1 << 62
    for _, kind, _, args, _ in lines:
        for tok in args[:2] if kind == "i" else args[:1] if kind == "c" else ():
            try:
                least = min(least, _int(tok, ""))
            except ValueError:
                pass
    return least


def parse(text: str, source: str = "<string>") -> FlatSPN:
    lines = []                                                  # (lineno, kind, id, args, raw)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tok = raw.split("#", 1)[0].split()
        if not tok:
            continue
        try:
            if tok[0] in KINDS:
                kind, nid, args = KINDS[tok[0]], _int(tok[1], "node id"), tok[2:]
            elif len(tok) > 1 and tok[1] in KINDS:
                kind, nid, args = KINDS[tok[1]], _int(tok[0], "node id"), tok[2:]
            else:
                raise ValueError(f"unknown node kind {tok[0]!r}; expected '+', '*', 'indicator' ('i', 'l') or "
                                 "'categorical' ('c'), before or after the node id")
        except (ValueError, IndexError) as exc:
            raise SPNFormatError(f"{source}:{lineno}: {exc} (line: {raw.strip()[:80]!r})") from None
        lines.append((lineno, kind, nid, args, raw))
    if not lines:
        raise SPNFormatError(f"{source}: no node lines")
    base = 1 if min(nid for _, _, nid, _, _ in lines) == 1 and _least_index(lines) >= 1 else 0
    g = GraphBuilder(source)
    for lineno, kind, nid, args, raw in lines:
        where = f":{lineno}"
        try:
            if kind == "i":
                if len(args) != 2:
                    raise ValueError("an indicator line is 'indicator <id> <var> <value>'")
                g.indicator(nid, _int(args[0], "variable") - base, _int(args[1], "value") - base, where)
            elif kind == "+":
                if not args or len(args) % 2:
                    raise ValueError("a sum line is '+ <id> <child> <w> [<child> <w> ...]'")
                g.sum(nid, [_int(c, "child id") for c in args[0::2]], [float(w) for w in args[1::2]], linear=True,
                      where=where)
            elif kind == "*":
                g.product(nid, [_int(c, "child id") for c in args], where)
            elif kind == "c":
                if len(args) < 2:
                    raise ValueError("a categorical line is 'categorical <id> <var> <p_1> [<p_2> ...]'")
                g.distribution(nid, _int(args[0], "variable") - base, [float(p) for p in args[1:]],
                               "categorical probability", where)
            else:
                raise ValueError("Gaussian leaves are not supported: spnkit's SPNs are over categorical variables")
        except (ValueError, IndexError) as exc:
            if isinstance(exc, SPNFormatError):
                raise
            raise SPNFormatError(f"{source}{where}: {exc} (line: {raw.strip()[:80]!r})") from None
    return g.build(meta={"format": "pyspn" if base == 0 else "spnetworks", "id_base": base})
