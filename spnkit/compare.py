"""The paper's comparison: every method on every query, as a tidy DataFrame, and the authors' summaries.

``compare`` runs ``spnkit.map_batch`` (all cores, like the authors' 25 concurrent goroutines) over groups of
queries, so Ctrl-C returns the groups that finished. The summaries follow the authors' driver (``final.go``):

* WINCNT: per query, the best value over the methods (NaN ignored); every method within 1e-6 of it (absolute
  or relative) scores a win.
* FINISH: queries finished within the timeout.  TIMEAVG: mean seconds per query.
* RESAVG: mean log value, NaN if any query timed out.  RESLSE: logsumexp of the log values.
* BATTLE: cell (i, j) counts queries where i finished, was strictly faster than j, and strictly better than j
  (or j has no value).
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Mapping, Sequence

import numba
import numpy as np
import pandas as pd

from .errors import Interrupted, QueryError
from .flat_spn import FlatSPN
from .map_api import is_int, map_batch
from .protocol import BENCH_SETTINGS, protocol_queries, setting_name
from .query import Query

EPSILON = 1e-6
KEYS = ["spn", "evidence", "setting", "query"]          # one query
COLUMNS = [*KEYS, "method", "log_value", "seconds", "exact", "timed_out"]
EVIDENCE_KINDS = ("uniform", "data")


def query_keys(df: pd.DataFrame) -> list[str]:
    """The columns naming one query in ``df`` (``KEYS``; results without an ``evidence`` column work too)."""
    return [k for k in KEYS if k in df.columns]


def compare(spns: Mapping[str, FlatSPN], methods: Sequence[str] = ("bt", "ng", "amap", "bs", "kbt", "exact"),
            queries: Mapping[str, Mapping[str, Sequence[Query]]] | None = None,
            settings: Sequence[str] = BENCH_SETTINGS, n_queries: int = 100, seed: int = 0,
            timeout: float = 60.0, group: int = 25, progress: bool = True,
            evidence: str | Mapping[str, np.ndarray] = "uniform", **opts) -> pd.DataFrame:
    """Run ``methods`` on every query; one row per (spn, evidence, setting, query, method).

    ``queries``: ``{spn name: {setting label: [Query, ...]}}``; when None, ``n_queries`` per setting are drawn
    by the authors' protocol (``spnkit.protocol``, ``seed``) with evidence values

    * ``evidence="uniform"``: uniform over each variable's states, as in the authors' driver;
    * ``evidence="data"``: copied from a random row of the SPN's dataset's test split
      (``spnkit.datasets.evidence_rows``; the benchmark SPNs over DEBD data);
    * ``evidence={spn name: rows}``: from random rows of your own int arrays (n_rows, n_vars), e.g. the test
      set of an SPN you learned.

    The ``evidence`` column says which ("uniform", "data", or "given" for ``queries`` you pass), and so do the
    summaries. ``timeout`` applies per query to every method (see ``spnkit.map``); ``opts`` go to every solver
    (e.g. ``k=100``, ``beam=10``). Interrupting (Ctrl-C) returns the rows finished so far, with
    ``df.attrs["interrupted"] = True``.
    """
    if not spns:
        raise QueryError("compare needs at least one SPN")
    methods = _check_methods(spns, methods, timeout, opts)
    if not is_int(group) or group < 1:
        raise QueryError(f"group={group!r}; expected an integer >= 1 (queries per map_batch call)")
    if queries is not None:
        kind = "given"
        for name, by_setting in queries.items():
            for setting, qs in by_setting.items():
                if len(qs) == 0:
                    raise QueryError(f"queries[{name!r}][{setting!r}] is empty; give at least one query per setting")
    else:
        if not is_int(n_queries) or n_queries < 1:
            raise QueryError(f"n_queries={n_queries!r}; expected an integer >= 1 (queries per setting)")
        if isinstance(settings, str):
            settings = settings.split(",")
        if not settings:
            raise QueryError("settings is empty; give at least one Q:E:H setting, e.g. '5:2:3'")
        settings = [setting_name(s) for s in settings]          # a bad setting fails here, before any work
        kind, rows = _evidence_rows(spns, evidence)
        queries = {name: {s: protocol_queries(spn.cardinalities, s, n_queries, seed,
                                                            evidence_rows=rows.get(name))
                          for s in settings} for name, spn in spns.items()}
    missing = set(spns) - set(queries)
    if missing:
        raise QueryError(f"no queries for SPN(s) {sorted(missing)}")
    jobs = [(name, setting, m, start) for name in spns for setting, qs in queries[name].items()
            for m in methods for start in range(0, len(qs), group)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(min(group, len(queries[n][s]) - st) for n, s, _m, st in jobs), unit="query",
                   desc="spnkit.compare")
    frames, interrupted = [], False

    def keep(df, name, setting, start):
        df["query"] += start
        df.insert(0, "setting", setting)
        df.insert(0, "evidence", kind)
        df.insert(0, "spn", name)
        frames.append(df)

    try:
        for name, setting, method, start in jobs:
            qs = list(queries[name][setting])[start:start + group]
            try:
                df = map_batch(spns[name], qs, method=method, **opts, timeout=timeout)
            except Interrupted as e:            # the queries of this batch that finished are kept too
                keep(e.partial, name, setting, start)
                raise
            keep(df, name, setting, start)
            if bar is not None:
                bar.set_postfix_str(f"{name} {setting} {method}")
                bar.update(len(qs))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    out = out[COLUMNS + [c for c in out.columns if c not in COLUMNS]]
    out.attrs["interrupted"] = interrupted
    return out


def _check_methods(spns: Mapping[str, FlatSPN], methods, timeout, opts) -> list[str]:
    """Every method and its options checked against every SPN before the first query runs (a bad name found
    when its turn came would cost the work already done)."""
    from .map_api import _check_memory, _options

    if isinstance(methods, str):
        methods = methods.split(",")
    methods = list(methods)
    if not methods:
        raise QueryError("methods is empty; give at least one, e.g. ['bt', 'exact']")
    dup = sorted({m for m in methods if methods.count(m) > 1})
    if dup:
        raise QueryError(f"methods {dup} are listed more than once")
    for m in methods:
        code, kopts, _ = _options(m, {**opts, "timeout": timeout})
        for spn in spns.values():
            _check_memory(code, kopts, spn, numba.get_num_threads())
    return methods


def _evidence_rows(spns: Mapping[str, FlatSPN], evidence) -> tuple[str, dict]:
    """``(label, {spn name: rows})`` for ``compare``'s ``evidence`` argument (empty for uniform evidence)."""
    if isinstance(evidence, str):
        if evidence == "uniform":
            return "uniform", {}
        if evidence == "data":
            from .datasets import evidence_rows

            try:
                return "data", {name: evidence_rows(name) for name in spns}
            except KeyError as e:
                raise QueryError(e.args[0]) from None
        raise QueryError(f"evidence={evidence!r}; expected 'uniform', 'data' or {{spn name: rows}}")
    missing = sorted(set(spns) - set(evidence))
    if missing:
        raise QueryError(f"evidence rows missing for SPN(s) {missing}; give rows for every SPN compared")
    return "data", {name: np.asarray(evidence[name]) for name in spns}


