"""``VLLMEngine``: a real vLLM engine driven from asyncio, with interruptible weight updates.

Placement (measured, ../shared/VLLM_CPU.md §3, §9): vLLM's synchronous ``LLMEngine`` runs **in this process**,
owned by one dedicated thread that loops ``add_request / step / abort_request``. The asyncio side never calls
vLLM: it posts commands to that thread and awaits futures that the thread resolves with
``loop.call_soon_threadsafe``, so the event loop (a Jupyter kernel's included) never blocks. Start-up is ~2 s,
weights move from the learner's ``state_dict`` without serialisation, and only one process exists.

Every command runs *between* two engine steps, which makes a weight update atomic with respect to decoding:

* ``interrupt="recompute"`` (AReaL): reload the weights, then preempt every running request
  (``reset_prefix_cache(reset_running_requests=True)``); vLLM re-prefills prompt + tokens so far under the
  new weights and decoding continues. Tokens after the update carry the new version and new-weight logprobs.
* ``interrupt="keep"`` (PipelineRL / SkyRL in-flight update): reload the weights, keep the stale KV cache.
  Logprobs after the cut are what the engine computed (new weights over old KV), recorded as such.
* ``interrupt="abort"``: requests that have produced tokens end with ``finish_reason="abort"`` and their
  partial output; the rest restart under the new weights.

Each output token is tagged with the engine's policy version at the step that produced it, and carries the
log-prob of the distribution it was sampled from (temperature and top-p applied; see ``vllm_common``).

Commands are bound methods posted to the engine thread's queue; replies are ``concurrent.futures.Future``
objects, so the engine can be driven from the event loop (``await``) and from a learner thread
(:meth:`VLLMEngine.push_weights`) alike. One live vLLM engine per process (:class:`arealnb.EngineInUseError`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures as cf
import itertools
import json
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtime
from ..api import GenerationOutput, InterruptMode
from ..errors import ConfigError, EngineClosedError, EngineDeadError, InvalidRequestError, WeightUpdateError
from . import vllm_common as vc
from .weights import WeightSpec

_ACTIVITY_GAP = 0.002   # seconds between two steps that still count as one busy interval
_INTERRUPTS = ("recompute", "keep", "abort")
_live: weakref.WeakSet = weakref.WeakSet()


@dataclass(frozen=True)
class ThreadPolicy:
    """How the cores are shared between the engine thread and a learner in the same process.

    torch keeps its intra-op thread count per OS thread, so the engine sets its own and advises the learner
    (:meth:`VLLMEngine.learner_threads`), who applies it in its own thread with
    :func:`arealnb.runtime.set_torch_threads`. With 2 cores, engine and learner side by side get one thread
    each: two OpenMP threads per side under contention collapse throughput (VLLM_CPU.md §9).
    """

    engine: int = field(default=1, metadata={"help": "torch threads of the engine thread while it generates"})
    learner_with_engine: int = field(default=1, metadata={"help": "learner threads while the engine generates"})
    learner_alone: int = field(default=max(1, os.cpu_count() or 1),
                               metadata={"help": "learner threads while the engine is paused"})


@dataclass
class _Request:
    rid: str
    prompt_ids: list[int]
    params: Any                                    # vllm.SamplingParams
    future: cf.Future
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    submitted: float = field(default_factory=time.monotonic)
    internal_id: str = ""


class _Stop(Exception):
    """Raised by the stop command inside the engine thread to leave its loop."""


def _settle(fut: cf.Future | None, result=None, exc: BaseException | None = None) -> None:
    """Resolve a reply future once; a cancelled (abandoned) one is left alone."""
    if fut is None or fut.done():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except cf.InvalidStateError:
        pass


class VLLMEngine(vc.EngineFront):
    """An in-process vLLM engine with an asyncio API (see the module docstring).

    Parameters
    ----------
    model_path : an HF causal-LM folder (the embedded policy or any other, e.g. Qwen2.5-0.5B on a GPU box).
    dtype : ``"float32"`` when logprobs must match the learner (~1e-5), or ``"bfloat16"``.
    max_num_seqs : largest decode batch (continuous batching across concurrent ``generate`` calls).
    kv_cache_bytes : explicit KV-cache size (vLLM would otherwise take ~11 GiB on CPU).
    interrupt : what a weight update does to in-flight requests: ``"recompute"`` | ``"keep"`` | ``"abort"``.
    max_model_len : longest prompt + output (default: the model's); ``generate`` refuses more.
    seed : engine seed (requests may carry their own).
    thread_policy : torch threads while generating / while paused.
    check_finite : refuse weight pushes holding NaN or inf.
    version : policy version of the weights in ``model_path`` (0 for a fresh policy; a resumed run's saved
        version), the tag of the first tokens and the floor of the next push.
    engine_kwargs : further ``vllm.EngineArgs`` fields for vLLM itself (e.g. ``enforce_eager=False``,
        ``gpu_memory_utilization`` on a GPU box); checked before start. arealnb fixes ``logprobs_mode``,
        ``enable_chunked_prefill`` and ``enable_prefix_caching`` (see ``vllm_common``).
    """

    def __init__(self, model_path: str | os.PathLike, dtype: str = "float32", max_num_seqs: int = 64,
                 kv_cache_bytes: int = 64 << 20, interrupt: InterruptMode = "recompute",
                 max_model_len: int | None = None, seed: int = 0, thread_policy: ThreadPolicy | None = None,
                 check_finite: bool = True, engine_kwargs: dict | None = None, version: int = 0):
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(f"{self.model_path} is not an HF model folder (no config.json); build one with "
                              "arealnb.models.build_policy() or pass a downloaded checkpoint folder")
        if interrupt not in _INTERRUPTS:
            raise ConfigError(f"interrupt={interrupt!r}; expected one of {_INTERRUPTS}")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype={dtype!r}; expected 'float32', 'bfloat16' or 'float16'")
        if max_num_seqs < 1 or kv_cache_bytes < (1 << 20):
            raise ConfigError(f"max_num_seqs={max_num_seqs} (>= 1) and kv_cache_bytes={kv_cache_bytes} (>= 1 MiB)")
        if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 2):
            raise ConfigError(f"max_model_len={max_model_len!r}; expected None or an int >= 2")
        self.dtype = dtype
        self.max_num_seqs = int(max_num_seqs)
        self.kv_cache_bytes = int(kv_cache_bytes)
        self.interrupt: InterruptMode = interrupt
        self.max_model_len = max_model_len
        self.seed = seed
        self.thread_policy = thread_policy or ThreadPolicy()
        self.check_finite = check_finite
        self.engine_kwargs = vc.check_engine_kwargs(engine_kwargs)
        self.weight_spec = WeightSpec.from_checkpoint(self.model_path, dtype)
        self.vocab_size = int(json.loads((self.model_path / "config.json").read_text())["vocab_size"])

        self._cmds: queue.SimpleQueue = queue.SimpleQueue()
        self._post_lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._reqs: dict[str, _Request] = {}          # owned by the engine thread
        self._by_internal: dict[str, _Request] = {}
        self._ids = itertools.count()
        if not vc.is_int(version) or version < 0:
            raise ConfigError(f"version={version!r}; expected an int >= 0 (the policy version of model_path)")
        self._version = int(version)
        self._pushed_version = int(version)
        self._paused = False
        self._dead: EngineDeadError | None = None
        self._closed = False
        self._claim: object | None = None
        self._thread: threading.Thread | None = None
        self._inflight: cf.Future | None = None
        self._tokenizer = None
        self._llm = None
        self._listeners: list[Callable[[str, int], None]] = []
        self._counts: dict[str, Any] = vc.new_counts()
        self._stats: dict[str, Any] = {**self._counts, "version": self._version, "running": 0, "waiting": 0, "paused": False,
                                       "tok_per_s": 0.0}
        self._window: deque[tuple[float, int]] = deque()
        self._sched_counts = (0, 0, 0)
        self._activity: deque[list[float]] = deque(maxlen=20_000)   # [start, end] of runs of back-to-back steps

    # ------------------------------------------------------------------------------------------------
    # asyncio side
    # ------------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._dead is None

    async def start(self) -> VLLMEngine:
        """Build the vLLM engine on its own thread (the event loop keeps running meanwhile).

        Raises :class:`arealnb.EngineInUseError` if another vLLM engine is live in this process.
        """
        if self._closed:
            raise EngineClosedError("this engine was closed; create a new VLLMEngine")
        if self._thread is not None:
            return self
        self._claim = vc.claim_process(f"VLLMEngine({self.model_path.name})")
        ready: cf.Future = cf.Future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="arealnb-vllm-engine",
                                        daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(self._thread.join, 30)
            self._closed = True
            raise
        if self.max_model_len is None:
            self.max_model_len = int(self._engine.model_config.max_model_len)
        _live.add(self)
        return self

    async def close(self) -> None:
        """Abort what is in flight, shut vLLM down, join the engine thread. Idempotent."""
        await asyncio.to_thread(self._close_sync)

    async def _submit(self, ids: list[int], params: list[dict], rids: list[str]) -> list[GenerationOutput]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        reqs = [_Request(rid, ids, SamplingParams(**p, output_kind=RequestOutputKind.DELTA), cf.Future())
                for rid, p in zip(rids, params, strict=True)]
        self._post(self._cmd_add, reqs)
        try:
            return list(await asyncio.gather(*[asyncio.wrap_future(r.future) for r in reqs]))
        except asyncio.CancelledError:
            if self.is_running and not self._closed:
                try:
                    self._post(self._cmd_abort, [r.rid for r in reqs])
                except (EngineDeadError, EngineClosedError):
                    pass
            raise

    async def abort(self, request_id: str) -> None:
        """End one request now; its ``generate`` returns the partial output with ``finish_reason="abort"``."""
        await self._call(self._cmd_abort, [request_id])

    async def pause(self) -> None:
        """Stop stepping; returns once no step is in progress. New ``generate`` calls queue until resume."""
        await self._call(self._cmd_pause, True)

    async def resume(self) -> None:
        await self._call(self._cmd_pause, False)

    async def update_weights(self, state_dict, version: int) -> float:
        """Validate ``state_dict`` against the served model, then swap it in as policy ``version``.

        Validation (names, shapes, dtypes, devices, NaN/inf: 48-66 ms on the 18M policy) runs in a worker
        thread, so the event loop keeps running. Raises :class:`WeightUpdateError` (engine untouched, still
        serving the old version) on a wrong name, shape, dtype or device, a missing tensor, NaN/inf, or a
        version not above the last one pushed. vLLM copies the tensors into its own buffers during the call:
        do not modify them until it returns; afterwards the learner may. Returns the seconds spent inside the
        engine (reload + interrupt handling).
        """
        return await asyncio.wrap_future(await asyncio.to_thread(self._submit_push, state_dict, version))

    def push_weights(self, state_dict, version: int, timeout: float | None = None) -> float:
        """Thread-safe, blocking :meth:`update_weights` for a learner thread (not the event loop's thread:
        it would block the loop for the push). Validates in the calling thread; same errors and copy rule."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("push_weights called from the engine thread would deadlock")
        return self._submit_push(state_dict, version).result(timeout)

    def _submit_push(self, state_dict, version) -> cf.Future:
        with self._push_lock:                          # versions are checked and claimed in order
            if not vc.is_int(version) or version <= self._pushed_version:
                raise WeightUpdateError(f"version={version!r} refused: expected an int above the last pushed "
                                        f"version {self._pushed_version}; the engine keeps serving version "
                                        f"{self._version}")
            items = self.weight_spec.check(state_dict, check_finite=self.check_finite,
                                           what=f"weight update to version {version}")
            reply: cf.Future = cf.Future()
            self._post(self._cmd_update, items, int(version), reply=reply)
            self._pushed_version = int(version)
            return reply

    def stats(self) -> dict[str, Any]:
        """Snapshot: version, running, waiting, paused, tokens_generated, tok_per_s (last 5 s), steps, and the
        costs: ``prefill_tokens`` (first prefill of prompts), ``recompute_tokens`` (re-prefill of prompt +
        output of requests preempted by a ``recompute``/``abort`` push or by KV-cache pressure),
        ``decode_tokens``, ``step_s`` (seconds inside vLLM steps), ``prefill_step_s`` / ``recompute_step_s``
        (seconds of the steps that held any such work)."""
        return dict(self._stats)

    def activity(self, since: float = 0.0) -> list[tuple[float, float]]:
        """Intervals ``(start, end)`` (``time.monotonic()`` seconds) in which the engine was stepping, ending
        after ``since``: back-to-back steps (gaps under 2 ms) merge into one interval. The last 20,000 are kept."""
        return [(a, b) for a, b in list(self._activity) if b > since]

    def learner_threads(self) -> int:
        """torch threads the learner may use right now: all cores while the engine is paused, else its share.

        The rule for a learner in the same process: apply this (``arealnb.runtime.set_torch_threads``, in the
        learner's own thread) before each step, and again whenever a phase listener
        (:meth:`add_phase_listener`) reports a change; whoever calls ``resume()`` must first bring a learner that
        took all cores back to ``thread_policy.learner_with_engine``."""
        return self.thread_policy.learner_alone if self._paused else self.thread_policy.learner_with_engine

    def add_phase_listener(self, fn: Callable[[str, int], None]) -> None:
        """Call ``fn(phase, learner_threads)`` on the engine thread at each pause (``"paused"``) and resume
        (``"generating"``). Keep it short and thread-safe (set a flag or an ``Event`` the learner checks)."""
        self._listeners.append(fn)

    async def engine_threads(self, n: int | None = None) -> int:
        """Set (when ``n`` is given) and return the engine thread's torch thread count. A synchronous loop may
        give the engine every core while the learner is idle; never while something else computes."""
        return await self._call(self._cmd_threads, n)

    # ------------------------------------------------------------------------------------------------
    def _require_running(self) -> None:
        if self._dead is not None:
            raise self._dead
        if self._closed or self._thread is None:
            raise EngineClosedError("the engine is not running: `await engine.start()` (or `async with engine`) "
                                    "first; a closed engine cannot be restarted")

    def _post(self, fn, *args, reply: cf.Future | None = None) -> None:
        with self._post_lock:
            if self._dead is not None:
                raise self._dead
            if self._thread is None or not self._thread.is_alive():
                raise EngineClosedError("the engine thread is not running")
            self._cmds.put((fn, args, reply))

    async def _call(self, fn, *args):
        self._require_running()
        reply: cf.Future = cf.Future()
        self._post(fn, *args, reply=reply)
        return await asyncio.wrap_future(reply)

    # ------------------------------------------------------------------------------------------------
    # engine thread
    # ------------------------------------------------------------------------------------------------
    def _thread_main(self, ready: cf.Future) -> None:
        try:
            self._build()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._shutdown_vllm()
            self._release()
            _settle(ready, exc=exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            return
        _settle(ready, self)
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - any escape from vLLM kills the engine
            self._die(exc)
        finally:
            self._shutdown_vllm()
            self._release()                   # vLLM is gone: another engine may start

    def _build(self) -> None:
        self._llm = vc.build_llm(self.model_path, dtype=self.dtype, kv_cache_bytes=self.kv_cache_bytes,
                                 max_num_seqs=self.max_num_seqs, max_model_len=self.max_model_len, seed=self.seed,
                                 engine_kwargs=self.engine_kwargs)
        self._engine = self._llm.llm_engine
        self._tokenizer = self._llm.get_tokenizer()
        self._engine.set_weight_version("0")
        self._watch_scheduler()
        runtime.set_torch_threads(self.thread_policy.engine)

    def _watch_scheduler(self) -> None:
        """Count each step's scheduled tokens as prefill / recompute / decode (for :meth:`stats`).

        Wraps the in-process scheduler's ``schedule`` on this instance only; in multiprocess mode (no
        scheduler here) the counters stay 0."""
        core = getattr(self._engine.engine_core, "engine_core", None)
        sched = getattr(core, "scheduler", None)
        if sched is None:
            return
        inner = sched.schedule

        def schedule(*a, **k):
            out = inner(*a, **k)
            pre = rec = dec = 0
            for iid, n in out.num_scheduled_tokens.items():
                r = self._by_internal.get(iid)
                if r is None or not r.output_ids:
                    pre += n
                elif n > 1:
                    rec += n
                else:
                    dec += n
            self._sched_counts = (pre, rec, dec)
            return out

        sched.schedule = schedule

    def _serve(self) -> None:
        while True:
            busy = not self._paused and bool(self._reqs)
            try:
                cmd = self._cmds.get(block=not busy)
            except queue.Empty:
                cmd = None
            while cmd is not None:
                fn, args, reply = cmd
                self._inflight = reply            # failed by _die if the command kills the engine
                try:
                    result = fn(*args)
                except (_Stop, EngineDeadError):
                    raise
                except InvalidRequestError as exc:   # our own refusals; anything else kills the engine
                    _settle(reply, exc=exc)
                else:
                    _settle(reply, result)
                self._inflight = None
                try:
                    cmd = self._cmds.get_nowait()
                except queue.Empty:
                    cmd = None
            if not self._paused and self._reqs:
                self._step()

    # commands (run on the engine thread, between two steps) ---------------------------------------------
    def _cmd_add(self, reqs: list[_Request]) -> None:
        from vllm.inputs import TokensPrompt

        dup = [r.rid for r in reqs if r.rid in self._reqs]
        if dup:
            err = InvalidRequestError(f"request id {dup[0]!r} is already in flight")
            for r in reqs:
                _settle(r.future, exc=err)
            return
        for r in reqs:
            try:
                r.internal_id = self._engine.add_request(r.rid, TokensPrompt(prompt_token_ids=r.prompt_ids),
                                                         r.params)
            except Exception as exc:  # noqa: BLE001 - vLLM's own validation, should our checks miss one
                _settle(r.future, exc=InvalidRequestError(f"vLLM refused request {r.rid!r}: {exc}"))
                continue
            self._reqs[r.rid] = r
            self._by_internal[r.internal_id] = r

    def _cmd_abort(self, rids: list[str]) -> None:
        live = [self._reqs[rid] for rid in rids if rid in self._reqs]
        if live:
            self._engine.abort_request([r.rid for r in live])
            for r in live:
                self._finish(r, "abort")

    def _cmd_stop(self) -> None:
        self._abort_all()
        raise _Stop

    def _cmd_pause(self, paused: bool) -> None:
        self._paused = paused
        self._publish_stats()
        threads = self.learner_threads()
        for fn in list(self._listeners):
            try:
                fn("paused" if paused else "generating", threads)
            except Exception:  # noqa: BLE001 - a listener must not kill the engine
                pass

    def _cmd_threads(self, n: int | None) -> int:
        if n is not None:
            runtime.set_torch_threads(max(1, int(n)))
        return runtime.torch_threads()

    def _cmd_update(self, items, version: int) -> float:
        t0 = time.perf_counter()
        if self.interrupt == "abort":
            started = [r for r in self._reqs.values() if r.output_ids]
            if started:
                self._engine.abort_request([r.rid for r in started])
                for r in started:
                    self._finish(r, "abort")
        # A failure here leaves vLLM's model half-loaded: it propagates and kills the engine (_die).
        self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items})
        if self.interrupt in ("recompute", "abort"):
            self._engine.reset_prefix_cache(reset_running_requests=True)
        self._version = version
        self._engine.set_weight_version(str(version))
        dt = time.perf_counter() - t0
        self._counts["weight_updates"] += 1
        self._counts["last_update_s"] = dt
        self._publish_stats()
        return dt

    def _step(self) -> None:
        t0 = time.monotonic()
        outs = self._engine.step()
        t1 = time.monotonic()
        dt = t1 - t0
        act = self._activity
        if act and t0 - act[-1][1] < _ACTIVITY_GAP:
            act[-1][1] = t1
        else:
            act.append([t0, t1])
        pre, rec, dec = self._sched_counts
        self._sched_counts = (0, 0, 0)
        c = self._counts
        c["prefill_tokens"] += pre
        c["recompute_tokens"] += rec
        c["decode_tokens"] += dec
        c["step_s"] += dt
        c["prefill_step_s"] += dt if pre else 0.0
        c["recompute_step_s"] += dt if rec else 0.0
        v = self._version
        n_new = 0
        finished = []
        for o in outs:
            r = self._reqs.get(o.request_id)
            if r is None:
                continue
            comp = o.outputs[0]
            ids = list(comp.token_ids)
            if ids:
                r.output_ids.extend(ids)
                r.logprobs.extend(vc.sampled_logprobs(ids, comp.logprobs))
                r.versions.extend([v] * len(ids))
                n_new += len(ids)
            if o.finished:
                finished.append((r, vc.finish_reason(comp.finish_reason, len(r.output_ids), r.params.max_tokens)))
        now = time.monotonic()
        c["steps"] += 1
        c["tokens_generated"] += n_new
        self._window.append((now, n_new))
        while self._window and now - self._window[0][0] > 5.0:
            self._window.popleft()
        self._publish_stats(now)
        for r, reason in finished:           # after the counters: a woken caller sees consistent stats
            self._finish(r, reason)

    def _publish_stats(self, now: float | None = None) -> None:
        """Replace the stats snapshot (one dict assignment: readers on other threads never see it half-built)."""
        now = now or time.monotonic()
        running = sum(1 for r in self._reqs.values() if r.output_ids)
        span = now - self._window[0][0] if len(self._window) > 1 else 0.0
        self._stats = {**self._counts, "version": self._version, "running": running,
                       "waiting": len(self._reqs) - running, "paused": self._paused,
                       "tok_per_s": (sum(n for _, n in self._window) / span) if span > 0 else 0.0}

    def _finish(self, r: _Request, reason: str) -> None:
        self._reqs.pop(r.rid, None)
        self._by_internal.pop(r.internal_id, None)
        self._counts["requests_aborted" if reason == "abort" else "requests_finished"] += 1
        self._publish_stats()
        text = self._tokenizer.decode(r.output_ids, skip_special_tokens=True) if self._tokenizer else ""
        out = GenerationOutput(request_id=r.rid, prompt_ids=r.prompt_ids, output_ids=r.output_ids,
                               logprobs=np.asarray(r.logprobs, dtype=np.float64),
                               versions=np.asarray(r.versions, dtype=np.int64), finish_reason=reason, text=text,
                               meta={"latency_s": time.monotonic() - r.submitted,
                                     "max_model_len": self.max_model_len})
        _settle(r.future, out)

    def _abort_all(self) -> None:
        if self._reqs:
            try:
                self._engine.abort_request(list(self._reqs))
            finally:
                for r in list(self._reqs.values()):
                    self._finish(r, "abort")

    def _die(self, exc: BaseException) -> None:
        if isinstance(exc, _Stop):
            return
        err = EngineDeadError(f"the vLLM engine died: {type(exc).__name__}: {exc}. Every pending request failed; "
                              "create a new engine (and, after a weight push, check what was pushed).")
        err.__cause__ = exc
        with self._post_lock:
            self._dead = err
            pending = []
            while True:
                try:
                    pending.append(self._cmds.get_nowait())
                except queue.Empty:
                    break
        inflight, self._inflight = self._inflight, None
        _settle(inflight, exc=err)
        for fn, args, reply in pending:
            _settle(reply, exc=err)
            if fn == self._cmd_add:
                for r in args[0]:
                    _settle(r.future, exc=err)
        for r in list(self._reqs.values()):
            _settle(r.future, exc=err)
        self._reqs.clear()
        self._by_internal.clear()
        self._stats = {**self._stats, "dead": str(err)}

    def _shutdown_vllm(self) -> None:
        llm, self._llm = self._llm, None
        self._engine = None
        if llm is not None:
            vc.shutdown_llm(llm)
            del llm

    def _release(self) -> None:
        claim, self._claim = self._claim, None
        vc.release_process(claim)

    def _close_sync(self, timeout: float = 30.0) -> None:
        """Stop the engine thread and release the process's vLLM (no event loop needed: also at exit)."""
        if self._thread is not None and self._thread.is_alive():
            self._closed = True
            with self._post_lock:
                self._cmds.put((self._cmd_stop, (), None))
            self._thread.join(timeout)
        self._closed = True
        _live.discard(self)
        self._release()


@atexit.register
def _close_all_engines() -> None:
    for eng in list(_live):
        eng._close_sync()
