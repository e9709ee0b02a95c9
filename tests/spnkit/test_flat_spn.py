"""FlatSPN evaluation against a naive recursive oracle, the authors' nltcs SPN, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit import FlatSPN, QueryError, SPNFormatError, SPNStructureError

from .random_spns import naive_value, random_spn, spn_seeds


def _all_assignments(cards):
    return np.array(list(itertools.product(*[range(int(c)) for c in cards])), dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(seed=spn_seeds, n_vars=st.integers(2, 6), data=st.data())
def test_log_prob_matches_naive_linear_evaluation(seed, n_vars, data):
    spn = random_spn(seed, n_vars=n_vars, normalised=data.draw(st.booleans()))
    rows = data.draw(st.lists(st.tuples(*[st.integers(-1, int(c) - 1) for c in spn.cardinalities]),
                              min_size=1, max_size=8))
    X = np.array(rows, dtype=np.int64)
    got = spn.log_prob(X)
    for x, g in zip(X, got, strict=True):
        want = naive_value(spn, x)
        if want == 0.0:
            assert g == -np.inf
        else:
            assert g == pytest.approx(math.log(want), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=spn_seeds, n_vars=st.integers(2, 5), var=st.integers(0, 4))
def test_marginalising_a_variable_equals_summing_over_its_values(seed, n_vars, var):
    spn = random_spn(seed, n_vars=n_vars)
    var = var % n_vars
    X = _all_assignments(spn.cardinalities)
    X_marg = X[X[:, var] == 0].copy()
    X_marg[:, var] = -1
    summed = np.zeros(len(X_marg))
    for v in range(int(spn.cardinalities[var])):
        X_v = X_marg.copy()
        X_v[:, var] = v
        summed += np.exp(spn.log_prob(X_v))
    np.testing.assert_allclose(np.exp(spn.log_prob(X_marg)), summed, rtol=1e-10, atol=1e-300)


@settings(max_examples=30, deadline=None)
@given(seed=spn_seeds)
def test_maxspn_round_trip_is_exact(seed, tmp_path_factory):
    spn = random_spn(seed, n_vars=5)
    p = tmp_path_factory.mktemp("rt") / "s.spn"
    spnkit.save(spn, p)
    back = spnkit.load(p)
    for name in ("node_type", "child_ptr", "children", "leaf_var", "leaf_val", "cardinalities"):
        np.testing.assert_array_equal(getattr(back, name), getattr(spn, name))
    np.testing.assert_array_equal(back.log_w, spn.log_w)  # bit-exact, -inf included


# -- the authors' learned SPN for nltcs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def nltcs(nltcs_path):
    return spnkit.load(nltcs_path)


def test_nltcs_structure_counts(nltcs):
    c = nltcs.counts()
    assert (c["nodes"], c["edges"], c["vars"]) == (2320, 6471, 16)
    assert (c["sum"], c["product"], c["leaf"]) == (2105, 183, 32)


def test_nltcs_is_normalised(nltcs):
    assert abs(nltcs.log_partition()) < 1e-9
    p = np.exp(nltcs.log_prob(_all_assignments(nltcs.cardinalities)))
    assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_nltcs_max_is_all_zeros(nltcs):
    lp = nltcs.log_prob(_all_assignments(nltcs.cardinalities))  # enumeration: 65,536 assignments
    assert int(np.argmax(lp)) == 0                                # row 0 is all zeros
    assert lp[0] == pytest.approx(-1.7356024190, abs=1e-9)


def test_nltcs_round_trip(nltcs, tmp_path):
    spnkit.save(nltcs, tmp_path / "n.spn")
    back = spnkit.load(tmp_path / "n.spn")
    np.testing.assert_array_equal(back.log_w, nltcs.log_w)
    np.testing.assert_array_equal(back.children, nltcs.children)


# -- bad input ------------------------------------------------------------------------------------------

GOOD = "(2 2)\nv 0 0\nv 0 1\nv 1 0\nv 1 1\n+ 0 -0.5 1 -0.9\n+ 2 -0.1 3 -2.3\n* 4 5\nEOF\n"


@pytest.mark.parametrize("text, where, what", [
    ("", "", "empty"),
    ("v 0 0\nEOF\n", ":1", "cardinality line"),
    ("(2 x)\nv 0 0\nEOF\n", ":1", "integers"),
    ("(2 2)\nv 0\nEOF\n", ":2", "v <var> <value>"),
    ("(2 2)\nv 0 0\nv 0 1\n+ 0 -0.5 1\nEOF\n", ":4", "sum line"),
    ("(2 2)\nv 0 0\nv 0 1\n+ 0 abc 1 -0.1\nEOF\n", ":4", "abc"),
    ("(2 2)\nv 0 0\nq 1 2\nEOF\n", ":3", "unknown node kind"),
    ("(2 2)\nv 0 0\nv 0 1\n+ 0 nan 1 -0.1\nEOF\n", ":4", "NaN"),
    (GOOD.replace("EOF\n", ""), "", "truncated"),
])
def test_malformed_maxspn_names_the_line(tmp_path, text, where, what):
    p = tmp_path / "bad.spn"
    p.write_text(text)
    with pytest.raises(SPNFormatError) as err:
        spnkit.load(p, format="maxspn")
    assert f"{p}{where}" in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("edit, what", [
    (lambda s: s.replace("+ 2 -0.1 3 -2.3", "+ 2 -0.1 0 -2.3"), "not complete"),
    (lambda s: s.replace("* 4 5", "* 4 4"), "not decomposable"),
    (lambda s: s.replace("* 4 5", "* 4 7"), "does not come before"),
    (lambda s: s.replace("* 4 5", "* 4 6"), "does not come before"),
    (lambda s: s.replace("v 1 1", "v 1 2"), "out of range 0..1"),
    (lambda s: s.replace("v 1 1", "v 7 1"), "variable 7 is out of range"),
    (lambda s: s.replace("* 4 5\n", "* 4 5\n+ 4 0.0\n"), "has no parent"),
    (lambda s: s.replace("-2.3", "inf"), "+inf"),
])
def test_invalid_structure_names_the_node(tmp_path, edit, what):
    p = tmp_path / "bad.spn"
    p.write_text(edit(GOOD))
    with pytest.raises(SPNStructureError, match="node") as err:
        spnkit.load(p)
    assert what in str(err.value)


def test_valid_small_file_loads(tmp_path):
    p = tmp_path / "ok.spn"
    p.write_text(GOOD)
    spn = spnkit.load(p)
    assert spn.log_prob([[1, 0]])[0] == pytest.approx(-0.9 - 0.1)


def test_unknown_format_is_a_typed_error(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world\n")
    with pytest.raises(SPNFormatError, match="cannot tell the format"):
        spnkit.load(p)


def test_bad_rows_raise_query_error():
    spn = random_spn(0, n_vars=3)
    with pytest.raises(QueryError, match=r"expected \(n, 3\)"):
        spn.log_prob(np.zeros((2, 4), dtype=int))
    with pytest.raises(QueryError, match="out of range"):
        spn.log_prob([[0, 0, int(spn.cardinalities[2])]])
    with pytest.raises(QueryError, match="out of range"):
        spn.log_prob([[0, -2, 0]])
    with pytest.raises(QueryError, match="integer"):
        spn.log_prob([[0.5, 0, 0]])


def test_arrays_are_read_only():
    spn = random_spn(1, n_vars=3)
    with pytest.raises(ValueError):
        spn.log_w[0] = 0.0


def test_flat_spn_rejects_inconsistent_arrays():
    with pytest.raises(SPNStructureError, match="child_ptr"):
        FlatSPN(node_type=[0], child_ptr=[0, 1], children=[], log_w=[], leaf_var=[0], leaf_val=[0],
                cardinalities=[2])
