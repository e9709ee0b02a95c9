"""``spnkit.map_batch(..., client=...)``: query batches on a Dask distributed cluster.

The flat SPN is scattered to every worker once, and kept there for the next batches on it
(``Client.scatter(..., broadcast=True)``; a ``FlatSPN`` pickles
as its arrays, without the compiled state it builds on first use, which each worker then builds once). The
queries go out in chunks, one task each: a task runs ``spnkit.batch.solve_batch``, the same compiled workers as
a local ``map_batch``, on ``threads_per_task`` threads (1: Dask's own threads are the parallelism), and returns
its arrays; the client puts them back in order and builds the frame as a local run does, so the values are those
of a local run bit for bit (for the branch-and-bound methods: of a local run on the same number of threads,
whose searches share subtrees the same way; on a single thread exactly ``spnkit.map``'s).

A worker lost mid-run (killed, out of memory, its machine gone) loses its tasks' results; Dask's scheduler
recomputes them on the workers left (a chunk's queries travel in its task, and the SPN is on every worker), so
nothing is lost. Ctrl-C cancels the chunks not finished and raises :class:`~spnkit.Interrupted` whose
``partial`` is the frame of the chunks that were.

Warm kernels on the workers. Each worker process loads spnkit's compiled kernels from numba's cache: from
``$NUMBA_CACHE_DIR`` when set, else the ``__pycache__`` beside ``spnkit/kernels`` in the installation the worker
imports. Workers on the machine that compiled them (a ``LocalCluster``, or workers sharing the installation or
the cache directory) start warm; a fresh machine compiles on its first task (a minute or more for the exact
methods). :func:`warm_workers` does that up front on every worker, before the run is timed.
"""

from __future__ import annotations

import math
import time
import weakref

import numpy as np
import pandas as pd

from .batch import solve_batch
from .errors import Interrupted, QueryError
from .flat_spn import FlatSPN
from .kernels.solve import METHOD_CODES, batch_setup


def _solve_chunk(spn: FlatSPN, roles: np.ndarray, values: np.ndarray, method: str, opts: dict,
                 threads: int) -> tuple:
    """One task: ``solve_batch`` on a chunk, on the worker. The options are validated here again, so that the
    deadline is counted in this machine's clock ticks."""
    from .map_api import _options

    _, kopts, _ = _options(method, opts)
    roles.setflags(write=False)         # the kernels are compiled for read-only queries
    values.setflags(write=False)
    return solve_batch(spn.kernel_arrays, roles, values, kopts, threads)


def _warm(spn: FlatSPN, methods: tuple[str, ...]) -> float:
    from .map_api import map_batch
    from .query import Query

    t0 = time.perf_counter()
    q = Query(spn.n_vars, query=[0], hidden=range(1, spn.n_vars))
    for m in methods:
        map_batch(spn, [q], m)
    return time.perf_counter() - t0


def warm_workers(client, spn: FlatSPN, methods=("bt",)) -> dict:
    """Load (or compile) the kernels of ``methods`` on every worker of ``client`` now, with a one-query batch on
    ``spn``: ``{worker address: seconds it took}``."""
    return client.run(_warm, spn, tuple(methods))


_SCATTERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # FlatSPN -> (client ref, its future)


def _scattered(client, spn: FlatSPN):
    """``spn`` on every worker of ``client``: scattered on the first batch, then kept (as long as ``spn`` lives)
    for the next ones. Each scatter gets a new key (``hash=False``): under a content key, a batch that scattered
    the network again while the previous batch's copy was being released lost it ("lost dependencies")."""
    held = _SCATTERED.get(spn)
    if held is not None and held[0]() is client and held[1].status == "finished":
        return held[1]
    fut = client.scatter(spn, broadcast=True, hash=False)
    _SCATTERED[spn] = (weakref.ref(client), fut)
    return fut


def map_batch_dask(client, spn: FlatSPN, roles: np.ndarray, values: np.ndarray, method: str, opts: dict, *,
                   chunk_size: int | None = None, threads_per_task: int = 1, progress: bool = True) -> pd.DataFrame:
    """``spnkit.map_batch`` on ``client``'s cluster (``map_batch(..., client=client)`` calls this): ``roles`` and
    ``values`` as ``map_api.batch_arrays`` gives them, ``opts`` the solver options. ``chunk_size``: rows per task
    (default: about four tasks per Dask thread, at most 100,000 rows each)."""
    from tqdm.auto import tqdm

    from .map_api import batch_frame

    m = roles.shape[0]
    if chunk_size is None:
        threads = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        chunk_size = min(100_000, max(1, math.ceil(m / (4 * threads))))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise QueryError(f"chunk_size={chunk_size!r}; expected a number of queries >= 1")
    if isinstance(threads_per_task, bool) or not isinstance(threads_per_task, int) or threads_per_task < 1:
        raise QueryError(f"threads_per_task={threads_per_task!r}; expected an integer >= 1")
    bounds = [(a, min(m, a + chunk_size)) for a in range(0, m, chunk_size)]
    remote = _scattered(client, spn)
    futures = {client.submit(_solve_chunk, remote, np.array(roles[a:b]), np.array(values[a:b]), method, dict(opts),
                             threads_per_task, pure=False): i for i, (a, b) in enumerate(bounds)}
    parts: list = [None] * len(bounds)
    from distributed import as_completed

    bar = tqdm(total=len(bounds), desc=f"map_batch {method} on Dask", unit="chunk", disable=not progress)
    try:
        for fut in as_completed(futures):
            parts[futures[fut]] = fut.result()
            bar.update()
    except KeyboardInterrupt:
        client.cancel(list(futures))
        done = [i for i, p in enumerate(parts) if p is not None]
        frame = _join(spn, roles, values, method, parts, bounds, done)
        raise Interrupted(f"spnkit.map_batch({method!r}) on Dask interrupted: {len(done)} of {len(bounds)} chunks "
                          f"finished; e.partial holds their queries", frame) from None
    finally:
        bar.close()
    out = tuple(np.concatenate([p[j] for p in parts]) for j in range(len(parts[0])))
    return batch_frame(spn, roles, values, method, out)


def _join(spn, roles, values, method, parts, bounds, done) -> pd.DataFrame:
    """The frame of the finished chunks ``done`` (their rows numbered as in the whole batch)."""
    from .map_api import batch_frame

    frames = []
    for i in done:
        a, b = bounds[i]
        try:
            f = batch_frame(spn, roles[a:b], values[a:b], method, parts[i])
        except Interrupted as e:            # rows a stop cut short: the finished ones
            f = e.partial
        f["query"] += a
        frames.append(f)
    if not frames:                          # the outputs of a batch of no rows, as batch_setup lays them out
        empty = batch_setup(spn.kernel_arrays, roles[:0], values[:0], METHOD_CODES[method], 1)[0]
        return batch_frame(spn, roles[:0], values[:0], method, empty)
    return pd.concat(frames, ignore_index=True)
