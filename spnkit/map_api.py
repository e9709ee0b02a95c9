"""``spnkit.reduce`` and ``spnkit.map``: validation and dispatch; the work happens in numba kernels."""

from __future__ import annotations

import time

import numpy as np

from .errors import QueryError
from .flat_spn import FlatSPN
from .kernels.beam import beam_search
from .kernels.k_best import k_best_tree_map
from .kernels.maxprod import argmax_product, best_tree, brute_force, normalized_greedy
from .kernels.reduce import reduce_to_max
from .query import Query
from .solvers.base import MapResult

BRUTE_MAX_VARS = 25


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
        raise QueryError("no query variable appears in the SPN (its root's scope holds none of them)")
    t, ptr, ch, w, var, val = arrays
    return FlatSPN(node_type=t, child_ptr=ptr, children=ch, log_w=w, leaf_var=var, leaf_val=val,
                   cardinalities=spn.cardinalities[qvars], meta={"reduced_from": spn.meta.get("source")},
                   validate=False)


def _bt(red: FlatSPN, **_):
    x, _tree = best_tree(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val,
                         red.n_vars)
    return x, False, None


def _ng(red: FlatSPN, **_):
    x = normalized_greedy(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val,
                          red.n_vars)
    return x, False, None


def _kbt(red: FlatSPN, k: int = 100, **_):
    if int(k) < 1:
        raise QueryError(f"k={k}; the K-best tree method needs k >= 1")
    x, _v, _n = k_best_tree_map(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var,
                                red.leaf_val, red.n_vars, int(k))
    return x, False, None


def _amap(red: FlatSPN, **_):
    x, _evals = argmax_product(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var,
                               red.leaf_val, red.n_vars)
    return x, False, None


def _bs(red: FlatSPN, beam: int = 10, seed: int = 0, max_rounds: int = 10_000, **_):
    if int(beam) < 1:
        raise QueryError(f"beam={beam}; beam search needs beam >= 1")
    x, _v, _r = beam_search(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val,
                            red.cardinalities, int(beam), int(seed), int(max_rounds))
    return x, False, None


def _brute(red: FlatSPN, **_):
    n = red.n_vars
    if n > BRUTE_MAX_VARS:
        raise QueryError(f"brute force refuses {n} query variables (limit {BRUTE_MAX_VARS}): use an exact "
                         "branch-and-bound method instead")
    x, best = brute_force(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val,
                          red.cardinalities)
    return x, True, float(best)


METHODS = {"bt": _bt, "ng": _ng, "amap": _amap, "bs": _bs, "kbt": _kbt, "brute": _brute}


def map(spn: FlatSPN, q: Query, method: str = "bt", **opts) -> MapResult:  # noqa: A001 - spnkit.map by design
    """Solve one MAP query: the assignment of ``q``'s query variables maximising ``P(q, e)`` (hidden summed out).

    Methods so far: ``"bt"`` (max-product / best tree), ``"ng"`` (normalized greedy), ``"amap"`` (argmax-product,
    quadratic), ``"bs"`` (beam search,
    ``beam=10``, ``seed=0``), ``"kbt"`` (K-best
    tree, ``k=100``), ``"brute"``
    (enumeration; exact; refuses more than 25 query variables). Approximate methods report the exact
    ``log_value`` of the assignment they return.
    """
    if method not in METHODS:
        raise QueryError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    t0 = time.perf_counter()
    red = reduce(spn, q)
    xq, exact, ub = METHODS[method](red, **opts)
    assignment = q.complete(xq)
    log_value = float(spn.log_prob(assignment)[0])
    return MapResult(assignment=assignment, log_value=log_value, exact=exact, upper_bound=ub,
                     seconds=time.perf_counter() - t0, method=method)
