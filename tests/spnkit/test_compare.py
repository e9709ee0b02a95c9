"""compare(): tidy rows, the authors' summaries recomputed by hand, Ctrl-C keeps what finished, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from spnkit import QueryError
from spnkit.compare import battle, compare, summary, table, wins
from spnkit.protocol import protocol_queries

from .random_spns import random_spn


@pytest.fixture(scope="module")
def result():
    spns = {"a": random_spn(1, n_vars=8, max_card=2), "b": random_spn(2, n_vars=7, max_card=3)}
    return compare(spns, methods=["bt", "ng", "kbt", "exact"], settings=["5:2:3", "10:0:0"], n_queries=12,
                   progress=False)


def test_one_row_per_spn_setting_query_method(result):
    assert len(result) == 2 * 2 * 12 * 4
    assert list(result.columns[:9]) == ["spn", "evidence", "setting", "query", "method", "log_value", "seconds",
                                        "exact", "timed_out"]
    assert (result["evidence"] == "uniform").all()
    assert not result.duplicated(["spn", "setting", "query", "method"]).any()
    assert result.loc[result.method == "exact", "exact"].all()


def test_wincnt_and_the_other_summaries_by_hand(result):
    s = summary(result)
    for (spn, method), row in s.set_index(["spn", "method"]).iterrows():
        mine = result[(result.spn == spn) & (result.method == method)]
        best = result[result.spn == spn].groupby(["setting", "query"])["log_value"].max()
        v = mine.set_index(["setting", "query"])["log_value"]
        assert row["WINCNT"] == int((np.abs(best.loc[v.index] - v) <= 1e-6).sum())
        assert row["TIMEAVG"] == pytest.approx(mine["seconds"].mean())
        assert row["RESAVG"] == pytest.approx(mine["log_value"].mean())
        assert row["RESLSE"] == pytest.approx(np.log(np.exp(mine["log_value"]).sum()))
        assert row["FINISH"] == len(mine)
    ex = s[s.method == "exact"]
    assert (ex["WINCNT"] == ex["queries"]).all()                 # the exact solver wins every query
    t = table(result, "WINCNT")
    assert t.loc["a", "exact"] == 24 and t.index.name == "spn (uniform evidence)"


def test_evidence_from_data_rows_and_tables_that_say_so(result):
    rows = np.array([[0, 1, 0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 1, 1, 0, 0, 1]])
    spns = {"a": random_spn(1, n_vars=8, max_card=2)}
    data = compare(spns, methods=["bt", "exact"], settings=["3:5:2"], n_queries=10, progress=False,
                   evidence={"a": rows})
    assert (data["evidence"] == "data").all()
    qs = protocol_queries(spns["a"].cardinalities, "3:5:2", 10, seed=0, evidence_rows=rows)   # what compare drew
    for q, x in zip(qs, data.loc[data.method == "exact", "assignment"], strict=True):
        ev = q.evidence_vars
        assert len(ev) and np.array_equal(x[ev], q.value[ev])
        assert any(np.array_equal(r[ev], q.value[ev]) for r in rows)       # each query's evidence is a data row
    both = pd.concat([result[result.spn == "a"], data])
    t = table(both, "FINISH")
    assert list(t.index.names) == ["spn", "evidence"] and set(t.index) == {("a", "uniform"), ("a", "data")}
    assert (summary(both)["evidence"].isin(["uniform", "data"])).all()
    with pytest.raises(QueryError, match="evidence rows missing"):
        compare({"a": spns["a"], "b": spns["a"]}, methods=["bt"], evidence={"a": rows}, progress=False)
    with pytest.raises(QueryError, match="no dataset known"):
        compare({"mine": spns["a"]}, methods=["bt"], evidence="data", progress=False)


def test_evidence_data_reads_the_benchmark_spns_test_rows(nltcs_path):
    from spnkit.datasets import evidence_rows, load_spn

    spn, rows = load_spn("nltcs"), evidence_rows("nltcs")
    df = compare({"nltcs": spn}, methods=["bt"], settings=["2:3:5"], n_queries=20, evidence="data", progress=False)
    qs = protocol_queries(spn.cardinalities, "2:3:5", 20, seed=0, evidence_rows=rows)
    for q, x in zip(qs, df["assignment"], strict=True):
        ev = q.evidence_vars
        assert np.array_equal(x[ev], q.value[ev])
        assert (rows[:, ev] == q.value[ev]).all(axis=1).any()


def test_battle_counts_dominance(result):
    b = battle(result)
    assert (np.diag(b.to_numpy()) == 0).all()
    v = result.pivot_table(index=["spn", "setting", "query"], columns="method", values="log_value")
    t = result.pivot_table(index=["spn", "setting", "query"], columns="method", values="seconds")
    assert b.loc["bt", "exact"] == int(((t["bt"] < t["exact"]) & (v["bt"] > v["exact"])).sum()) == 0
    assert b.loc["exact", "bt"] == int(((t["exact"] < t["bt"]) & (v["exact"] > v["bt"])).sum())


def test_wins_treat_all_impossible_as_a_tie():
    df = pd.DataFrame({"spn": "s", "setting": "x", "query": 0, "method": ["a", "b"],
                       "log_value": [-np.inf, -np.inf], "seconds": 1.0, "exact": False, "timed_out": False})
    assert wins(df).all()


def test_ctrl_c_returns_what_finished(monkeypatch):
    import spnkit.compare as cmp

    calls = {"n": 0}
    real = cmp.map_batch

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cmp, "map_batch", flaky)
    df = compare({"a": random_spn(1, n_vars=6)}, methods=["bt", "ng", "kbt"], settings=["5:2:3"], n_queries=5,
                 progress=False)
    assert df.attrs["interrupted"] and set(df["method"]) == {"bt", "ng"} and len(df) == 10


def test_cli_map_and_compare(tmp_path, nltcs_path):
    qfile = tmp_path / "q.txt"
    qfile.write_text("??*01???**1?0??*\n" + "?" * 16 + "\n")
    out = tmp_path / "r.csv"
    run = subprocess.run([sys.executable, "-m", "spnkit", "map", str(nltcs_path), str(qfile), "--method", "exact",
                          "--timeout", "5", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    df = pd.read_csv(out)
    assert len(df) == 2 and df["exact"].all()
    assert df["log_value"][1] == pytest.approx(-1.7356024190, abs=1e-9)
    run = subprocess.run([sys.executable, "-m", "spnkit", "compare", str(nltcs_path), "--methods", "bt,exact",
                          "--settings", "5:2:3", "--queries", "6", "--out", str(tmp_path / "t.csv")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "WINCNT" in run.stdout and (tmp_path / "t.summary.csv").exists() and (tmp_path / "t.battle.csv").exists()


def test_compare_is_callable_from_the_package_and_checks_everything_before_running(monkeypatch):
    import spnkit
    import spnkit.compare as cmp

    spns = {"a": random_spn(1, n_vars=6)}
    df = spnkit.compare(spns, methods=["bt", "exact"], settings=["5:2:3"], n_queries=4, progress=False)
    ref = compare(spns, methods=["bt", "exact"], settings=["5:2:3"], n_queries=4, progress=False)
    cols = ["spn", "setting", "query", "method", "log_value", "exact"]          # all but the timings
    assert len(df) == 8 and df[cols].equals(ref[cols])
    assert spnkit.compare.summary is summary and cmp.compare is compare
    calls = []
    monkeypatch.setattr(cmp, "map_batch", lambda *a, **k: calls.append(1))
    for kw, what in (({"methods": ["bt", "nope"]}, "unknown method 'nope'"),
                     ({"methods": ["bt", "bt"]}, "listed more than once"),
                     ({"methods": []}, "methods is empty"),
                     ({"methods": ["bt", "kbt"], "k": 10**9}, "kbt with k=1,000,000,000 needs"),
                     ({"n_queries": 0}, "n_queries=0"), ({"n_queries": -3}, "n_queries=-3"),
                     ({"n_queries": 2.5}, "n_queries=2.5"), ({"settings": ["5:2:3", "9:9:9"]}, "setting '9:9:9'"),
                     ({"settings": []}, "settings is empty"), ({"group": 0}, "group=0"),
                     ({"queries": {"a": {"x": []}}}, "is empty"), ({"timeout": "abc"}, "timeout='abc'")):
        with pytest.raises(QueryError, match=what):
            cmp.compare(spns, progress=False, **{"methods": ["bt"], "settings": ["5:2:3"], "n_queries": 3, **kw})
    assert calls == []                                    # refused before the first batch


def test_cli_compare_keeps_two_models_with_the_same_name(tmp_path, nltcs_path):
    import shutil

    (tmp_path / "json" / "nltcs").mkdir(parents=True)
    other = tmp_path / "json" / "nltcs" / "spn.spn"             # same stem "spn" -> its folder's name, "nltcs"
    shutil.copy(nltcs_path, other)
    out = tmp_path / "t.csv"
    run = subprocess.run([sys.executable, "-m", "spnkit", "compare", str(nltcs_path), str(other), "--methods", "bt",
                          "--settings", "5:2:3", "--queries", "3", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "naming those by their path" in run.stderr
    assert sorted(set(pd.read_csv(out)["spn"])) == sorted([str(nltcs_path), str(other)])
    run = subprocess.run([sys.executable, "-m", "spnkit", "compare", str(nltcs_path), str(nltcs_path), "--out",
                          str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and "listed twice" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("argv,what", [
    (["map", "MISSING.spn", "q.txt"], "No such file"),
    (["map", "{model}", "{bad}"], "QueryError: .*bad.q:1: symbol 'x'"),
    (["map", "{model}", "{good}", "--method", "kbt", "--k", "0"], "QueryError: k=0"),
    (["map", "{bad}", "{good}"], "SPNFormatError"),
    (["map", "{model}", "{good}", "--method", "kbt", "--k", "100000000"], "QueryError: kbt with k=100,000,000"),
    (["map", "{model}", "{good}", "--method", "kbt", "--k", str(2**70)], "QueryError: k=1180591620717411303424"),
    (["compare", "{model}", "--out", "t.csv", "--queries", "0"], "QueryError: n_queries=0"),
    (["compare", "{model}", "--out", "t.csv", "--methods", "bt,nope"], "QueryError: unknown method 'nope'"),
    (["compare", "{model}", "--out", "t.csv", "--evidence-from", "{bad}"], "QueryError: --evidence-from .*bad.q"),
    (["compare", "{model}", "--out", "t.csv", "--evidence-from", "{narrow}"], "QueryError: evidence_rows has shape"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, nltcs_path, argv, what):
    (tmp_path / "bad.q").write_text("??x\n")
    (tmp_path / "good.q").write_text("?" * 16 + "\n")
    (tmp_path / "narrow.csv").write_text("0,1\n1,0\n")          # 2 columns for a 16-variable SPN
    argv = [a.format(model=nltcs_path, bad=tmp_path / "bad.q", good=tmp_path / "good.q", narrow=tmp_path / "narrow.csv")
            for a in argv]
    run = subprocess.run([sys.executable, "-m", "spnkit", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    import re

    assert re.search(what, run.stderr), run.stderr
