"""Branch and bound against enumeration; anytime behaviour; map_batch against single calls."""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import Query, QueryBatch, QueryError
from spnkit.kernels.workqueue import SHARE, claim

from .random_spns import random_spn
from .test_map import enumerate_map, spn_and_query

EXACT = ("exact-mc", "exact-fc", "exact-fco", "exact-fcos", "exact")
APPROX = ("bt", "ng", "amap", "bs", "kbt")


@settings(max_examples=120, deadline=None)
@given(spn_and_query(max_vars=7))
def test_every_exact_method_finds_the_enumerated_optimum(case):
    spn, q = case
    _, full, scores = enumerate_map(spn, q)
    best = scores.max()
    for method in EXACT:
        r = spnkit.map(spn, q, method=method)
        assert r.exact and not r.stats["timed_out"], method
        if best == -np.inf:
            assert r.log_value == -np.inf
        else:
            assert r.log_value == pytest.approx(best, abs=1e-9), method
            assert r.upper_bound == pytest.approx(r.log_value, abs=1e-9)
        a = r.assignment
        assert np.all(a[q.evidence_vars] == q.value[q.evidence_vars]) and np.all(a[q.hidden_vars] == -1)
        assert np.all((0 <= a[q.query_vars]) & (a[q.query_vars] < spn.cardinalities[q.query_vars]))
        assert r.log_value == pytest.approx(float(spn.log_prob(a)[0]), abs=1e-12) or r.log_value == -np.inf
    for method in APPROX:
        r = spnkit.map(spn, q, method=method)
        assert r.log_value <= best + 1e-9 and not r.exact and r.upper_bound is None, method


def test_exact_methods_on_nltcs_max_and_on_the_authors_query_protocol(nltcs_path):
    spn = spnkit.load(nltcs_path)
    for method in EXACT:
        r = spnkit.map(spn, Query.parse("?" * 16), method=method)
        assert r.exact and r.log_value == pytest.approx(-1.7356024190, abs=1e-9)
        assert r.assignment.tolist() == [0] * 16
    rng = np.random.default_rng(7)
    for _ in range(5):
        perm = rng.permutation(16)
        q = Query(16, query=perm[:8], evidence={int(v): int(rng.integers(2)) for v in perm[8:11]},
                  hidden=perm[11:])
        brute = spnkit.map(spn, q, method="brute").log_value
        for method in EXACT:
            assert spnkit.map(spn, q, method=method).log_value == pytest.approx(brute, abs=1e-9)


@pytest.fixture(scope="module")
def hard_case():
    """A 22-variable categorical SPN whose exact solution takes many search nodes, and its optimum."""
    spn = random_spn(11, n_vars=22, max_card=3, normalised=False)
    q = Query(22)
    opt = spnkit.map(spn, q, method="exact-fcos")
    assert opt.exact and opt.stats["expansions"] > 50
    return spn, q, opt


@pytest.mark.parametrize("method", EXACT)
def test_on_timeout_the_incumbent_and_a_valid_upper_bound_come_back(hard_case, method):
    spn, q, opt = hard_case
    r = spnkit.map(spn, q, method=method, timeout=1e-6, check_every=1)
    assert not r.exact and r.stats["timed_out"]
    assert r.upper_bound >= opt.log_value - 1e-9             # the bound covers the true optimum
    assert r.log_value <= opt.log_value + 1e-9
    if r.log_value > -np.inf:
        assert r.log_value == pytest.approx(float(spn.log_prob(r.assignment)[0]), abs=1e-12)


@pytest.mark.parametrize("method", ("exact-mc", "exact-fcos"))
def test_the_anytime_trace_closes_the_gap_monotonically(hard_case, method):
    spn, q, opt = hard_case
    r = spnkit.map(spn, q, method=method, check_every=4)
    tr = r.trace
    assert isinstance(tr, pd.DataFrame) and len(tr) >= 2
    inc = tr["incumbent"].to_numpy()
    assert np.all(inc[1:] >= inc[:-1]) and np.all(np.diff(tr["seconds"].to_numpy()) >= 0)
    ub = tr["upper_bound"].to_numpy()
    finite = ub[np.isfinite(ub)]
    assert np.all(finite[1:] <= finite[:-1] + 1e-12)         # the bound only comes down
    assert np.all(finite >= opt.log_value - 1e-9)
    assert inc[-1] == pytest.approx(opt.log_value, abs=1e-9) and ub[-1] == pytest.approx(opt.log_value, abs=1e-9)


