"""The linear-domain fast path against the log-domain passes, in range and out of it (fallback)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import FlatSPN, Query
from spnkit.kernels.passes import assignment_mask, lin_value_mask, log_value, log_value_fast, log_value_mask

from .random_spns import random_spn, spn_seeds


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
