"""The experiments behind the ``rl_0x`` notebooks, as functions users call in their own notebooks.

Every function is a coroutine run on the caller's event loop (``await`` it in a notebook; ``asyncio.run`` in a
script), builds real trainers (real vLLM engine, real torch learner) one after another, shows tqdm progress
and returns pandas DataFrames plus the per-run records needed for the figures:

* :func:`train` — one run: metrics, activity timeline, staleness counts, reward before/after.
* :func:`compare` — several configurations on the same policy, task and wall-clock budget.
* :func:`sync_vs_async`, :func:`staleness_ablation`, :func:`interrupt_modes`, :func:`prox_methods` — the
  notebooks' grids (AReaL Fig. 1/Table 2/Fig. 5c/§4.1 on this machine).

``quick()`` is true under ``NB_QUICK=1`` (set by ``make test``); the notebooks use it to shrink budgets.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .trainer import Trainer, TrainerConfig


def quick() -> bool:
    """True when ``NB_QUICK`` is set to a true value (CI's few-minute mode of the notebooks)."""
    return os.environ.get("NB_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def default_task(n: int = 64, max_terms: int = 6, seed: int = 0):
    """The notebooks' task: a fixed training set of ``n`` RunningSum problems of 2..``max_terms`` terms, small
    enough for the tiny policy to improve on within minutes (on 256 problems of up to 8 terms it climbs about
    three times slower; on the open-ended task barely at all)."""
    from .tasks import ProblemSet, RunningSum

    return ProblemSet(RunningSum(max_terms=max_terms), n=n, seed=seed)


def default_config(**overrides) -> TrainerConfig:
    """The notebooks' settings for the tiny policy (a batch of 8 groups × 8 samples, η = 4, lr 3e-4)."""
    base = dict(consumer_batch_size=8, group_size=8, max_staleness=4, max_new_tokens=64, lr=3e-4, seed=0)
    return TrainerConfig(**{**base, **overrides})


@dataclass
class RunResult:
    """What one training run leaves: the trainer's records plus the evaluation around it."""

    label: str
    config: TrainerConfig
    metrics: object                       # DataFrame, one row per learner step
    activity: object                      # DataFrame, Trainer.activity()
    staleness_counts: np.ndarray          # consumed tokens per staleness 0, 1, ...
    trajectories: list = field(repr=False)    # the last ``keep_trajectories`` consumed trajectories
    reward_before: float = math.nan
    reward_after: float = math.nan
    train_seconds: float = 0.0            # wall-clock of the run, engine start excluded

    def summary(self) -> dict:
        m, c = self.metrics, self.config
        tail = m.tail(max(1, len(m) // 5)) if len(m) else m
        versions = [np.unique(t.versions[t.loss_mask]) for t in self.trajectories]
        return {
            "run": self.label, "mode": c.mode,
            "eta": c.effective_staleness if c.mode == "async" else 0,
            "loss": "decoupled" if c.use_decoupled_loss else "naive", "interrupt": c.interrupt,
            "prox": c.prox_logp_method, "steps": len(m), "seconds": self.train_seconds,
            "effective_tok_per_s": float(m.consumed_tokens.sum() / self.train_seconds) if len(m) else 0.0,
            "gen_tok_per_s": float(m.gen_tok_per_s.mean()) if len(m) else 0.0,
            "reward_before": self.reward_before, "reward_after": self.reward_after,
            "reward_last_batches": float(tail.reward_mean.mean()) if len(m) else math.nan,
            "staleness_avg": float(np.average(np.arange(len(self.staleness_counts)), weights=self.staleness_counts))
            if self.staleness_counts.sum() else 0.0,
            "staleness_max": int(m.staleness_max.max()) if len(m) else 0,
            "imp_weight_max": float(m.imp_weight_max.max()) if len(m) else 0.0,
            "filtered_fraction": float(m.filtered_fraction.mean()) if len(m) else 0.0,
            "mixed_version_fraction": float(np.mean([len(v) > 1 for v in versions])) if versions else 0.0,
            "learner_s_per_step": float(m.learner_seconds.mean()) if len(m) else 0.0,
            "prox_s_per_step": float(m.prox_seconds.mean()) if len(m) else 0.0,
            "engine_busy": float(m.engine_busy.mean()) if len(m) else 0.0,
            "learner_busy": float(m.learner_busy.mean()) if len(m) else 0.0,
        }


def _policy(policy):
    if policy is not None:
        return Path(policy)
    from .models import build_policy

    return build_policy(size="tiny", progress=False)


def _progress_bar(trainer: Trainer, label: str, steps, seconds, progress: bool):
    """A tqdm bar over the run's budget (seconds or steps), fed by the trainer's step events."""
    if not progress:
        return None, lambda: None
    from tqdm.auto import tqdm

    by_time = seconds is not None
    bar = tqdm(total=float(seconds) if by_time else steps, desc=label, unit="s" if by_time else "step",
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]"
               if by_time else None, leave=True)
    t0 = [None]

    def on_event(ev):
        if ev["type"] == "run_started":
            t0[0] = time.monotonic()
        elif ev["type"] == "step":
            bar.n = min(bar.total, time.monotonic() - t0[0]) if by_time else ev["step"] - first_step
            bar.set_postfix(v=ev["version"], reward=f"{ev['reward_mean']:.2f}", refresh=False)
            bar.refresh()

    first_step = trainer.steps_done
    unsub = trainer.subscribe(on_event)

    def close():
        unsub()
        if by_time:
            bar.n = bar.total
        bar.refresh()
        bar.close()

    return bar, close


async def train(cfg: TrainerConfig | None = None, task=None, policy=None, *, seconds: float | None = None,
                steps: int | None = None, label: str = "run", eval_n: int = 400, eval_seed: int = 1,
                reward_before: float | None = None, progress: bool = True, dashboard=None) -> RunResult:
    """One run: build a trainer, evaluate (``eval_n`` samples; skipped when 0 or ``reward_before`` is given),
    train for ``seconds`` / ``steps``, evaluate again, close. ``dashboard=True`` shows a live
    :class:`~arealnb.widgets.Dashboard` (or pass a callable ``trainer -> Dashboard``)."""
    cfg = cfg or default_config()
    task = task if task is not None else default_task()
    async with Trainer(cfg, _policy(policy), task) as t:
        before = reward_before
        if before is None:
            before = await t.evaluate(eval_n, seed=eval_seed) if eval_n else math.nan
        else:
            await t._ensure_started()
        dash = None
        if dashboard:
            from IPython.display import display

            from .widgets import Dashboard

            dash = Dashboard(t) if dashboard is True else dashboard(t)
            display(dash)
        _, close_bar = _progress_bar(t, label, steps, seconds, progress and dash is None)
        try:
            await t.run(steps=steps, seconds=seconds)
        finally:
            close_bar()
            if dash is not None:
                dash.close()
        m = t.metrics
        train_s = float(m.wall_s.iloc[-1]) if len(m) else 0.0
        after = await t.evaluate(eval_n, seed=eval_seed) if eval_n else math.nan
        return RunResult(label, cfg, m, t.activity(), t.staleness_counts, list(t.recent), before, after, train_s)


@dataclass
class Comparison:
    """Several runs on one budget: ``summary`` (one row per run) and ``runs`` (label → :class:`RunResult`)."""

    runs: dict
    summary: object

    def __getitem__(self, label: str) -> RunResult:
        return self.runs[label]


async def compare(configs: dict, task=None, policy=None, *, seconds: float | None = None,
                  steps: int | None = None, eval_n: int = 400, eval_seed: int = 1,
                  progress: bool = True) -> Comparison:
    """Run each ``label -> TrainerConfig`` of ``configs`` in turn on the same policy, task and budget.

    The reward before training is measured once (same policy, problems and seeds for every run)."""
    import pandas as pd

    if not configs:
        raise ValueError("compare() needs at least one configuration")
    task = task if task is not None else default_task()
    policy = _policy(policy)
    runs: dict[str, RunResult] = {}
    before = None
    for label, cfg in configs.items():
        r = await train(cfg, task, policy, seconds=seconds, steps=steps, label=label, eval_n=eval_n,
                        eval_seed=eval_seed, reward_before=before, progress=progress)
        before = r.reward_before
        runs[label] = r
    return Comparison(runs, pd.DataFrame([r.summary() for r in runs.values()]).set_index("run"))


def _variant(cfg: TrainerConfig, **changes) -> TrainerConfig:
    return dataclasses.replace(cfg, **changes)


async def sync_vs_async(seconds: float, eta: int = 4, base: TrainerConfig | None = None, task=None,
                        policy=None, **kw) -> Comparison:
    """Strict synchronous RL (η = 0, engine paused while the learner trains) against asynchronous with ``eta``,
    on the same wall-clock budget (AReaL's headline comparison)."""
    base = base or default_config()
    return await compare({"sync": _variant(base, mode="sync", max_staleness=0),
                          f"async η={eta}": _variant(base, mode="async", max_staleness=eta)},
                         task, policy, seconds=seconds, **kw)


async def staleness_ablation(seconds: float, etas=(0, 1, 2, 4, 8, math.inf), losses=("naive", "decoupled"),
                             base: TrainerConfig | None = None, task=None, policy=None, **kw) -> Comparison:
    """η × {naive PPO, decoupled PPO} on the same budget (AReaL Table 2 / Fig. 5c); ``math.inf`` is η = ∞."""
    base = base or default_config()
    configs = {}
    for eta in etas:
        for loss in losses:
            name = f"η={'∞' if eta == math.inf else eta} {loss}"
            configs[name] = _variant(base, max_staleness=eta, use_decoupled_loss=(loss == "decoupled"))
    return await compare(configs, task, policy, seconds=seconds, **kw)


def ablation_table(comparison: Comparison, value: str = "reward_after"):
    """``staleness_ablation`` as AReaL's Table 2: rows η, columns the two losses, cells ``value``."""
    s = comparison.summary.reset_index()
    s["η"] = s["eta"].map(lambda e: "∞" if e == math.inf else str(int(e)))
    order = list(dict.fromkeys(s["η"]))
    t = s.pivot(index="η", columns="loss", values=value).reindex(order)
    t.columns.name = value
    return t


async def interrupt_modes(seconds: float, modes=("recompute", "keep", "abort"), base: TrainerConfig | None = None,
                          task=None, policy=None, **kw) -> Comparison:
    """The three ways a weight update treats in-flight generation (see :mod:`arealnb.engines.vllm_engine`)."""
    base = base or default_config(keep_trajectories=2048)
    return await compare({m: _variant(base, interrupt=m) for m in modes}, task, policy, seconds=seconds, **kw)


async def prox_methods(seconds: float, methods=("recompute", "loglinear"), base: TrainerConfig | None = None,
                       task=None, policy=None, **kw) -> Comparison:
    """π_prox by an extra forward pass (``recompute``) or AReaL's log-linear interpolation (``loglinear``)."""
    base = base or default_config(ppo_n_minibatches=2)
    return await compare({m: _variant(base, prox_logp_method=m) for m in methods}, task, policy,
                         seconds=seconds, **kw)


def version_mixture(trajectories) -> object:
    """Per trajectory: output tokens, distinct policy versions among them, and the share of tokens not from
    the trajectory's last version (what an interruption mixes in). A DataFrame."""
    import pandas as pd

    rows = []
    for t in trajectories:
        v = t.versions[t.loss_mask]
        if len(v) == 0:
            continue
        rows.append({"tokens": len(v), "versions": len(np.unique(v)), "older_share": float(np.mean(v < v.max()))})
    return pd.DataFrame(rows)
