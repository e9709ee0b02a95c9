"""What every vLLM user in arealnb shares: the one-engine rule, how ``LLM`` is built, how a completion's
log-probs and finish reason are read, how vLLM is shut down, request validation, and the public request methods
of the asyncio engines (:class:`EngineFront`).

``VLLMEngine`` (asyncio, interruptible), ``RemoteVLLMEngine`` (``vllm serve`` processes) and
``OfflineGenerator`` (plain batch generation) go through here, so they cannot disagree.

Choices made once, here (../shared/VLLM_CPU.md; measurements in the README):

* **Chunked prefill off.** With chunked prefill, a request whose (re-)prefill is split over two steps has the
  token sampled at the end of the first chunk discarded, and vLLM rewinds that request's random generator with
  ``Generator.set_offset``, which a CPU generator does not have: ``RuntimeError: CPU Generator does not use
  offset`` kills the engine. It happens to *seeded* requests whenever one step's prefill work exceeds the token
  budget: many new prompts at once, or every in-flight request re-prefilled after a ``recompute`` weight push.
  Without chunking a prefill is never split (a request that does not fit waits for the next step), so nothing is
  discarded and seeds work in every interrupt mode. The budget stays vLLM's CPU default (4,096 tokens a step, at
  least ``max_model_len``).
* **Log-probs of the sampler**, not of the model: ``logprobs_mode="processed_logprobs"`` records
  ``log_softmax(logits / T)`` after top-p truncation (renormalised over the kept tokens), i.e. the distribution
  the token was actually drawn from: PPO's behaviour policy. Greedy requests (T = 0) record ``log_softmax(logits)``.
* **No progress bar while loading weights** (``use_tqdm_on_load=False``), and tqdm's monitor thread, which
  vLLM's loader starts even for a disabled bar, is stopped at shutdown when it watches no bar.
"""

from __future__ import annotations

import gc
import math
import numbers
import threading
from typing import Any

import numpy as np

from ..errors import ConfigError, EngineInUseError, InvalidRequestError

# ------------------------------------------------------------------------------------------------------
# one live vLLM engine per process
# ------------------------------------------------------------------------------------------------------
_claim_lock = threading.Lock()
_holder: tuple[str, object] | None = None


def claim_process(who: str) -> object:
    """Reserve this process's vLLM for ``who``; :class:`EngineInUseError` if another engine holds it.

    vLLM keeps process-wide state (its distributed/forward context, stdout suppression during start-up), so two
    live engines in one process break each other: measured, a raw ``AssertionError`` when started concurrently,
    and "Forward context is not set" or a hang when used together.
    """
    global _holder
    with _claim_lock:
        if _holder is not None:
            raise EngineInUseError(
                f"cannot start {who}: {_holder[0]} is live in this process, and vLLM's state is process-wide (two "
                "engines in one process crash or hang). Use one engine per kernel: close the other first "
                "(`await engine.close()` / `generator.close()`), or run the second one in a separate process "
                "(e.g. evaluation in a subprocess).")
        token = object()
        _holder = (who, token)
        return token


def release_process(token: object | None) -> None:
    """Give back a claim made by :func:`claim_process` (a stale or ``None`` token does nothing)."""
    global _holder
    with _claim_lock:
        if token is not None and _holder is not None and _holder[1] is token:
            _holder = None


# ------------------------------------------------------------------------------------------------------
# building and shutting down
# ------------------------------------------------------------------------------------------------------
_OURS = {"model", "dtype", "kv_cache_memory_bytes", "max_num_seqs", "max_model_len", "seed"}
_PINNED = {"logprobs_mode": "the recorded log-probs must be the sampler's (behaviour policy)",
           "enable_chunked_prefill": "seeded requests kill a CPU engine when a prefill is chunked",
           "enable_prefix_caching": "a prefix cache would serve KV of old weights after a push"}


