"""``spnkit.reduce``, ``spnkit.map`` and ``spnkit.map_batch``: validation and dispatch; the work happens in one
numba kernel per query (``kernels.solve``)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd

from .assignments import AssignmentArray
from .batch import solve_batch
from .errors import QueryError
from .flat_spn import FlatSPN
from .interrupt import raise_interrupted, run_batch_kernel
from .kernels.clock import deadline_ticks, ticks_per_second
from .kernels.k_best import kbt_scratch
from .kernels.reduce import reduce_to_max
from .kernels.solve import BAD_QUERY, INTERRUPTED, METHOD_CODES, NOT_RUN, TIMED_OUT
from .query import QUERY, Query, QueryBatch, stack_queries
from .solvers.base import MapResult

BRUTE_MAX_VARS = 25
METHODS = tuple(METHOD_CODES)
DEFAULTS = {"k": 100, "beam": 10, "seed": 0, "max_rounds": 10_000, "timeout": math.inf, "check_every": 64,
            "max_trace": 4096}
STAT_NAMES = ("expansions", "passes", "stagings", "max_depth", "staged_nodes", "reduced_nodes", "subtrees_shared")
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
    """Validated kernel options ``(code, opts array for the kernel (kernels.solve.OPTIONS), max_trace)``."""
    if not opts:
        try:
            return _OPTIONS_SEEN[method]
        except KeyError:
            key = method
    else:
        key = (method, *((n, type(v), v) for n, v in sorted(opts.items())))   # type: k=2.0 is not k=2
        try:
            return _OPTIONS_SEEN[key]
        except KeyError:
            pass
        except TypeError:              # an unhashable option value: validate it every time
            key = None
    if method not in METHOD_CODES:
        raise QueryError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise QueryError(f"unknown option(s) {sorted(unknown)} for spnkit.map; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **opts}
    for name, least, most in _INT_OPTIONS:
        v = o[name]
        if not is_int(v) or not least <= v <= most:
            kind = "" if is_int(v) else f" ({type(v).__name__})"
            raise QueryError(f"{name}={v!r}{kind}; expected an integer from {least:,} to {most:,}")
    timeout = o["timeout"]
    if timeout is None:
        timeout = math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | np.integer | np.floating) \
            or not timeout > 0:
        raise QueryError(f"timeout={timeout!r}; expected seconds > 0 (a number; None or math.inf for no limit)")
    code = METHOD_CODES[method]
    arr = np.array([code, int(o["k"]), int(o["beam"]), int(o["seed"]), int(o["max_rounds"]),
                    deadline_ticks(float(timeout)), int(o["check_every"])], dtype=np.int64)
    arr.setflags(write=False)
    out = (code, arr, int(o["max_trace"]))
    if key is not None and len(_OPTIONS_SEEN) < 256:
        _OPTIONS_SEEN[key] = out
    return out


_OPTIONS_SEEN: dict = {}   # validated options by method (no options) or (method, *sorted options)


def is_int(v) -> bool:
    """An integer that is not a bool (numpy integers included; 2.0 is not)."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)

_INT_OPTIONS = (("k", 1, 1 << 40), ("beam", 1, 1 << 40), ("seed", 0, (1 << 63) - 1), ("max_rounds", 1, 1 << 62),
                ("check_every", 1, 1 << 40), ("max_trace", 0, 1 << 40))     # (name, least, most): int64 throughout
KBT_BYTES_PER_TREE = 24    # k_best.kbt_scratch: per node and edge of the network, per tree kept, per thread


def _check_memory(code: int, kopts: np.ndarray, spn: FlatSPN, threads: int) -> None:
    """Refuse a K-best tree whose scratch (``k`` trees per node and edge, per thread) cannot fit in memory."""
    if code != _KBT:
        return
    k = int(kopts[1])
    need = KBT_BYTES_PER_TREE * k * (spn.n_nodes + spn.n_edges + 2) * threads
    avail = _memory_bytes()
    if need > avail // 2:
        raise QueryError(f"kbt with k={k:,} needs ~{need / 2**30:,.1f} GiB of scratch on this network "
                         f"({spn.n_nodes:,} nodes, {threads} thread(s)); this machine has {avail / 2**30:,.1f} GiB: "
                         f"use k <= {max(1, (avail // 2) // (need // k)):,}")


