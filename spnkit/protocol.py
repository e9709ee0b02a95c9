"""Query sets by the authors' protocol (Mei, Jiang & Tu 2018, ``GenerateQEH`` in their driver).

A setting ``(q, e, h)`` in tenths with q + e + h = 10 (q >= 1): |Q| = max(1, ⌊n·q/10⌋), |E| = ⌊n·e/10⌋, the rest
hidden; roles by a random permutation of the variables, evidence values uniform over each variable's states.
The authors seed Go's ``math/rand`` with 0; we use numpy's ``default_rng(seed)``, so the sets are
reproducible here but not identical to theirs.

``evidence_rows=`` (e.g. a dataset's test split) draws the evidence from a random row instead: the observed
values then look like data, which is the more realistic setting. Say which one a table uses.
"""

from __future__ import annotations

import numpy as np

from .errors import QueryError
from .map_api import is_int
from .query import Query

#: Every setting the authors generate (final.go `GenerateQEH`: q = 1..9, e = 0.. while q + e <= 10), as
#: "q:e:h" strings: 54 of them (the issue and SPN_MAP.md say 45; the loop makes 54).
ALL_SETTINGS = tuple(f"{q}:{e}:{10 - q - e}" for q in range(1, 10) for e in range(0, 11 - q))
#: The six the benchmark uses (issue 4): balanced, evidence-heavy, hidden-heavy, tiny Q, large Q, pure MAX.
BENCH_SETTINGS = ("5:2:3", "3:5:2", "2:3:5", "1:1:8", "8:1:1", "10:0:0")


def parse_setting(setting: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """``"523"``, ``"5:2:3"``, ``"10:0:0"`` or ``(5, 2, 3)`` -> ``(5, 2, 3)``; q + e + h must be 10, q >= 1."""
    if isinstance(setting, str):
        parts = setting.split(":") if ":" in setting else list(setting)
        try:
            qeh = tuple(int(p) for p in parts)
        except ValueError:
            qeh = ()
    else:
        qeh = tuple(int(p) for p in setting)
    if len(qeh) != 3 or sum(qeh) != 10 or qeh[0] < 1 or min(qeh) < 0:
        raise QueryError(f"setting {setting!r}: expected Q:E:H in tenths summing to 10 with Q >= 1, "
                         "e.g. '5:2:3' or '523'")
    return qeh  # type: ignore[return-value]


def setting_name(setting) -> str:
    q, e, h = parse_setting(setting)
    return f"{q}:{e}:{h}"


def protocol_queries(cardinalities, setting="5:2:3", count: int = 100, seed: int = 0,
                     evidence_rows=None) -> list[Query]:
    """``count`` queries for a network with these cardinalities, by the authors' protocol (module docstring).

    ``evidence_rows``: int array (rows, n_vars); when given, each query's evidence values come from one row
    drawn at random (uniformly) instead of uniformly over each variable's states.
    """
    if not is_int(count) or count < 0:
        raise QueryError(f"count={count!r}; expected an integer >= 0 (queries to draw)")
    cards = np.asarray(cardinalities, dtype=np.int64)
    n = int(cards.shape[0])
    rows = None
    if evidence_rows is not None:
        rows = np.asarray(evidence_rows)
        if rows.ndim != 2 or rows.shape[1] != n or len(rows) == 0:
            raise QueryError(f"evidence_rows has shape {rows.shape}; expected (rows >= 1, {n})")
        if np.any(rows < 0) or np.any(rows >= cards[None, :]):
            raise QueryError("evidence_rows holds values outside the variables' states")
    q, e, _h = parse_setting(setting)
    nq = max(1, n * q // 10)
    ne = min(n - nq, n * e // 10)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(count)):
        perm = rng.permutation(n)
        ev = perm[nq:nq + ne]
        values = rng.integers(0, cards[ev]) if rows is None else rows[rng.integers(len(rows)), ev]
        out.append(Query(n, query=perm[:nq].tolist(), evidence=dict(zip(ev.tolist(), values.tolist(), strict=True)),
                         hidden=perm[nq + ne:].tolist()))
    return out