def check_engine_kwargs(engine_kwargs: dict | None) -> dict:
    """Validate a pass-through of vLLM engine arguments (``vllm.EngineArgs`` field names) before any start."""
    if not engine_kwargs:
        return {}
    if not isinstance(engine_kwargs, dict):
        raise ConfigError(f"engine_kwargs must be a dict of vllm.EngineArgs fields, got {type(engine_kwargs).__name__}")
    import dataclasses

    from vllm import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    for k in engine_kwargs:
        if k in _OURS:
            raise ConfigError(f"engine_kwargs[{k!r}]: pass it as the engine's own parameter instead")
        if k in _PINNED:
            raise ConfigError(f"engine_kwargs[{k!r}] is fixed by arealnb: {_PINNED[k]}")
        if k not in known:
            raise ConfigError(f"engine_kwargs[{k!r}] is not a vllm.EngineArgs field (e.g. 'enforce_eager', "
                              "'gpu_memory_utilization', 'tensor_parallel_size')")
    return dict(engine_kwargs)


def build_llm(model_path, *, dtype: str, kv_cache_bytes: int, max_num_seqs: int, max_model_len: int | None,
              seed: int, engine_kwargs: dict | None = None):
    """``vllm.LLM`` in this process with arealnb's settings (module docstring); the caller holds the claim."""
    from .. import runtime

    runtime.before_engine_build()
    from vllm import LLM

    kw: dict[str, Any] = dict(enforce_eager=True, use_tqdm_on_load=False)
    kw.update(engine_kwargs or {})
    if max_model_len is not None:
        kw["max_num_batched_tokens"] = max(int(kw.get("max_num_batched_tokens") or 4096), int(max_model_len))
    elif "max_num_batched_tokens" not in kw:
        kw["max_num_batched_tokens"] = max(4096, _model_max_len(model_path))
    return LLM(model=str(model_path), dtype=dtype, kv_cache_memory_bytes=int(kv_cache_bytes),
               max_num_seqs=int(max_num_seqs), max_model_len=max_model_len, seed=seed,
               enable_chunked_prefill=False, enable_prefix_caching=False,
               logprobs_mode="processed_logprobs", **kw)


def _model_max_len(model_path) -> int:
    import json
    from pathlib import Path

    cfg = json.loads((Path(model_path) / "config.json").read_text())
    return int(cfg.get("max_position_embeddings") or 4096)


def shutdown_llm(llm) -> None:
    """Stop vLLM's engine core and tear down its process-wide distributed state (best effort)."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - may be dead already
        pass
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # noqa: BLE001
        pass
    _stop_idle_tqdm_monitors()
    gc.collect()


def _stop_idle_tqdm_monitors() -> None:
    """vLLM's checkpoint loader creates a (disabled) tqdm bar, and tqdm starts its monitor thread for any bar;
    it would outlive the engine. Stop the monitors that watch no live bar (tqdm restarts one when needed)."""
    for t in threading.enumerate():
        cls = getattr(t, "tqdm_cls", None)
        if type(t).__name__ == "TMonitor" and cls is not None and not getattr(cls, "_instances", None):
            try:
                t.exit()
                if getattr(cls, "monitor", None) is t:
                    cls.monitor = None
            except Exception:  # noqa: BLE001 - best effort
                pass


# ------------------------------------------------------------------------------------------------------
# reading a completion
# ------------------------------------------------------------------------------------------------------
def sampled_logprobs(token_ids, logprobs) -> list[float]:
    """The recorded log-prob of each sampled token (``logprobs=0``: one dict per token, the sampled one in it)."""
    return [d[t].logprob for t, d in zip(token_ids, logprobs, strict=True)]


def finish_reason(reason: str | None, n_tokens: int, max_tokens: int) -> str:
    """vLLM's finish reason as ours: ``"stop"`` | ``"length"`` | ``"abort"`` (a missing one is inferred)."""
    if reason in ("stop", "length", "abort"):
        return reason
    return "length" if n_tokens >= max_tokens else "stop"


# ------------------------------------------------------------------------------------------------------
# request validation: every field is checked before vLLM sees it
# ------------------------------------------------------------------------------------------------------
SEED_MAX = 2**64 - 1


