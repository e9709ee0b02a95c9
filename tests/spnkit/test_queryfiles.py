"""Query files: the authors' lines and pyspn's .query/.evid/.map round trip; the shared PAC-MAP files agree."""

from __future__ import annotations

import numpy as np
import pytest

from spnkit import Query, QueryError
from spnkit.protocol import protocol_queries
from spnkit.queryfiles import (
    read_pyspn,
    read_pyspn_map,
    read_queries,
    read_query_lines,
    write_pyspn,
    write_pyspn_map,
    write_query_lines,
)

from .conftest import shared_file


def _same(a: list[Query], b: list[Query]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.role.tolist() == y.role.tolist() and x.value.tolist() == y.value.tolist()


def test_every_format_round_trips(tmp_path):
    qs = protocol_queries(np.full(12, 2), "3:3:4", count=20, seed=4)
    write_query_lines(qs, tmp_path / "a.q")
    _same(read_query_lines(tmp_path / "a.q"), qs)
    write_pyspn(qs, tmp_path / "b.query", tmp_path / "b.evid")
    _same(read_pyspn(tmp_path / "b.query", tmp_path / "b.evid", 12), qs)
    _same(read_queries(tmp_path / "b.evid", n_vars=12), qs)
    write_pyspn_map(qs, tmp_path / "c.map")
    _same(read_pyspn_map(tmp_path / "c.map", 12), qs)


def test_the_pac_map_files_agree_with_each_other():
    """PAC-MAP's 0.5q_0.5e set exists as .query/.evid and as an alternating .map: same queries."""
    a = read_pyspn(shared_file("spn/pyspn/nltcs/nltcs_0.5q_0.5e.query"),
                   shared_file("spn/pyspn/nltcs/nltcs_0.5q_0.5e.evid"), 16)
    b = read_pyspn_map(shared_file("spn/pyspn/nltcs/nltcs_0.5q_0.5e.map"), 16)
    _same(a, b)
    assert all(len(q.query_vars) == 8 and len(q.evidence_vars) == 8 for q in a)
    qme = read_pyspn_map(shared_file("spn/pyspn/nltcs/nltcs_single_scenario.map"), 16)
    assert len(qme) == 1 and qme[0].query_vars.tolist() == [2, 4, 8, 12]
    assert qme[0].hidden_vars.tolist() == [1, 3, 5, 9, 10, 13, 14, 15]
    assert {int(v): int(qme[0].value[v]) for v in qme[0].evidence_vars} == {0: 1, 6: 1, 7: 1, 11: 1}


@pytest.mark.parametrize("files,what", [
    ({"x.q": "??*\n??\n"}, "different lengths"),
    ({"x.q": "??x\n"}, r"x.q:1: symbol 'x'"),
    ({"x.query": "2 1 2\n", "x.evid": "1 3\n"}, r"x.evid:1: the count says 1 \(var, value\) pairs"),
    ({"x.query": "1 1\n1 2\n", "x.evid": "0\n"}, "2 queries but"),
    ({"x.map": "q 1 2\nm 3\nz 4\n"}, r"x.map:3: expected a line starting 'q'"),
    ({"x.map": "1 2\n0 1\n3\n"}, "alternating"),
    ({"x.map": "q 1 9\n"}, r"x.map:1: variable 9 is out of range"),
])
def test_bad_query_files_name_file_and_line(tmp_path, files, what):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(QueryError, match=what):
        read_queries(tmp_path / next(iter(files)), n_vars=5)


def test_pyspn_files_need_the_number_of_variables(tmp_path):
    (tmp_path / "x.map").write_text("q 1\n")
    with pytest.raises(QueryError, match="pass n_vars"):
        read_queries(tmp_path / "x.map")


def test_protocol_sizes_roles_and_evidence_from_data():
    from spnkit.protocol import ALL_SETTINGS

    # the authors loop q = 1..9, e = 0.. while q + e <= 10 (final.go GenerateQEH): 54 settings, not the 45
    # the notes count
    assert len(ALL_SETTINGS) == 54 and ALL_SETTINGS[0] == "1:0:9" and ALL_SETTINGS[-1] == "9:1:0"
    cards = np.full(16, 2)
    for setting, (nq, ne) in {"5:2:3": (8, 3), "1:1:8": (1, 1), "10:0:0": (16, 0), "1:0:9": (1, 0)}.items():
        for q in protocol_queries(cards, setting, count=5, seed=1):
            assert (len(q.query_vars), len(q.evidence_vars)) == (nq, ne)
    rows = np.array([[1] * 8 + [0] * 8])                          # one data row: evidence must copy it
    for q in protocol_queries(cards, "2:6:2", count=10, seed=2, evidence_rows=rows):
        ev = q.evidence_vars
        assert np.array_equal(q.value[ev], rows[0, ev])
    with pytest.raises(QueryError, match="evidence_rows has shape"):
        protocol_queries(cards, "5:2:3", evidence_rows=np.zeros((3, 5), dtype=int))
    with pytest.raises(QueryError, match="Q:E:H"):
        protocol_queries(cards, "5:5:5")
