"""Admission control for asynchronous rollout: AReaL's staleness bound η (paper §4.1, Eq. 3).

Counted in prompt groups (one prompt x ``group_size`` samples). With the learner at policy version ``v``, a
consumer batch of ``B`` groups per learner step, and ``η = max_staleness``, a new group may start only while::

    capacity = min(max_concurrent - running,  (η + v + 1)·B - (accepted + running))  >  0

The second term is Eq. 3 (``⌊(N_r − 1)/B⌋ ≤ v + η``) as AReaL-lite computes it
(``areal/infra/staleness_manager.py``): every group that is running or was accepted counts towards the data the
learner will consume by version ``v + η``. Rejected groups (reward failed) free their slot. η = 0 is synchronous
RL: exactly ``B`` groups per version. ``η = inf`` leaves only the concurrency limit.

After a checkpoint resume at version ``v`` nothing is running and the learner has consumed ``v·B`` groups, so
``accepted = v·B`` (:meth:`StalenessManager.on_version_recovered`, AReaL #1345: otherwise capacity inflates).

Why the bound holds for every consumed sample here, not only "in aggregate": the trainer gives every group the
deadline ``v_start + η`` (the version it started under, plus η) and the learner consumes earliest deadline first,
waiting for a group that is due. By the capacity rule at most ``(u + 1)·B`` accepted groups have deadline ``≤ u``
for every ``u``, and steps ``0..u`` consume ``(u + 1)·B``, so each group is consumed by its deadline: its oldest
token is at most η versions behind the learner that trains on it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class StalenessCounts:
    enqueued: int
    running: int
    accepted: int
    rejected: int


class StalenessManager:
    """Thread-safe counters and the Eq. 3 capacity (see the module docstring).

    Parameters
    ----------
    max_staleness : η, an int >= 0, or ``math.inf`` (unbounded).
    consumer_batch_size : B, groups consumed per learner step.
    max_concurrent_rollouts : groups allowed in flight at once.
    """

    def __init__(self, max_staleness: float, consumer_batch_size: int, max_concurrent_rollouts: int):
        if not (max_staleness == math.inf or (isinstance(max_staleness, (int, float)) and not isinstance(
                max_staleness, bool) and int(max_staleness) == max_staleness and max_staleness >= 0)):
            raise ValueError(f"max_staleness={max_staleness!r}; expected an int >= 0 or math.inf")
        if consumer_batch_size < 1 or max_concurrent_rollouts < 1:
            raise ValueError(f"consumer_batch_size={consumer_batch_size}, max_concurrent_rollouts="
                             f"{max_concurrent_rollouts}; both must be >= 1")
        self.max_staleness = max_staleness
        self.consumer_batch_size = int(consumer_batch_size)
        self.max_concurrent_rollouts = int(max_concurrent_rollouts)
        self._lock = threading.Lock()
        self.enqueued = self.running = self.accepted = self.rejected = 0

    def get_capacity(self, version: int) -> int:
        """How many more groups may start now, at learner version ``version`` (may be negative)."""
        with self._lock:
            concurrency = self.max_concurrent_rollouts - self.running
            if self.max_staleness == math.inf:
                return concurrency
            staleness = (int(self.max_staleness) + version + 1) * self.consumer_batch_size - (
                self.accepted + self.running)
            return min(concurrency, staleness)

    def get_pending_limit(self) -> float:
        """Most groups that can be accepted but not yet consumed: ``(η + 1)·B``."""
        return (self.max_staleness + 1) * self.consumer_batch_size

    def on_enqueue(self) -> None:
        with self._lock:
            self.enqueued += 1

    def on_rollout_submitted(self) -> None:
        with self._lock:
            self.running += 1

    def on_rollout_accepted(self) -> None:
        with self._lock:
            self.running -= 1
            self.accepted += 1

    def on_rollout_rejected(self) -> None:
        with self._lock:
            self.running -= 1
            self.rejected += 1

    def on_rollout_cancelled(self) -> None:
        """A running group abandoned by a stop: it frees its slot and counts nowhere."""
        with self._lock:
            self.running -= 1

    def on_version_recovered(self, version: int) -> None:
        """After resuming at ``version``: nothing runs, ``version·B`` groups were consumed."""
        with self._lock:
            self.running = 0
            self.accepted = int(version) * self.consumer_batch_size

    def counts(self) -> StalenessCounts:
        with self._lock:
            return StalenessCounts(self.enqueued, self.running, self.accepted, self.rejected)

    def state_dict(self) -> dict:
        with self._lock:
            return {"enqueued": self.enqueued, "accepted": self.accepted, "rejected": self.rejected}

    def load_state_dict(self, state: dict, version: int) -> None:
        with self._lock:
            self.enqueued = int(state.get("enqueued", 0))
            self.rejected = int(state.get("rejected", 0))
        self.on_version_recovered(version)


@dataclass
class GroupSlot:
    """What batch selection needs to know about one accepted-or-running group."""

    key: int                 # start order (older = smaller)
    deadline: float          # start version + η: the last learner version allowed to consume it
    done: bool = False


def select_batch(groups: list[GroupSlot], version: int, batch_size: int, max_staleness: float) -> list[int] | None:
    """Indices into ``groups`` of the batch the learner at ``version`` takes now, or ``None`` to wait.

    ``groups``: every group started and not yet consumed or rejected (running ones with ``done=False``).
    Rule: never wait for a group that is not due, never let a due group (deadline <= version) wait; fill with
    finished groups in (deadline, start) order, skipping one that would leave some later version ``u`` with
    more than ``(u - version)·B`` groups still to consume by ``u`` (then a deadline would be missed). With
    η = inf this is AReaL's "oldest finished first". See the module docstring for why the bound then holds.
    """
    if any(g.deadline <= version and not g.done for g in groups):
        return None                                           # a due group is still generating: wait for it
    order = sorted((i for i, g in enumerate(groups) if g.done), key=lambda i: (groups[i].deadline, groups[i].key))
    horizon = [] if max_staleness == math.inf else list(range(version + 1, version + int(max_staleness)))
    left = {u: sum(g.deadline <= u for g in groups) for u in horizon}   # still to consume by version u
    picked: list[int] = []
    for i in order:
        if len(picked) == batch_size:
            break
        d = groups[i].deadline
        if d > version and any(d > u and left[u] > (u - version) * batch_size for u in horizon):
            continue                                          # taking it now would starve an earlier deadline
        picked.append(i)
        for u in horizon:
            if d <= u:
                left[u] -= 1
    return picked if len(picked) == batch_size else None
