"""``spnkit.reduce``, ``spnkit.map`` and ``spnkit.map_batch``: validation and dispatch; the work happens in one
numba kernel per query (``kernels.solve``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import QueryError
from .flat_spn import FlatSPN
from .kernels.clock import deadline_ticks, ticks_per_second
from .kernels.reduce import reduce_to_max
from .kernels.solve import EXACT_METHODS, METHOD_CODES, NO_QUERY_IN_SCOPE, solve_batch, solve_query
from .query import QUERY, Query
from .solvers.base import MapResult

BRUTE_MAX_VARS = 25
METHODS = tuple(METHOD_CODES)
DEFAULTS = {"k": 100, "beam": 10, "seed": 0, "max_rounds": 10_000, "timeout": math.inf, "check_every": 64,
            "max_trace": 4096}
STAT_NAMES = ("expansions", "passes", "stagings", "max_depth", "staged_nodes", "reduced_nodes")
_NO_QUERY_MSG = "no query variable appears in the SPN (its root's scope holds none of them)"


def reduce(spn: FlatSPN, q: Query) -> FlatSPN:
    """The MAP -> MAX reduction: an SPN over ``q``'s query variables (in increasing order) whose value at an
    assignment of them is ``S(q, e)`` with the hidden variables summed out. Linear in the SPN's size."""
    q.check(spn)
    qvars = q.query_vars
    qindex = np.full(spn.n_vars, -1, dtype=np.int64)
    qindex[qvars] = np.arange(len(qvars))
    arrays = reduce_to_max(spn.node_type, spn.child_ptr, spn.children, spn.log_w, spn.leaf_var, spn.leaf_val,
                           q.role, q.value, qindex)
    if arrays[0].shape[0] == 0:
        raise QueryError(_NO_QUERY_MSG)
    t, ptr, ch, w, var, val = arrays
    return FlatSPN(node_type=t, child_ptr=ptr, children=ch, log_w=w, leaf_var=var, leaf_val=val,
                   cardinalities=spn.cardinalities[qvars], meta={"reduced_from": spn.meta.get("source")},
                   validate=False)