KBT_KEEP_BYTES = 256 << 20     # spnkit.map keeps one network's K-best scratch up to this size


def _kbt_buffers(spn: FlatSPN, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``spnkit.map``'s K-best tree scratch for ``spn`` and ``k``: the set kept for the last ``k`` when it is that
    one, else a new set, kept in its place when at most ``KBT_KEEP_BYTES``. Reused, its pages are mapped once:
    made anew on every call (before this), the page faults alone cost ~90 ms per call from k = 500 on a network
    of 8,281 nodes and 24,200 edges (``synthetic.mixture(40, 200)``, measured with a timeout that ends the
    search at once). (``spnkit.map``'s kernel holds the GIL: no two calls share the set at once.)"""
    held = spn.__dict__.get("_kbt_scratch")
    if held is not None and held[0] == k:
        return held[1], held[2]
    f, i = kbt_scratch(spn.n_nodes + 1, spn.n_edges + 1, k)
    if f.nbytes + i.nbytes <= KBT_KEEP_BYTES:
        spn.__dict__["_kbt_scratch"] = (k, f, i)
    return f, i


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


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

    Options: ``timeout`` seconds, honoured by every method but the linear ``bt``/``ng``: the answer is then the
    best met so far, ``timed_out`` in ``stats`` (the exact methods return their incumbent with ``exact=False`` and
    an upper bound; ``brute`` the best assignment enumerated; ``bs`` stops climbing; ``amap`` and ``kbt`` finish
    the nodes left as max-product does), ``seed`` (``bs``), ``k`` (``kbt``), ``beam`` and ``max_rounds`` (``bs``),
    ``check_every`` (search nodes between clock checks) and ``max_trace`` (rows of the exact solvers' anytime
    trace, ``result.trace``).

    Every method reports the exact ``log_value`` of the assignment it returns, evaluated on the reduced network.
    Ties: ``bt``/``ng``/``amap``/``kbt`` take the first child (the earlier tree) on ties; ``brute`` keeps the
    first maximum in mixed-radix order (last query variable fastest); the exact searches keep the first optimum
    they meet.

    Ctrl-C stops the solve within milliseconds (at the solver's next check point) and raises
    :class:`~spnkit.Interrupted` (a ``KeyboardInterrupt``) whose ``partial`` is the best answer met so far.
    """
    t0 = time.perf_counter()
    code, kopts, max_trace = _options(method, opts)
    if not isinstance(q, Query):
        raise QueryError(f"q is a {type(q).__name__}; expected spnkit.Query")
    if code == _BRUTE:
        _check_brute(method, int(np.count_nonzero(q.role == QUERY)))
    if code == _KBT:
        _check_memory(code, kopts, spn, 1)
    exact_method = code in _EXACT_CODES
    trace, trace_bytes = _trace_buffer(max_trace) if exact_method else _NO_TRACE
    x = q.value.copy()       # int64 (n_vars,), writable (the kernel overwrites it); a wrong length fails its check
    # the compiled kernel without the dispatcher's typing: Query makes role/value as QUERY_ARG_TYPES, _options
    # the read-only int64 opts, and trace and x are made here
    if code == _KBT:
        status, lv, exact, ub, stats, n_trace, ticks = spn.query_entry(code)(
            spn.kernel_net, q.role, q.value, kopts, trace, x, *_kbt_buffers(spn, int(kopts[1])))
    else:
        status, lv, exact, ub, stats, n_trace, ticks = spn.query_entry(code)(spn.kernel_net, q.role, q.value, kopts,
                                                                             trace, x)
    if status < 0:
        _raise_for(status, q, spn)
    res = MapResult(x, lv, exact, None if ub != ub else ub, time.perf_counter() - t0, method, stats,
                    bytes(trace_bytes[:n_trace * _ROW_BYTES]) if exact_method else None, STAT_NAMES,
                    status == TIMED_OUT, 1.0 / ticks_per_second(), ticks)
    if not spn.is_normalized:
        res.note = UNNORMALIZED_NOTE
    if status == INTERRUPTED:
        raise_interrupted(f"spnkit.map({method!r}) interrupted after {res.seconds:.3g} s; e.partial holds the best "
                          f"answer met so far (log value {lv:.6g}, not proven optimal)", res)
    return res


UNNORMALIZED_NOTE = ("the SPN's sum weights do not sum to 1: log_value is a log value, not a log-probability "
                     "(spn.normalize() gives the same distribution, normalised)")


_NO_TRACE = (np.empty((0, 3)), None)
_ROW_BYTES = 3 * 8


def _trace_buffer(rows: int) -> tuple[np.ndarray, memoryview]:
    """One scratch trace per size, reused, and a byte view of it: solve_query holds the GIL (it is not
    ``nogil``), so no two calls write it at once, and each call copies its rows out as bytes before returning
    (0.11 us; slicing and copying the array took 0.22 us, a few percent of a small exact query)."""
    try:
        return _TRACES[rows]
    except KeyError:
        buf = np.empty((rows, 3))
        _TRACES[rows] = out = (buf, memoryview(buf).cast("B") if rows else memoryview(b""))
        return out


_TRACES: dict = {}


_EXACT_CODES = frozenset(METHOD_CODES[m] for m in METHOD_CODES if m.startswith("exact"))   # they write a trace
_BRUTE = METHOD_CODES["brute"]
_KBT = METHOD_CODES["kbt"]


def _raise_for(status: int, q: Query, spn: FlatSPN, where: str = "") -> None:
    """The QueryError for a kernel's refusal: ``Query.check`` names what does not fit."""
    try:
        if status == BAD_QUERY:
            q.check(spn)
        raise QueryError(_NO_QUERY_MSG)
    except QueryError as e:
        raise QueryError(f"{where}{e}") from None


def map_batch(spn: FlatSPN, queries: Sequence[Query] | QueryBatch, method: str = "bt", *, client=None,
              chunk_size: int | None = None, progress: bool = True, **opts) -> pd.DataFrame:
    """Solve many queries in parallel on ``numba.get_num_threads()`` threads (all cores unless set lower), each
    running a compiled worker without the GIL (``spnkit.batch``).

    ``queries``: a sequence of :class:`Query`, or a :class:`QueryBatch` (read as it is: no Python step per
    query, which on microsecond queries is what limits the parallel speed-up). Threads take queries from a
    shared counter; a ``brute`` query of at least ``kernels.solve.BRUTE_SPLIT`` assignments is instead split
    over all threads, so that a few long enumerations do not leave a thread idle; and a branch-and-bound search
    hands subtrees to threads that have run out of queries (``kernels.coop``), all of them pruning against the
    best value any has found.

    ``client``: a ``dask.distributed.Client``: the queries are solved on its cluster instead, in chunks of
    ``chunk_size`` rows (default: about four per Dask thread), with a progress bar over chunks (``progress``);
    see :func:`spnkit.cluster.map_batch_dask`.

    Returns a DataFrame with one row per query, in order: ``query`` (index), ``method`` (categorical), ``log_value``,
    ``exact``, ``upper_bound`` (NaN where the method has none), ``timed_out``, ``seconds`` (each query's own
    kernel time), ``assignment`` (int64 array as in :class:`MapResult`; the column is a
    :class:`~spnkit.assignments.AssignmentArray` over one (n, n_vars) array, ``df["assignment"].array.rows``, so
    the frame costs no Python object per query) and the solver's counters
    (``expansions``, ``passes``, ..., ``subtrees_shared``: how many subtrees a search handed to other threads).
    Each row equals what ``spnkit.map`` returns for that query alone, but for a search that shared subtrees: the
    same optimum, but on tied optima possibly another assignment, and its counters summed over the threads
    (``max_depth``: the deepest of their stacks); out of time, it has explored more than a single thread would.

    Ctrl-C stops every thread within milliseconds and raises :class:`~spnkit.Interrupted` (a
    ``KeyboardInterrupt``); its ``partial`` is this frame for the queries that finished (``spnkit.interrupt``).
    """
    code, kopts, _ = _options(method, opts)
    roles, values = batch_arrays(spn, queries)
    if method == "brute":
        _check_brute(method, int((roles == QUERY).sum(axis=1).max()))
    if client is not None:
        from .cluster import map_batch_dask

        return map_batch_dask(client, spn, roles, values, method, opts, chunk_size=chunk_size, progress=progress)
    _check_memory(code, kopts, spn, numba.get_num_threads())
    out, ctrl_c = run_batch_kernel(solve_batch, (spn.kernel_arrays, roles, values, kopts, numba.get_num_threads()))
    return batch_frame(spn, roles, values, method, out, ctrl_c)


def batch_arrays(spn: FlatSPN, queries: Sequence[Query] | QueryBatch) -> tuple[np.ndarray, np.ndarray]:
    """``map_batch``'s queries as read-only ``(role, value)`` matrices (a list is stacked; a ``QueryBatch`` read as
    it is: ``solve_batch`` then compiles once for both)."""
    nv = spn.n_vars
    if isinstance(queries, QueryBatch):
        if len(queries) == 0:
            raise QueryError("map_batch needs at least one query")
        if queries.n_vars != nv:
            raise QueryError(f"the queries have {queries.n_vars} variables; the SPN has {nv}")
        return queries.role, queries.value
    queries = list(queries)
    if not queries:
        raise QueryError("map_batch needs at least one query")
    return stack_queries(queries, nv, f"the SPN has {nv}")


def batch_frame(spn: FlatSPN, roles: np.ndarray, values: np.ndarray, method: str, out: tuple,
                ctrl_c: bool = False) -> pd.DataFrame:
    """``map_batch``'s frame from ``spnkit.batch.solve_batch``'s arrays ``out`` (rows as ``roles``/``values``): a
    ``QueryError`` for the first row that did not fit, :class:`~spnkit.Interrupted` when a stop cut rows short
    (``ctrl_c``: Ctrl-C came)."""
    status, xs, lvs, exact, ubs, stats, secs = out
    bad = np.flatnonzero(status < 0)
    if bad.size:
        i = int(bad[0])
        _raise_for(int(status[i]), Query._of(roles[i], values[i]), spn, f"queries[{i}]: ")
    m = status.shape[0]
    # no copy (the kernel's arrays belong to this frame alone) and no Python object per row: on microsecond
    # queries this one-thread step after the parallel kernel is what limits map_batch's speed-up
    df = pd.DataFrame({
        "query": np.arange(m), "method": pd.Categorical.from_codes(np.zeros(m, dtype=np.int8), [method]),
        "log_value": lvs, "exact": exact, "upper_bound": ubs,
        "timed_out": status == TIMED_OUT,
        "seconds": secs / ticks_per_second(),
        "assignment": AssignmentArray(xs),   # the kernel's (m, n_vars) array as it is, a row read as a view
        **{name: stats[:, j] for j, name in enumerate(STAT_NAMES)},
    }, copy=False)
    if not spn.is_normalized:
        df.attrs["note"] = UNNORMALIZED_NOTE
    cut = (status == INTERRUPTED) | (status == NOT_RUN)
    if ctrl_c or cut.any():
        done = df[~cut]
        raise_interrupted(f"spnkit.map_batch({method!r}) interrupted: {len(done)} of {m} queries finished; "
                          "e.partial holds them (their 'query' numbers as in the full frame)", done)
    return df
