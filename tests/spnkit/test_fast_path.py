"""The linear-domain fast path against the log-domain passes, in range and out of it (fallback)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import FlatSPN, Query
from spnkit.kernels.maxprod import best_tree, normalized_greedy
from spnkit.kernels.passes import assignment_mask, lin_value_mask, log_value, log_value_fast, log_value_mask

from .random_spns import NetBuilder, random_spn, spn_seeds


def _scaled(spn: FlatSPN, log2_scale: np.ndarray) -> FlatSPN:
    """The same structure with every sum node's weights multiplied by 2**scale (scale per edge's parent)."""
    owner = np.repeat(np.arange(spn.n_nodes), np.diff(spn.child_ptr))
    log_w = spn.log_w + np.where(spn.node_type[owner] == 1, log2_scale[owner] * math.log(2), 0.0)
    return FlatSPN(node_type=spn.node_type, child_ptr=spn.child_ptr, children=spn.children, log_w=log_w,
                   leaf_var=spn.leaf_var, leaf_val=spn.leaf_val, cardinalities=spn.cardinalities)


@settings(max_examples=80, deadline=None)
@given(spn_seeds, st.integers(2, 8), st.sampled_from([0, 20, 150, 600]), st.data())
def test_fast_path_equals_the_log_domain_everywhere(seed, n_vars, spread, data):
    """Weights scaled by up to 2**±spread: small spreads take the fast path, large ones fall back."""
    spn = random_spn(seed, n_vars=n_vars, normalised=False)
    rng = np.random.default_rng(seed)
    spn = _scaled(spn, rng.integers(-spread, spread + 1, size=spn.n_nodes).astype(float))
    W, ok = spn.linear_weights
    x = np.array([data.draw(st.integers(-1, int(c) - 1)) for c in spn.cardinalities], dtype=np.int64)
    buf = np.empty(spn.n_nodes)
    want = log_value(spn.node_type, spn.child_ptr, spn.children, spn.log_w, spn.leaf_var, spn.leaf_val, x, buf)
    got = log_value_fast(spn.node_type, spn.child_ptr, spn.children, spn.log_w, W, ok, spn.leaf_var,
                         spn.leaf_val, x, int(spn.cardinalities.max()), buf)
    if want == -np.inf:
        assert got == -np.inf
    else:
        assert got == pytest.approx(want, rel=1e-13, abs=1e-13)


def test_each_way_out_of_the_fast_path_is_taken_and_still_exact():
    # 1) in range: nltcs-like values take the fast path
    spn = random_spn(1, n_vars=6)
    W, ok = spn.linear_weights
    mask = assignment_mask(np.zeros(6, dtype=np.int64), int(spn.cardinalities.max()))
    assert ok and lin_value_mask(spn.node_type, spn.child_ptr, spn.children, W, spn.leaf_var, spn.leaf_val, mask,
                                 np.empty(spn.n_nodes))[1]
    # 2) a weight below 2**-100: the network never takes it
    tiny = _scaled(spn, np.full(spn.n_nodes, -200.0))
    assert not tiny.linear_weights[1]
    # 3) products whose value underflows: 1200 factors of 0.5 -> 2**-1200, below the smallest double
    n = 1200
    node_type = [0] * (2 * n) + [1] * n + [2]
    child_ptr = [0] * (2 * n + 1)
    children, log_w = [], []
    for v in range(n):
        children += [2 * v, 2 * v + 1]
        log_w += [math.log(0.25), math.log(0.25)]
        child_ptr.append(len(children))
    children += list(range(2 * n, 3 * n))
    log_w += [0.0] * n
    child_ptr.append(len(children))
    chain = FlatSPN(node_type=node_type, child_ptr=child_ptr, children=children, log_w=log_w,
                    leaf_var=[v for v in range(n) for _ in (0, 1)] + [-1] * (n + 1),
                    leaf_val=[0, 1] * n + [-1] * (n + 1), cardinalities=[2] * n)
    W, ok = chain.linear_weights
    x = np.zeros(n, dtype=np.int64)
    assert ok and not lin_value_mask(chain.node_type, chain.child_ptr, chain.children, W, chain.leaf_var,
                                     chain.leaf_val, assignment_mask(x, 2), np.empty(chain.n_nodes))[1]
    assert chain.log_prob(x)[0] == pytest.approx(n * math.log(0.25), rel=1e-12)
    assert chain.log_partition() == pytest.approx(n * math.log(0.5), rel=1e-12)
    for method in ("bt", "ng", "exact-mc", "exact"):
        r = spnkit.map(chain, Query(n, query=range(10), hidden=range(10, n)), method=method)
        assert r.log_value == pytest.approx(10 * math.log(0.25) + (n - 10) * math.log(0.5), rel=1e-12)
    mask_all = np.ones((n, 2), dtype=bool)
    assert log_value_mask(chain.node_type, chain.child_ptr, chain.children, chain.log_w, chain.leaf_var,
                          chain.leaf_val, mask_all, np.empty(chain.n_nodes)) == pytest.approx(n * math.log(0.5))


@settings(max_examples=60, deadline=None)
@given(spn_seeds, st.integers(4, 10), st.sampled_from([0, 90, 600]), st.data())
def test_bt_and_ng_with_most_variables_hidden_equal_their_run_on_the_reduced_network(seed, n_vars, spread, data):
    """At least 3/4 hidden: BT/NG skip the hidden-only nodes, reading stored marginals (scaled numbers, whose
    sums align children up to 2^(90 * depth) apart at spread 90, or log values when weights beyond 2^+-100 rule
    scaled numbers out); the reduced network is the independent way."""
    spn = random_spn(seed, n_vars=n_vars, normalised=False)
    rng = np.random.default_rng(seed)
    spn = _scaled(spn, rng.integers(-spread, spread + 1, size=spn.n_nodes).astype(float))
    perm = data.draw(st.permutations(range(n_vars)))
    n_shown = data.draw(st.integers(1, max(1, n_vars // 4)))
    shown = perm[:n_shown]
    evidence = {v: int(rng.integers(spn.cardinalities[v])) for v in shown[1:]}
    q = Query(n_vars, query=[shown[0]], evidence=evidence)
    red = spnkit.reduce(spn, q)
    args = (red.node_type, red.child_ptr, red.children, red.log_w, red.leaf_var, red.leaf_val, red.n_vars)
    for method, on_reduced in (("bt", best_tree(*args)[0]), ("ng", normalized_greedy(*args))):
        r = spnkit.map(spn, q, method=method)
        want = float(spn.log_prob(q.complete(on_reduced))[0])
        assert r.log_value == pytest.approx(want, abs=1e-9), method
        assert r.log_value == pytest.approx(float(spn.log_prob(r.assignment)[0]), abs=1e-9)
    # the other methods build the reduced network from the same sparse sweep's constants
    qv = q.query_vars[0]
    full = np.array([q.complete(np.array([k])) for k in range(int(spn.cardinalities[qv]))])
    optimum = float(spn.log_prob(full).max())
    for method in ("exact-mc", "exact", "kbt", "amap", "bs"):
        r = spnkit.map(spn, q, method=method)
        assert r.log_value == pytest.approx(float(spn.log_prob(r.assignment)[0]), abs=1e-9), method
        if method in ("exact-mc", "exact", "bs"):     # bs: with one query variable a single flip reaches any value
            assert r.log_value == pytest.approx(optimum, abs=1e-9), method
        else:
            assert r.log_value <= optimum + 1e-9, method


def test_in_range_factors_that_overflow_before_a_zero_factor_fall_back_instead_of_giving_nan():
    """Found while splitting the product into two partial products: 2^600 * 2^600 = inf in float64, and
    inf * 0 = NaN, which a range check written as ``v < lo or v > hi`` lets through. Both paths now give -inf."""
    net = NetBuilder()
    add = net.add
    leaves = [[add(0, var=v, val=k) for k in (0, 1)] for v in range(14)]
    big = math.log(2.0 ** 99)                            # a weight the fast path accepts (<= 2^100)

    def bern(v, w):
        return add(1, leaves[v], w)

    pa = add(2, [bern(v, [big, big]) for v in range(6)], [0.0] * 6)          # 2^600 when summed out
    pb = add(2, [bern(v, [big, big]) for v in range(6, 12)], [0.0] * 6)      # 2^600
    one = bern(12, [0.0, -math.inf])                                          # 1 at x12 = 0
    zero = bern(13, [-math.inf, 0.0])                                         # 0 at x13 = 0
    add(2, [pa, one, pb, zero], [0.0] * 4)              # partial products: pa * pb = inf, one * zero = 0
    spn = net.spn([2] * 14)
    assert spn.linear_weights[1]
    x = np.full(14, -1)
    x[12] = x[13] = 0
    assert spn.log_prob(x)[0] == -np.inf
    for method in ("bt", "ng", "exact", "kbt"):
        assert spnkit.map(spn, Query(14, query=[0], evidence={12: 0, 13: 0}), method=method).log_value == -np.inf


def test_weights_that_underflow_to_zero_are_not_taken_for_zero_edges():
    """A finite log weight below ~-745 gives exp() = 0.0 exactly. The fast path once took such an edge for a
    true zero (found by hypothesis: a reduced network carrying constants of ~e^-740 made brute force and
    exact-mc pick a worse value). Judged on the log weights now, the network takes the log domain."""
    net = NetBuilder()
    leaves = [net.add(0, var=0, val=k) for k in (0, 1, 2)]
    net.add(1, leaves, [-800.0, -801.0, -799.5])
    spn = net.spn([3])
    assert not spn.linear_weights[1]
    assert spn.log_prob(np.array([[0], [1], [2]]))[:, None].ravel().tolist() == pytest.approx([-800.0, -801.0,
                                                                                              -799.5])
    for method in ("brute", "exact-mc", "exact", "bt"):
        r = spnkit.map(spn, Query(1), method=method)
        assert r.assignment.tolist() == [2] and r.log_value == pytest.approx(-799.5), method


def test_scaled_sums_drop_a_term_below_two_to_the_minus_900_and_keep_it_when_alone():
    """A sum of a child worth 1 and one worth 2^-990 (ten factors of 2^-99): the small one is dropped (its
    share is far below a double's precision); with the large child off, the small one alone is the value,
    exactly."""
    net = NetBuilder()
    leaves = [[net.add(0, var=v, val=k) for k in (0, 1)] for v in range(21)]
    def factors(vs, log_w):                  # a product of one sum per variable, each worth exp(log_w)
        return [net.add(1, leaves[v], [log_w, log_w]) for v in vs]

    small = net.add(2, factors(range(10), -99 * math.log(2)) + factors(range(10, 20), 0.0) + [leaves[20][0]])
    one = net.add(2, factors(range(20), 0.0) + [leaves[20][1]])
    net.add(1, [small, one], [0.0, 0.0])     # 2^-990 [x20 = 0] + [x20 = 1] at any x0..x19
    spn = net.spn([2] * 21)
    assert spn.linear_weights[1]
    evidence = {v: 0 for v in range(1, 20)}
    for x20, want in ((None, 0.0), (0, -990 * math.log(2)), (1, 0.0)):
        q = Query(21, query=[0], evidence=evidence if x20 is None else {**evidence, 20: x20},
                  hidden=[20] if x20 is None else [])
        for method in ("bt", "ng", "exact", "kbt", "brute"):
            r = spnkit.map(spn, q, method=method)
            assert r.log_value == pytest.approx(want, abs=1e-9), (x20, method)
            assert r.log_value == pytest.approx(float(spn.log_prob(r.assignment)[0]), abs=1e-9)