def test_pruning_ordering_and_staging_each_cut_the_work(hard_case):
    spn, q, _ = hard_case
    n = {m: spnkit.map(spn, q, method=m).stats for m in EXACT}
    assert n["exact-fcos"]["stagings"] > 0 and n["exact-fco"]["stagings"] == 0
    assert n["exact-fc"]["expansions"] < n["exact-mc"]["expansions"]
    assert n["exact-fco"]["expansions"] <= n["exact-fc"]["expansions"]


@pytest.mark.parametrize("method", [*APPROX, *EXACT, "brute"])
def test_map_batch_gives_what_single_calls_give(nltcs_path, method):
    spn = spnkit.load(nltcs_path)
    rng = np.random.default_rng(3)
    queries = []
    for _ in range(12):
        roles = rng.integers(0, 3, size=16)
        roles[rng.integers(16)] = 0
        queries.append(Query(16, query=np.flatnonzero(roles == 0),
                             evidence={int(v): int(rng.integers(2)) for v in np.flatnonzero(roles == 1)},
                             hidden=np.flatnonzero(roles == 2)))
    df = spnkit.map_batch(spn, queries, method=method, seed=5)
    assert list(df["query"]) == list(range(12)) and set(df["method"]) == {method}
    for i, q in enumerate(queries):
        r = spnkit.map(spn, q, method=method, seed=5)
        assert df["assignment"][i].tolist() == r.assignment.tolist()
        assert df["log_value"][i] == r.log_value and bool(df["exact"][i]) == r.exact
    assert (df["seconds"] > 0).all()
    # the same queries as one QueryBatch give the same rows
    batch = QueryBatch.from_queries(queries)
    dfb = spnkit.map_batch(spn, batch, method=method, seed=5)
    assert dfb["log_value"].tolist() == df["log_value"].tolist()
    assert [a.tolist() for a in dfb["assignment"]] == [a.tolist() for a in df["assignment"]]


def test_query_batch_holds_the_queries_and_refuses_bad_matrices():
    queries = [Query.parse(line) for line in ("??*0", "1?*?", "*?01")]
    batch = QueryBatch.from_queries(queries)
    assert len(batch) == 3 and batch.n_vars == 4
    for q, b in zip(queries, batch, strict=True):
        assert b.to_line() == q.to_line()
        assert b.role.dtype == np.int8 and b.value.dtype == np.int64 and not b.role.flags.writeable
    assert isinstance(batch[1:], QueryBatch) and batch[1:][0].to_line() == "1?*?"
    # values where the role is not evidence are ignored and stored as -1, as Query stores them
    b = QueryBatch([[0, 1, 2]], [[5, 1, 7]])
    assert b.value.tolist() == [[-1, 1, -1]] and b[0].to_line() == "?1*"
    with pytest.raises(QueryError, match=r"role\[0, 2\] = 3"):
        QueryBatch([[0, 1, 3]], [[0, 0, 0]])
    with pytest.raises(QueryError, match="query 1: evidence value -2 for variable 0 is negative"):
        QueryBatch([[0, 1], [1, 0]], [[0, 0], [-2, 0]])
    with pytest.raises(QueryError, match="expected the same"):
        QueryBatch([[0, 1]], [[0, 0, 0]])
    with pytest.raises(QueryError, match="expected integers"):
        QueryBatch([[0.0, 1.0]], [[0, 0]])
    with pytest.raises(QueryError, match="over the same variables"):
        QueryBatch.from_queries([Query(3), Query(4)])
    spn = random_spn(3, n_vars=4, max_card=2)
    with pytest.raises(QueryError, match="the queries have 3 variables; the SPN has 4"):
        spnkit.map_batch(spn, QueryBatch.from_queries([Query(3)]))
    with pytest.raises(QueryError, match=r"queries\[1\]: evidence X1 = 3 is out of range"):
        spnkit.map_batch(spn, QueryBatch.from_queries([Query.parse("??**"), Query.parse("?3??")]))


