"""Dynamic scheduling for ``map_batch``'s workers, whose queries differ in cost by orders of magnitude; and the
atomic operations the workers share state with (``kernels.coop``).

A static split, one contiguous block per thread fixed before the start (what numba's ``prange`` did when the
batch ran as one ``parallel=True`` kernel), is wrong here. A batch of exact MAP queries is
the worst case for that: on plants at 8:1:1 one of 14 queries takes 1.4 s of the batch's 3.2 s, and whichever
thread holds it finishes alone (1.46x on two cores, where taking queries one at a time gives 1.85x).

Here each worker takes the next block of rows from a shared counter, by an atomic fetch-and-add (``claim``).
The blocks shrink as the work runs out (guided scheduling: a 1/(``SHARE`` * workers) share of what is left, at
least one row), so a batch of 40,000 microsecond queries costs ~150 atomic operations and a batch of 15
second-long ones is handed out a query at a time.
"""

from __future__ import annotations

import numba as nb
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

SHARE = 8


def _element(context, builder, arrtype, arr, i):
    ary = context.make_array(arrtype)(context, builder, arr)
    return builder.gep(ary.data, [i])


@intrinsic
def fetch_add(typingctx, arr, i, amount):
    """Atomically add ``amount`` to ``arr[i]`` (an int64 array) and return the value before the add."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def load_atomic(typingctx, arr, i):
    """``arr[i]`` read atomically (an int64 or float64 array): inside a loop it is read again at every pass,
    and it is never seen half-written."""
    if not (isinstance(arr, types.Array) and arr.dtype in (types.int64, types.float64)):
        return None
    sig = arr.dtype(arr, types.intp)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_element(context, builder, signature.args[0], args[0], args[1]), "seq_cst", 8)

    return sig, codegen


@intrinsic
def store_atomic(typingctx, arr, i, value):
    """``arr[i] = value`` atomically (an int64 array), seen by other threads after every write before it."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def compare_swap(typingctx, arr, i, expected, new):
    """Atomically: if ``arr[i]`` holds ``expected``, write ``new``; True when it did. An int64 or float64 array
    (floats compared by their bits)."""
    if not (isinstance(arr, types.Array) and arr.dtype in (types.int64, types.float64)):
        return None
    sig = types.boolean(arr, types.intp, arr.dtype, arr.dtype)

    def codegen(context, builder, signature, args):
        ptr = _element(context, builder, signature.args[0], args[0], args[1])
        expected, new = args[2], args[3]
        if signature.args[0].dtype == types.float64:
            i64 = ir.IntType(64)
            ptr = builder.bitcast(ptr, i64.as_pointer())
            expected, new = builder.bitcast(expected, i64), builder.bitcast(new, i64)
        return builder.extract_value(builder.cmpxchg(ptr, expected, new, "seq_cst", "seq_cst"), 1)

    return sig, codegen


@nb.njit(cache=True, inline="always")
def raise_to(arr, i, value):
    """``arr[i] = max(arr[i], value)`` atomically (a float64 array)."""
    while True:
        old = load_atomic(arr, i)
        if value <= old or compare_swap(arr, i, old, value):
            return


@nb.njit(cache=True, inline="always")
def claim(counter, m, workers):
    """The next block ``(start, stop)`` of rows ``0..m-1`` for a worker (``start >= m``: none is left).
    ``counter``: int64 (1,), zero before the loop, shared by the ``workers`` workers."""
    left = m - fetch_add(counter, 0, 0)
    size = max(1, left // (SHARE * workers))
    start = fetch_add(counter, 0, size)
    return start, min(m, start + size)
