"""pyspn / learned-spns text (PAC-MAP's SPNs): ``indicator <id> <var> <value>`` (or ``l``),
``+ <id> <child> <w> ...`` with **linear** weights, ``* <id> <child> ...``; leaves first, root last.
Cardinalities are inferred from the largest indicator value of each variable."""

from __future__ import annotations

from ..errors import SPNFormatError
from ..flat_spn import FlatSPN
from ._graph import GraphBuilder

KINDS = ("indicator", "l", "+", "*")


def looks_like(text: str) -> bool:
    first = text.lstrip().split(maxsplit=1)
    return bool(first) and first[0] in KINDS


def parse(text: str, source: str = "<string>") -> FlatSPN:
    g = GraphBuilder(source)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tok = raw.split()
        if not tok or tok[0].startswith("#"):
            continue
        where = f":{lineno}"
        try:
            kind, nid = tok[0], int(tok[1])
            args = tok[2:]
            if kind in ("indicator", "l"):
                if len(args) != 2:
                    raise ValueError("an indicator line is 'indicator <id> <var> <value>'")
                g.indicator(nid, int(args[0]), int(float(args[1])), where)
            elif kind == "+":
                if not args or len(args) % 2:
                    raise ValueError("a sum line is '+ <id> <child> <w> [<child> <w> ...]'")
                g.sum(nid, [int(c) for c in args[0::2]], [float(w) for w in args[1::2]], linear=True, where=where)
            elif kind == "*":
                g.product(nid, [int(c) for c in args], where)
            elif kind == "gaussian":
                raise ValueError("Gaussian leaves are not supported: spnkit's SPNs are over categorical variables")
            else:
                raise ValueError(f"unknown node kind {kind!r}; expected 'indicator', 'l', '+' or '*'")
        except (ValueError, IndexError) as exc:
            if isinstance(exc, SPNFormatError):
                raise
            raise SPNFormatError(f"{source}{where}: {exc} (line: {raw.strip()[:80]!r})") from None
    return g.build(meta={"format": "pyspn"})