def _best(df: pd.DataFrame) -> pd.Series:
    return df.groupby(query_keys(df))["log_value"].transform("max")


def wins(df: pd.DataFrame) -> pd.Series:
    """Per row: within ``EPSILON`` (absolute or relative) of the best value for its query."""
    best = _best(df)
    gap = (best - df["log_value"]).abs()
    same_inf = (best == df["log_value"])          # both -inf: every method found "impossible"
    return df["log_value"].notna() & (same_inf | (gap <= EPSILON) | (gap <= EPSILON * best.abs()))


def summary(df: pd.DataFrame, by: Sequence[str] = ("spn", "evidence")) -> pd.DataFrame:
    """WINCNT, FINISH, TIMEAVG, RESAVG and RESLSE per method (and per ``by``), as columns."""
    d = df.assign(win=wins(df), finished=~df["timed_out"].astype(bool))
    keys = [k for k in by if k in df.columns] + ["method"]

    def lse(v):
        v = v.dropna().to_numpy()
        m = v.max() if len(v) else -np.inf
        return m if m == -np.inf else m + np.log(np.exp(v - m).sum())

    g = d.groupby(keys, sort=False)
    out = pd.DataFrame({
        "WINCNT": g["win"].sum().astype(int),
        "FINISH": g["finished"].sum().astype(int),
        "TIMEAVG": g["seconds"].mean(),
        "RESAVG": g.apply(lambda x: np.nan if x["timed_out"].any() else x["log_value"].mean(),
                          include_groups=False),
        "RESLSE": g["log_value"].apply(lse),
        "queries": g.size(),
    })
    return out.reset_index()


def table(df: pd.DataFrame, metric: str = "WINCNT", rows: str = "spn") -> pd.DataFrame:
    """One summary metric as a (rows x method) table, methods in the order they first appear. The index says
    where the evidence came from (one more index level when ``df`` mixes kinds)."""
    kinds = list(dict.fromkeys(df["evidence"])) if "evidence" in df.columns else []
    index = [rows, "evidence"] if len(kinds) > 1 else [rows]
    s = summary(df, by=tuple(index))
    t = s.pivot_table(index=index, columns="method", values=metric, aggfunc="first")
    t = t[[m for m in dict.fromkeys(df["method"]) if m in t.columns]]
    t.columns.name = metric
    if len(kinds) == 1:
        t.index.name = f"{rows} ({kinds[0]} evidence)"
    return t


def battle(df: pd.DataFrame) -> pd.DataFrame:
    """The BATTLE dominance matrix: ``[i, j]`` = queries where method i finished, was strictly faster and
    strictly better than j (or j has no value)."""
    methods = list(dict.fromkeys(df["method"]))
    keys = query_keys(df)
    v = df.pivot_table(index=keys, columns="method", values="log_value", aggfunc="first")
    t = df.pivot_table(index=keys, columns="method", values="seconds", aggfunc="first")
    done = ~df.pivot_table(index=keys, columns="method", values="timed_out", aggfunc="first").astype(bool)
    out = pd.DataFrame(0, index=pd.Index(methods, name="winner"), columns=pd.Index(methods, name="loser"))
    for i in methods:
        for j in methods:
            if i != j:
                better = (v[i] > v[j]) | (v[j].isna() & v[i].notna())
                out.loc[i, j] = int((done[i] & (t[i] < t[j]) & better).sum())
    return out


class _CallableModule(types.ModuleType):
    """``spnkit.compare(...)`` calls :func:`compare`; ``spnkit.compare.summary`` etc. stay the module's."""

    def __call__(self, *args, **kwargs) -> pd.DataFrame:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(compare)
