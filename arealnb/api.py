"""Interfaces and records only. The orchestrator talks to an inference engine through
:class:`InferenceEngine`: the in-process :class:`arealnb.engines.VLLMEngine` and the ``vllm serve`` client
:class:`arealnb.engines.RemoteVLLMEngine` both implement it, and another backend drops in without touching the
trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

FinishReason = Literal["stop", "length", "abort"]
InterruptMode = Literal["recompute", "keep", "abort"]


@dataclass
class GenerationOutput:
    """One finished request.

    Attributes
    ----------
    prompt_ids : list[int]
    output_ids : list[int], length T
    logprobs : float64 array, shape (T,)
        Behaviour log-prob of each output token, ``log π_behav(o_t | prompt, o_<t)``: the distribution the token
        was actually drawn from, i.e. ``log_softmax(logits / T)`` over the top-p nucleus, renormalised (T = 0:
        ``log_softmax(logits)``). Not the model's raw log-softmax unless T = 1 and top-p = 1.
    versions : int64 array, shape (T,)
        Policy version of the weights that produced each output token.
    finish_reason : ``"stop"`` (EOS or a stop token), ``"length"`` (max_new_tokens) or ``"abort"``.
    """

    request_id: str
    prompt_ids: list[int]
    output_ids: list[int]
    logprobs: np.ndarray
    versions: np.ndarray
    finish_reason: FinishReason
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.output_ids)


@runtime_checkable
class InferenceEngine(Protocol):
    """What the orchestrator needs from a rollout engine."""

    @property
    def version(self) -> int:
        """Policy version of the weights currently served."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, prompt_ids: list[int], max_new_tokens: int = 256, temperature: float = 1.0,
                       seed: int | None = None, stop_token_ids: list[int] | None = None,
                       ignore_eos: bool = False, request_id: str | None = None,
                       top_p: float = 1.0) -> GenerationOutput:
        """Sample one completion; returns when it finishes (or is aborted, with its partial output)."""
        ...

    async def generate_group(self, prompt_ids: list[int], n: int, max_new_tokens: int = 256,
                             temperature: float = 1.0, seed: int | None = None,
                             stop_token_ids: list[int] | None = None, ignore_eos: bool = False,
                             request_id: str | None = None, top_p: float = 1.0) -> list[GenerationOutput]:
        """``n`` samples of one prompt (a GRPO group), in order."""
        ...

    async def abort(self, request_id: str) -> None: ...

    async def pause(self) -> None:
        """Stop generating (admission continues to queue); returns once no step is running."""
        ...

    async def resume(self) -> None: ...

    async def update_weights(self, state_dict: dict, version: int) -> float:
        """Validate, then swap in new weights tagged ``version``; in-flight requests follow the interrupt mode."""
        ...

    def stats(self) -> dict[str, float]: ...


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task: problems with a text prompt, and a reward for a completion.

    ``sample(rng, n)`` returns ``n`` problems, each with a ``.prompt: str`` (anything else on the problem is the
    task's business); ``reward(completion, problem)`` scores the decoded completion, higher is better. Rewards
    run in worker threads (keep them thread-safe) under ``TrainerConfig.reward_timeout``. No subclassing needed:
    :class:`arealnb.tasks.RunningSum` and any object with these two methods qualify.
    """

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]: ...

    def reward(self, completion: str, problem: Any) -> float: ...


@dataclass
class Trajectory:
    """One sample as the learner consumes it (prompt and completion concatenated).

    Attributes
    ----------
    input_ids : int64 array, shape (L,) — prompt then output tokens.
    loss_mask : bool array, shape (L,) — True on output tokens (the ones trained on).
    logprobs : float64 array, shape (L,) — behaviour log-prob of each output token (0 on the prompt).
    versions : int64 array, shape (L,) — policy version that produced each output token (-1 on the prompt).
    reward : the task's reward for the decoded completion (before scaling and normalisation).
    group : id of the group (one prompt x ``group_size`` samples) this sample belongs to.
    """

    input_ids: np.ndarray
    loss_mask: np.ndarray
    logprobs: np.ndarray
    versions: np.ndarray
    reward: float
    group: int
    finish_reason: str = "stop"
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_output(self) -> int:
        return int(self.loss_mask.sum())

    @classmethod
    def from_output(cls, out: GenerationOutput, reward: float, group: int, text: str = "") -> Trajectory:
        n_p, n_o = len(out.prompt_ids), len(out.output_ids)
        ids = np.asarray(list(out.prompt_ids) + list(out.output_ids), dtype=np.int64)
        mask = np.zeros(n_p + n_o, dtype=bool)
        mask[n_p:] = True
        lp = np.zeros(n_p + n_o, dtype=np.float64)
        lp[n_p:] = out.logprobs
        ver = np.full(n_p + n_o, -1, dtype=np.int64)
        ver[n_p:] = out.versions
        return cls(ids, mask, lp, ver, float(reward), int(group), out.finish_reason, text, dict(out.meta))
