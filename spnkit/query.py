"""MAP queries: which variables are queried (Q), observed (E = e) and summed out (H).

The authors' query line has one comma-separated field per variable: ``?`` query, ``*`` hidden, an integer =
evidence value (:meth:`Query.parse` also reads whitespace-separated fields and compact ``"??*01?"`` lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .errors import QueryError

QUERY: int = 0
EVIDENCE: int = 1
HIDDEN: int = 2


class Query:
    """A partition of the variables into query, evidence (with values) and hidden.

    Parameters
    ----------
    n_vars : number of variables of the SPN the query is for.
    query : query variables. ``None`` means every variable not in ``evidence`` or ``hidden``.
    evidence : ``{var: value}``.
    hidden : variables summed out. ``None`` means every variable not in ``query`` or ``evidence``.

    Attributes
    ----------
    role : int8 array, shape (n_vars,): ``QUERY`` (0), ``EVIDENCE`` (1) or ``HIDDEN`` (2).
    value : int64 array, shape (n_vars,): the evidence value, -1 elsewhere.
    """

    def __init__(self, n_vars: int, query: Iterable[int] | None = None,
                 evidence: Mapping[int, int] | None = None, hidden: Iterable[int] | None = None):
        if int(n_vars) < 1:
            raise QueryError(f"n_vars={n_vars}; expected >= 1")
        n = int(n_vars)
        evidence = dict(evidence or {})
        q = None if query is None else [int(v) for v in query]
        h = None if hidden is None else [int(v) for v in hidden]
        listed = [*(q or []), *evidence, *(h or [])]
        for v in listed:
            if not 0 <= int(v) < n:
                raise QueryError(f"variable {v} is out of range 0..{n - 1}")
        if len(set(listed)) != len(listed):
            dup = sorted({v for v in listed if listed.count(v) > 1})
            raise QueryError(f"variables {dup} are listed more than once across query/evidence/hidden")
        role = np.full(n, -1, dtype=np.int8)
        value = np.full(n, -1, dtype=np.int64)
        for v, x in evidence.items():
            if int(x) < 0:
                raise QueryError(f"evidence value {x} for variable {v} is negative")
            role[int(v)], value[int(v)] = EVIDENCE, int(x)
        for v in h or []:
            role[v] = HIDDEN
        for v in q or []:
            role[v] = QUERY
        role[role == -1] = QUERY if q is None else HIDDEN
        self.role, self.value = role, value
        self.role.setflags(write=False)
        self.value.setflags(write=False)

    @classmethod
    def _of(cls, role: np.ndarray, value: np.ndarray) -> Query:
        """A query from rows already checked (``QueryBatch``): read-only int8 role, int64 value."""
        q = cls.__new__(cls)
        q.role, q.value = role, value
        return q

    @classmethod
    def parse(cls, line: str) -> Query:
        """From a query line, one field per variable: ``?`` query, ``*`` hidden, an integer = evidence value.

        Three layouts, told apart by their separators: the authors' comma-separated fields (``"?,*,0,12"``);
        whitespace-separated fields (``"? * 0 12"``); and a compact line of one character per variable
        (``"??*01?"``, evidence 0-9 only). In a delimited line, a field that could be read two ways (``"01"``:
        the value 1, or the compact ``0`` then ``1``?; ``"??"``) is a :class:`QueryError`, never a guess."""
        text = line.strip()
        if not text:
            raise QueryError("empty query line; expected one of '?', '*' or an integer per variable")
        if "," in text:
            fields, layout = [f.strip() for f in text.split(",")], "comma-separated"
        elif any(c.isspace() for c in text):
            fields, layout = text.split(), "whitespace-separated"
        else:
            fields, layout = list(text), None
        q, e, h = [], {}, []
        for i, f in enumerate(fields):
            if f == "?":
                q.append(i)
            elif f == "*":
                h.append(i)
            elif f.isascii() and f.isdecimal() and (len(f) == 1 or f[0] != "0"):
                e[i] = int(f)
            elif not f:
                raise QueryError(f"field {i} of the comma-separated query line is empty (two commas in a row, or a "
                                 "comma at the end?); expected '?', '*' or an integer per variable")
            elif layout is None:
                raise QueryError(f"symbol {f!r} at position {i} of the query line; expected '?' (query), "
                                 "'*' (hidden) or a digit (evidence)")
            else:
                why = (" (a leading zero: write the value without it, or separate the symbols)"
                       if f.isascii() and f.isdecimal() else "")
                raise QueryError(f"field {i} of the {layout} query line is {f!r}{why}; in a delimited line each "
                                 "field is one '?' (query), one '*' (hidden) or one integer (evidence)")
        return cls(len(fields), query=q, evidence=e, hidden=h)

    # -- views -----------------------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        return int(self.role.shape[0])

    @property
    def query_vars(self) -> np.ndarray:
        return np.flatnonzero(self.role == QUERY)

    @property
    def evidence_vars(self) -> np.ndarray:
        return np.flatnonzero(self.role == EVIDENCE)

    @property
    def hidden_vars(self) -> np.ndarray:
        return np.flatnonzero(self.role == HIDDEN)

    def to_line(self) -> str:
        """The query line :meth:`parse` reads back: compact (``"??*01?"``) when every evidence value is one
        digit, else the authors' comma-separated fields (``"?,?,*,0,12,?"``)."""
        fields = ["?" if r == QUERY else "*" if r == HIDDEN else str(int(v))
                  for r, v in zip(self.role, self.value, strict=True)]
        if not np.any(self.value > 9):
            return "".join(fields)
        if len(fields) == 1:          # "12" alone would read back as two variables
            raise QueryError(f"a one-variable query with evidence {fields[0]} has no unambiguous query line")
        return ",".join(fields)

    def __repr__(self) -> str:
        counts = f"Q={len(self.query_vars)}, E={len(self.evidence_vars)}, H={len(self.hidden_vars)}"
        line = self.to_line() if self.n_vars <= 40 else "..."
        return f"Query({counts}: {line!r})"

    def check(self, spn) -> None:
        """Raise :class:`QueryError` unless this query fits ``spn`` (length, evidence values, >= 1 query var).

        ``spnkit.map``/``map_batch`` check inside their kernel and call this only to name what does not fit.
        """
        if self.role.shape[0] != spn.n_vars:
            raise QueryError(f"the query has {self.n_vars} variables; the SPN has {spn.n_vars}")
        bad = (self.role == EVIDENCE) & (self.value >= spn.cardinalities)
        if bad.any():
            v = int(np.argmax(bad))
            raise QueryError(f"evidence X{v} = {int(self.value[v])} is out of range for a variable of cardinality "
                             f"{int(spn.cardinalities[v])}")
        if not (self.role == QUERY).any():
            raise QueryError("the query has no query variable ('?'); MAP needs at least one")

    def complete(self, q_values: np.ndarray) -> np.ndarray:
        """Full assignment (n_vars,): evidence values, ``q_values`` on the query variables, -1 on hidden ones."""
        x = self.value.copy()
        x[self.role == HIDDEN] = -1
        x[self.query_vars] = q_values
        return x


