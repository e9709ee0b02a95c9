"""Wall-clock time inside kernels, without the GIL: deadlines and per-query timings in parallel batches; and the
stop word that lets Ctrl-C interrupt a kernel.

On x86-64, ``now()`` reads the time-stamp counter (``llvm.readcyclecounter``: a few nanoseconds, no GIL, so
``map_batch``'s workers never queue on a lock to look at the clock); :func:`ticks_per_second` calibrates it once
against ``time.perf_counter_ns``. Elsewhere it falls back to ``time.perf_counter_ns`` through object mode.

Interrupting. Every place a kernel looks at its deadline it calls :func:`expired`, which also reads the *stop
word*: four int64 in this process's memory, reached from compiled code through a linker symbol
(``STOP_SYMBOL``, registered with ``llvmlite.binding.add_symbol`` when this module is imported, so code loaded from
numba's cache finds it too: a numba global would be frozen into the machine code as a constant). Word 0 is 0
while kernels run, 1 once :func:`request_stop` asked them to stop (``map_batch`` does, from the main thread, when
Ctrl-C reaches it while its kernel runs in a helper thread without the GIL), 2 once a kernel's own signal poll
met an exception (words 1-3 then hold it, see below). The check is an atomic load, so every batch worker
sees a stop within one check interval.

A kernel that holds the GIL on the main thread (``spnkit.map``'s) cannot be reached that way: Python runs signal
handlers only between bytecodes. There :func:`expired` calls ``PyErr_CheckSignals`` itself, as C extensions do in
long loops, only when ``PyGILState_Check`` says this thread holds the GIL (a batch worker has released it
and must never call into Python). When a handler raised (``KeyboardInterrupt`` from Ctrl-C, or whatever a user's
handler raises), the exception is taken out of the thread state with ``PyErr_Fetch`` into words 1-3 (a kernel
must not return with an exception set) and re-raised in Python by :func:`raise_fetched`.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import time

import numba as nb
from llvmlite import binding as llvm_binding
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


# ---- the stop word -------------------------------------------------------------------------------------------
STOP_SYMBOL = "spnkit_stop_words"
RUN, STOP, RAISED = 0, 1, 2                 # word 0
_WORDS = (ctypes.c_int64 * 4)()
llvm_binding.add_symbol(STOP_SYMBOL, ctypes.addressof(_WORDS))
_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _word(builder, k):
    """A pointer to word ``k`` of the stop word (declared once per LLVM module, resolved when it is linked)."""
    try:
        g = builder.module.get_global(STOP_SYMBOL)
    except KeyError:
        g = ir.GlobalVariable(builder.module, ir.ArrayType(_I64, 4), name=STOP_SYMBOL)
        g.linkage = "external"
    return builder.gep(g, [ir.Constant(_I32, 0), ir.Constant(_I32, k)])


@intrinsic
def stop_word(typingctx):
    """Word 0 (``RUN``, ``STOP`` or ``RAISED``), an atomic load."""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_word(builder, 0), "monotonic", 8)

    return types.int64(), codegen


@intrinsic
def _poll_signals(typingctx):
    """When this thread holds the GIL: run Python's pending signal handlers (``PyErr_CheckSignals``, which does
    nothing off the main thread); if one raised, fetch its exception into words 1-3, set word 0 to ``RAISED`` and
    give 1. Else 0."""
    def codegen(context, builder, signature, args):
        mod = builder.module
        check = cgutils.get_or_insert_function(mod, ir.FunctionType(_I32, []), "PyGILState_Check")
        signals = cgutils.get_or_insert_function(mod, ir.FunctionType(_I32, []), "PyErr_CheckSignals")
        pp = ir.IntType(8).as_pointer().as_pointer()
        fetch = cgutils.get_or_insert_function(mod, ir.FunctionType(ir.VoidType(), [pp, pp, pp]), "PyErr_Fetch")
        out = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
        zero = ir.Constant(_I32, 0)
        with builder.if_then(builder.icmp_signed("!=", builder.call(check, []), zero), likely=False):
            with builder.if_then(builder.icmp_signed("!=", builder.call(signals, []), zero), likely=False):
                builder.call(fetch, [builder.bitcast(_word(builder, k), pp) for k in (1, 2, 3)])
                builder.store_atomic(ir.Constant(_I64, RAISED), _word(builder, 0), "monotonic", 8)
                builder.store(ir.Constant(_I64, 1), out)
        return builder.load(out)

    return types.int64(), codegen


@nb.njit(cache=True, _nrt=False)
def stop_requested():
    """Whether kernels should stop now: the stop word is set, or (holding the GIL) a signal handler raised."""
    return stop_word() != RUN or _poll_signals() != 0


@nb.njit(cache=True, _nrt=False)
def expired(deadline):
    """A kernel's check point: ``deadline`` (``now()`` ticks) has passed, or it was asked to stop."""
    return now() > deadline or stop_requested()


def request_stop() -> None:
    """Ask every running kernel in this process to stop at its next check point (from any thread)."""
    if _WORDS[0] == RUN:
        _WORDS[0] = STOP


def stop_state() -> int:
    """Word 0: ``RUN``, ``STOP`` or ``RAISED``."""
    return _WORDS[0]


def clear_stop() -> None:
    """Back to ``RUN`` (a fetched exception not re-raised is released)."""
    try:
        raise_fetched()
    except BaseException:       # noqa: BLE001 - dropped on purpose: the caller is done with it
        pass
    _WORDS[0] = RUN


def _take_fetched() -> tuple[int, int, int]:
    t, v, tb = _WORDS[1], _WORDS[2], _WORDS[3]
    _WORDS[1] = _WORDS[2] = _WORDS[3] = 0
    _WORDS[0] = RUN
    return t, v, tb


def raise_fetched() -> None:
    """Re-raise the exception a kernel's signal poll fetched (``RAISED``), and clear the stop word; nothing if none
    was fetched. ``PyErr_Restore`` through ``ctypes.pythonapi`` takes the references ``PyErr_Fetch`` gave and, as
    every ``pythonapi`` call does, raises the exception it finds set."""
    if _WORDS[0] != RAISED:
        return
    t, v, tb = _take_fetched()
    if t:
        _restore(t, v, tb)


_restore = ctypes.pythonapi.PyErr_Restore
_restore.argtypes = [ctypes.c_void_p] * 3
_restore.restype = None
