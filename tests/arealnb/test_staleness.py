"""Admission control (AReaL Eq. 3) and batch selection: the capacity formula, and the staleness bound on every
consumed group under arbitrary completion orders, rejections and learner timing (hypothesis)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arealnb.staleness import GroupSlot, StalenessManager, select_batch


def _formula(eta, v, B, max_conc, accepted, running):
    """AReaL Eq. 3 as written in ../shared/AREAL.md §1.2, evaluated independently."""
    if eta == math.inf:
        return max_conc - running
    return min(max_conc - running, (eta + v + 1) * B - (accepted + running))


@given(eta=st.integers(0, 8), B=st.integers(1, 16), conc=st.integers(1, 64), v=st.integers(0, 50),
       accepted=st.integers(0, 900), running=st.integers(0, 64), rejected=st.integers(0, 30))
def test_capacity_is_eq3(eta, B, conc, v, accepted, running, rejected):
    sm = StalenessManager(eta, B, conc)
    for _ in range(accepted):
        sm.on_rollout_submitted()
        sm.on_rollout_accepted()
    for _ in range(rejected):
        sm.on_rollout_submitted()
        sm.on_rollout_rejected()
    for _ in range(running):
        sm.on_rollout_submitted()
    assert sm.get_capacity(v) == _formula(eta, v, B, conc, accepted, running)
    c = sm.counts()
    assert (c.running, c.accepted, c.rejected) == (running, accepted, rejected)


def test_eta_zero_admits_exactly_one_batch_per_version_and_resume_resets_accepted():
    sm = StalenessManager(0, 4, 100)
    assert sm.get_capacity(0) == 4
    for _ in range(4):
        sm.on_rollout_submitted()
    assert sm.get_capacity(0) == 0
    for _ in range(4):
        sm.on_rollout_accepted()
    assert sm.get_capacity(0) == 0 and sm.get_capacity(1) == 4
    sm.on_version_recovered(7)                    # resumed at version 7: 28 groups were consumed
    assert sm.counts().accepted == 28 and sm.counts().running == 0
    assert sm.get_capacity(7) == 4
    assert StalenessManager(math.inf, 4, 10).get_capacity(0) == 10


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None])
def test_bad_staleness_is_refused(bad):
    with pytest.raises(ValueError, match="max_staleness"):
        StalenessManager(bad, 4, 4)


def _simulate(eta, B, conc, actions, reject_every):
    """Drive admission, completion (in an order chosen by ``actions``), rejection and the learner; return the
    staleness (learner version - start version) of every consumed group and whether the end drained cleanly."""
    sm = StalenessManager(eta, B, conc)
    version, key = 0, 0
    live: dict[int, tuple[GroupSlot, int]] = {}
    staleness: list[int] = []

    def learner_try():
        nonlocal version
        keys = list(live)
        picked = select_batch([live[k][0] for k in keys], version, B, eta)
        if picked is None:
            return False
        assert len(picked) == B and len(set(picked)) == B
        for i in picked:
            slot, start = live.pop(keys[i])
            assert slot.done
            staleness.append(version - start)
        version += 1
        return True

    for a in actions:
        kind = a % 3
        if kind == 0:                                  # admit as much as allowed
            while sm.get_capacity(version) > 0:
                live[key] = (GroupSlot(key, version + eta if eta != math.inf else math.inf), version)
                sm.on_rollout_submitted()
                key += 1
        elif kind == 1:                                # one running group finishes (which one: from a)
            running = [k for k, (s, _) in live.items() if not s.done]
            if running:
                k = running[(a // 3) % len(running)]
                if reject_every and (a // 3) % reject_every == 0:
                    live.pop(k)
                    sm.on_rollout_rejected()
                else:
                    live[k][0].done = True
                    sm.on_rollout_accepted()
        else:
            learner_try()
    # drain: everything finishes; the learner must be able to consume every full batch
    for s, _ in live.values():
        if not s.done:
            s.done = True
            sm.on_rollout_accepted()
    while len(live) >= B:
        assert learner_try(), "learner stuck with a full batch of finished groups"
    return staleness


@settings(max_examples=400, deadline=None)
@given(eta=st.sampled_from([0, 1, 2, 3, 4, 8, math.inf]), B=st.integers(1, 6), conc=st.integers(1, 24),
       seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), reject_every=st.sampled_from([0, 3, 7]))
def test_every_consumed_group_respects_the_bound(eta, B, conc, seed, n, reject_every):
    """Random event orders (a seeded stream: uniform over event kinds, unlike hypothesis' small-int bias).
    Without the feasibility rule in select_batch ("oldest finished first" alone) this fails within seconds."""
    rng = random.Random(seed)
    staleness = _simulate(eta, B, conc, [rng.randrange(10_000) for _ in range(n)], reject_every)
    if eta != math.inf:
        assert max(staleness, default=0) <= eta


def test_oldest_finished_first_when_unbounded():
    groups = [GroupSlot(0, math.inf), GroupSlot(1, math.inf, done=True), GroupSlot(2, math.inf, done=True),
              GroupSlot(3, math.inf, done=True)]
    assert select_batch(groups, 5, 2, math.inf) == [1, 2]          # group 0 still runs: not waited for


def test_a_due_group_is_waited_for_and_a_later_one_is_not_taken_early():
    # η = 2, B = 1. Version 0 admitted A, B, C (deadline 2); step 0 took C; version 1 admitted D (deadline 3),
    # which finished first. Taking D at step 1 would leave A and B both for step 2: one would be 3 versions old.
    g = [GroupSlot(0, 2), GroupSlot(1, 2), GroupSlot(3, 3, done=True)]
    assert select_batch(g, 1, 1, 2) is None
    g[1].done = True
    assert select_batch(g, 1, 1, 2) == [1]
    due = [GroupSlot(0, 0), GroupSlot(1, 5, done=True)]
    assert select_batch(due, 0, 1, 5) is None     # group 0 is due now and still generating
