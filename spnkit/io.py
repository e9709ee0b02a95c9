"""``spnkit.load`` / ``spnkit.save``: format detection and dispatch to the readers in ``formats/``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SPNFormatError
from .flat_spn import FlatSPN
from .formats import libra_ac, maxspn, node_link_json, pyspn

READERS = {"maxspn": maxspn.parse, "pyspn": pyspn.parse, "json": node_link_json.parse, "ac": libra_ac.parse}
WRITERS = {"maxspn": maxspn.dumps, "json": node_link_json.dumps, "ac": libra_ac.dumps}


def detect_format(text: str) -> str:
    for name, mod in (("ac", libra_ac), ("maxspn", maxspn), ("json", node_link_json), ("pyspn", pyspn)):
        if mod.looks_like(text):
            return name
    head = text.lstrip()[:40]
    raise SPNFormatError(f"cannot tell the format of a file starting {head!r}; supported: "
                         f"{', '.join(READERS)} (pass format=... to say which)")


def load(path: str | os.PathLike, format: str | None = None) -> FlatSPN:
    """Read an SPN file into a validated :class:`FlatSPN`.

    ``format``: ``"maxspn"`` (the authors' text), ``"pyspn"``, ``"json"`` (deeprob-kit / NeuPI node-link) or
    ``"ac"`` (Libra arithmetic circuit); when not given, a ``.ac`` suffix means ``"ac"`` and otherwise the
    content decides.
    """
    p = Path(path)
    text = p.read_text()
    # An AC without constants reads like maxspn text, so a .ac suffix decides.
    fmt = format or ("ac" if p.suffix == ".ac" else detect_format(text))
    if fmt not in READERS:
        raise SPNFormatError(f"unknown format {fmt!r}; supported: {', '.join(READERS)}")
    return READERS[fmt](text, source=str(p))


def save(spn: FlatSPN, path: str | os.PathLike, format: str = "maxspn") -> None:
    """Write ``spn`` as ``"maxspn"``, ``"json"`` (both exact: ``load(save(spn))`` gives identical arrays) or
    ``"ac"`` (Libra; weights pass through exp/log). Atomic: a failure never leaves a half-written file."""
    if format not in WRITERS:
        raise SPNFormatError(f"unknown format {format!r}; writable: {', '.join(WRITERS)}")
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(WRITERS[format](spn))
    os.replace(tmp, p)