def _options(method: str, opts: dict) -> tuple:
    """Validated kernel parameters ``(code, k, beam, seed, max_rounds, deadline ticks, check_every,
    max_trace)``."""
    if not opts and method in _DEFAULT_OPTIONS:
        return _DEFAULT_OPTIONS[method]
    if method not in METHOD_CODES:
        raise QueryError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise QueryError(f"unknown option(s) {sorted(unknown)} for spnkit.map; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **opts}
    for name in ("k", "beam", "max_rounds", "check_every", "max_trace"):
        least = 0 if name == "max_trace" else 1
        if int(o[name]) < least:
            raise QueryError(f"{name}={o[name]}; expected an integer >= {least}")
    timeout = math.inf if o["timeout"] is None else float(o["timeout"])
    if not timeout > 0:
        raise QueryError(f"timeout={o['timeout']}; expected seconds > 0 (or None for no limit)")
    out = (METHOD_CODES[method], int(o["k"]), int(o["beam"]), int(o["seed"]), int(o["max_rounds"]),
           deadline_ticks(timeout), int(o["check_every"]), int(o["max_trace"]))
    if not opts:
        _DEFAULT_OPTIONS[method] = out
    return out


_DEFAULT_OPTIONS: dict[str, tuple] = {}


def _check_brute(method: str, n_query: int) -> None:
    if method == "brute" and n_query > BRUTE_MAX_VARS:
        raise QueryError(f"brute force refuses {n_query} query variables (limit {BRUTE_MAX_VARS}): use an exact "
                         "branch-and-bound method ('exact') instead")


def map(spn: FlatSPN, q: Query, method: str = "bt", **opts) -> MapResult:  # noqa: A001 - spnkit.map by design
    """Solve one MAP query: the assignment of ``q``'s query variables maximising ``P(q, e)`` (hidden summed out).

    Methods: ``"bt"`` (max-product / best tree), ``"ng"`` (normalized greedy), ``"amap"`` (argmax-product,
    quadratic), ``"bs"`` (beam search from ``beam=10`` sampled starts, ``seed=0``), ``"kbt"`` (K-best tree,
    ``k=100``), ``"exact-mc"``, ``"exact-fc"``, ``"exact-fco"``, ``"exact-fcos"`` (branch and bound: marginal
    checking; forward checking; + ordering; + staging; no warm start, as in the authors' experiments),
    ``"exact"`` (FCOS started from max-product's answer) and ``"brute"`` (enumeration; at most 25 query
    variables).

    Options: ``timeout`` seconds (exact methods return the incumbent with ``exact=False`` and an upper bound;
    ``bs`` stops climbing), ``seed`` (``bs``), ``k`` (``kbt``), ``beam`` and ``max_rounds`` (``bs``),
    ``check_every`` (search nodes between clock checks) and ``max_trace`` (rows of the exact solvers' anytime
    trace, ``result.trace``).

    Every method reports the exact ``log_value`` of the assignment it returns, evaluated on the reduced network.
    Ties: ``bt``/``ng``/``amap``/``kbt`` take the first child (the earlier tree) on ties; ``brute`` keeps the
    first maximum in mixed-radix order (last query variable fastest); the exact searches keep the first optimum
    they meet.
    """
    t0 = time.perf_counter()
    code, k, beam, seed, max_rounds, timeout, check_every, max_trace = _options(method, opts)
    q.check(spn, cached=True)
    if method == "brute":
        _check_brute(method, int(np.count_nonzero(q.role == QUERY)))
    status, x, lv, exact, ub, stats, trace, _sec = solve_query(
        spn.node_type, spn.child_ptr, spn.children, spn.log_w, *spn.linear_weights, spn.leaf_var, spn.leaf_val,
        spn.cardinalities, q.role, q.value, code, k, beam, seed, max_rounds, timeout, check_every, max_trace)
    if status == NO_QUERY_IN_SCOPE:
        raise QueryError(_NO_QUERY_MSG)
    st = dict(zip(STAT_NAMES, stats.tolist(), strict=True))
    trace_array = None
    if method.startswith("exact"):
        trace_array = trace.copy()
        trace_array[:, 0] /= ticks_per_second()
    st["timed_out"] = bool(method in EXACT_METHODS and not exact)
    return MapResult(assignment=x, log_value=float(lv), exact=bool(exact),
                     upper_bound=None if math.isnan(ub) else float(ub), seconds=time.perf_counter() - t0,
                     method=method, stats=st, trace_array=trace_array)


def map_batch(spn: FlatSPN, queries: Sequence[Query], method: str = "bt", **opts) -> pd.DataFrame:
    """Solve many queries in parallel over the machine's cores (numba ``prange``; the GIL is released).

    Returns a DataFrame with one row per query, in order: ``query`` (index), ``method``, ``log_value``,
    ``exact``, ``upper_bound`` (NaN where the method has none), ``timed_out``, ``seconds`` (each query's own
    kernel time), ``assignment`` (int64 array as in :class:`MapResult`) and the solver's counters
    (``expansions``, ``passes``, ...). Each row equals what ``spnkit.map`` returns for that query alone.
    """
    code, k, beam, seed, max_rounds, timeout, check_every, _ = _options(method, opts)
    queries = list(queries)
    if not queries:
        raise QueryError("map_batch needs at least one query")
    for i, q in enumerate(queries):
        if not isinstance(q, Query):
            raise QueryError(f"queries[{i}] is a {type(q).__name__}; expected spnkit.Query")
        try:
            q.check(spn, cached=True)
        except QueryError as e:
            raise QueryError(f"queries[{i}]: {e}") from None
    roles = np.stack([q.role for q in queries])
    values = np.stack([q.value for q in queries])
    if method == "brute":
        _check_brute(method, int((roles == QUERY).sum(axis=1).max()))
    status, xs, lvs, exact, ubs, stats, secs = solve_batch(
        spn.node_type, spn.child_ptr, spn.children, spn.log_w, *spn.linear_weights, spn.leaf_var, spn.leaf_val,
        spn.cardinalities, roles, values, code, k, beam, seed, max_rounds, timeout, check_every)
    bad = np.flatnonzero(status == NO_QUERY_IN_SCOPE)
    if bad.size:
        raise QueryError(f"queries[{int(bad[0])}]: {_NO_QUERY_MSG}")
    df = pd.DataFrame({
        "query": np.arange(len(queries)), "method": method, "log_value": lvs, "exact": exact, "upper_bound": ubs,
        "timed_out": (~exact) if method in EXACT_METHODS else np.zeros(len(queries), dtype=bool),
        "seconds": secs / ticks_per_second(), "assignment": list(xs),
    })
    for j, name in enumerate(STAT_NAMES):
        df[name] = stats[:, j]
    return df