def stack_queries(queries: list, n_vars: int, expected: str) -> tuple[np.ndarray, np.ndarray]:
    """The queries' roles and values as read-only (m, n_vars) matrices, checking that each is a :class:`Query`
    over ``n_vars`` variables (``expected`` ends the error otherwise, e.g. "the SPN has 4"). Comprehensions and
    one ``concatenate``: ``np.stack`` took 0.5 us per query, a loop with the checks 0.19 us, this ~0.15 us."""
    if not all(issubclass(t, Query) for t in {type(q) for q in queries}):
        i = next(i for i, q in enumerate(queries) if not isinstance(q, Query))
        raise QueryError(f"queries[{i}] is a {type(queries[i]).__name__}; expected spnkit.Query")
    role_rows = [q.role for q in queries]
    if {len(r) for r in role_rows} != {n_vars}:
        i = next(i for i, r in enumerate(role_rows) if len(r) != n_vars)
        raise QueryError(f"queries[{i}]: the query has {len(role_rows[i])} variables; {expected}")
    roles = np.concatenate(role_rows).reshape(len(queries), n_vars)
    values = np.concatenate([q.value for q in queries]).reshape(len(queries), n_vars)
    roles.setflags(write=False)
    values.setflags(write=False)
    return roles, values


class QueryBatch(Sequence):
    """Many queries over the same variables as two matrices, what ``spnkit.map_batch`` reads directly.

    A list of :class:`Query` is collected into matrices on every ``map_batch`` call, a Python step per query
    (~0.2 us, serial): on a small network, where a query takes ~2 us, that step alone keeps two cores from
    doubling the throughput. A batch is built once (``from_queries``, or from matrices) and indexes like a
    list: ``batch[i]`` is a :class:`Query`, ``batch[a:b]`` a batch.

    Parameters
    ----------
    role : integer array (m, n_vars): ``QUERY`` (0), ``EVIDENCE`` (1) or ``HIDDEN`` (2).
    value : integer array (m, n_vars): the evidence values (>= 0 where the role is evidence; ignored, and
        stored as -1, elsewhere).
    """

    def __init__(self, role, value):
        r = np.asarray(role)
        v = np.asarray(value)
        for name, a in (("role", r), ("value", v)):
            if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
                raise QueryError(f"{name} is a {a.dtype} array of shape {a.shape}; expected integers, shape "
                                 "(queries, n_vars)")
        if r.shape != v.shape or r.shape[1] < 1:
            raise QueryError(f"role has shape {r.shape} and value {v.shape}; expected the same (queries, n_vars), "
                             "n_vars >= 1")
        bad = (r < QUERY) | (r > HIDDEN)
        if bad.any():
            i, j = (int(t) for t in np.argwhere(bad)[0])
            raise QueryError(f"role[{i}, {j}] = {int(r[i, j])}; expected {QUERY} (query), {EVIDENCE} (evidence) "
                             f"or {HIDDEN} (hidden)")
        neg = (r == EVIDENCE) & (v < 0)
        if neg.any():
            i, j = (int(t) for t in np.argwhere(neg)[0])
            raise QueryError(f"query {i}: evidence value {int(v[i, j])} for variable {j} is negative")
        self.role = np.ascontiguousarray(r, dtype=np.int8)
        self.value = np.where(r == EVIDENCE, v, -1).astype(np.int64)
        self.role.setflags(write=False)
        self.value.setflags(write=False)

    @classmethod
    def from_queries(cls, queries: Iterable[Query]) -> QueryBatch:
        """The batch of these queries (all over the same number of variables)."""
        queries = list(queries)
        if not queries:
            raise QueryError("a QueryBatch needs at least one query")
        n = queries[0].n_vars if isinstance(queries[0], Query) else 0
        same = f"queries[0] has {n}, and a batch holds queries over the same variables"
        return cls(*stack_queries(queries, n, same))

    @property
    def n_vars(self) -> int:
        return int(self.role.shape[1])

    def __len__(self) -> int:
        return int(self.role.shape[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return QueryBatch(self.role[i], self.value[i])
        return Query._of(self.role[i], self.value[i])

    def __repr__(self) -> str:
        return f"QueryBatch({len(self)} queries over {self.n_vars} variables)"
