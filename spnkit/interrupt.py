"""Ctrl-C during a solve: how a compiled kernel hears it, and what the caller gets back.

``spnkit.map``'s kernel holds the GIL on the caller's thread; at each of its check points it runs Python's pending
signal handlers itself (``kernels.clock.expired``). When Ctrl-C's ``KeyboardInterrupt`` comes out of them, the
kernel stops with its best answer so far and :func:`raise_interrupted` raises it as :class:`~spnkit.Interrupted`
carrying that answer.

``spnkit.map_batch``'s workers run on all cores without the GIL (``spnkit.batch``). Called from the main thread (a
notebook cell, a script), the batch runs on a thread of :data:`TEAM` while the main thread waits on a semaphore, where
Python delivers Ctrl-C at once; the main thread then sets the kernels' stop word (``clock.request_stop``): no
worker starts another query, the queries running end at their next check point (every ``check_every`` search
nodes, every 256 brute-force assignments, every sum node of AMAP, every 64 nodes of K-best tree, every beam
entry), and the caller gets the queries that finished. A second Ctrl-C while waiting for that gives up waiting
(the kernels still stop, in the background). Called from any other thread (a Dask worker, a thread pool), the
batch runs on the calling thread: Python never delivers signals there, and a stop requested by the main thread
stops it too.
"""

from __future__ import annotations

import queue
import threading

from .errors import Interrupted
from .kernels.clock import clear_stop as _clear_stop
from .kernels.clock import raise_fetched, request_stop


class ThreadTeam:
    """Daemon threads for batch work, shared by every batch in the process (daemons: a kernel left running after a
    second Ctrl-C never keeps the interpreter from exiting). A thread is reserved for each job as it is handed out
    (one is started when none is idle), so every job of a batch runs at once however many batches run
    concurrently (a search worker waits for the others, ``kernels.coop``: two of its jobs queued one behind the
    other would never end)."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            fn, args, box, i, done = self._jobs.get()
            try:
                box[i] = (True, fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box[i] = (False, e)
            finally:
                with self._lock:
                    self._idle += 1
                done.release()

    def _submit(self, fn, args: tuple, box: list, i: int, done: threading.Semaphore) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            else:
                threading.Thread(target=self._loop, name="spnkit-worker", daemon=True).start()
        self._jobs.put((fn, args, box, i, done))

    def run(self, calls: list[tuple]) -> list:
        """``[fn(*args) for fn, args in calls]``, all at once: the first on this thread, the others on the team's
        threads. Raises the first call's exception, if any, once every call has returned."""
        box: list = [None] * len(calls)
        done = threading.Semaphore(0)
        for i, (fn, args) in enumerate(calls[1:], 1):
            self._submit(fn, args, box, i, done)
        try:
            box[0] = (True, calls[0][0](*calls[0][1]))
        except BaseException as e:  # noqa: BLE001 - raised below, after the other calls have returned
            box[0] = (False, e)
        for _ in calls[1:]:
            done.acquire()
        for ok, value in box:
            if not ok:
                raise value
        return [value for _, value in box]

    def call_stoppable(self, fn, args: tuple) -> tuple[object, bool]:
        """``fn(*args)`` on a team thread while this thread waits where Python delivers Ctrl-C: ``(its result,
        whether Ctrl-C asked it to stop)``. Ctrl-C sets the kernels' stop word, which the job clears when it
        ends (the stop was for it: the next one starts clean)."""
        stopped = [False]

        def job():
            try:
                return fn(*args)
            finally:
                if stopped[0]:
                    _clear_stop()

        box: list = [None]
        done = threading.Semaphore(0)
        self._submit(job, (), box, 0, done)
        try:
            done.acquire()
        except KeyboardInterrupt:
            stopped[0] = True
            request_stop()
            done.acquire()      # milliseconds: the kernels' next check points (a second Ctrl-C leaves them to it)
        ok, value = box[0]
        if not ok:
            raise value
        return value, stopped[0]


TEAM = ThreadTeam()


def run_batch_kernel(fn, args: tuple) -> tuple[object, bool]:
    """``fn(*args)`` (a batch, ``spnkit.batch.solve_batch``) so that Ctrl-C can stop it: ``(result, whether Ctrl-C came)``.
    (Off the main thread, the second is False: the caller tells from its rows whether a stop cut them.)"""
    if threading.current_thread() is threading.main_thread():
        return TEAM.call_stoppable(fn, args)
    return fn(*args), False


def raise_interrupted(message: str, partial) -> None:
    """Raise :class:`~spnkit.Interrupted` with ``partial``. When the kernel itself fetched the exception a signal
    handler raised (``spnkit.map`` on the main thread), that exception is taken back first (and the stop word
    cleared): if it is not a ``KeyboardInterrupt`` (a user's ``SIGALRM`` handler, say) it propagates as it is. A
    stop that the main thread requested is cleared by the thread that runs its batch, not here."""
    try:
        raise_fetched()
    except KeyboardInterrupt:
        pass
    raise Interrupted(message, partial) from None
