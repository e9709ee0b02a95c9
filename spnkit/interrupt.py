"""Ctrl-C during a solve: how a compiled kernel hears it, and what the caller gets back.

``spnkit.map``'s kernel holds the GIL on the caller's thread; at each of its check points it runs Python's pending
signal handlers itself (``kernels.clock.expired``). When Ctrl-C's ``KeyboardInterrupt`` comes out of them, the
kernel stops with its best answer so far and :func:`raise_interrupted` raises it as :class:`~spnkit.Interrupted`
carrying that answer.

``spnkit.map_batch``'s workers run on all cores without the GIL (``spnkit.batch``). Called from the main thread (a
notebook cell, a script), the batch runs on :data:`KERNEL_THREAD` while the main thread waits on an event, where
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


class _KernelThread:
    """One daemon thread that runs the main thread's batches, one at a time (a daemon: a kernel left running
    after a second Ctrl-C never keeps the interpreter from exiting)."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            fn, args, box, done = self._jobs.get()
            try:
                box["result"] = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                box["error"] = e
            finally:
                if box.get("stopped"):
                    _clear_stop()       # the stop was for this job: the next one starts clean
                done.set()

    def run(self, fn, args: tuple) -> tuple[object, bool]:
        """``fn(*args)`` on this thread: ``(its result, whether Ctrl-C asked it to stop)``."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="spnkit-kernel", daemon=True)
                self._thread.start()
        box: dict = {}
        done = threading.Event()
        self._jobs.put((fn, args, box, done))
        try:
            done.wait()
        except KeyboardInterrupt:
            box["stopped"] = True
            request_stop()
            done.wait()         # milliseconds: the kernels' next check points (a second Ctrl-C leaves them to it)
        if "error" in box:
            raise box["error"]
        return box["result"], bool(box.get("stopped"))


KERNEL_THREAD = _KernelThread()


def run_batch_kernel(fn, args: tuple) -> tuple[object, bool]:
    """``fn(*args)`` (a batch, ``spnkit.batch.solve_batch``) so that Ctrl-C can stop it: ``(result, whether Ctrl-C came)``.
    (Off the main thread, the second is False: the caller tells from its rows whether a stop cut them.)"""
    if threading.current_thread() is threading.main_thread():
        return KERNEL_THREAD.run(fn, args)
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
