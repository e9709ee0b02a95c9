"""Ctrl-C and timeouts during a solve (issue 20): every method stops at its check points.

The long solves are synthetic networks that run for minutes uninterrupted (``spnkit.synthetic``: exact search
and brute force on a 200-component mixture, AMAP on a 10,000-variable chain). The real-SIGINT tests send the
signal to a child process (``interrupt_child.py``); the in-process ones raise ``KeyboardInterrupt`` from a
``SIGALRM`` handler, which reaches the kernel the same way (Python's signal handlers, run by the kernel's poll).
How fast the stop comes is measured by ``benchmarks/spn_interrupt.py``; here the bound is only "well before the
solve would have ended".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pytest

import spnkit
from spnkit import synthetic
from spnkit.kernels.clock import RUN, stop_state
from spnkit.query import Query

from . import interrupt_child

CHILD = Path(__file__).with_name("interrupt_child.py")
ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN = 5.0    # seconds from SIGINT to the child's answer; the solves run for minutes without it


@pytest.fixture(scope="module")
def mixture():
    return synthetic.mixture(40, 200, seed=1)


def _hard(spn, method="exact"):
    return interrupt_child.hard_query(spn, method)


def _interrupt_child(*args: str, after: float = 1.0) -> tuple[dict, float, subprocess.CompletedProcess]:
    """Run the child, SIGINT it ``after`` s past READY; its JSON line, the seconds from the signal to its exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
        time.sleep(after)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        took = time.monotonic() - t
    finally:
        p.kill()
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), took, err


@pytest.mark.slow
@pytest.mark.parametrize(("method", "net"), [("exact", "mixture"), ("amap", "chain"), ("brute", "mixture")])
def test_sigint_stops_map(method, net):
    res, took, _ = _interrupt_child("map", method, net)
    assert res["interrupted"], res
    assert took < STOP_WITHIN
    assert res["exact"] is False and np.isfinite(res["log_value"])
    spn = interrupt_child.NETS[net]()
    x = np.array(res["assignment"])
    assert res["log_value"] == pytest.approx(spn.log_prob(x)[0], rel=1e-9)


@pytest.mark.slow
def test_sigint_stops_map_batch_and_keeps_what_finished():
    res, took, _ = _interrupt_child("batch", "exact", "mixture")
    assert res["interrupted"] and took < STOP_WITHIN, res
    spn = interrupt_child.NETS["mixture"]()
    easy, _ = interrupt_child.queries(spn, "exact")
    assert res["query"] == list(range(len(easy)))           # the easy ones finished; no hard one did
    assert all(res["exact"])
    assert res["log_value"] == [spnkit.map(spn, q, "exact").log_value for q in easy]


@pytest.mark.slow
def test_sigint_cli_map_writes_what_finished(tmp_path, mixture):
    model = tmp_path / "mixture.spn"
    spnkit.save(mixture, model)
    lines = [Query(40, query=[0, 1], evidence={2: 1}).to_line(), _hard(mixture, "exact").to_line()]
    qfile = tmp_path / "q.txt"
    qfile.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "spnkit", "map", str(model), str(qfile), "--method", "exact"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while "Ctrl-C" not in (line := p.stderr.readline()):        # the CLI says when it starts solving
            assert line, p.communicate()
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "interrupted: 1 of 2 queries finished" in err
    rows = out.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0,exact,")


@pytest.fixture
def alarm_ctrl_c():
    """``KeyboardInterrupt`` from SIGALRM after ``t`` seconds, as Ctrl-C raises it; restored afterwards."""
    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, ctrl_c)
    yield lambda t: signal.setitimer(signal.ITIMER_REAL, t)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("method", ["exact", "exact-mc", "brute", "bs"])
def test_ctrl_c_in_map_gives_best_so_far(mixture, alarm_ctrl_c, method):
    q = _hard(mixture, method)
    alarm_ctrl_c(0.3)
    t = time.perf_counter()
    with pytest.raises(spnkit.Interrupted) as e:
        spnkit.map(mixture, q, method, **({"beam": 400, "max_rounds": 10**9} if method == "bs" else {}))
    assert time.perf_counter() - t < STOP_WITHIN
    assert isinstance(e.value, KeyboardInterrupt)
    p = e.value.partial
    assert not p.exact and p.stats["timed_out"] is False
    assert p.log_value == pytest.approx(mixture.log_prob(p.assignment)[0], rel=1e-9)
    assert stop_state() == RUN                 # the next call runs normally
    assert spnkit.map(mixture, Query(40, query=[0, 1]), "exact").exact