def is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_prompt(prompt_ids, vocab_size: int) -> list[int]:
    """A 1-D sequence of token ids (list, tuple, numpy or torch integer array) as a list of ints."""
    if hasattr(prompt_ids, "detach"):                 # torch tensor, without importing torch
        prompt_ids = prompt_ids.detach().cpu().numpy()
    if isinstance(prompt_ids, np.ndarray):
        if prompt_ids.ndim != 1 or not (np.issubdtype(prompt_ids.dtype, np.integer) or prompt_ids.size == 0):
            raise InvalidRequestError(f"prompt_ids: expected a 1-D integer array, got shape {prompt_ids.shape} "
                                      f"dtype {prompt_ids.dtype} (one prompt per call; generate_group for n samples)")
        prompt_ids = prompt_ids.tolist()
    if isinstance(prompt_ids, (str, bytes)) or not hasattr(prompt_ids, "__len__"):
        raise InvalidRequestError(f"prompt_ids: expected a sequence of token ids, got {type(prompt_ids).__name__} "
                                  "(tokenize first: tokenizer(text)['input_ids'])")
    ids = list(prompt_ids)
    if not ids:
        raise InvalidRequestError("prompt_ids must be a non-empty list of non-negative token ids")
    bad = [t for t in ids if not is_int(t) or not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(f"prompt_ids: {len(bad)} entr(y/ies) are not token ids in [0, {vocab_size}), "
                                  f"e.g. {bad[0]!r}")
    return [int(t) for t in ids]


def check_sampling(*, n_prompt: int, max_model_len: int, max_new_tokens, temperature, top_p, seed,
                   stop_token_ids, vocab_size: int, n: int = 1) -> dict:
    """Normalised sampling fields, or :class:`InvalidRequestError` naming the field, the value and the range."""
    room = max_model_len - n_prompt
    if room < 1:
        raise InvalidRequestError(f"the prompt has {n_prompt} tokens; the engine's context is max_model_len="
                                  f"{max_model_len}, leaving no room for output")
    if not is_int(max_new_tokens) or max_new_tokens < 1:
        raise InvalidRequestError(f"max_new_tokens={max_new_tokens!r}: expected an integer >= 1")
    if max_new_tokens > room:
        raise InvalidRequestError(f"max_new_tokens={max_new_tokens} does not fit: a {n_prompt}-token prompt "
                                  f"leaves room for {room} new tokens (max_model_len={max_model_len}); ask for "
                                  f"<= {room} or start the engine with a larger max_model_len")
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool) or not math.isfinite(temperature) \
            or temperature < 0:
        raise InvalidRequestError(f"temperature={temperature!r}: expected a finite number >= 0 (0 = greedy)")
    if not isinstance(top_p, numbers.Real) or isinstance(top_p, bool) or not 0 < top_p <= 1:
        raise InvalidRequestError(f"top_p={top_p!r}: expected a number in (0, 1] (1 = no truncation)")
    if not is_int(n) or n < 1:
        raise InvalidRequestError(f"n={n!r}: expected an integer >= 1")
    if seed is not None and (not is_int(seed) or not 0 <= seed or seed + n - 1 > SEED_MAX):
        raise InvalidRequestError(f"seed={seed!r}: expected None or an integer in [0, 2**64 - {n}] (a group of "
                                  f"n samples uses seed .. seed + n - 1)")
    stops = [] if stop_token_ids is None else list(stop_token_ids)
    if any(not is_int(t) or not 0 <= t < vocab_size for t in stops):
        raise InvalidRequestError(f"stop_token_ids={stop_token_ids!r}: expected token ids in [0, {vocab_size})")
    return {"max_tokens": int(max_new_tokens), "temperature": float(temperature), "top_p": float(top_p),
            "seed": None if seed is None else int(seed), "stop_token_ids": [int(t) for t in stops]}