def test_map_batch_refuses_bad_input_naming_the_query():
    spn = random_spn(3, n_vars=4, max_card=2)
    with pytest.raises(QueryError, match=r"queries\[1\]: the query has 3 variables"):
        spnkit.map_batch(spn, [Query(4), Query(3)])
    with pytest.raises(QueryError, match="at least one query"):
        spnkit.map_batch(spn, [])
    with pytest.raises(QueryError, match=r"queries\[0\] is a str"):
        spnkit.map_batch(spn, ["????"])
    with pytest.raises(QueryError, match="unknown option"):
        spnkit.map(spn, Query(4), method="bt", beam_width=3)
    with pytest.raises(QueryError, match="timeout=0"):
        spnkit.map(spn, Query(4), method="exact", timeout=0)


@settings(max_examples=30, deadline=None)
@given(spn_and_query(max_vars=6), st.sampled_from([*APPROX, *EXACT]))
def test_map_batch_matches_map_on_random_spns(case, method):
    spn, q = case
    df = spnkit.map_batch(spn, [q, q], method=method)
    r = spnkit.map(spn, q, method=method)
    assert df["log_value"].tolist() == [r.log_value, r.log_value]


@nb.njit(parallel=True)
def _rows_claimed(m, workers):
    """How often the work queue hands out each of ``m`` rows to ``workers`` concurrent workers."""
    counter = np.zeros(1, dtype=np.int64)
    hits = np.zeros(m, dtype=np.int64)
    blocks = np.zeros(workers, dtype=np.int64)
    for w in nb.prange(workers):
        while True:
            start, stop = claim(counter, m, workers)
            if start >= m:
                break
            blocks[w] += 1
            for r in range(start, stop):
                hits[r] += 1
    return hits, blocks


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50_000), st.integers(1, 4))
def test_the_work_queue_hands_out_every_row_once(m, workers):
    hits, blocks = _rows_claimed(m, workers)
    assert (hits == 1).all()
    # guided: blocks shrink with what is left, so a big batch takes few atomic operations and a small one is
    # handed out a row at a time
    assert blocks.sum() <= (m if m < 2 * SHARE * workers else 2 * SHARE * workers * (1 + np.log(m)))


def test_staging_writes_an_equivalent_network_or_none_when_the_arena_is_full():
    """FCOS's staged networks live in a fixed arena: a staging that does not fit must leave the stack as it was
    (the search goes on with the network it has), and one that fits must give the same values under the mask."""
    from spnkit.kernels.exact import _stage
    from spnkit.kernels.passes import log_value_mask

    spn = random_spn(3, n_vars=9, max_card=3)
    n, m, cards = spn.n_nodes, spn.n_edges, spn.cardinalities
    nv, K = len(cards), int(cards.max())
    rng = np.random.default_rng(0)
    mask = np.zeros((nv, K), dtype=np.bool_)
    for v in range(nv):
        mask[v, :cards[v]] = True
    for v in range(5):                                   # five assigned variables, as when FCOS stages
        mask[v, :] = False
        mask[v, rng.integers(cards[v])] = True
    mask[6, 0] = False                                   # and a narrowed open domain
    level0 = log_value_mask(spn.node_type, spn.child_ptr, spn.children, spn.log_w, spn.leaf_var, spn.leaf_val, mask,
                            np.empty(n))

    def stage(room):                # an arena with `room` spare nodes and edges after level 0
        t, ptr = np.zeros(n + room, dtype=np.int8), np.zeros(n + room + 3, dtype=np.int64)
        ch, w, W = np.zeros(m + room, np.int64), np.zeros(m + room), np.zeros(m + room)
        We = np.zeros(m + room, np.int64)
        var, val = np.zeros(n + room, np.int64), np.zeros(n + room, np.int64)
        t[:n], ptr[:n + 1], ch[:m], w[:m], var[:n], val[:n] = (spn.node_type, spn.child_ptr, spn.children, spn.log_w,
                                                                spn.leaf_var, spn.leaf_val)
        tab = np.zeros((4, 3), dtype=np.int64)
        tab[:, 0] = 0, 0, n, m
        size = _stage(0, mask, cards, tab, np.zeros(3, np.bool_), t, ptr, ch, w, W, We, var, val,
                      np.zeros(n + 1, np.bool_), np.zeros(n + 1), np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64),
                      np.zeros(nv, np.int8), np.zeros(nv, np.int64), np.zeros(nv, np.int64))
        return size, tab, t, ptr, ch, w, var, val

    size, tab, *_ = stage(0)
    assert size == 0 and np.all(tab[:, 1] == 0)          # full: nothing written to the level table
    size, tab, t, ptr, ch, w, var, val = stage(n + m)
    assert 0 < size < n and list(tab[:, 1]) == [n, m, size, tab[3, 1]]
    no, eo, nn, ne = tab[:, 1]
    staged = log_value_mask(t[no:no + nn], ptr[no + 1:no + nn + 2], ch[eo:eo + ne], w[eo:eo + ne], var[no:no + nn],
                            val[no:no + nn], mask, np.empty(nn))
    assert staged == pytest.approx(level0, abs=1e-12)


