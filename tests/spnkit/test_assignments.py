"""map_batch's ``assignment`` column (an extension array over the kernel's (m, n_vars) output) behaves under
pandas operations exactly as a column of separate arrays (numpy object dtype, the oracle) does."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spnkit
from spnkit.assignments import AssignmentArray, AssignmentDtype
from spnkit.protocol import protocol_queries

from .random_spns import random_spn


def _rows(column) -> list:
    return [a.tolist() if isinstance(a, np.ndarray) else None for a in column]


@pytest.fixture(scope="module")
def frames():
    """map_batch's frame and the same frame with the assignments as an object column of spnkit.map's arrays."""
    spn = random_spn(5, n_vars=6, max_card=3)
    qs = protocol_queries(spn.cardinalities, "3:5:2", 12, seed=1)
    df = spnkit.map_batch(spn, qs, "kbt", k=3)
    oracle = df.copy()
    oracle["assignment"] = pd.Series([spnkit.map(spn, q, "kbt", k=3).assignment for q in qs], dtype=object)
    return df, oracle


def test_each_row_is_what_map_returns(frames):
    df, oracle = frames
    assert df["assignment"].dtype == AssignmentDtype(6) and str(df["assignment"].dtype) == "assignment[6]"
    assert _rows(df["assignment"]) == _rows(oracle["assignment"])
    assert isinstance(df["assignment"].iloc[0], np.ndarray) and df["assignment"].iloc[0].dtype == np.int64
    np.testing.assert_array_equal(df["assignment"].array.rows, np.stack(oracle["assignment"].to_list()))
    assert list(df["method"]) == ["kbt"] * len(df)


OPS = {
    "mask": lambda d: d[d["query"] % 3 == 1],
    "sort": lambda d: d.sort_values(["log_value", "query"], ascending=[False, True]),
    "reverse step": lambda d: d.iloc[::-2],
    "reindex with missing": lambda d: d.reindex([2, 0, 99, 1, -5]),
    "concat": lambda d: pd.concat([d, d.iloc[:3]], ignore_index=True),
    "shift": lambda d: d.shift(2),
    "merge right": lambda d: d.merge(d[["query"]].iloc[[4, 1]], on="query", how="right"),
    "merge outer": lambda d: d.iloc[:5].merge(pd.DataFrame({"query": [3, 40]}), on="query", how="outer"),
    "pickle": lambda d: pickle.loads(pickle.dumps(d)),
    "dropna": lambda d: d.reindex([0, 50, 2]).dropna(subset=["assignment"]),
    "sample": lambda d: d.sample(frac=1.0, random_state=3),
    "set_index": lambda d: d.set_index("query").loc[[5, 3]].reset_index(),
}


@pytest.mark.parametrize("op", list(OPS))
def test_pandas_operations_match_an_object_column(frames, op):
    df, oracle = frames
    got, want = OPS[op](df), OPS[op](oracle)
    assert list(got.index) == list(want.index)
    assert _rows(got["assignment"]) == _rows(want["assignment"])
    assert got["assignment"].isna().tolist() == want["assignment"].isna().tolist()


def test_concat_of_different_widths_falls_back_to_arrays(frames):
    df, _ = frames
    other = spnkit.map_batch(random_spn(2, n_vars=4, max_card=2), [spnkit.Query(4)], "bt")
    both = pd.concat([df, other], ignore_index=True)
    assert both["assignment"].dtype == object
    assert _rows(both["assignment"]) == _rows(df["assignment"]) + _rows(other["assignment"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 2), min_size=3, max_size=3), min_size=1, max_size=12))
def test_grouping_and_sorting_use_the_whole_row(rows):
    s = pd.Series(AssignmentArray(np.array(rows, dtype=np.int64)))
    tuples = [tuple(r) for r in rows]
    assert sorted(map(tuple, s.sort_values().to_list())) == sorted(tuples)
    assert [tuple(r) for r in s.sort_values(kind="stable")] == sorted(tuples)      # first variable first
    assert [tuple(r) for r in s.unique()] == list(dict.fromkeys(tuples))            # in order of appearance
    counts = s.value_counts()
    assert {tuple(k): v for k, v in counts.items()} == {t: tuples.count(t) for t in set(tuples)}
    sizes = pd.DataFrame({"a": s, "one": 1}).groupby("a")["one"].sum()
    assert {tuple(k): v for k, v in sizes.items()} == {t: tuples.count(t) for t in set(tuples)}
    assert s.duplicated().tolist() == [t in tuples[:i] for i, t in enumerate(tuples)]


def test_comparison_setitem_and_copies(frames):
    df, _ = frames
    col = df["assignment"].array
    first = col[0].copy()
    assert (col == first).tolist() == [r.tolist() == first.tolist() for r in col]
    assert (col != first).tolist() == [r.tolist() != first.tolist() for r in col]
    assert (col == col.copy()).all() and df.equals(df.copy())
    s = df["assignment"].copy()
    s.iloc[0] = s.iloc[1]
    s.iloc[2] = None
    assert s.iloc[0].tolist() == df["assignment"].iloc[1].tolist() and s.isna().tolist()[:3] == [False, False, True]
    assert s.iloc[2] is np.nan and (s.array.rows[2] == -1).all()
    assert df["assignment"].iloc[0].tolist() == first.tolist()          # the frame itself is untouched
    e = AssignmentArray(np.zeros((0, 6), dtype=np.int64))
    assert e.take([-1, -1], allow_fill=True).isna().all()


def test_conversions_and_display(frames):
    df, oracle = frames
    obj = df["assignment"].to_numpy()
    assert obj.dtype == object and obj.shape == (len(df),) and _rows(obj) == _rows(oracle["assignment"])
    assert df.astype({"assignment": object})["assignment"].dtype == object
    assert df["assignment"].astype(str).tolist() == [str(a) for a in oracle["assignment"]]
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    back = pd.read_csv(io.StringIO(buf.getvalue()))
    assert back["assignment"].tolist() == [str(a) for a in oracle["assignment"]]
    assert str(oracle["assignment"].iloc[0]) in df.to_string()
    made = pd.array([[0, 1], None, np.array([2, 0])], dtype="assignment[2]")
    assert _rows(made) == [[0, 1], None, [2, 0]] and made.dtype == AssignmentDtype(2)


def test_bad_input_is_refused(frames):
    df, _ = frames
    with pytest.raises(TypeError, match="object array"):
        np.asarray(df["assignment"].array, dtype=np.int64)
    with pytest.raises(TypeError, match="missing value"):
        df["assignment"].array.take([0, -1], allow_fill=True, fill_value=7)
    with pytest.raises(TypeError, match="expected 2 integers"):
        pd.array([[0, 1], [0, 1, 1]], dtype="assignment[2]")
    col = df["assignment"].array.copy()
    with pytest.raises(TypeError, match="holds integers, not float64"):
        col[0] = np.full(6, 0.5)                     # not truncated to zeros
    assert (col.rows[0] == df["assignment"].iloc[0]).all()
    with pytest.raises(TypeError, match="2-d int64"):
        AssignmentArray(np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="Cannot construct"):
        AssignmentDtype.construct_from_string("assignment[x]")
