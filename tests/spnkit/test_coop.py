"""map_batch's searches share a long query with idle workers (kernels.coop): the answers stay optimal."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import Query, synthetic
from spnkit.protocol import protocol_queries

from .conftest import shared_file
from .test_map import enumerate_map, spn_and_query

SEARCHES = ("exact-mc", "exact-fc", "exact-fco", "exact-fcos", "exact")

pytestmark = pytest.mark.skipif(nb.config.NUMBA_NUM_THREADS < 2, reason="sharing a search needs two threads")


@pytest.fixture(scope="module")
def two_threads():
    threads = nb.get_num_threads()
    nb.set_num_threads(2)
    yield
    nb.set_num_threads(threads)


@settings(max_examples=40, deadline=None)
@given(spn_and_query(max_vars=8), st.sampled_from(SEARCHES), st.integers(1, 3))
def test_shared_searches_find_the_enumerated_optimum(two_threads, case, method, copies):
    """With a deadline check at every expansion, an idle worker is handed subtrees as soon as it asks: every
    row must still be the enumerated optimum, proven, with the assignment's own value."""
    spn, q = case
    _, _, scores = enumerate_map(spn, q)
    best = scores.max()
    df = spnkit.map_batch(spn, [q] * copies, method=method, check_every=1)
    for i in range(copies):
        assert df["exact"][i] and not df["timed_out"][i]
        if best == -np.inf:
            assert df["log_value"][i] == -np.inf
        else:
            assert df["log_value"][i] == pytest.approx(best, abs=1e-9)
            assert df["upper_bound"][i] == pytest.approx(best, abs=1e-9)
            a = df["assignment"][i]
            assert df["log_value"][i] == pytest.approx(float(spn.log_prob(a)[0]), abs=1e-12)


@pytest.mark.parametrize("method", SEARCHES)
def test_one_long_query_is_shared_and_gives_the_single_call_answer(two_threads, method):
    """A batch of one query: the second worker has nothing else to do, so the search hands it subtrees; the
    value, the proof and (no tied optima here) the assignment are those of spnkit.map. The query takes
    0.2-0.3 s alone (a 40-component mixture over 20 variables, all queried: ~10^4 expansions), so the idle worker
    is there to take subtrees however the threads are scheduled (a sub-millisecond nltcs query had left it no
    time under a loaded test run)."""
    spn = synthetic.mixture(20, 40, seed=2)
    q = Query(20)
    r = spnkit.map(spn, q, method=method)
    df = spnkit.map_batch(spn, [q], method=method, check_every=1)
    assert df["subtrees_shared"][0] > 0
    assert df["log_value"][0] == r.log_value and df["exact"][0] and r.exact
    assert df["assignment"][0].tolist() == r.assignment.tolist()
    assert df["upper_bound"][0] == pytest.approx(r.upper_bound, abs=1e-12)


def test_a_shared_search_that_times_out_reports_a_valid_bound(two_threads):
    """Out of time after handing out subtrees (a plants query exact-mc needs about a second for, given 20 ms):
    not exact, and the bound, merged over the workers, still covers the optimum."""
    spn = spnkit.load(shared_file("spn/json/plants/spn.json"))
    q = protocol_queries(spn.cardinalities, "5:2:3", 1, seed=0)[0]
    opt = spnkit.map(spn, q, method="exact").log_value
    df = spnkit.map_batch(spn, [q], method="exact-mc", check_every=1, timeout=0.02)
    assert not df["exact"][0] and df["timed_out"][0] and df["subtrees_shared"][0] > 0
    assert df["log_value"][0] <= opt + 1e-9 <= df["upper_bound"][0] + 2e-9
