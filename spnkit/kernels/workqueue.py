"""Dynamic scheduling for ``prange`` loops whose iterations differ in cost by orders of magnitude.

numba splits a ``prange`` into one contiguous block per thread before it starts. A batch of exact MAP queries is
the worst case for that: on plants at 8:1:1 one of 14 queries takes 1.4 s of the batch's 3.2 s, and whichever
thread holds it finishes alone (1.46x on two cores, where taking queries one at a time gives 1.85x).

Here each worker takes the next block of rows from a shared counter, by an atomic fetch-and-add (``claim``).
The blocks shrink as the work runs out (guided scheduling: a 1/(``SHARE`` * workers) share of what is left, at
least one row), so a batch of 40,000 microsecond queries costs ~150 atomic operations and a batch of 15
second-long ones is handed out a query at a time. No numba global (``set_parallel_chunksize`` reads a ctypes
global, which keeps the kernel out of numba's cache).
"""

from __future__ import annotations

import numba as nb
from numba import types
from numba.extending import intrinsic

SHARE = 8


@intrinsic
def _fetch_add(typingctx, counter, amount):
    """Atomically add ``amount`` to ``counter[0]`` (an int64 array) and return the value before the add."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None
    sig = types.int64(counter, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", ary.data, args[1], "seq_cst")

    return sig, codegen


@nb.njit(cache=True, inline="always")
def claim(counter, m, workers):
    """The next block ``(start, stop)`` of rows ``0..m-1`` for a worker (``start >= m``: none is left).
    ``counter``: int64 (1,), zero before the loop, shared by the ``workers`` workers."""
    left = m - _fetch_add(counter, 0)
    size = max(1, left // (SHARE * workers))
    start = _fetch_add(counter, size)
    return start, min(m, start + size)