# ------------------------------------------------------------------------------------------------------
# the request methods both asyncio engines expose
# ------------------------------------------------------------------------------------------------------
class EngineFront:
    """``generate`` / ``generate_group`` / ``async with`` of an asyncio engine, checked the same way for all.

    A subclass provides ``start``, ``close``, ``_require_running``, ``vocab_size``, ``max_model_len``,
    ``_version``, ``_tokenizer``, a request counter ``_ids`` and ``_submit(ids, params, rids)`` → the outputs in order, where ``params`` are the checked
    sampling fields of each sample (``check_sampling`` plus ``seed + i``, ``ignore_eos``, the sampled
    token's log-prob and no detokenizing).
    """

    @property
    def version(self) -> int:
        """Policy version of the weights the engine is serving now."""
        return self._version

    @property
    def tokenizer(self):
        return self._tokenizer

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def generate(self, prompt_ids, max_new_tokens: int = 256, temperature: float = 1.0,
                       seed: int | None = None, stop_token_ids: list[int] | None = None,
                       ignore_eos: bool = False, request_id: str | None = None, top_p: float = 1.0):
        """Sample one completion of ``prompt_ids`` (a list or 1-D numpy/torch array of token ids); many
        concurrent calls share the engine's batch.

        Returns when the request finishes; an aborted request returns its partial output with
        ``finish_reason="abort"``. Cancelling the awaiting task aborts the request. Every argument is checked
        first (:class:`arealnb.InvalidRequestError` naming the field; ``max_new_tokens`` beyond the context left
        after the prompt is refused, not truncated).
        """
        (out,) = await self._generate(prompt_ids, 1, max_new_tokens, temperature, seed, stop_token_ids,
                                      ignore_eos, request_id, top_p)
        return out

    async def generate_group(self, prompt_ids, n: int, max_new_tokens: int = 256, temperature: float = 1.0,
                             seed: int | None = None, stop_token_ids: list[int] | None = None,
                             ignore_eos: bool = False, request_id: str | None = None, top_p: float = 1.0):
        """``n`` samples of one prompt (a GRPO group), submitted together; returns the ``n`` outputs in order.

        Sample ``i`` uses seed ``seed + i`` (when a seed is given) and request id ``f"{request_id}.{i}"``.
        Cancelling the awaiting task aborts all of them. The prompt's prefill is not shared between the samples:
        vLLM's CPU backend caches prefixes in blocks of 128 tokens, longer than the task prompts here, and a
        prefix cache would serve KV of old weights after a ``keep`` push; each sample prefills its prompt (for
        the tiny policy's ~20-token prompts a few percent of the decode work).
        """
        return await self._generate(prompt_ids, n, max_new_tokens, temperature, seed, stop_token_ids,
                                    ignore_eos, request_id, top_p)

    async def _generate(self, prompt_ids, n, max_new_tokens, temperature, seed, stop_token_ids, ignore_eos,
                        request_id, top_p) -> list:
        self._require_running()
        ids = check_prompt(prompt_ids, self.vocab_size)
        fields = check_sampling(n_prompt=len(ids), max_model_len=self.max_model_len,
                                max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                stop_token_ids=stop_token_ids, vocab_size=self.vocab_size, n=n)
        if request_id is not None and not isinstance(request_id, str):
            raise InvalidRequestError(f"request_id={request_id!r}: expected a str")
        base = request_id or self._new_request_id()
        rids = [base if n == 1 else f"{base}.{i}" for i in range(n)]
        params = [{**fields, "seed": None if fields["seed"] is None else fields["seed"] + i,
                   "ignore_eos": bool(ignore_eos), "logprobs": 0, "detokenize": False} for i in range(n)]
        return await self._submit(ids, params, rids)

    def _new_request_id(self) -> str:
        return f"r{next(self._ids)}"


def new_counts(**more) -> dict[str, Any]:
    """The cumulative counters both asyncio engines report in ``stats()``, at zero."""
    return {"tokens_generated": 0, "steps": 0, "requests_finished": 0, "requests_aborted": 0, "weight_updates": 0,
            "last_update_s": float("nan"), "prefill_tokens": 0, "recompute_tokens": 0, "decode_tokens": 0,
            "step_s": 0.0, "prefill_step_s": 0.0, "recompute_step_s": 0.0, **more}
