"""Query files other tools use, read and written so that existing query sets replay unchanged.

* The authors' query lines (``maxspn``): one query per line, one comma-separated field per variable: ``?``
  query, ``*`` hidden, an integer = evidence value (compact ``??*01?`` lines are read too; see
  :meth:`Query.parse`).
* pyspn ``.query`` + ``.evid`` (PAC-MAP / learned-spns): line k of ``.query`` is ``N v1 .. vN`` (query
  variables), line k of ``.evid`` is ``N var val var val ...``; every other variable is marginalised (hidden).
* pyspn ``.map``, two layouts, told apart by content: alternating lines ``v1 v2 ...`` (query) and
  ``var val var val ...`` (evidence); or ``q v...`` / ``m v...`` / ``e var val ...`` blocks (SPN2MILP style,
  ``m`` = marginalised).

Every reader returns ``list[Query]`` and raises :class:`spnkit.QueryError` naming the file and line.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import QueryError
from .query import Query


def _lines(path) -> list[tuple[int, str]]:
    text = Path(path).read_text()
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _ints(path, lineno: int, line: str) -> list[int]:
    try:
        return [int(t) for t in line.split()]
    except ValueError:
        raise QueryError(f"{path}:{lineno}: expected integers, got {line[:60]!r}") from None


def read_query_lines(path) -> list[Query]:
    """The authors' query-line file."""
    out = []
    for lineno, line in _lines(path):
        try:
            out.append(Query.parse(line))
        except QueryError as e:
            raise QueryError(f"{path}:{lineno}: {e}") from None
    if not out:
        raise QueryError(f"{path}: no query lines")
    n = {q.n_vars for q in out}
    if len(n) > 1:
        raise QueryError(f"{path}: query lines of different lengths {sorted(n)}; one file is for one SPN")
    return out


def write_query_lines(queries, path) -> None:
    """Write ``queries`` as query lines (compact when every evidence value is one digit, else comma-separated)."""
    _atomic_write(path, "".join(q.to_line() + "\n" for q in queries))


def _counted(path, lineno, line, pairs: bool) -> list[int]:
    vals = _ints(path, lineno, line)
    if not vals:
        raise QueryError(f"{path}:{lineno}: empty line")
    n, rest = vals[0], vals[1:]
    if len(rest) != (2 * n if pairs else n):
        what = f"{n} (var, value) pairs" if pairs else f"{n} variables"
        raise QueryError(f"{path}:{lineno}: the count says {what} but the line has {len(rest)} numbers after it")
    return rest


def _make(n_vars: int, qvars, ev: dict, hidden, where: str) -> Query:
    try:
        return Query(n_vars, query=qvars, evidence=ev, hidden=hidden)
    except QueryError as e:
        raise QueryError(f"{where}: {e}") from None


def read_pyspn(query_path, evid_path, n_vars: int) -> list[Query]:
    """A pyspn ``.query`` / ``.evid`` pair (same number of lines); unlisted variables are hidden."""
    ql, el = _lines(query_path), _lines(evid_path)
    if len(ql) != len(el):
        raise QueryError(f"{query_path} has {len(ql)} queries but {evid_path} has {len(el)} evidence lines")
    out = []
    for (qn, qline), (en, eline) in zip(ql, el, strict=True):
        qv = _counted(query_path, qn, qline, pairs=False)
        ev = _counted(evid_path, en, eline, pairs=True)
        out.append(_make(n_vars, qv, dict(zip(ev[0::2], ev[1::2], strict=True)), None, f"{query_path}:{qn}"))
    return out


def read_pyspn_map(path, n_vars: int) -> list[Query]:
    """A pyspn / SPN2MILP ``.map`` file, either layout (module docstring)."""
    lines = _lines(path)
    if not lines:
        raise QueryError(f"{path}: no queries")
    out = []
    if lines[0][1].split()[0] in ("q", "m", "e"):
        cur: dict[str, tuple[int, list[int]]] = {}

        def flush():
            if "q" not in cur:
                raise QueryError(f"{path}:{lines[-1][0]}: a block without its 'q' line")
            qn, qv = cur["q"]
            ev = cur.get("e", (qn, []))[1]
            if len(ev) % 2:
                raise QueryError(f"{path}:{cur['e'][0]}: evidence must be 'e var val var val ...'")
            hidden = cur["m"][1] if "m" in cur else None
            out.append(_make(n_vars, qv, dict(zip(ev[0::2], ev[1::2], strict=True)), hidden, f"{path}:{qn}"))

        for lineno, line in lines:
            tag, *rest = line.split()
            if tag not in ("q", "m", "e"):
                raise QueryError(f"{path}:{lineno}: expected a line starting 'q', 'm' or 'e', got {line[:40]!r}")
            if tag == "q" and cur:
                flush()
                cur = {}
            if tag in cur:
                raise QueryError(f"{path}:{lineno}: a second '{tag}' line in one block")
            cur[tag] = (lineno, _ints(path, lineno, " ".join(rest)))
        flush()
        return out
    if len(lines) % 2:
        raise QueryError(f"{path}: alternating query / evidence lines expected, but there are {len(lines)} lines")
    for (qn, qline), (en, eline) in zip(lines[0::2], lines[1::2], strict=True):
        qv = _ints(path, qn, qline)
        ev = _ints(path, en, eline)
        if len(ev) % 2:
            raise QueryError(f"{path}:{en}: evidence must be 'var val var val ...'")
        out.append(_make(n_vars, qv, dict(zip(ev[0::2], ev[1::2], strict=True)), None, f"{path}:{qn}"))
    return out


def write_pyspn(queries, query_path, evid_path) -> None:
    """Write the ``.query`` / ``.evid`` pair (hidden variables are those in neither file)."""
    qtext = "".join(f"{len(q.query_vars)} " + " ".join(map(str, q.query_vars)) + "\n" for q in queries)
    etext = "".join(f"{len(q.evidence_vars)}" + "".join(f" {v} {q.value[v]}" for v in q.evidence_vars) + "\n"
                    for q in queries)
    _atomic_write(query_path, qtext)
    _atomic_write(evid_path, etext)


def write_pyspn_map(queries, path) -> None:
    """Write the ``q`` / ``m`` / ``e`` layout."""
    out = []
    for q in queries:
        out.append("q " + " ".join(map(str, q.query_vars)))
        out.append("m " + " ".join(map(str, q.hidden_vars)))
        out.append("e" + "".join(f" {v} {q.value[v]}" for v in q.evidence_vars))
    _atomic_write(path, "\n".join(out) + "\n")


def read_queries(path, n_vars: int | None = None) -> list[Query]:
    """Any of the above by suffix: ``.map``, ``.query`` (its ``.evid`` beside it), else query lines.
    ``n_vars`` is needed for the pyspn files, which do not list every variable."""
    p = Path(path)
    if p.suffix in (".map", ".query", ".evid"):
        if n_vars is None:
            raise QueryError(f"{p}: pyspn query files do not say how many variables there are; pass n_vars "
                             "(the SPN's spn.n_vars)")
        if p.suffix == ".map":
            return read_pyspn_map(p, n_vars)
        return read_pyspn(p.with_suffix(".query"), p.with_suffix(".evid"), n_vars)
    return read_query_lines(p)


def _atomic_write(path, text: str) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
