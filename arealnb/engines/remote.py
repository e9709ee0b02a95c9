"""``RemoteVLLMEngine``: :class:`arealnb.api.InferenceEngine` over one or more ``vllm serve`` processes.

The orchestrator's code does not change: the trainer calls ``generate_group`` / ``update_weights`` / ``pause``
on this engine as on the in-process one (``TrainerConfig(rollout_servers=[...])`` picks it). Everything goes
over HTTP to vLLM's own endpoints; nothing of vLLM is imported in this process.

**Requests.** Each sample is one ``POST /inference/v1/generate`` (vLLM's token-in/token-out endpoint, served with
``--enable-scale-out``): prompt token ids in, output token ids, the sampler's log-prob of each (the server runs
``--logprobs-mode processed_logprobs``, as the in-process engine) and vLLM's ``weight_versions`` spans out. A
group's ``n`` samples are ``n`` requests with seeds ``seed .. seed + n - 1``, exactly as in-process, each sent to
the live server with the **least outstanding work** (the sum of ``max_new_tokens`` of the requests in flight
there; ties go to the server listed first).

**Versions.** Every output token's version is *the server's own weight-version label at the step that sampled
it* (vLLM records ``WeightVersionSpan(version, start, end)`` per request); this engine sets that label at start
and at each push (``/update_weight_version``), while the server is paused. So a token carries the version of the
weights that produced it, even when its response arrives after the push returned.

**Weight pushes** (``update_weights``): the state dict is validated first (:class:`~.weights.WeightSpec`: names,
shapes, dtype, NaN/inf; a bad push raises :class:`WeightUpdateError` and no server is touched), written once as
safetensors into ``weight_dir`` (``/dev/shm`` for local servers; storage every server can read otherwise), then
on every live server at once::

    POST /pause?mode=keep            (interrupt="abort": mode=abort)
    POST /collective_rpc {"method": "arealnb_load_weights", "args": [path]}    (arealnb.engines.remote_worker)
    POST /reset_prefix_cache?reset_running_requests=true                       (interrupt="recompute" only)
    POST /update_weight_version {"new_version": "<v>"}
    POST /resume

The three interrupt modes map onto vLLM's server as: ``recompute`` (kept requests are preempted after the
reload and re-prefilled with the new weights, AReaL), ``keep`` (kept requests continue on their stale KV cache),
``abort`` (vLLM's ``pause?mode=abort`` ends *every* in-flight request with its partial output, including those
that had produced no token yet, where the in-process engine restarts the latter; the trainer resubmits both
alike). vLLM's third pause mode, ``wait`` (drain, then update), is not offered: it makes the push wait for the
longest sample, the synchronous behaviour asynchronous RL exists to avoid.

**Failures.** A server that refuses a connection, drops one, times out, or fails a push step is taken out of the
rotation (``servers_lost``); its in-flight requests are resubmitted, whole, to the others
(``requests_resubmitted``; a sample cut short this way restarts with the same seed, so its tokens are drawn
again). When no server is left every pending and later call raises :class:`EngineDeadError`. A server is never
brought back by this engine: restart it and create a new engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..api import GenerationOutput, InterruptMode
from ..errors import ConfigError, EngineClosedError, EngineDeadError, InvalidRequestError, WeightUpdateError
from . import vllm_common as vc
from .vllm_engine import ThreadPolicy
from .weights import WeightSpec

GENERATE = "/inference/v1/generate"
_SERVER_ID_PREFIX = "generate-tokens-"      # vLLM 0.32's serving layer names a generate request this + our id
_INTERRUPTS = ("recompute", "keep", "abort")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class _ServerLost(Exception):
    """A server did not answer as expected: connection refused or dropped, timeout, or an HTTP error
    (``status``; 0 for transport failures)."""

    def __init__(self, msg: str, status: int = 0):
        super().__init__(msg)
        self.status = status


@dataclass
class _Server:
    url: str
    alive: bool = True
    outstanding: int = 0                       # sum of max_new_tokens of the requests in flight here
    inflight: dict[str, int] = field(default_factory=dict)     # our request id -> its work
    lost_reason: str = ""


class RemoteVLLMEngine(vc.EngineFront):
    """A rollout engine made of ``vllm serve`` processes (see the module docstring).

    Parameters
    ----------
    urls : base URLs of the servers, e.g. ``["http://gpu1:8000", "http://gpu2:8000"]`` (or
        :class:`arealnb.serve.VLLMServer` objects). Each must run with ``VLLM_SERVER_DEV_MODE=1``,
        ``--enable-scale-out``, ``--worker-extension-cls arealnb.engines.remote_worker.WeightLoader`` and the
        flags :func:`arealnb.serve.serve_command` gives; :class:`arealnb.serve.VLLMServer` starts one so.
    model_path : the policy's HF folder on *this* machine (same architecture as served): the names and shapes a
        push is validated against, and the tokenizer for ``GenerationOutput.text``.
    interrupt : what a push does to in-flight requests: ``"recompute"`` | ``"keep"`` | ``"abort"``.
    version : the policy version the servers serve now (their label is set to it at :meth:`start`).
    weight_dir : folder for the pushed safetensors, readable by every server (default ``/dev/shm`` when all
        servers are on this machine; required otherwise).
    dtype : dtype the servers serve (``--dtype``); pushes must carry it.
    request_timeout : seconds one request may take before its server is considered lost.
    thread_policy : torch threads advised to the learner (default: as in-process when the servers share this
        machine's cores, every core when they are all remote). With servers on this machine the learner keeps
        ``learner_with_engine`` threads even while they are paused: their processes still hold the cores.
    """

    def __init__(self, urls, model_path: str | os.PathLike, *, interrupt: InterruptMode = "recompute",
                 version: int = 0, weight_dir: str | os.PathLike | None = None, dtype: str = "float32",
                 request_timeout: float = 600.0, check_finite: bool = True,
                 thread_policy: ThreadPolicy | None = None):
        if isinstance(urls, (str, bytes)) or not hasattr(urls, "__iter__"):
            urls = [urls]
        urls = [getattr(u, "url", u) for u in urls]
        if not urls:
            raise ConfigError("urls: give at least one server URL, e.g. ['http://127.0.0.1:8000']")
        for u in urls:
            parts = urlsplit(u) if isinstance(u, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"server URL {u!r}: expected 'http://host:port'")
        if len(set(urls)) != len(urls):
            raise ConfigError(f"urls lists a server twice: {urls}")
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(f"{self.model_path} is not an HF model folder (no config.json): the push validation "
                              "and the tokenizer need the served policy's folder on this machine")
        if interrupt not in _INTERRUPTS:
            raise ConfigError(f"interrupt={interrupt!r}; expected one of {_INTERRUPTS}")
        if not vc.is_int(version) or version < 0:
            raise ConfigError(f"version={version!r}; expected an int >= 0")
        if not isinstance(request_timeout, (int, float)) or not request_timeout > 0:
            raise ConfigError(f"request_timeout={request_timeout!r}; expected seconds > 0")
        local = all(urlsplit(u).hostname in _LOCAL_HOSTS for u in urls)
        if weight_dir is None:
            if not local:
                raise ConfigError("weight_dir: the servers are not all on this machine, so give a folder every "
                                  "server can read (shared storage) for the pushed weights")
            weight_dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        self.weight_dir = Path(weight_dir)
        if not self.weight_dir.is_dir():
            raise ConfigError(f"weight_dir={str(weight_dir)!r} is not a folder")
        self.urls = list(urls)
        self.interrupt: InterruptMode = interrupt
        self.dtype = dtype
        self.request_timeout = float(request_timeout)
        self.check_finite = check_finite
        policy = thread_policy or (ThreadPolicy() if local else ThreadPolicy(learner_with_engine=os.cpu_count() or 1))
        if local:       # servers here keep their cores while paused (a paused vLLM server still polls): a learner on
            policy = dataclasses.replace(policy, learner_alone=policy.learner_with_engine)   # all cores collapses
        self.thread_policy = policy
        self.local = local
        self.weight_spec = WeightSpec.from_checkpoint(self.model_path, dtype)
        import json

        self.vocab_size = int(json.loads((self.model_path / "config.json").read_text())["vocab_size"])
        self.max_model_len: int | None = None
        self._servers = [_Server(u.rstrip("/")) for u in urls]
        self._version = int(version)
        self._pushed_version = int(version)
        self._paused = False
        self._started = False
        self._closed = False
        self._dead: EngineDeadError | None = None
        self._session = None
        self._session_loop = None
        self._tokenizer = None
        self._ids = itertools.count()
        self._inflight: dict[str, _Server] = {}
        self._push_lock: asyncio.Lock | None = None
        self._counts: dict[str, Any] = vc.new_counts(requests_resubmitted=0, servers_lost=0)
        self._window: deque[tuple[float, int]] = deque()
        self._activity: deque[list[float]] = deque(maxlen=20_000)
        self._busy_since: float | None = None
        self._lock = threading.Lock()          # stats() may be read from other threads

    # ------------------------------------------------------------------------------------------------
    @property
    def servers(self) -> list[dict]:
        """Each server's URL, whether it is in the rotation, its in-flight requests and outstanding work."""
        return [{"url": s.url, "alive": s.alive, "inflight": len(s.inflight), "outstanding": s.outstanding,
                 "lost_reason": s.lost_reason} for s in self._servers]

    @property
    def is_running(self) -> bool:
        return self._started and not self._closed and self._dead is None

    async def start(self) -> RemoteVLLMEngine:
        """Check every server (reachable, serving a policy with the RL and token endpoints on), label its weights
        with ``version`` and make sure it is not paused. :class:`ConfigError` names a server that fails."""
        if self._closed:
            raise EngineClosedError("this engine was closed; create a new RemoteVLLMEngine")
        if self._started:
            return self
        self._sess()
        try:
            lens = await asyncio.gather(*[self._check_server(s) for s in self._servers])
            if len(set(lens)) != 1:
                raise ConfigError(f"the servers serve different context lengths {dict(zip(self.urls, lens, strict=True))}: "
                                  "start them from the same model with the same --max-model-len")
            self.max_model_len = lens[0]
            from transformers import AutoTokenizer

            self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model_path)
        except BaseException:
            await self._drop_session()
            raise
        self._started = True
        return self

    async def _check_server(self, s: _Server) -> int:
        hint = ("start servers with arealnb.serve.VLLMServer, or `vllm serve` with the flags of "
                "arealnb.serve.serve_command() and VLLM_SERVER_DEV_MODE=1")
        try:
            models = await self._call(s, "GET", "/v1/models", timeout=30)
            paused = await self._call(s, "GET", "/is_paused", timeout=30)
            probe = await self._call(s, "POST", GENERATE, {"token_ids": [0], "sampling_params": {"max_tokens": 1}},
                                     timeout=60, ok=(200, 400, 403))
        except _ServerLost as exc:
            raise ConfigError(f"server {s.url} does not answer ({exc}); {hint}") from None
        if not isinstance(paused, dict) or "is_paused" not in paused:
            raise ConfigError(f"server {s.url} has no /is_paused: it runs without VLLM_SERVER_DEV_MODE=1; {hint}")
        if isinstance(probe, dict) and probe.get("_status") == 403:
            raise ConfigError(f"server {s.url} has the token endpoint {GENERATE} off: add --enable-scale-out; {hint}")
        try:
            max_len = int(models["data"][0]["max_model_len"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise ConfigError(f"server {s.url}: /v1/models gave no max_model_len ({models!r})") from None
        await self._call(s, "POST", "/update_weight_version", {"new_version": str(self._version)}, timeout=30)
        if paused["is_paused"]:
            await self._call(s, "POST", "/resume", timeout=30)
        return max_len

    async def close(self) -> None:
        """Abort this engine's requests on the servers (their callers get partial outputs) and close the HTTP
        session. The servers keep running: stop them where they were started. Idempotent."""
        if self._closed:
            return
        if self._session is None:
            self._closed = True
            return
        by_server: dict[int, list[str]] = {}
        for rid, s in list(self._inflight.items()):
            by_server.setdefault(id(s), []).append(rid)
        for s in self._servers:
            rids = by_server.get(id(s))
            if rids and s.alive:
                try:
                    await self._call(s, "POST", "/abort_requests",
                                     {"request_ids": [_SERVER_ID_PREFIX + r for r in rids]}, timeout=10)
                except _ServerLost:
                    pass
        deadline = time.monotonic() + 10
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._closed = True
        await self._drop_session()

    def _close_sync(self) -> None:
        """Close without an event loop (``Trainer.close_sync``, exit): requests still in flight are left to finish
        on their servers."""
        self._closed = True
        sess, self._session = self._session, None
        _dispose(sess, self._session_loop)

    def _sess(self):
        """The HTTP session of the running event loop (a script's ``asyncio.run`` calls each bring a new loop, and
        an aiohttp session belongs to one); the push lock likewise."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop or self._session.closed:
            _dispose(self._session, self._session_loop)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=None))
            self._session_loop = loop
            self._push_lock = asyncio.Lock()
        return self._session

    async def _drop_session(self) -> None:
        sess, self._session = self._session, None
        if sess is not None and self._session_loop is asyncio.get_running_loop():
            await sess.close()

    # ------------------------------------------------------------------------------------------------
    # generation (generate / generate_group: vllm_common.EngineFront; each sample is routed on its own)
    # ------------------------------------------------------------------------------------------------
    def _new_request_id(self) -> str:
        return f"r{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    async def _submit(self, ids: list[int], params: list[dict], rids: list[str]) -> list[GenerationOutput]:
        dup = [r for r in rids if r in self._inflight]
        if dup:
            raise InvalidRequestError(f"request id {dup[0]!r} is already in flight")
        tasks = [asyncio.ensure_future(self._one(rid, ids, p)) for rid, p in zip(rids, params, strict=True)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one(self, rid: str, ids: list[int], params: dict) -> GenerationOutput:
        """One request to completion, moved to another server if the one running it is lost."""
        work = int(params["max_tokens"])
        t_submit = time.monotonic()
        body = {"token_ids": ids, "sampling_params": params, "request_id": rid}
        while True:
            s = self._pick()
            self._enter(s, rid, work)
            try:
                resp = await self._call(s, "POST", GENERATE, body, timeout=self.request_timeout, ok=(200, 400))
            except _ServerLost as exc:
                self._leave(s, rid, work)
                if exc.status and await self._healthy(s):       # the server is fine: this request failed there
                    raise InvalidRequestError(f"server {s.url} failed request {rid!r}: {exc}") from None
                self._lose(s, str(exc))
                with self._lock:
                    self._counts["requests_resubmitted"] += 1
                continue
            except asyncio.CancelledError:
                self._leave(s, rid, work)
                if s.alive and not self._closed:               # the caller gave up: free the server's slot
                    asyncio.ensure_future(self._abort_on(s, [rid]))
                raise
            self._leave(s, rid, work)
            if resp.get("_status") == 400:
                raise InvalidRequestError(f"server {s.url} refused request {rid!r}: {_error_text(resp)}")
            return self._output(rid, ids, params, resp, t_submit, s)

    def _output(self, rid, ids, params, resp, t_submit, s: _Server) -> GenerationOutput:
        try:
            choice = resp["choices"][0]
            out_ids = [int(t) for t in choice["token_ids"]]
            content = (choice.get("logprobs") or {}).get("content") or []
            logprobs = np.array([float(c["logprob"]) for c in content], dtype=np.float64)
            versions = np.empty(len(out_ids), dtype=np.int64)
            covered = 0
            for span in choice.get("weight_versions") or []:
                versions[span["start"]:span["end"]] = int(span["version"])
                covered += span["end"] - span["start"]
            reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EngineDeadError(f"server {s.url} answered request {rid!r} with an unreadable response "
                                  f"({type(exc).__name__}: {exc}); is it a vLLM 0.32 server started by "
                                  "arealnb.serve?") from None
        if len(logprobs) != len(out_ids) or covered != len(out_ids) or \
                any(int(c["token_id"]) != t for c, t in zip(content, out_ids, strict=True)):
            raise EngineDeadError(f"server {s.url}: request {rid!r} came back with {len(out_ids)} tokens, "
                                  f"{len(logprobs)} log-probs and versions for {covered}: not from this engine's "
                                  "server set-up")
        reason = vc.finish_reason(reason, len(out_ids), params["max_tokens"])
        now = time.monotonic()
        with self._lock:
            c = self._counts
            c["requests_aborted" if reason == "abort" else "requests_finished"] += 1
            c["tokens_generated"] += len(out_ids)
            c["prefill_tokens"] += len(ids)
            c["decode_tokens"] += len(out_ids)
            self._window.append((now, len(out_ids)))
            while self._window and now - self._window[0][0] > 5.0:
                self._window.popleft()
        text = self._tokenizer.decode(out_ids, skip_special_tokens=True) if self._tokenizer else ""
        return GenerationOutput(request_id=rid, prompt_ids=list(ids), output_ids=out_ids, logprobs=logprobs,
                                versions=versions, finish_reason=reason, text=text,
                                meta={"latency_s": now - t_submit, "max_model_len": self.max_model_len,
                                      "server": s.url})

    def _pick(self) -> _Server:
        self._require_running()
        live = [s for s in self._servers if s.alive]
        if not live:
            self._die()
        return min(live, key=lambda s: s.outstanding)

    def _enter(self, s: _Server, rid: str, work: int) -> None:
        with self._lock:
            if not self._inflight:
                self._busy_since = time.monotonic()
            s.outstanding += work
            s.inflight[rid] = work
            self._inflight[rid] = s

    def _leave(self, s: _Server, rid: str, work: int) -> None:
        with self._lock:
            s.outstanding -= work
            s.inflight.pop(rid, None)
            self._inflight.pop(rid, None)
            if not self._inflight and self._busy_since is not None:
                t0, t1 = self._busy_since, time.monotonic()
                self._busy_since = None
                self._counts["step_s"] += t1 - t0
                self._activity.append([t0, t1])

    def _lose(self, s: _Server, why: str) -> None:
        if s.alive:
            s.alive = False
            s.lost_reason = why
            with self._lock:
                self._counts["servers_lost"] += 1

    def _die(self) -> None:
        if self._dead is None:
            why = "; ".join(f"{s.url}: {s.lost_reason}" for s in self._servers)
            self._dead = EngineDeadError(f"every rollout server is lost ({why}); restart them and create a new "
                                         "RemoteVLLMEngine")
        raise self._dead

    def _require_running(self) -> None:
        if self._dead is not None:
            raise self._dead
        if self._closed or not self._started:
            raise EngineClosedError("the engine is not running: `await engine.start()` (or `async with engine`) "
                                    "first; a closed engine cannot be restarted")

    async def abort(self, request_id: str) -> None:
        """End one request now; its ``generate`` returns the partial output with ``finish_reason="abort"``."""
        self._require_running()
        s = self._inflight.get(request_id)
        if s is not None:
            await self._abort_on(s, [request_id])

    async def _healthy(self, s: _Server) -> bool:
        try:
            await self._call(s, "GET", "/health", timeout=10)
            return True
        except _ServerLost:
            return False

    async def _abort_on(self, s: _Server, rids: list[str]) -> None:
        try:
            await self._call(s, "POST", "/abort_requests", {"request_ids": [_SERVER_ID_PREFIX + r for r in rids]},
                             timeout=30)
        except _ServerLost as exc:
            self._lose(s, str(exc))

    # ------------------------------------------------------------------------------------------------
    # pause / resume / weights
    # ------------------------------------------------------------------------------------------------
    async def pause(self) -> None:
        """Freeze generation on every server (requests kept: ``/pause?mode=keep``); returns when all are paused."""
        self._require_running()
        self._paused = True
        await self._each("POST", "/pause?mode=keep")

    async def resume(self) -> None:
        self._require_running()
        self._paused = False
        await self._each("POST", "/resume")

    async def _each(self, method: str, path: str, body=None) -> None:
        async def one(s):
            try:
                await self._call(s, method, path, body, timeout=60)
            except _ServerLost as exc:
                self._lose(s, str(exc))

        await asyncio.gather(*[one(s) for s in self._servers if s.alive])
        if not any(s.alive for s in self._servers):
            self._die()

    async def update_weights(self, state_dict, version: int) -> float:
        """Validate, write once to ``weight_dir``, load on every live server (module docstring); returns the
        seconds from the first pause to the last resume. :class:`WeightUpdateError` (no server touched) on a bad
        state dict or a version not above the last one pushed. A server that fails a step is taken out; the push
        succeeds if any server took it."""
        return await self._push(state_dict, version, newer=True)

    async def reset_weights(self, state_dict, version: int) -> float:
        """Make every server serve ``state_dict`` as ``version``, whatever it served before (a new run on servers
        that served another: the trainer calls this at start). Same validation and steps as a push, without the
        rule that versions only grow."""
        return await self._push(state_dict, version, newer=False)

    async def _push(self, state_dict, version: int, newer: bool) -> float:
        self._require_running()
        self._sess()
        async with self._push_lock:
            if not vc.is_int(version) or version < 0 or (newer and version <= self._pushed_version):
                raise WeightUpdateError(f"version={version!r} refused: expected an int above the last pushed "
                                        f"version {self._pushed_version}; the servers keep serving version "
                                        f"{self._version}")
            path = await asyncio.to_thread(self._write, state_dict, int(version))
            try:
                t0 = time.perf_counter()
                live = [s for s in self._servers if s.alive]
                await asyncio.gather(*[self._push_one(s, path, int(version)) for s in live])
                dt = time.perf_counter() - t0
            finally:
                path.unlink(missing_ok=True)
            if not any(s.alive for s in self._servers):
                self._die()
            self._pushed_version = self._version = int(version)
            with self._lock:
                self._counts["weight_updates"] += newer
                self._counts["last_update_s"] = dt
            return dt

    def _write(self, state_dict, version: int) -> Path:
        from safetensors.torch import save_file

        items = self.weight_spec.check(state_dict, check_finite=self.check_finite,
                                       what=f"weight update to version {version}")
        final = self.weight_dir / f"arealnb-weights-{uuid.uuid4().hex}-v{version}.safetensors"
        tmp = final.with_suffix(".tmp")
        try:
            save_file({n: t.contiguous() for n, t in items}, str(tmp))
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise WeightUpdateError(f"could not write the weights to {self.weight_dir} ({exc}); the servers keep "
                                    f"serving version {self._version}") from None
        return final

    async def _push_one(self, s: _Server, path: Path, version: int) -> None:
        mode = "abort" if self.interrupt == "abort" else "keep"
        steps = [("POST", f"/pause?mode={mode}", None),
                 ("POST", "/collective_rpc", {"method": "arealnb_load_weights", "args": [str(path)]})]
        if self.interrupt == "recompute":
            steps.append(("POST", "/reset_prefix_cache?reset_running_requests=true", None))
        steps.append(("POST", "/update_weight_version", {"new_version": str(version)}))
        if not self._paused:
            steps.append(("POST", "/resume", None))
        for method, p, body in steps:
            try:
                await self._call(s, method, p, body, timeout=300)
            except _ServerLost as exc:
                self._lose(s, f"weight push to version {version} failed at {p}: {exc}")
                return

    # ------------------------------------------------------------------------------------------------
    # HTTP
    # ------------------------------------------------------------------------------------------------
    async def _call(self, s: _Server, method: str, path: str, body=None, *, timeout: float, ok=(200,)):
        """One HTTP call; the decoded JSON (``{"_status": code, ...}`` for an accepted non-200 code). Any
        transport failure or an unexpected status raises :class:`_ServerLost`."""
        import aiohttp

        if self._closed and path != "/abort_requests":
            raise EngineClosedError("the engine was closed")
        try:
            async with self._sess().request(method, s.url + path, json=body,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                try:
                    data = await r.json(content_type=None)
                except ValueError:
                    data = {"_text": (await r.text())[:500]}
                if r.status not in ok:
                    raise _ServerLost(f"HTTP {r.status} on {path}: {_error_text(data)}", r.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _ServerLost(f"{type(exc).__name__} on {path}: {exc}") from None
        if data is None:
            data = {}
        if isinstance(data, dict) and r.status != 200:
            data["_status"] = r.status
        return data

    # ------------------------------------------------------------------------------------------------
    # observation
    # ------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """As :meth:`VLLMEngine.stats` where a client can know it: ``running`` (requests in flight),
        ``tokens_generated``, ``tok_per_s`` (last 5 s, counted when responses arrive), ``step_s`` (seconds with
        any request in flight: busy time as the client sees it); plus ``servers``, ``servers_alive``,
        ``servers_lost``, ``requests_resubmitted``. ``recompute_tokens`` stays 0 (a server does not report it)."""
        now = time.monotonic()
        with self._lock:
            c = dict(self._counts)
            if self._busy_since is not None:
                c["step_s"] += now - self._busy_since
            span = now - self._window[0][0] if len(self._window) > 1 else 0.0
            rate = sum(n for _, n in self._window) / span if span > 0 else 0.0
            running = len(self._inflight)
        return {**c, "version": self._version, "running": running, "waiting": 0, "paused": self._paused,
                "tok_per_s": rate, "servers": len(self._servers),
                "servers_alive": sum(s.alive for s in self._servers)}

    def activity(self, since: float = 0.0) -> list[tuple[float, float]]:
        """Intervals ``(start, end)`` (``time.monotonic()``) with at least one request in flight, ending after
        ``since``."""
        with self._lock:
            out = [(a, b) for a, b in self._activity if b > since]
            if self._busy_since is not None:
                out.append((self._busy_since, time.monotonic()))
        return out

    def learner_threads(self) -> int:
        """torch threads the learner may use now (see :class:`ThreadPolicy`)."""
        return self.thread_policy.learner_alone if self._paused else self.thread_policy.learner_with_engine

    def __repr__(self) -> str:
        alive = sum(s.alive for s in self._servers)
        return f"RemoteVLLMEngine({alive}/{len(self._servers)} servers, version {self._version})"


def _dispose(sess, loop) -> None:
    """Close a session of an event loop that is not running (a finished ``asyncio.run``): its connections'
    sockets are closed at once, without the loop that owned them."""
    if sess is None or sess.closed:
        return
    if loop is not None and not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(sess.close())
        return
    conn = sess.connector
    sess.detach()
    if conn is not None:
        with contextlib.suppress(Exception):
            conn._close()     # aiohttp's synchronous half of close(); the awaitable half needs the gone loop


def _error_text(data) -> str:
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message", err))
        if err is not None:
            return str(err)
        return str(data.get("detail") or data.get("_text") or data)[:500]
    return str(data)[:500]
