"""``spnkit.load`` / ``spnkit.save``: format detection and dispatch to the readers in ``formats/``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SPNFormatError
from .flat_spn import NORM_TOL, SUM, FlatSPN
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
    if format is not None and format not in READERS:
        raise SPNFormatError(f"unknown format {format!r}; supported: {', '.join(READERS)}")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")              # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as exc:
        raise SPNFormatError(f"{p}: not a text file (byte {exc.start} is {data[exc.start:exc.start + 1]!r}, not "
                             f"UTF-8); spnkit reads text SPN files: {', '.join(READERS)}") from None
    if "\x00" in text:
        raise SPNFormatError(f"{p}: not a text file (it holds NUL bytes); spnkit reads text SPN files: "
                             f"{', '.join(READERS)}")
    # An AC without constants reads like maxspn text, so a .ac suffix decides.
    fmt = format or ("ac" if p.suffix == ".ac" else _detect(text, p))
    spn = READERS[fmt](text, source=str(p))
    if not spn.is_normalized:
        warn_unnormalized(spn, str(p))
    return spn


def _detect(text: str, p: Path) -> str:
    try:
        return detect_format(text)
    except SPNFormatError as exc:
        raise SPNFormatError(f"{p}: {exc}") from None


def warn_unnormalized(spn: FlatSPN, source: str) -> None:
    """Warn (:class:`~spnkit.errors.SPNWeightsWarning`) that ``spn``'s sum weights do not sum to 1."""
    import warnings

    import numpy as np

    from .errors import SPNWeightsWarning

    dev = np.abs(spn.weight_sums - 1.0)
    bad = np.flatnonzero(dev > NORM_TOL)
    worst = int(bad[np.argmax(dev[bad])])
    warnings.warn(f"{source}: {len(bad):,} of {int(np.sum(spn.node_type == SUM)):,} sum nodes have weights that do "
                  f"not sum to 1 (worst: {spn.node_label(worst)}, {spn.weight_sums[worst]:.6g}), so log values are "
                  f"not log-probabilities (log Z = {spn.log_partition():.6g}); spn.normalize() gives the same "
                  "distribution with normalised weights", SPNWeightsWarning, stacklevel=3)


def save(spn: FlatSPN, path: str | os.PathLike, format: str = "maxspn") -> None:
    """Write ``spn`` as ``"maxspn"``, ``"json"`` (both exact: ``load(save(spn))`` gives identical arrays) or
    ``"ac"`` (Libra; weights pass through exp/log). Atomic: a failure never leaves a half-written file."""
    if format not in WRITERS:
        raise SPNFormatError(f"unknown format {format!r}; writable: {', '.join(WRITERS)}")
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(WRITERS[format](spn))
    os.replace(tmp, p)
