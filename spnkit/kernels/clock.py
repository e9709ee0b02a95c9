"""Wall-clock time inside kernels, without the GIL: deadlines and per-query timings in parallel batches.

On x86-64, ``now()`` reads the time-stamp counter (``llvm.readcyclecounter``: a few nanoseconds, no GIL, so
``prange`` workers never queue on a lock to look at the clock); :func:`ticks_per_second` calibrates it once
against ``time.perf_counter_ns``. Elsewhere it falls back to ``time.perf_counter_ns`` through object mode.
"""

from __future__ import annotations

import functools
import platform
import time

import numba as nb
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

HAVE_TSC = platform.machine().lower() in ("x86_64", "amd64")
NEVER = 2**62            # a deadline that does not come


@intrinsic
def _read_cycle_counter(typingctx):
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


if HAVE_TSC:
    @nb.njit(cache=True)
    def now():
        """Ticks of the time-stamp counter (see :func:`ticks_per_second`)."""
        return _read_cycle_counter()
else:  # pragma: no cover - not this machine
    @nb.njit(cache=True)
    def now():
        """Nanoseconds from ``time.perf_counter_ns`` (object mode: takes the GIL)."""
        with nb.objmode(t="int64"):
            t = time.perf_counter_ns()
        return t


def _bracketed_read() -> tuple[float, int]:
    """``(perf_counter_ns, now())`` read together: the counter read between two clock reads, the tightest of
    five tries, against the clock's midpoint (a try that an interrupt split is discarded)."""
    best = None
    for _ in range(5):
        a = time.perf_counter_ns()
        c = now()
        b = time.perf_counter_ns()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) / 2, c)
    return best[1], best[2]


@functools.cache
def ticks_per_second() -> float:
    """How many ``now()`` ticks make a second (measured once per process over ~20 ms, to ~1e-5: a query's
    kernel time must never come out above the wall time of the call around it)."""
    if not HAVE_TSC:
        return 1e9
    now()                                   # compile / load before timing
    t0, c0 = _bracketed_read()
    time.sleep(0.02)
    t1, c1 = _bracketed_read()
    return (c1 - c0) / ((t1 - t0) * 1e-9)


def deadline_ticks(timeout: float) -> int:
    """Ticks from now until ``timeout`` seconds have passed (``NEVER`` for an infinite timeout)."""
    ticks = timeout * ticks_per_second()
    return NEVER if not ticks < NEVER else int(ticks)          # inf, and finite times past NEVER (1e300 s)
