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

Each output token is tagged with the engine's policy version at the step that produced it.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import itertools
import os
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtime
from ..api import GenerationOutput, InterruptMode
from ..errors import ConfigError, EngineClosedError, EngineDeadError, InvalidRequestError, WeightUpdateError
from .weights import WeightSpec

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
    future: asyncio.Future
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    submitted: float = field(default_factory=time.monotonic)


@dataclass
class _Cmd:
    kind: str
    args: tuple = ()
    reply: asyncio.Future | None = None


class VLLMEngine:
    """An in-process vLLM engine with an asyncio API (see the module docstring).

    Parameters
    ----------
    model_path : an HF causal-LM folder (the embedded policy or any other, e.g. Qwen2.5-0.5B on a GPU box).
    dtype : ``"float32"`` when logprobs must match the learner (~1e-5), or ``"bfloat16"``.
    max_num_seqs : largest decode batch (continuous batching across concurrent ``generate`` calls).
    kv_cache_bytes : explicit KV-cache size (vLLM would otherwise take ~11 GiB on CPU).
    interrupt : what a weight update does to in-flight requests: ``"recompute"`` | ``"keep"`` | ``"abort"``.
    max_model_len : longest prompt + output (default: the model's).
    seed : engine seed (requests may carry their own).
    thread_policy : torch threads while generating / while paused.
    check_finite : refuse weight pushes holding NaN or inf.
    """

    def __init__(self, model_path: str | os.PathLike, dtype: str = "float32", max_num_seqs: int = 64,
                 kv_cache_bytes: int = 64 << 20, interrupt: InterruptMode = "recompute",
                 max_model_len: int | None = None, seed: int = 0, thread_policy: ThreadPolicy | None = None,
                 check_finite: bool = True):
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(f"{self.model_path} is not an HF model folder (no config.json); build one with "
                              "arealnb.models.build_tiny_policy() or pass a downloaded checkpoint folder")
        if interrupt not in _INTERRUPTS:
            raise ConfigError(f"interrupt={interrupt!r}; expected one of {_INTERRUPTS}")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype={dtype!r}; expected 'float32', 'bfloat16' or 'float16'")
        if max_num_seqs < 1 or kv_cache_bytes < (1 << 20):
            raise ConfigError(f"max_num_seqs={max_num_seqs} (>= 1) and kv_cache_bytes={kv_cache_bytes} (>= 1 MiB)")
        self.dtype = dtype
        self.max_num_seqs = int(max_num_seqs)
        self.kv_cache_bytes = int(kv_cache_bytes)
        self.interrupt: InterruptMode = interrupt
        self.max_model_len = max_model_len
        self.seed = seed
        self.thread_policy = thread_policy or ThreadPolicy()
        self.check_finite = check_finite
        self.weight_spec = WeightSpec.from_checkpoint(self.model_path, dtype)

        self._cmds: queue.SimpleQueue[_Cmd] = queue.SimpleQueue()
        self._post_lock = threading.Lock()
        self._reqs: dict[str, _Request] = {}          # owned by the engine thread
        self._ids = itertools.count()
        self._version = 0
        self._pushed_version = 0
        self._paused = False
        self._dead: EngineDeadError | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future | None = None
        self._inflight_cmd: _Cmd | None = None
        self._tokenizer = None
        self._llm = None
        self._counts: dict[str, Any] = {"tokens_generated": 0, "steps": 0, "requests_finished": 0,
                                        "requests_aborted": 0, "weight_updates": 0, "last_update_s": float("nan")}
        self._stats: dict[str, Any] = {**self._counts, "version": 0, "running": 0, "waiting": 0, "paused": False,
                                       "tok_per_s": 0.0}
        self._window: deque[tuple[float, int]] = deque()

    # ------------------------------------------------------------------------------------------------
    # asyncio side
    # ------------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Policy version of the weights the engine is serving now."""
        return self._version

    def get_version(self) -> int:
        return self._version

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._dead is None

    async def start(self) -> VLLMEngine:
        """Build the vLLM engine on its own thread (the event loop keeps running meanwhile)."""
        if self._closed:
            raise EngineClosedError("this engine was closed; create a new VLLMEngine")
        if self._thread is not None:
            return self
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="arealnb-vllm-engine",
                                        daemon=True)
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.shield(self._stopped)
            self._thread.join(timeout=30)
            self._closed = True
            raise
        _live.add(self)
        return self

    async def close(self) -> None:
        """Abort what is in flight, shut vLLM down, join the engine thread. Idempotent."""
        if self._thread is None:
            self._closed = True
            return
        if not self._closed:
            self._closed = True
            try:
                self._post(_Cmd("stop"))
            except (EngineDeadError, EngineClosedError):
                pass
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
        self._thread.join(timeout=30)
        _live.discard(self)

    async def __aenter__(self) -> VLLMEngine:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def generate(self, prompt_ids: list[int], max_new_tokens: int = 256, temperature: float = 1.0,
                       seed: int | None = None, stop_token_ids: list[int] | None = None,
                       ignore_eos: bool = False, request_id: str | None = None,
                       top_p: float = 1.0) -> GenerationOutput:
        """Sample one completion of ``prompt_ids``; many concurrent calls share the engine's batch.

        Returns when the request finishes; an aborted request returns its partial output with
        ``finish_reason="abort"``. Cancelling the awaiting task aborts the request.
        """
        if not prompt_ids or not all(isinstance(t, (int, np.integer)) and t >= 0 for t in prompt_ids):
            raise InvalidRequestError("prompt_ids must be a non-empty list of non-negative token ids")
        if max_new_tokens < 1:
            raise InvalidRequestError(f"max_new_tokens={max_new_tokens}; expected >= 1")
        if temperature < 0:
            raise InvalidRequestError(f"temperature={temperature}; expected >= 0 (0 = greedy)")
        rid = request_id or f"r{next(self._ids)}"
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=int(max_new_tokens), seed=seed,
                                logprobs=0, stop_token_ids=list(stop_token_ids or []), ignore_eos=ignore_eos,
                                detokenize=False, output_kind=RequestOutputKind.DELTA)
        fut = self._require_loop().create_future()
        self._post(_Cmd("add", (_Request(rid, [int(t) for t in prompt_ids], fut), params)))
        try:
            return await fut
        except asyncio.CancelledError:
            if self.is_running and not self._closed:
                try:
                    self._post(_Cmd("abort", (rid,)))
                except (EngineDeadError, EngineClosedError):
                    pass
            raise

    async def abort(self, request_id: str) -> None:
        """End one request now; its ``generate`` returns the partial output with ``finish_reason="abort"``."""
        await self._call("abort", request_id)

    async def pause(self) -> None:
        """Stop stepping; returns once no step is in progress. New ``generate`` calls queue until resume."""
        await self._call("pause")

    async def resume(self) -> None:
        await self._call("resume")

    async def update_weights(self, state_dict, version: int) -> float:
        """Validate ``state_dict`` against the served model, then swap it in as policy ``version``.

        Raises :class:`WeightUpdateError` (engine untouched, still serving the old version) on a wrong name,
        shape, dtype or device, a missing tensor, NaN/inf, or a version not above the last one pushed.
        The tensors are read during the call: do not modify them until it returns.
        Returns the seconds spent inside the engine (reload + interrupt handling).
        """
        if not isinstance(version, (int, np.integer)) or isinstance(version, bool) or version <= self._pushed_version:
            raise WeightUpdateError(f"version={version!r} refused: expected an int above the last pushed version "
                                    f"{self._pushed_version}; the engine keeps serving version {self._version}")
        items = self.weight_spec.check(state_dict, check_finite=self.check_finite,
                                       what=f"weight update to version {version}")
        self._pushed_version = int(version)
        return await self._call("update", items, int(version))

    def stats(self) -> dict[str, Any]:
        """Snapshot: version, running, waiting, paused, tokens_generated, tok_per_s (last 5 s), steps, ..."""
        return dict(self._stats)

    def learner_threads(self) -> int:
        """torch threads the learner may use right now: all cores while the engine is paused, else its share."""
        return self.thread_policy.learner_alone if self._paused else self.thread_policy.learner_with_engine

    async def engine_threads(self, n: int | None = None) -> int:
        """Set (when ``n`` is given) and return the engine thread's torch thread count. A synchronous loop may
        give the engine every core while the learner is idle; never while something else computes."""
        return await self._call("threads", n)

    # test hook: a reload that skips validation, to exercise the engine-death path with a real vLLM failure
    async def _unchecked_reload(self, items) -> None:
        await self._call("update", list(items), self._pushed_version + 1)

    # ------------------------------------------------------------------------------------------------
    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._dead is not None:
            raise self._dead
        if self._closed or self._thread is None:
            raise EngineClosedError("the engine is not running: `await engine.start()` (or `async with engine`) "
                                    "first; a closed engine cannot be restarted")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise EngineClosedError("this engine was started on another event loop; use it from that loop")
        return loop

    def _post(self, cmd: _Cmd) -> None:
        with self._post_lock:
            if self._dead is not None:
                raise self._dead
            if self._thread is None or not self._thread.is_alive():
                raise EngineClosedError("the engine thread is not running")
            self._cmds.put(cmd)

    async def _call(self, kind: str, *args):
        reply = self._require_loop().create_future()
        self._post(_Cmd(kind, args, reply))
        return await reply

    # ------------------------------------------------------------------------------------------------
    # engine thread
    # ------------------------------------------------------------------------------------------------
    def _resolve(self, fut: asyncio.Future | None, result=None, exc: BaseException | None = None) -> None:
        if fut is None:
            return

        def _set() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        try:
            self._loop.call_soon_threadsafe(_set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _thread_main(self, ready: asyncio.Future) -> None:
        try:
            self._build()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._resolve(ready, exc=exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            self._resolve(self._stopped, None)
            return
        self._resolve(ready, self)
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - any escape from vLLM kills the engine
            self._die(exc)
        finally:
            self._shutdown_vllm()
            self._resolve(self._stopped, None)

    def _build(self) -> None:
        runtime.before_engine_build()
        from vllm import LLM

        self._llm = LLM(model=str(self.model_path), dtype=self.dtype, enforce_eager=True,
                        kv_cache_memory_bytes=self.kv_cache_bytes, max_num_seqs=self.max_num_seqs,
                        max_model_len=self.max_model_len, seed=self.seed, enable_prefix_caching=False)
        self._engine = self._llm.llm_engine
        self._tokenizer = self._llm.get_tokenizer()
        self._engine.set_weight_version("0")
        runtime.set_torch_threads(self.thread_policy.engine)

    def _serve(self) -> None:
        while True:
            busy = not self._paused and bool(self._reqs)
            try:
                cmd = self._cmds.get(block=not busy)
            except queue.Empty:
                cmd = None
            while cmd is not None:
                if cmd.kind == "stop":
                    self._abort_all()
                    return
                self._inflight_cmd = cmd          # failed by _die if the command kills the engine
                self._handle(cmd)
                self._inflight_cmd = None
                try:
                    cmd = self._cmds.get_nowait()
                except queue.Empty:
                    cmd = None
            if not self._paused and self._reqs:
                self._step()

    def _handle(self, cmd: _Cmd) -> None:
        kind, args = cmd.kind, cmd.args
        if kind == "add":
            req, params = args
            if req.rid in self._reqs:
                self._resolve(req.future, exc=InvalidRequestError(f"request id {req.rid!r} is already in flight"))
                return
            from vllm.inputs import TokensPrompt

            try:
                self._engine.add_request(req.rid, TokensPrompt(prompt_token_ids=req.prompt_ids), params)
            except Exception as exc:  # vLLM's own request validation (too long, token id out of range, ...)
                self._resolve(req.future, exc=InvalidRequestError(f"vLLM refused request {req.rid!r}: {exc}"))
                return
            self._reqs[req.rid] = req
        elif kind == "abort":
            (rid,) = args
            if rid in self._reqs:
                self._engine.abort_request([rid])
                self._finish(self._reqs[rid], "abort")
            self._resolve(cmd.reply, None)
        elif kind == "pause":
            self._paused = True
            self._publish_stats()
            self._resolve(cmd.reply, None)
        elif kind == "threads":
            (n,) = args
            if n is not None:
                runtime.set_torch_threads(max(1, int(n)))
            self._resolve(cmd.reply, runtime.torch_threads())
        elif kind == "resume":
            self._paused = False
            self._publish_stats()
            self._resolve(cmd.reply, None)
        elif kind == "update":
            items, version = args
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
            self._resolve(cmd.reply, dt)
        else:
            self._resolve(cmd.reply, exc=ValueError(f"unknown engine command {kind!r}"))

    def _step(self) -> None:
        outs = self._engine.step()
        v = self._version
        n_new = 0
        finished = []
        for o in outs:
            r = self._reqs.get(o.request_id)
            if r is None:
                continue
            c = o.outputs[0]
            ids = list(c.token_ids)
            if ids:
                r.output_ids.extend(ids)
                r.logprobs.extend(d[t].logprob for t, d in zip(ids, c.logprobs, strict=True))
                r.versions.extend([v] * len(ids))
                n_new += len(ids)
            if o.finished:
                finished.append((r, c.finish_reason or "stop"))
        now = time.monotonic()
        self._counts["steps"] += 1
        self._counts["tokens_generated"] += n_new
        self._window.append((now, n_new))
        while self._window and now - self._window[0][0] > 5.0:
            self._window.popleft()
        self._publish_stats(now)
        for r, reason in finished:           # after the counters: a woken caller sees consistent stats
            self._finish(r, reason)

    def _publish_stats(self, now: float | None = None) -> None:
        """Replace the stats snapshot (one dict assignment: readers on the loop thread never see it half-built)."""
        now = now or time.monotonic()
        running = sum(1 for r in self._reqs.values() if r.output_ids)
        span = now - self._window[0][0] if len(self._window) > 1 else 0.0
        self._stats = {**self._counts, "version": self._version, "running": running,
                       "waiting": len(self._reqs) - running, "paused": self._paused,
                       "tok_per_s": (sum(n for _, n in self._window) / span) if span > 0 else 0.0}

    def _finish(self, r: _Request, reason: str) -> None:
        self._reqs.pop(r.rid, None)
        self._counts["requests_aborted" if reason == "abort" else "requests_finished"] += 1
        self._publish_stats()
        text = self._tokenizer.decode(r.output_ids, skip_special_tokens=True) if self._tokenizer else ""
        out = GenerationOutput(request_id=r.rid, prompt_ids=r.prompt_ids, output_ids=r.output_ids,
                               logprobs=np.asarray(r.logprobs, dtype=np.float64),
                               versions=np.asarray(r.versions, dtype=np.int64), finish_reason=reason, text=text,
                               meta={"latency_s": time.monotonic() - r.submitted})
        self._resolve(r.future, out)

    def _abort_all(self) -> None:
        if self._reqs:
            try:
                self._engine.abort_request(list(self._reqs))
            finally:
                for r in list(self._reqs.values()):
                    self._finish(r, "abort")

    def _die(self, exc: BaseException) -> None:
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
        inflight, self._inflight_cmd = self._inflight_cmd, None
        for cmd in ([inflight] if inflight is not None else []) + pending:
            self._resolve(cmd.reply, exc=err)
            if cmd.kind == "add":
                self._resolve(cmd.args[0].future, exc=err)
        for r in list(self._reqs.values()):
            self._resolve(r.future, exc=err)
        self._reqs.clear()
        self._stats = {**self._stats, "dead": str(err)}

    def _shutdown_vllm(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort on an engine that may be dead already
            pass
        self._engine = None
        del llm
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001
            pass
        gc.collect()

    def _close_sync(self, timeout: float = 30.0) -> None:
        """Interpreter/kernel shutdown: stop the thread without an event loop."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._closed = True
        with self._post_lock:
            self._cmds.put(_Cmd("stop"))
        self._thread.join(timeout)


@atexit.register
def _close_all_engines() -> None:
    for eng in list(_live):
        eng._close_sync()
