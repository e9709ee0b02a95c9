"""``Trainer``: staleness-bounded asynchronous RL (AReaL) on the running event loop, in one process.

Three actors share the kernel's event loop and two cores:

* **Rollout** — while the staleness manager reports capacity (:mod:`arealnb.staleness`, AReaL Eq. 3), a new
  *group* starts: one task problem, ``group_size`` samples through the engine (``generate_group``), rewards in
  worker threads under ``reward_timeout``. A group whose reward raises, times out or is not a finite number is
  rejected (counted, never a crash). Rollouts never wait for the learner: only the bound stops them.
* **Learner** — takes ``consumer_batch_size`` finished groups (earliest staleness deadline first, so every
  consumed token is at most η versions old), runs one PPO step (:mod:`arealnb.learner`, :mod:`arealnb.ppo`) in
  its own thread (the event loop stays free, generation keeps flowing), then pushes the weights as version
  ``v + 1``. The engine swaps them between two decode steps (its update is pause → reload → resume, atomic for
  decoding); in-flight samples continue under the configured interrupt mode with per-token versions.
* **Engine** — :class:`arealnb.engines.VLLMEngine` on its own thread, or ``vllm serve`` processes through
  :class:`arealnb.engines.RemoteVLLMEngine` (``TrainerConfig.rollout_servers``), used only through
  :class:`arealnb.api.InferenceEngine`.

``mode="sync"`` is the strict baseline: η = 0 (exactly one batch per version), the learner waits for the slowest
sample, the engine is paused while the learner trains with every core, then resumed. ``max_staleness=0`` in
async mode goes through the asynchronous path with the same admission, the learner keeping one thread.

Under ``interrupt="abort"`` a sample cut by a push is resubmitted as prompt + its tokens so far (AReaL-lite's
client loop); ``recompute`` and ``keep`` continue inside the engine. Either way a trajectory may hold tokens of
several versions, each with the behaviour log-prob that produced it (Proposition 1 of the paper).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .api import InferenceEngine, Task, Trajectory
from .errors import ArealnbError, ConfigError, EngineClosedError, EngineDeadError, TrainerStateError
from .staleness import GroupSlot, StalenessManager, select_batch


def _help(text: str, **kw) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class TrainerConfig:
    """Every knob of a run, with AReaL's names where one exists. Checked on construction (:class:`ConfigError`)."""

    mode: str = _help("'async' (AReaL) or 'sync' (strict synchronous baseline: η = 0, engine paused while the "
                      "learner trains on all cores)", default="async")
    max_staleness: float = _help("η: most policy versions a consumed token may lag the learner (AReaL "
                                 "max_head_offpolicyness); int >= 0 or math.inf", default=4)
    consumer_batch_size: int = _help("B: prompt groups per learner step", default=8)
    group_size: int = _help("samples per prompt (GRPO group)", default=4)
    max_concurrent_rollouts: int | None = _help("groups in flight at once (default: consumer_batch_size, as "
                                                "AReaL)", default=None)
    max_new_tokens: int = _help("longest completion, tokens", default=128)
    temperature: float = _help("sampling temperature (the learner's log-probs use the same)", default=1.0)
    lr: float = _help("AdamW learning rate", default=1e-4)
    weight_decay: float = _help("AdamW weight decay", default=0.0)
    adam_betas: tuple[float, float] = _help("AdamW betas", default=(0.9, 0.999))
    adam_eps: float = _help("AdamW eps", default=1e-8)
    gradient_clipping: float = _help("max gradient norm", default=1.0)
    eps_clip: float = _help("PPO clip ε around the proximal policy", default=0.2)
    behave_imp_weight_cap: float | None = _help("mask tokens whose π_prox/π_behav exceeds this (None: never)",
                                                default=5.0)
    use_decoupled_loss: bool = _help("decoupled PPO (AReaL Eq. 5); False = naive PPO clipped around π_behav",
                                     default=True)
    prox_logp_method: str = _help("'recompute' (π_prox by a forward pass; reused from the training forward when "
                                  "ppo_n_minibatches == 1) or 'loglinear' (interpolated by versions)",
                                  default="recompute")
    ppo_n_minibatches: int = _help("optimizer steps per learner step (the batch split evenly)", default=1)
    max_tokens_per_mb: int = _help("token budget of one packed micro-batch (Alg. 1)", default=4096)
    pack_row_tokens: int | None = _help("a micro-batch's sequences are packed into rows of at most this many "
                                        "tokens (attention cost ~ rows x row²; None = one row)", default=256)
    reward_scaling: float = _help("r' = (r + reward_bias) * reward_scaling", default=10.0)
    reward_bias: float = _help("see reward_scaling (AReaL GSM8K: bias -0.5, scaling 10: ±5)", default=-0.5)
    group_reward_norm: bool = _help("normalise rewards by their group's mean and std (GRPO)", default=True)
    adv_norm: bool = _help("normalise advantages over the batch's tokens", default=True)
    reward_timeout: float = _help("seconds a group's rewards may take before the group is rejected",
                                  default=15.0)
    reward_workers: int = _help("threads computing rewards", default=2)
    interrupt: str = _help("what a weight push does to in-flight samples: 'keep' (measured cheapest here: "
                           "benchmarks/engine_throughput.py --push-only), 'recompute' (AReaL) or 'abort'",
                           default="keep")
    max_num_seqs: int | None = _help("engine decode batch (default: max_concurrent_rollouts * group_size, at "
                                     "most 256)", default=None)
    kv_cache_bytes: int = _help("engine KV-cache size", default=128 << 20)
    learner_threads: int = _help("torch threads of the learner while the engine generates (async); sync mode's "
                                 "learner uses every core while the engine is paused", default=1)
    engine_kwargs: dict | None = _help("extra vllm.EngineArgs fields (GPU boxes)", default=None)
    rollout_servers: list[str] | None = _help("URLs of `vllm serve` rollout servers (arealnb.serve); None: an "
                                              "in-process engine", default=None)
    weight_dir: str | None = _help("with rollout_servers: a folder every server reads pushed weights from "
                                   "(default /dev/shm when the servers are local)", default=None)
    seed: int = _help("seeds problems, sampling and torch", default=0)
    learner_world_size: int = _help("learner ranks (data parallel, torch.distributed gloo): the batch is split "
                                    "over them, gradients summed; rank 0 pushes the weights", default=1)
    keep_trajectories: int = _help("recent trajectories kept for inspection (trainer.recent)", default=256)

    def __post_init__(self) -> None:
        def bad(name, rule):
            raise ConfigError(f"TrainerConfig.{name}={getattr(self, name)!r}: expected {rule}")

        from .engines.vllm_common import is_int

        def is_num(x):
            return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

        if self.mode not in ("async", "sync"):
            bad("mode", "'async' or 'sync'")
        eta = self.max_staleness
        if not (eta == math.inf or (is_int(eta) and eta >= 0) or (is_num(eta) and float(eta).is_integer()
                                                                    and eta >= 0)):
            bad("max_staleness", "an int >= 0 or math.inf")
        if eta != math.inf:
            self.max_staleness = int(eta)
        for name in ("consumer_batch_size", "group_size", "max_new_tokens", "ppo_n_minibatches", "reward_workers",
                     "max_tokens_per_mb", "learner_world_size"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                bad(name, "an int >= 1")
        for name in ("max_concurrent_rollouts", "pack_row_tokens", "max_num_seqs"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                bad(name, "None or an int >= 1")
        if not is_int(self.kv_cache_bytes) or self.kv_cache_bytes < (1 << 20):
            bad("kv_cache_bytes", "an int >= 1 MiB")
        if not is_int(self.learner_threads) or self.learner_threads < 1:
            bad("learner_threads", "an int >= 1")
        if not is_int(self.seed) or self.seed < 0:
            bad("seed", "an int >= 0")
        if not is_int(self.keep_trajectories) or self.keep_trajectories < 0:
            bad("keep_trajectories", "an int >= 0")
        # (name, low, high, low excluded): temperature 0 is greedy (no policy gradient); 0 lr/clip/timeout/norm
        # do nothing; a 0 reward scale zeroes every advantage
        for name, lo, hi, open_lo in (
                ("temperature", 0.0, math.inf, True), ("lr", 0.0, 1.0, True), ("weight_decay", 0.0, math.inf, False),
                ("adam_eps", 0.0, 1.0, False), ("gradient_clipping", 0.0, math.inf, True),
                ("eps_clip", 0.0, 1.0, True), ("reward_timeout", 0.0, math.inf, True),
                ("reward_scaling", -math.inf, math.inf, False), ("reward_bias", -math.inf, math.inf, False)):
            v = getattr(self, name)
            if not is_num(v) or not math.isfinite(v) or not lo <= v <= hi or (open_lo and v == lo):
                bad(name, f"a finite number in {'(' if open_lo else '['}{lo}, {hi}]")
        if self.reward_scaling == 0:
            bad("reward_scaling", "a non-zero number (0 makes every advantage 0)")
        b = self.adam_betas
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(is_num(x) and 0 <= x < 1 for x in b)):
            bad("adam_betas", "two numbers in [0, 1)")
        self.adam_betas = (float(b[0]), float(b[1]))
        cap = self.behave_imp_weight_cap
        if cap is not None and (not is_num(cap) or not cap > 1):
            bad("behave_imp_weight_cap", "None or a number > 1")
        for name in ("use_decoupled_loss", "group_reward_norm", "adv_norm"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True or False")
        if self.prox_logp_method not in ("recompute", "loglinear"):
            bad("prox_logp_method", "'recompute' or 'loglinear'")
        if self.interrupt not in ("recompute", "keep", "abort"):
            bad("interrupt", "'recompute', 'keep' or 'abort'")
        if self.engine_kwargs is not None and not isinstance(self.engine_kwargs, dict):
            bad("engine_kwargs", "None or a dict of vllm.EngineArgs fields")
        rs = self.rollout_servers
        if rs is not None:
            if isinstance(rs, str) or not isinstance(rs, (list, tuple)) or not rs or \
                    not all(isinstance(u, str) for u in rs):
                bad("rollout_servers", "None or a non-empty list of server URLs ('http://host:port')")
            self.rollout_servers = list(rs)
            if self.engine_kwargs:
                bad("engine_kwargs", "None with rollout_servers (give vLLM flags to the servers instead)")
        if self.weight_dir is not None and not isinstance(self.weight_dir, str):
            bad("weight_dir", "None or a folder path (str)")

    @property
    def effective_staleness(self) -> float:
        """η as enforced: 0 in sync mode."""
        return 0 if self.mode == "sync" else self.max_staleness

    @property
    def concurrent_rollouts(self) -> int:
        return self.max_concurrent_rollouts or self.consumer_batch_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["max_staleness"] = "inf" if self.max_staleness == math.inf else self.max_staleness
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainerConfig:
        d = dict(d)
        if d.get("max_staleness") == "inf":
            d["max_staleness"] = math.inf
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown TrainerConfig field(s) {unknown}")
        return cls(**d)


class RewardError(ArealnbError):
    """A group's reward raised, timed out or was not a finite number; the group is rejected."""


class _RewardPool:
    """Daemon worker threads computing rewards. A call that times out gives up on its worker (a Python thread
    cannot be killed: it is left to finish on its own) and starts a replacement, so a hung reward function costs
    one thread, never the pool."""

    def __init__(self, workers: int):
        import queue

        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._current: dict[threading.Thread, cf.Future] = {}
        self._closed = False
        self.abandoned = 0
        self._threads = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> threading.Thread:
        t = threading.Thread(target=self._work, name="arealnb-reward", daemon=True)
        t.start()
        return t

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._current[me] = fut
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting group
                fut.set_exception(exc)
            with self._lock:
                self._current.pop(me, None)
                if me not in self._threads:      # given up on while it ran: leave
                    return

    async def run(self, timeout: float, fn, *args):
        fut: cf.Future = cf.Future()
        self._q.put((fut, fn, args))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
        except (TimeoutError, asyncio.CancelledError):
            if not fut.cancel():                  # already running: abandon its worker, start another
                with self._lock:
                    for t, f in self._current.items():
                        if f is fut and t in self._threads:
                            self._threads.remove(t)
                            self.abandoned += 1
                            if not self._closed:
                                self._threads.append(self._spawn())
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._q.put(None)
        for t in threads:
            t.join(timeout=5)


@dataclass
class _Group:
    key: int
    problem: Any
    prompt_ids: list[int]
    start_version: int
    seed: int
    slot: GroupSlot
    trajectories: list[Trajectory] = field(default_factory=list)
    task: asyncio.Task | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0


def _score(task, texts: list[str], problem) -> list[float]:
    out = []
    for t in texts:
        r = task.reward(t, problem)
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) or not math.isfinite(r):
            raise RewardError(f"task.reward returned {r!r}; expected a finite number")
        out.append(float(r))
    return out


class Trainer:
    """Asynchronous RL of an HF causal LM on a task (see the module docstring).

    Parameters
    ----------
    cfg : :class:`TrainerConfig`.
    policy_path : HF causal-LM folder (``config.json``, safetensors, tokenizer): the starting policy.
    task : any object with ``sample(rng, n)`` and ``reward(completion, problem)`` (:class:`arealnb.api.Task`).

    Use ``await trainer.run(steps=...)`` in a notebook, ``trainer.run_sync(...)`` in a script; ``trainer.metrics``
    is a DataFrame with one row per learner step; ``trainer.subscribe(fn)`` streams events; ``close()`` (or
    ``async with`` / ``with``) shuts the engine down.
    """

    def __init__(self, cfg: TrainerConfig, policy_path: str | os.PathLike, task, *, _version: int = 0):
        if not isinstance(cfg, TrainerConfig):
            raise ConfigError(f"cfg must be a TrainerConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.policy_path = Path(policy_path)
        if not (self.policy_path / "config.json").is_file():
            raise ConfigError(f"policy_path={str(policy_path)!r} is not an HF model folder (no config.json); build "
                              "one with arealnb.models.build_policy() or pass a checkpoint folder")
        missing = [m for m in ("sample", "reward") if not callable(getattr(task, m, None))]
        if missing or not isinstance(task, Task):
            raise ConfigError(f"task {type(task).__name__} lacks {missing or ['sample', 'reward']}: a task needs "
                              "sample(rng, n) -> problems with .prompt, and reward(completion, problem) -> float")
        self.task = task
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.policy_path)
        self.version = int(_version)
        self.steps_done = 0
        self.staleness = StalenessManager(cfg.effective_staleness, cfg.consumer_batch_size, cfg.concurrent_rollouts)
        self.staleness.on_version_recovered(self.version)
        self._rng = np.random.default_rng(cfg.seed)
        self._next_key = 0
        self._groups: dict[int, _Group] = {}
        self._rows: list[dict] = []
        self._subscribers: list[Callable[[dict], None]] = []
        self._bad_subscribers: set[int] = set()
        self.recent: deque[Trajectory] = deque(maxlen=cfg.keep_trajectories)
        self.timeline: list[tuple[str, float, float]] = []   # (what, start, end) in seconds since the first run
        self.engine = None
        self._learner = None
        self._learner_pool: cf.ThreadPoolExecutor | None = None
        self._rewards: _RewardPool | None = None
        self._running = False
        self._stop = False
        self._failure: BaseException | None = None
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0: float | None = None
        self._closed = False
        self._counts = {"rejected_groups": 0, "cancelled_groups": 0, "resubmitted_samples": 0,
                        "staleness_violations": 0}
        self._optimizer_state = None
        self._staleness_counts = np.zeros(0, dtype=np.int64)
        self._rollout_wake: asyncio.Event | None = None
        self._paused = False
        self._unpaused: asyncio.Event | None = None
        self._t_end = math.inf
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------
    @property
    def metrics(self):
        """One row per learner step (see the README for the columns)."""
        import pandas as pd

        return pd.DataFrame(self._rows)

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_paused(self) -> bool:
        return self._paused

    @property
    def staleness_counts(self) -> np.ndarray:
        """Consumed tokens per staleness 0, 1, 2, ... (learner version − generating version), over every step
        this trainer took; the step events carry each step's share."""
        return self._staleness_counts.copy()

    def status(self) -> dict:
        """Live counters (cheap; safe to poll from the event loop while running): ``version``, ``steps``,
        ``capacity`` (Eq. 3), ``running`` / ``accepted`` / ``rejected`` groups, ``buffered`` (finished, not yet
        consumed), ``eta``, ``gen_tok_per_s`` (engine, last 5 s), ``effective_tok_per_s`` (last step),
        ``reward_mean`` (last step), ``running_run``, ``paused``, ``wall_s`` (seconds since the first run, the
        clock of :attr:`metrics` and :meth:`activity`)."""
        counts = self.staleness.counts()
        es = self.engine.stats() if self.engine is not None else {}
        last = self._rows[-1] if self._rows else {}
        return {"version": self.version, "steps": self.steps_done,
                "capacity": self.staleness.get_capacity(self.version), "running": counts.running,
                "accepted": counts.accepted, "rejected": self._counts["rejected_groups"],
                "buffered": sum(g.slot.done for g in list(self._groups.values())),
                "eta": self.cfg.effective_staleness, "gen_tok_per_s": float(es.get("tok_per_s", 0.0)),
                "effective_tok_per_s": float(last.get("effective_tok_per_s", 0.0)),
                "reward_mean": float(last.get("reward_mean", float("nan"))), "running_run": self._running,
                "paused": self._paused, "wall_s": time.monotonic() - self._t0 if self._t0 is not None else 0.0}

    def activity(self, since: float = -math.inf):
        """What the engine and the learner were doing, as a DataFrame with columns ``who`` (``engine`` |
        ``learner``), ``what`` (``generate`` for the engine; ``wait``, ``learn``, ``push``, ``pause`` for the
        learner), ``start`` and ``end`` in seconds since the first :meth:`run`; only intervals ending after
        ``since`` (same clock). Engine rows are runs of back-to-back vLLM steps (see
        :meth:`VLLMEngine.activity`); the learner rows come from its loop."""
        import pandas as pd

        rows = [("learner", what, a, b) for what, a, b in self.timeline if b > since]
        if self._t0 is not None and self.engine is not None and hasattr(self.engine, "activity"):
            rows += [("engine", "generate", a - self._t0, b - self._t0)
                     for a, b in self.engine.activity(self._t0 + max(since, 0.0))]
        return pd.DataFrame(rows, columns=["who", "what", "start", "end"])

    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on the event loop for each event; returns a function that unsubscribes.

        Events are dicts with ``"type"``: ``"step"`` (the metrics row, plus ``staleness_counts``: consumed tokens
        per staleness 0, 1, 2, ...), ``"group_accepted"``, ``"group_rejected"`` (with ``"reason"``),
        ``"weights_pushed"`` (``version``, ``seconds``), ``"paused"``, ``"unpaused"`` (``seconds``),
        ``"run_started"``, ``"run_stopped"``.
        A callback that raises is reported once (a warning) and kept; training goes on.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def stop(self) -> None:
        """Ask a running :meth:`run` to return after the learner step in progress (thread-safe)."""
        self._stop = True
        self._call_on_loop(self._wake_all)

    def pause(self) -> None:
        """Hold a running :meth:`run` after the learner step in progress (thread-safe): the engine pauses with
        its requests kept, no group starts, no step runs, and the time paused does not count against
        ``run(seconds=...)``. :meth:`unpause` continues; :meth:`stop` ends the run."""
        self._paused = True
        self._call_on_loop(self._wake_all)

    def unpause(self) -> None:
        """Continue after :meth:`pause` (thread-safe; a no-op when not paused)."""
        self._paused = False
        self._call_on_loop(self._wake_all)

    def start(self, steps: int | None = None, seconds: float | None = None) -> asyncio.Task:
        """:meth:`run` in the background on the running event loop (a notebook's kernel loop): returns the
        ``asyncio.Task`` at once, so the cell ends and widgets stay responsive while training goes on.
        ``await trainer.wait()`` (or the task) returns the metrics or raises what the run raised."""
        self._check_run_args(steps, seconds)
        if self._task is not None and not self._task.done():
            raise TrainerStateError("this trainer is already running (started in the background)")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise TrainerStateError("start() needs a running event loop, as in a Jupyter notebook; in a script "
                                    "use run_sync(), or await run() inside asyncio.run") from None
        self._task = loop.create_task(self.run(steps, seconds), name="arealnb-trainer-run")
        return self._task

    async def wait(self):
        """Wait for the run started by :meth:`start`; returns ``metrics`` (raises what the run raised)."""
        if self._task is None:
            raise TrainerStateError("nothing to wait for: start() was not called")
        await asyncio.shield(self._task)
        return self.metrics

    def _call_on_loop(self, fn) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn)
            except RuntimeError:
                pass

    def _wake_all(self) -> None:
        for ev in (self._event, self._rollout_wake):
            if ev is not None:
                ev.set()
        if self._unpaused is not None:
            if self._paused and not self._stop:
                self._unpaused.clear()
            else:
                self._unpaused.set()

    @staticmethod
    def _check_run_args(steps, seconds) -> None:
        if steps is None and seconds is None:
            raise ConfigError("run() needs steps=, seconds= or both")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
            raise ConfigError(f"steps={steps!r}: expected an int >= 0")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not seconds >= 0):
            raise ConfigError(f"seconds={seconds!r}: expected a number >= 0")

    async def run(self, steps: int | None = None, seconds: float | None = None):
        """Train until ``steps`` more learner steps are done or ``seconds`` have passed (either bound stops it;
        ``seconds`` is checked between steps and while waiting for data), or :meth:`stop`. Returns ``metrics``."""
        self._check_run_args(steps, seconds)
        if self._closed:
            raise TrainerStateError("this trainer was closed; create a new one (or Trainer.resume a checkpoint)")
        if self._running:
            raise TrainerStateError("this trainer is already running")
        self._running, self._stop, self._failure = True, False, None
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._rollout_wake = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._wake_all()
        try:
            await self._ensure_started()
            if self._t0 is None:
                self._t0 = time.monotonic()
            self._emit({"type": "run_started", "version": self.version})
            rollout = asyncio.create_task(self._rollout_loop(), name="arealnb-rollout")
            try:
                await self._learner_loop(steps, seconds)
            finally:
                rollout.cancel()
                await self._cancel_groups()
                await asyncio.gather(rollout, return_exceptions=True)
            if self._failure is not None:
                raise self._failure
        finally:
            self._running = False
            self._emit({"type": "run_stopped", "version": self.version})
        return self.metrics

    def run_sync(self, steps: int | None = None, seconds: float | None = None):
        """:meth:`run` for scripts (no event loop running in this thread). In a notebook use ``await run()``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(steps=steps, seconds=seconds))
        raise TrainerStateError("an event loop is running in this thread (a notebook?): use "
                                "`await trainer.run(...)` instead of run_sync")

    async def evaluate(self, n: int = 200, seed: int = 12345, temperature: float | None = None) -> float:
        """Mean task reward of the current policy on ``n`` fresh problems (one sample each), through the engine.

        Problems come from their own generator (``seed``), so evaluations at different versions see the same
        problems and the training data position is untouched. Not during a run."""
        if self._running:
            raise TrainerStateError("evaluate() while run() is active would compete for the engine; stop first")
        await self._ensure_started()
        problems = self.task.sample(np.random.default_rng(seed), n)
        temp = self.cfg.temperature if temperature is None else temperature

        async def one(i, p):
            out = await self.engine.generate(self._encode(p), max_new_tokens=self.cfg.max_new_tokens,
                                             temperature=temp, seed=seed + i)
            return await asyncio.to_thread(_score, self.task, [self._decode(out.output_ids)], p)

        scores = await asyncio.gather(*[one(i, p) for i, p in enumerate(problems)])
        return float(np.mean([s[0] for s in scores]))

    def evaluate_sync(self, n: int = 200, seed: int = 12345, temperature: float | None = None) -> float:
        return asyncio.run(self.evaluate(n, seed, temperature))

    async def close(self) -> None:
        """Stop, shut the engine down and release the learner's and rewards' threads. Idempotent."""
        self.stop()
        if self.engine is not None:
            await self.engine.close()
        self._close_threads()

    def close_sync(self) -> None:
        self.stop()
        if self.engine is not None:
            self.engine._close_sync()
        self._close_threads()

    async def __aenter__(self) -> Trainer:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close_sync()

    # ------------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint folder: the policy (an HF folder under ``model/``), optimizer, version, staleness
        counters, data position (problem generator state), torch RNG, metrics. Between runs only. The folder is
        written next to ``path`` and renamed, so a crash never leaves half a checkpoint."""
        import torch

        if self._running:
            raise TrainerStateError("save() during run(): stop the run first (trainer.stop(); await the run)")
        learner = self._get_learner()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
        try:
            learner.model.save_pretrained(tmp / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / "model")
            torch.save({"optimizer": learner.optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
                       tmp / "optimizer.pt")
            state = {"format": 1, "version": self.version, "steps_done": self.steps_done,
                     "config": self.cfg.to_dict(), "staleness": self.staleness.state_dict(),
                     "next_group": self._next_key, "counts": self._counts,
                     "problem_rng": self._rng.bit_generator.state}
            (tmp / "trainer.json").write_text(json.dumps(state, indent=1, default=int))
            self.metrics.to_csv(tmp / "metrics.csv", index=False)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, task, **overrides) -> Trainer:
        """A trainer continuing the checkpoint at ``path``: same version numbering, staleness capacity
        (``accepted = version·B``), optimizer, data position and metrics. ``overrides`` replace config fields."""
        import pandas as pd
        import torch

        path = Path(path)
        try:
            state = json.loads((path / "trainer.json").read_text())
        except (OSError, ValueError) as exc:
            raise TrainerStateError(f"{path} is not an arealnb checkpoint (trainer.json unreadable: {exc})") from exc
        cfg = TrainerConfig.from_dict({**state["config"], **overrides})
        t = cls(cfg, path / "model", task, _version=int(state["version"]))
        t.steps_done = int(state["steps_done"])
        t.staleness.load_state_dict(state["staleness"], t.version)
        t._next_key = int(state["next_group"])
        t._counts.update(state.get("counts", {}))
        t._rng.bit_generator.state = state["problem_rng"]
        blob = torch.load(path / "optimizer.pt", weights_only=False)
        t._optimizer_state = blob["optimizer"]
        torch.set_rng_state(blob["torch_rng"])
        if (path / "metrics.csv").is_file() and (path / "metrics.csv").stat().st_size > 1:
            t._rows = pd.read_csv(path / "metrics.csv").to_dict("records")
        return t

    # ------------------------------------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------------------------------------
    def _get_learner(self):
        if self._learner is None:
            import torch

            from .learner import Learner

            torch.manual_seed(self.cfg.seed)
            if self.cfg.learner_world_size > 1:
                from .distributed import DataParallelLearner

                self._learner = DataParallelLearner(self.policy_path, self.cfg, threads=self.cfg.learner_threads)
            else:
                self._learner = Learner(self.policy_path, self.cfg)
            if self._optimizer_state is not None:
                self._learner.load_optimizer_state(self._optimizer_state)
                self._optimizer_state = None
        return self._learner

    async def _ensure_started(self) -> None:
        c = self.cfg
        if self._learner_pool is None:
            self._learner_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="arealnb-learner")
        if self._rewards is None:
            self._rewards = _RewardPool(c.reward_workers)
        if self._learner is None:
            await asyncio.get_running_loop().run_in_executor(self._learner_pool, self._get_learner)
        if self.engine is None:
            from .engines import RemoteVLLMEngine, ThreadPolicy, VLLMEngine

            policy = ThreadPolicy(learner_with_engine=c.learner_threads)
            seqs = c.max_num_seqs or min(256, c.concurrent_rollouts * c.group_size)
            if c.rollout_servers:
                engine = RemoteVLLMEngine(c.rollout_servers, self.policy_path, interrupt=c.interrupt,
                                          version=self.version, weight_dir=c.weight_dir, thread_policy=policy)
            else:
                engine = VLLMEngine(self.policy_path, dtype="float32", max_num_seqs=seqs,
                                    kv_cache_bytes=c.kv_cache_bytes, interrupt=c.interrupt, seed=c.seed,
                                    engine_kwargs=c.engine_kwargs, version=self.version, thread_policy=policy)
            assert isinstance(engine, InferenceEngine)
            await engine.start()
            if c.rollout_servers:    # servers may hold another run's weights: serve the learner's, as self.version
                try:
                    await engine.reset_weights(self._learner.state_dict(), self.version)
                except BaseException:
                    await engine.close()
                    raise
            self.engine = engine

    def _close_threads(self) -> None:
        if self._learner is not None:
            self._learner.close()
        if self._learner_pool is not None:
            self._learner_pool.shutdown(wait=True)
            self._learner_pool = None
        if self._rewards is not None:
            self._rewards.close()
            self._rewards = None
        self._closed = True

    def _encode(self, problem) -> list[int]:
        prompt = getattr(problem, "prompt", None)
        if not isinstance(prompt, str):
            raise ConfigError(f"task.sample returned a {type(problem).__name__} without a str .prompt")
        return list(self.tokenizer(prompt)["input_ids"])

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _emit(self, event: dict) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - a subscriber never stops training
                if id(fn) not in self._bad_subscribers:
                    self._bad_subscribers.add(id(fn))
                    warnings.warn(f"trainer subscriber {fn!r} raised {exc!r}; it stays subscribed, further "
                                  "errors from it are not reported", RuntimeWarning, stacklevel=2)

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    # ------------------------------------------------------------------------------------------------
    # rollout
    # ------------------------------------------------------------------------------------------------
    async def _rollout_loop(self) -> None:
        wake = self._rollout_wake
        try:
            while not self._stop:
                while not self._stop and not self._paused and self.staleness.get_capacity(self.version) > 0:
                    self._start_group()
                wake.clear()
                await wake.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - task.sample or tokenizer failed: stop the run with it
            self._failure = exc
            self._stop = True
            self._wake()

    def _start_group(self) -> None:
        problem = self.task.sample(self._rng, 1)[0]
        ids = self._encode(problem)
        key = self._next_key
        self._next_key += 1
        eta = self.cfg.effective_staleness
        slot = GroupSlot(key=key, deadline=self.version + eta if eta != math.inf else math.inf)
        seed = (self.cfg.seed * 1_000_003 + key * 7919) % (2**62)
        g = _Group(key, problem, ids, self.version, seed, slot)
        self._groups[key] = g
        self.staleness.on_enqueue()
        self.staleness.on_rollout_submitted()
        g.task = asyncio.create_task(self._run_group(g), name=f"arealnb-group-{key}")

    async def _generate_sample(self, out, seed: int):
        """Under ``interrupt="abort"``: resubmit a cut sample as prompt + tokens so far until it finishes."""
        c = self.cfg
        n_prompt = len(out.prompt_ids)
        attempt = 0
        while out.finish_reason == "abort" and out.n_tokens < c.max_new_tokens:
            attempt += 1
            self._counts["resubmitted_samples"] += 1
            more = await self.engine.generate(list(out.prompt_ids) + list(out.output_ids),
                                              max_new_tokens=c.max_new_tokens - out.n_tokens,
                                              temperature=c.temperature, seed=(seed + 104729 * attempt) % 2**62)
            out.output_ids = list(out.output_ids) + list(more.output_ids)
            out.logprobs = np.concatenate([out.logprobs, more.logprobs])
            out.versions = np.concatenate([out.versions, more.versions])
            out.finish_reason = more.finish_reason
            out.prompt_ids = list(out.prompt_ids)[:n_prompt]
        if out.finish_reason == "abort":
            out.finish_reason = "length"
        return out

    async def _run_group(self, g: _Group) -> None:
        c = self.cfg
        try:
            outs = await self.engine.generate_group(g.prompt_ids, n=c.group_size, max_new_tokens=c.max_new_tokens,
                                                    temperature=c.temperature, seed=g.seed,
                                                    request_id=f"g{g.key}")
            if any(o.finish_reason == "abort" for o in outs):
                outs = await asyncio.gather(*[self._generate_sample(o, g.seed + i) for i, o in enumerate(outs)])
            texts = [self._decode(o.output_ids) for o in outs]
            rewards = await self._rewards.run(c.reward_timeout, _score, self.task, texts, g.problem)
        except asyncio.CancelledError:
            self._groups.pop(g.key, None)
            self.staleness.on_rollout_cancelled()
            self._counts["cancelled_groups"] += 1
            raise
        except (EngineDeadError, EngineClosedError) as exc:
            self._groups.pop(g.key, None)
            self.staleness.on_rollout_cancelled()
            self._counts["cancelled_groups"] += 1
            if not self._stop:
                self._failure = exc
                self._stop = True
                self._wake()
            return
        except Exception as exc:  # noqa: BLE001 - reward raised / timed out / invalid request: reject the group
            self._groups.pop(g.key, None)
            self.staleness.on_rollout_rejected()
            self._counts["rejected_groups"] += 1
            reason = "reward timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            self._emit({"type": "group_rejected", "group": g.key, "reason": reason, "version": self.version})
            self._after_group()
            return
        g.trajectories = [Trajectory.from_output(o, r, g.key, t) for o, r, t in zip(outs, rewards, texts,
                                                                                   strict=True)]
        g.finished = time.monotonic()
        g.slot.done = True
        self.staleness.on_rollout_accepted()
        self._emit({"type": "group_accepted", "group": g.key, "version": self.version,
                    "reward_mean": float(np.mean(rewards)), "tokens": int(sum(o.n_tokens for o in outs))})
        self._after_group()

    def _after_group(self) -> None:
        self._wake()
        w = getattr(self, "_rollout_wake", None)
        if w is not None:
            w.set()

    async def _cancel_groups(self) -> None:
        tasks = [g.task for g in self._groups.values() if g.task is not None and not g.slot.done]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------------------------
    # learner
    # ------------------------------------------------------------------------------------------------
    async def _hold(self) -> None:
        """While paused: engine paused (requests kept), the pause added to the run's time budget."""
        t0 = time.monotonic()
        await self.engine.pause()
        try:
            while self._paused and not self._stop:
                await self._unpaused.wait()
        finally:
            await self.engine.resume()
            t1 = time.monotonic()
            self._t_end += t1 - t0
            self.timeline.append(("pause", t0 - self._t0, t1 - self._t0))
            self._emit({"type": "unpaused", "version": self.version, "seconds": t1 - t0})

    async def _next_batch(self) -> list[_Group] | None:
        c = self.cfg
        while True:
            if self._stop:
                return None
            if self._paused:
                self._emit({"type": "paused", "version": self.version})
                await self._hold()
                continue
            keys = list(self._groups)
            picked = select_batch([self._groups[k].slot for k in keys], self.version, c.consumer_batch_size,
                                  c.effective_staleness)
            if picked is not None:
                batch = [self._groups.pop(keys[i]) for i in picked]
                return batch
            self._event.clear()
            left = self._t_end - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), min(left, 3600.0))
            except TimeoutError:
                pass

    @staticmethod
    def _set_threads(n: int) -> None:
        from . import runtime

        runtime.set_torch_threads(n)

    def _learner_step(self, batch: list[Trajectory], version: int, threads: int) -> dict:
        self._set_threads(threads)
        return self._get_learner().step(batch, version)

    async def _learner_loop(self, steps: int | None, seconds: float | None) -> None:
        c = self.cfg
        loop = asyncio.get_running_loop()
        self._t_end = time.monotonic() + (seconds if seconds is not None else math.inf)
        done = 0
        last_end = time.monotonic()
        last_stats = self.engine.stats()
        while not self._stop and (steps is None or done < steps) and time.monotonic() < self._t_end:
            t_wait = time.monotonic()
            groups = await self._next_batch()
            if groups is None:
                break
            trajs = [t for g in groups for t in g.trajectories]
            v = self.version
            t_l0 = time.monotonic()
            if c.mode == "sync":
                await self.engine.pause()
            threads = self.engine.learner_threads()
            stats = await loop.run_in_executor(self._learner_pool, self._learner_step, trajs, v, threads)
            t_l1 = time.monotonic()
            push_s = await self.engine.update_weights(self._learner.state_dict(), v + 1)
            self.version = v + 1
            if c.mode == "sync":           # the learner gives the second core back before the engine resumes
                await loop.run_in_executor(self._learner_pool, self._set_threads,
                                           self.engine.thread_policy.learner_with_engine)
                await self.engine.resume()
            t_p1 = time.monotonic()
            self.steps_done += 1
            done += 1
            self._emit({"type": "weights_pushed", "version": self.version, "seconds": t_p1 - t_l1})
            self._rollout_wake.set()
            self.timeline += [("wait", t_wait - self._t0, t_l0 - self._t0), ("learn", t_l0 - self._t0, t_l1 - self._t0),
                              ("push", t_l1 - self._t0, t_p1 - self._t0)]
            es = self.engine.stats()
            per_traj = [v - t.versions[t.loss_mask] for t in trajs]   # staleness of each consumed token
            stale = np.concatenate(per_traj) if per_traj else np.zeros(0, dtype=np.int64)
            counts = np.bincount(stale)
            if len(counts) > len(self._staleness_counts):
                self._staleness_counts = np.pad(self._staleness_counts, (0, len(counts) - len(self._staleness_counts)))
            self._staleness_counts[: len(counts)] += counts
            row = self._row(groups, trajs, per_traj, stale, stats, es, last_stats, last_end, t_p1, t_l0 - t_wait,
                            t_p1 - t_l1, push_s)
            last_end, last_stats = t_p1, es
            self._rows.append(row)
            self.recent.extend(trajs)
            self._emit({"type": "step", **row, "staleness_counts": counts.tolist()})

    def _row(self, groups, trajs, per_traj, stale, stats, es, last_stats, last_end, now, wait_s, push_wall_s,
             push_s) -> dict:
        c = self.cfg
        interval = max(now - last_end, 1e-9)
        eta = c.effective_staleness                                       # groups holding a token older than η
        too_old = [len(s) > 0 and s.max() > eta for s in per_traj]    # per_traj follows the groups' order
        violations, i = 0, 0
        for g in groups:
            violations += any(too_old[i:i + len(g.trajectories)])
            i += len(g.trajectories)
        self._counts["staleness_violations"] += violations
        consumed = int(sum(t.n_output for t in trajs))
        counts = self.staleness.counts()
        rejected_before = self._rows[-1]["rejected_total"] if self._rows else 0
        return {
            "step": self.steps_done, "version": self.version, "wall_s": now - self._t0,
            "reward_mean": float(np.mean([t.reward for t in trajs])),
            "staleness_avg": float(stale.mean()) if len(stale) else 0.0,
            "staleness_max": int(stale.max()) if len(stale) else 0,
            "consumed_tokens": consumed, "effective_tok_per_s": consumed / interval,
            "clip_fraction": stats["clip_fraction"], "imp_weight_max": stats["imp_weight_max"],
            "filtered_fraction": stats["filtered_fraction"], "approx_kl": stats["approx_kl"],
            "grad_norm": stats["grad_norm"], "loss": stats["loss"], "step_seconds": interval,
            "engine_busy": min(1.0, (es["step_s"] - last_stats["step_s"]) / interval),
            "learner_busy": min(1.0, stats["learner_seconds"] / interval),
            "rejected_groups": self._counts["rejected_groups"] - rejected_before,
            "rejected_total": self._counts["rejected_groups"],
            "gen_tok_per_s": (es["tokens_generated"] - last_stats["tokens_generated"]) / interval,
            "recompute_tokens": es["recompute_tokens"] - last_stats["recompute_tokens"],
            "learner_seconds": stats["learner_seconds"], "prox_seconds": stats["prox_seconds"],
            "wait_seconds": wait_s, "push_seconds": push_wall_s, "engine_push_seconds": push_s,
            "behav_logp_gap": stats["behav_logp_gap"], "microbatches": stats["microbatches"],
            "running": counts.running, "accepted": counts.accepted,
            "buffered": sum(g.slot.done for g in self._groups.values()),
            "capacity": self.staleness.get_capacity(self.version), "staleness_violations": violations,
            "mean_length": float(np.mean([t.n_output for t in trajs])),
            "truncated_fraction": float(np.mean([t.finish_reason == "length" for t in trajs])),
            "servers_lost": int(es.get("servers_lost", 0)),
            "requests_resubmitted": int(es.get("requests_resubmitted", 0)),
        }