def test_a_handler_that_raises_something_else_propagates(mixture):
    def alarm(signum, frame):
        raise TimeoutError("my alarm")

    old = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(TimeoutError, match="my alarm"):
            spnkit.map(mixture, _hard(mixture), "exact")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert stop_state() == RUN


def test_ctrl_c_in_map_batch_keeps_finished_rows(mixture, alarm_ctrl_c):
    easy = [Query(40, query=[i, i + 1]) for i in range(5)]
    alarm_ctrl_c(0.5)
    with pytest.raises(spnkit.Interrupted) as e:
        spnkit.map_batch(mixture, easy + [_hard(mixture, "brute")] * 3, "brute")
    done = e.value.partial
    assert list(done["query"]) == list(range(5))
    assert list(done["log_value"]) == [spnkit.map(mixture, q, "brute").log_value for q in easy]
    assert stop_state() == RUN
    assert spnkit.map_batch(mixture, easy, "brute")["exact"].all()


def test_compare_returns_what_finished_on_ctrl_c(mixture, alarm_ctrl_c):
    qs = {"m": {"mine": [Query(40, query=[0, 1])] * 3 + [_hard(mixture)] * 2}}
    alarm_ctrl_c(0.5)
    df = spnkit.compare({"m": mixture}, methods=["bt", "exact"], queries=qs, timeout=1e6, group=5, progress=False)
    assert df.attrs["interrupted"]
    assert (df["method"] == "bt").sum() == 5                    # bt's batch finished before the alarm
    assert list(df.loc[df["method"] == "exact", "query"]) == [0, 1, 2]


# ---- timeouts: every method honours them -----------------------------------------------------------------
@pytest.mark.parametrize(("method", "opts"), [("brute", {}), ("exact", {}), ("exact-fc", {}), ("kbt", {"k": 2000}),
                                              ("bs", {"beam": 400, "max_rounds": 10**9})])
def test_timeout_gives_best_so_far(mixture, method, opts):
    q = _hard(mixture, method)
    t = time.perf_counter()
    r = spnkit.map(mixture, q, method, timeout=0.05, **opts)
    assert time.perf_counter() - t < STOP_WITHIN
    assert r.stats["timed_out"] and not r.exact
    assert r.log_value == pytest.approx(mixture.log_prob(r.assignment)[0], rel=1e-9)
    df = spnkit.map_batch(mixture, [q, Query(40, query=[0, 1])], method, timeout=0.05, **opts)
    assert list(df["timed_out"]) == [True, False]


def test_amap_timeout_finishes_as_max_product():
    spn = synthetic.chain(1500, seed=3)
    q = Query(1500)
    r = spnkit.map(spn, q, "amap", timeout=1e-6)
    assert r.stats["timed_out"] and not r.exact
    assert r.log_value == pytest.approx(spnkit.map(spn, q, "bt").log_value, rel=1e-12)   # cut before any sum node
    full = spnkit.map(spn, q, "amap")
    assert not full.stats["timed_out"] and full.log_value >= r.log_value - 1e-9


def test_a_timeout_not_reached_changes_nothing(mixture):
    q = Query(40, query=range(8), hidden=range(8, 40))
    for method in ("amap", "kbt", "brute", "bs", "exact"):
        a, b = spnkit.map(mixture, q, method), spnkit.map(mixture, q, method, timeout=600)
        assert a.log_value == b.log_value and np.array_equal(a.assignment, b.assignment)
        assert not b.stats["timed_out"]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_map_batch_runs_with_the_callers_thread_count():
    """map_batch runs ``numba.get_num_threads()`` workers (``spnkit.batch``), read on the caller's thread (the
    batch itself runs on a helper thread): with one, a long search has nobody to share subtrees with; with two it
    shares them (the 0.2-0.3 s query of test_coop)."""
    spn, q = synthetic.mixture(20, 40, seed=2), Query(20)
    old = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            df = spnkit.map_batch(spn, [q], "exact-fc")
            assert (df["subtrees_shared"][0] > 0) == (threads == 2), threads
    finally:
        numba.set_num_threads(old)
