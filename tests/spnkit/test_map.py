"""MAP -> MAX reduction, best tree and brute force against enumeration of the original SPN."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import FlatSPN, Query, QueryError

from .random_spns import naive_value, random_spn, spn_seeds


@st.composite
def spn_and_query(draw, max_vars=6):
    spn = random_spn(draw(spn_seeds), n_vars=draw(st.integers(2, max_vars)), normalised=draw(st.booleans()))
    roles = draw(st.lists(st.integers(0, 2), min_size=spn.n_vars, max_size=spn.n_vars))
    if 0 not in roles:
        roles[draw(st.integers(0, spn.n_vars - 1))] = 0
    evidence = {v: draw(st.integers(0, int(spn.cardinalities[v]) - 1)) for v, r in enumerate(roles) if r == 1}
    q = Query(spn.n_vars, query=[v for v, r in enumerate(roles) if r == 0], evidence=evidence,
              hidden=[v for v, r in enumerate(roles) if r == 2])
    return spn, q


def enumerate_map(spn: FlatSPN, q: Query):
    """Oracle: every assignment of the query variables, scored on the ORIGINAL network (hidden marginalised)."""
    cards = spn.cardinalities[q.query_vars]
    xs = np.array(list(itertools.product(*[range(int(c)) for c in cards])), dtype=np.int64)
    full = np.array([q.complete(x) for x in xs])
    return xs, full, spn.log_prob(full)


@settings(max_examples=80, deadline=None)
@given(spn_and_query())
def test_reduced_network_equals_the_original_with_evidence_and_hidden_summed_out(case):
    spn, q = case
    red = spnkit.reduce(spn, q)
    assert red.n_vars == len(q.query_vars)
    FlatSPN(node_type=red.node_type, child_ptr=red.child_ptr, children=red.children, log_w=red.log_w,
            leaf_var=red.leaf_var, leaf_val=red.leaf_val, cardinalities=red.cardinalities)  # a valid SPN
    xs, full, want = enumerate_map(spn, q)
    np.testing.assert_allclose(red.log_prob(xs), want, rtol=0, atol=1e-9)
    x0 = full[0]
    assert np.isclose(np.log(naive_value(spn, x0)) if naive_value(spn, x0) > 0 else -np.inf, want[0], atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(spn_and_query())
def test_brute_is_the_optimum_and_best_tree_never_exceeds_it(case):
    spn, q = case
    xs, full, scores = enumerate_map(spn, q)
    brute = spnkit.map(spn, q, method="brute")
    approx = [spnkit.map(spn, q, method=m) for m in ("bt", "ng", "amap")]
    assert brute.exact and brute.log_value == pytest.approx(scores.max(), abs=1e-9)
    assert brute.upper_bound == pytest.approx(brute.log_value, abs=1e-9)
    assert all(r.log_value <= brute.log_value + 1e-9 and not r.exact for r in approx)
    for r in [brute, *approx]:
        a = r.assignment
        assert np.all(a[q.evidence_vars] == q.value[q.evidence_vars]) and np.all(a[q.hidden_vars] == -1)
        assert np.all((0 <= a[q.query_vars]) & (a[q.query_vars] < spn.cardinalities[q.query_vars]))
        assert r.log_value == pytest.approx(float(spn.log_prob(a)[0]), abs=1e-12)


def _n_trees(spn: FlatSPN) -> int:
    n = []
    for i in range(spn.n_nodes):
        ch = spn.children[spn.child_ptr[i]:spn.child_ptr[i + 1]]
        t = int(spn.node_type[i])
        n.append(1 if t == 0 else sum(n[c] for c in ch) if t == 1 else int(np.prod([n[c] for c in ch])))
    return n[-1]


@settings(max_examples=60, deadline=None)
@given(spn_and_query(max_vars=5), st.integers(1, 40))
def test_k_best_tree_sits_between_best_tree_and_the_optimum(case, k):
    spn, q = case
    bt = spnkit.map(spn, q, method="bt")
    kbt1 = spnkit.map(spn, q, method="kbt", k=1)
    kbt = spnkit.map(spn, q, method="kbt", k=k)
    brute = spnkit.map(spn, q, method="brute")
    # K = 1 is max-product. Both take the first child on an exact tie, but BT compares W*u on the original
    # network (linear domain) and KBT w+u on the reduced one: a near-tie may round either way, so values.
    assert kbt1.log_value == pytest.approx(bt.log_value, abs=1e-9)
    assert bt.log_value - 1e-9 <= kbt.log_value <= brute.log_value + 1e-9
    if _n_trees(spnkit.reduce(spn, q)) <= k:                       # every tree decoded: the MAP is among them
        assert kbt.log_value == pytest.approx(brute.log_value, abs=1e-9)


def test_nltcs_max_by_every_method(nltcs_path):
    spn = spnkit.load(nltcs_path)
    q = Query.parse("?" * 16)
    for method in ("bt", "ng", "amap", "bs", "kbt", "brute"):
        r = spnkit.map(spn, q, method=method)
        assert r.log_value == pytest.approx(-1.7356024190, abs=1e-9)
        assert r.assignment.tolist() == [0] * 16
        assert 0 < r.kernel_seconds < r.seconds      # the kernel's own time is inside the call's


def test_best_tree_and_normalized_greedy_follow_their_definitions_on_a_hand_built_spn():
    """S = 0.5 [X0=0] (0.5 [X1=0] + 0.5 [X1=1]) + 0.45 [X0=1] (0.9 [X1=0] + 0.1 [X1=1]).

    Max-product: the trees through the first branch are worth 0.25, the best through the second 0.405, so BT
    returns (1, 0), which is the MAP. NG compares weight x marginal, 0.5 x 1 > 0.45 x 1, takes the first
    branch and returns (0, 0) (first child on the X1 tie), worth 0.25.
    """
    lw = np.log
    spn = FlatSPN(
        node_type=[0, 0, 0, 0, 1, 1, 2, 2, 1],
        child_ptr=[0, 0, 0, 0, 0, 2, 4, 6, 8, 10],
        children=[2, 3, 2, 3, 0, 4, 1, 5, 6, 7],
        log_w=[lw(.5), lw(.5), lw(.9), lw(.1), 0, 0, 0, 0, lw(.5), lw(.45)],
        leaf_var=[0, 0, 1, 1, -1, -1, -1, -1, -1], leaf_val=[0, 1, 0, 1, -1, -1, -1, -1, -1],
        cardinalities=[2, 2], validate=True)
    q = Query.parse("??")
    assert spnkit.map(spn, q, method="bt").assignment.tolist() == [1, 0]
    assert spnkit.map(spn, q, method="ng").assignment.tolist() == [0, 0]
    assert spnkit.map(spn, q, method="brute").assignment.tolist() == [1, 0]  # 0.405 > 0.25


def test_comma_separated_fields_are_read_by_field_not_by_character():
    q = Query.parse("12,?,?,?,?,?,?,?,?")
    assert q.n_vars == 9 and q.evidence_vars.tolist() == [0] and q.value[0] == 12
    assert Query.parse(" 3 , * ,10,? ").value.tolist() == [3, -1, 10, -1]
    assert Query.parse("? * 11 0").to_line() == "?,*,11,0"
    for line, why in (("01,?", "leading zero"), ("??,0", "field 0 of the comma-separated"),
                      ("?? 01", "field 0 of the whitespace-separated"), ("?,,0", "field 1 .* is empty"),
                      ("?,0,", "field 2 .* is empty"), ("?,-1", "'-1'"), ("?,1.5", "'1.5'"), ("?,٣", "'٣'")):
        with pytest.raises(QueryError, match=why):
            Query.parse(line)


@given(st.lists(st.one_of(st.just("?"), st.just("*"), st.integers(0, 40)), min_size=1, max_size=30))
def test_query_lines_round_trip_with_any_evidence_value(fields):
    q = Query(len(fields), query=[i for i, f in enumerate(fields) if f == "?"],
              evidence={i: f for i, f in enumerate(fields) if isinstance(f, int)},
              hidden=[i for i, f in enumerate(fields) if f == "*"])
    if len(fields) > 1:                                   # the authors' layout
        p = Query.parse(",".join(map(str, fields)))
        assert p.role.tolist() == q.role.tolist() and p.value.tolist() == q.value.tolist()
    if len(fields) == 1 and isinstance(fields[0], int) and fields[0] > 9:
        with pytest.raises(QueryError, match="one-variable"):          # "12" would read back as 1, 2
            q.to_line()
        return
    back = Query.parse(q.to_line())
    assert back.role.tolist() == q.role.tolist() and back.value.tolist() == q.value.tolist()


def test_query_line_round_trip_and_parse_errors():
    q = Query.parse("??*01?")
    assert q.to_line() == "??*01?" and q.query_vars.tolist() == [0, 1, 5] and q.hidden_vars.tolist() == [2]
    assert Query.parse("?,?,*,0,1,?").to_line() == "??*01?"
    with pytest.raises(QueryError, match="symbol 'x' at position 2"):
        Query.parse("??x")
    with pytest.raises(QueryError, match="more than once"):
        Query(4, query=[0, 1], evidence={1: 0})
    with pytest.raises(QueryError, match="out of range"):
        Query(4, query=[4])
    assert Query(4, evidence={0: 1}).query_vars.tolist() == [1, 2, 3]         # unlisted -> query
    assert Query(4, query=[0], evidence={1: 1}).hidden_vars.tolist() == [2, 3]  # unlisted -> hidden


def test_queries_that_do_not_fit_the_spn_are_refused():
    spn = random_spn(3, n_vars=4, max_card=2)
    with pytest.raises(QueryError, match="the SPN has 4"):
        spnkit.map(spn, Query.parse("??"))
    with pytest.raises(QueryError, match="out of range for a variable of cardinality 2"):
        spnkit.map(spn, Query.parse("?3??"))
    with pytest.raises(QueryError, match="no query variable"):
        spnkit.map(spn, Query.parse("0*1*"))
    with pytest.raises(QueryError, match="unknown method"):
        spnkit.map(spn, Query.parse("????"), method="magic")
    with pytest.raises(QueryError, match="k=0; expected an integer from 1 to"):
        spnkit.map(spn, Query.parse("????"), method="kbt", k=0)


@pytest.mark.parametrize("method,opts,what", [
    ("exact", {"timeout": "abc"}, r"timeout='abc'; expected seconds > 0"),
    ("exact", {"timeout": True}, r"timeout=True"),
    ("exact", {"timeout": -1.0}, r"timeout=-1.0"),
    ("kbt", {"k": 2**70}, r"k=1180591620717411303424; expected an integer from 1 to"),
    ("kbt", {"k": 2.7}, r"k=2.7 \(float\)"),
    ("kbt", {"k": 2.0}, r"k=2.0 \(float\)"),
    ("kbt", {"k": True}, r"k=True \(bool\)"),
    ("kbt", {"k": 10**8}, r"kbt with k=100,000,000 needs ~[\d,.]+ GiB .* use k <= "),
    ("bs", {"beam": 0}, r"beam=0"),
    ("bs", {"seed": -1}, r"seed=-1"),
])
def test_bad_options_are_typed_errors_before_any_work(method, opts, what):
    spn = random_spn(3, n_vars=6, max_card=2)
    spnkit.map(spn, Query(6), method="kbt", k=2)              # a cached k=2 must not let k=2.0 through
    for call in (lambda: spnkit.map(spn, Query(6), method=method, **opts),
                 lambda: spnkit.map_batch(spn, [Query(6)] * 3, method=method, **opts)):
        with pytest.raises(QueryError, match=what):
            call()


def test_a_timeout_past_the_clocks_range_means_no_limit():
    spn = random_spn(3, n_vars=6, max_card=2)
    r = spnkit.map(spn, Query(6), method="exact", timeout=1e300)
    assert r.exact and r.log_value == spnkit.map(spn, Query(6), method="brute").log_value


def test_map_batch_names_the_query_that_does_not_fit_before_solving_any():
    spn = random_spn(3, n_vars=4, max_card=2)
    good = Query.parse("??**")
    for bad, what in ((Query.parse("?3??"), r"queries\[2\]: evidence X1 = 3 is out of range"),
                      (Query.parse("0*1*"), r"queries\[2\]: the query has no query variable"),
                      (Query.parse("??"), r"queries\[2\]: the query has 2 variables; the SPN has 4"),
                      ("??**", r"queries\[2\] is a str")):
        with pytest.raises(QueryError, match=what):
            spnkit.map_batch(spn, [good, good, bad, good], method="exact", timeout=60)


def test_brute_refuses_more_than_25_query_variables():
    spn = random_spn(5, n_vars=26, max_card=2)
    with pytest.raises(QueryError, match="26 query variables"):
        spnkit.map(spn, Query(26), method="brute")
    assert spnkit.map(spn, Query(26), method="bt").assignment.shape == (26,)


@settings(max_examples=60, deadline=None)
@given(spn_and_query(max_vars=6), st.data())
def test_derivative_pass_gives_every_single_variable_change(case, data):
    """d[v, k] = log S(x with X_v := k), for assigned and marginalised variables, zeros included; by the
    log-domain pass and by the scaled-number one."""
    from spnkit.kernels.derivative import derivatives, derivatives_mask_scaled
    from spnkit.kernels.passes import assignment_mask
    from spnkit.kernels.scaled import from_log, split_weights

    spn, _ = case
    x = np.array([data.draw(st.integers(-1, int(c) - 1)) for c in spn.cardinalities], dtype=np.int64)
    mc = int(spn.cardinalities.max())
    d = derivatives(spn.node_type, spn.child_ptr, spn.children, spn.log_w, spn.leaf_var, spn.leaf_val, x, mc,
                    np.empty(spn.n_nodes), np.empty(spn.n_nodes))
    n, nv = spn.n_nodes, spn.n_vars

    def scaled_pass(W, We):
        ds = np.empty_like(d)
        root = derivatives_mask_scaled(spn.node_type, spn.child_ptr, spn.children, W, We, spn.leaf_var,
                                       spn.leaf_val, assignment_mask(x, mc), np.empty(n), np.empty(n),
                                       np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty((nv, mc)),
                                       np.empty((nv, mc), dtype=np.int64), ds)
        return root, ds

    # the scaled-number pass (exact search's) gives the same, with linear weights and with every weight split
    # into mantissa and exponent (what networks with weights beyond 2^+-100 get)
    split = np.array([from_log(lw) for lw in spn.log_w]).reshape(-1, 2)
    runs = [scaled_pass(*split_weights(spn.log_w)[:2]),
            scaled_pass(split[:, 0].copy(), split[:, 1].astype(np.int64))]

    def check(got, want):
        if want == -np.inf:
            assert got == -np.inf
        else:
            assert got == pytest.approx(want, abs=1e-9)

    for root, _ in runs:
        check(root, float(spn.log_prob(x)[0]))
    for v in range(spn.n_vars):
        for k in range(int(spn.cardinalities[v])):
            y = x.copy()
            y[v] = k
            want = float(spn.log_prob(y)[0])
            check(d[v, k], want)
            for _, ds in runs:
                check(ds[v, k], want)


@settings(max_examples=60, deadline=None)
@given(spn_and_query(max_vars=6), st.integers(1, 12), st.integers(0, 2**16))
def test_beam_search_never_exceeds_the_optimum_and_is_seeded(case, beam, seed):
    spn, q = case
    brute = spnkit.map(spn, q, method="brute")
    a = spnkit.map(spn, q, method="bs", beam=beam, seed=seed)
    b = spnkit.map(spn, q, method="bs", beam=beam, seed=seed)
    assert a.log_value <= brute.log_value + 1e-9
    assert a.assignment.tolist() == b.assignment.tolist()
    assert a.log_value == pytest.approx(float(spn.log_prob(a.assignment)[0]), abs=1e-12)


def test_beam_search_climbs_to_a_local_optimum_on_nltcs(nltcs_path):
    """At the returned assignment no single-variable change improves the value (hill climbing's fixpoint)."""
    spn = spnkit.load(nltcs_path)
    q = Query.parse("??*01???**1?0??*")
    r = spnkit.map(spn, q, method="bs", beam=10, seed=1)
    for v in q.query_vars:
        for k in range(2):
            y = r.assignment.copy()
            y[v] = k
            assert spn.log_prob(y)[0] <= r.log_value + 1e-12


@settings(max_examples=60, deadline=None)
@given(spn_and_query(max_vars=6))
def test_argmax_product_is_never_below_the_best_tree_value(case):
    """By induction (decomposability, non-negative weights): S_i(AMAP candidate) >= best induced-tree value of i."""
    from spnkit.kernels.maxprod import best_tree

    spn, q = case
    red = spnkit.reduce(spn, q)
    _, tree = best_tree(red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val,
                        red.n_vars)
    amap = spnkit.map(spn, q, method="amap")
    assert amap.log_value >= tree - 1e-9
    assert amap.log_value <= spnkit.map(spn, q, method="brute").log_value + 1e-9


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(spn_and_query(max_vars=7), st.sampled_from([1, 3, 40])), min_size=2, max_size=6))
def test_kbt_scratch_kept_per_network_gives_what_fresh_scratch_gives(calls):
    """spnkit.map keeps a network's K-best scratch for its last k (map_api._kbt_buffers): calls in any order of
    networks, queries and k give what map_batch gives on its own fresh scratch."""
    for (spn, q), k in calls:
        r = spnkit.map(spn, q, method="kbt", k=k)
        df = spnkit.map_batch(spn, [q], method="kbt", k=k)
        assert r.log_value == df["log_value"][0]
        assert r.assignment.tolist() == df["assignment"][0].tolist()
        assert spn.__dict__["_kbt_scratch"][0] == k
