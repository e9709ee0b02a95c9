"""``spnkit.load`` / ``spnkit.save``: format detection and dispatch to the readers in ``formats/``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SPNFormatError
from .flat_spn import FlatSPN
from .formats import maxspn, node_link_json, pyspn

READERS = {"maxspn": maxspn.parse, "pyspn": pyspn.parse, "json": node_link_json.parse}
WRITERS = {"maxspn": maxspn.dumps}


def detect_format(text: str) -> str:
    for name, mod in (("maxspn", maxspn), ("json", node_link_json), ("pyspn", pyspn)):
        if mod.looks_like(text):
            return name
    head = text.lstrip()[:40]
    raise SPNFormatError(f"cannot tell the format of a file starting {head!r}; supported: "
                         f"{', '.join(READERS)} (pass format=... to say which)")


def load(path: str | os.PathLike, format: str | None = None) -> FlatSPN:
    """Read an SPN file into a validated :class:`FlatSPN`; the format is detected from the content."""
    p = Path(path)
    text = p.read_text()
    fmt = format or detect_format(text)
    if fmt not in READERS:
        raise SPNFormatError(f"unknown format {fmt!r}; supported: {', '.join(READERS)}")
    return READERS[fmt](text, source=str(p))


def save(spn: FlatSPN, path: str | os.PathLike, format: str = "maxspn") -> None:
    """Write ``spn``; atomic, so a failure never leaves a half-written file behind."""
    if format not in WRITERS:
        raise SPNFormatError(f"unknown format {format!r}; writable: {', '.join(WRITERS)}")
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(WRITERS[format](spn))
    os.replace(tmp, p)