def _uniform_spn(n_vars: int) -> spnkit.FlatSPN:
    """A product of fair coins: every assignment has the same value, so brute force's tie rule decides."""
    t, ptr, ch, w, var, val = [], [0], [], [], [], []
    for v in range(n_vars):                  # leaves 3v, 3v + 1 and their sum 3v + 2
        for k in range(2):
            t.append(0), ptr.append(len(ch)), var.append(v), val.append(k)
        t.append(1), ch.extend([3 * v, 3 * v + 1]), w.extend([np.log(0.5)] * 2), ptr.append(len(ch))
        var.append(-1), val.append(-1)
    t.append(2), ch.extend(range(2, 3 * n_vars, 3)), w.extend([0.0] * n_vars), ptr.append(len(ch))
    var.append(-1), val.append(-1)
    return spnkit.FlatSPN(node_type=np.array(t, np.int8), child_ptr=np.array(ptr), children=np.array(ch),
                          log_w=np.array(w), leaf_var=np.array(var), leaf_val=np.array(val),
                          cardinalities=np.full(n_vars, 2))


@pytest.mark.skipif(nb.config.NUMBA_NUM_THREADS < 2, reason="the split needs two threads")
def test_map_batch_splits_long_enumerations_over_threads_and_gives_what_single_calls_give():
    """A brute-force query of at least BRUTE_SPLIT assignments is split over the threads: the same answer as a
    single call, the first maximum on ties included, whether it comes alone or among short queries."""
    from spnkit.kernels.solve import BRUTE_SPLIT

    threads = nb.get_num_threads()
    nb.set_num_threads(2)
    try:
        spn = random_spn(11, n_vars=13, max_card=3)
        assert np.prod(spn.cardinalities) >= 4 * BRUTE_SPLIT
        queries = [Query(13), Query.parse("0?1??????????"), Query(13, query=[0, 1], evidence={2: 1}),
                   Query.parse("*????????????")]
        flat = _uniform_spn(13)                      # 8192 tied assignments: the first is all zeros
        for net, qs in ((spn, queries), (spn, queries[:1]), (flat, [Query(13), Query.parse("1????????????")])):
            df = spnkit.map_batch(net, qs, method="brute")
            for i, q in enumerate(qs):
                r = spnkit.map(net, q, method="brute")
                assert df["assignment"][i].tolist() == r.assignment.tolist(), i
                assert df["log_value"][i] == r.log_value and df["exact"][i] and r.exact
                assert df["upper_bound"][i] == r.upper_bound and df["seconds"][i] > 0
        assert spnkit.map(flat, Query(13), method="brute").assignment.tolist() == [0] * 13
    finally:
        nb.set_num_threads(threads)
