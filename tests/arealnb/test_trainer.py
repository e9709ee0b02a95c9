"""The RL core end to end with the real engine and torch (tiny policy): the staleness bound by token versions,
sync mode, the learner's log-probs against the engine's, rewards that fail, stop, checkpoints, bad configs, a
user's own task and model folder."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import pytest

from arealnb import ConfigError, RunningSum, Trainer, TrainerConfig, TrainerStateError

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


class DelayedRunningSum:
    """A user's task (no subclassing): RunningSum's problems, rewards after a random delay."""

    def __init__(self, max_delay: float = 0.05, seed: int = 0):
        self.inner = RunningSum(max_terms=8)
        self.max_delay = max_delay
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()

    def sample(self, rng, n):
        return self.inner.sample(rng, n)

    def reward(self, completion, problem):
        with self.lock:
            d = float(self.rng.uniform(0, self.max_delay))
        time.sleep(d)
        return self.inner.reward(completion, problem)


def _cfg(**kw):
    base = dict(consumer_batch_size=4, group_size=2, max_new_tokens=48, lr=1e-4, seed=0, kv_cache_bytes=32 << 20)
    return TrainerConfig(**{**base, **kw})


def _check_versions(trainer, eta):
    """Every consumed token: version <= the learner version that trained on it, and within η of it."""
    df = trainer.metrics
    assert (df.staleness_max <= eta).all(), df[["step", "staleness_max"]]
    assert (df.staleness_violations == 0).all()
    assert df.version.tolist() == list(range(df.version.iloc[0], df.version.iloc[0] + len(df)))


@pytest.mark.parametrize("eta", [0, 1, 4])
def test_staleness_bound_holds_on_every_batch_under_random_reward_delays(tiny_policy, eta):
    events = []
    with Trainer(_cfg(max_staleness=eta, max_concurrent_rollouts=8), tiny_policy, DelayedRunningSum()) as t:
        t.subscribe(events.append)
        consumed_versions = []
        t.subscribe(lambda e: e["type"] == "step" and consumed_versions.append(e["version"]))
        t.run_sync(steps=12)
        _check_versions(t, eta)
        # from the trajectories themselves: tokens never newer than the version that consumed them
        for tr in t.recent:
            out = tr.versions[tr.loss_mask]
            assert (out >= 0).all() and (tr.versions[~tr.loss_mask] == -1).all()
        assert t.metrics.staleness_max.max() <= eta
        if eta == 4:
            assert t.metrics.staleness_max.max() >= 1          # async really ran ahead of the learner
        kinds = {e["type"] for e in events}
        assert {"run_started", "group_accepted", "weights_pushed", "step", "run_stopped"} <= kinds
        assert len(consumed_versions) == 12


def test_sync_mode_trains_only_on_current_tokens_and_learner_matches_engine(tiny_policy):
    with Trainer(_cfg(mode="sync", interrupt="recompute", max_staleness=3), tiny_policy, RunningSum()) as t:
        df = t.run_sync(steps=6)
        assert (df.staleness_max == 0).all() and (df.staleness_avg == 0).all()
        # the learner's recompute of the engine's sampler log-probs (fp32 both sides)
        assert df.behav_logp_gap.max() < 1e-3
        assert df.version.tolist() == [1, 2, 3, 4, 5, 6]
        assert t.engine.version == 6


def test_every_interrupt_mode_delivers_whole_trajectories(tiny_policy):
    for mode in ("recompute", "abort"):
        with Trainer(_cfg(interrupt=mode, max_staleness=2, max_new_tokens=64), tiny_policy, RunningSum()) as t:
            df = t.run_sync(steps=5)
            assert (df.staleness_max <= 2).all()
            assert all(tr.finish_reason in ("stop", "length") for tr in t.recent)
            if mode == "recompute":
                # tokens of one version were produced by that version's weights (KV recomputed)
                assert df.behav_logp_gap.max() < 1e-3


class FlakyTask:
    """Rewards that raise, hang past the timeout, or are not numbers, for some problems."""

    def __init__(self):
        self.inner = RunningSum(max_terms=6)
        self.calls = 0
        self.lock = threading.Lock()

    def sample(self, rng, n):
        return self.inner.sample(rng, n)

    def reward(self, completion, problem):
        with self.lock:
            self.calls += 1
            k = self.calls
        if k % 7 == 0:
            raise ValueError("grader crashed")
        if k % 11 == 0:
            time.sleep(2.0)                                   # longer than reward_timeout
        if k % 13 == 0:
            return float("nan")
        return self.inner.reward(completion, problem)


def test_failing_rewards_reject_groups_and_training_goes_on(tiny_policy):
    rejected = []
    with Trainer(_cfg(reward_timeout=0.5, max_staleness=2), tiny_policy, FlakyTask()) as t:
        t.subscribe(lambda e: e["type"] == "group_rejected" and rejected.append(e["reason"]))
        df = t.run_sync(steps=6)
        assert len(df) == 6
        assert df.rejected_total.iloc[-1] == t.staleness.counts().rejected >= 3
        assert any("grader crashed" in r for r in rejected)
        assert any("timed out" in r for r in rejected)
        assert any("finite number" in r for r in rejected)
        _check_versions(t, 2)


def test_stop_mid_run_leaves_no_task_or_thread(tiny_policy):
    before = {th.name for th in threading.enumerate()}

    async def main():
        t = Trainer(_cfg(max_staleness=2), tiny_policy, RunningSum())
        run = asyncio.create_task(t.run(steps=1000))
        while not len(t.metrics):
            await asyncio.sleep(0.05)
        t.stop()
        df = await asyncio.wait_for(run, 30)
        assert 1 <= len(df) < 1000 and not t.is_running
        leftover = [x for x in asyncio.all_tasks() if x is not asyncio.current_task()]
        assert leftover == [], leftover
        assert t.staleness.counts().running == 0
        await t.close()

    asyncio.run(main())
    time.sleep(0.2)
    extra = {th.name for th in threading.enumerate()} - before
    assert not extra, f"threads left after close: {extra}"


def test_seconds_bound_stops_the_run(tiny_policy):
    with Trainer(_cfg(), tiny_policy, RunningSum()) as t:
        t0 = time.monotonic()
        t.run_sync(seconds=3.0)
        assert time.monotonic() - t0 < 3.0 + 10.0       # a step in progress finishes
        assert len(t.metrics) >= 1


def test_checkpoint_resume_continues_versions_counters_and_data(tiny_policy, tmp_path):
    task = RunningSum()
    with Trainer(_cfg(max_staleness=1), tiny_policy, task) as t:
        t.run_sync(steps=4)
        ck = t.save(tmp_path / "ck")
        state = (t.version, t.steps_done, t._next_key, t.staleness.counts().rejected)
        rng_state = t._rng.bit_generator.state
    t2 = Trainer.resume(ck, task)
    with t2:
        assert (t2.version, t2.steps_done, t2._next_key, t2.staleness.counts().rejected) == state
        assert t2._rng.bit_generator.state == rng_state
        assert t2.staleness.counts().accepted == t2.version * t2.cfg.consumer_batch_size
        assert t2.staleness.get_capacity(t2.version) == min(t2.cfg.concurrent_rollouts,
                                                             (1 + t2.version + 1) * 4 - t2.version * 4)
        df = t2.run_sync(steps=3)
        assert df.step.tolist() == [1, 2, 3, 4, 5, 6, 7] and df.version.tolist() == [1, 2, 3, 4, 5, 6, 7]
        assert t2.engine.version == 7
        _check_versions(t2, 1)
    with pytest.raises(TrainerStateError, match="not an arealnb checkpoint"):
        Trainer.resume(tmp_path / "nothing", task)


@pytest.mark.parametrize("bad, match", [
    (dict(max_staleness=-1), "max_staleness"), (dict(max_staleness=1.5), "max_staleness"),
    (dict(consumer_batch_size=0), "consumer_batch_size"), (dict(group_size=2.0), "group_size"),
    (dict(mode="fast"), "mode"), (dict(lr=float("nan")), "lr"), (dict(eps_clip=0), "eps_clip"),
    (dict(behave_imp_weight_cap=0.5), "behave_imp_weight_cap"), (dict(prox_logp_method="exact"), "prox_logp"),
    (dict(interrupt="pause"), "interrupt"), (dict(temperature=0), "temperature"), (dict(adam_betas=(0.9,)),
                                                                                 "adam_betas"),
    (dict(reward_timeout=-1), "reward_timeout"), (dict(use_decoupled_loss=1), "use_decoupled_loss"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(reward_scaling=0), "reward_scaling"),
    (dict(learner_world_size=0), "learner_world_size"), (dict(rollout_servers=[]), "rollout_servers"),
    (dict(rollout_servers=["http://h:1"], engine_kwargs={"enforce_eager": False}), "engine_kwargs"),
    (dict(weight_dir=3), "weight_dir"),
])
def test_bad_config_is_refused_before_anything_starts(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainerConfig(**bad)


def test_bad_task_or_path_is_refused(tiny_policy, tmp_path):
    with pytest.raises(ConfigError, match="sample"):
        Trainer(TrainerConfig(), tiny_policy, object())
    with pytest.raises(ConfigError, match="config.json"):
        Trainer(TrainerConfig(), tmp_path, RunningSum())
    t = Trainer(TrainerConfig(), tiny_policy, RunningSum())
    with pytest.raises(ConfigError, match="steps"):
        t.run_sync()
    assert t.engine is None                                  # nothing started


class Reverse:
    """A user's task unrelated to ours: reverse a 3-letter word drawn from a-e."""

    def sample(self, rng, n):
        class P:
            def __init__(self, w):
                self.prompt, self.word = w + "=", w

        return [P("".join(rng.choice(list("abcde"), size=3))) for _ in range(n)]

    def reward(self, completion, problem):
        return float(completion.strip() == problem.word[::-1])


def test_a_user_task_and_a_foreign_hf_model_folder(tmp_path):
    """A Qwen2 built here with a different tokenizer and shape (not our policy recipe), saved as a plain HF folder."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from arealnb.models import build_tokenizer

    tok = build_tokenizer("abcde=")
    cfg = Qwen2Config(vocab_size=64, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, intermediate_size=128, max_position_embeddings=128,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with Trainer(_cfg(max_new_tokens=8, max_staleness=1), tmp_path / "m", Reverse()) as t:
        df = t.run_sync(steps=3)
        assert len(df) == 3 and df.version.iloc[-1] == 3
        assert df.behav_logp_gap.max() < 1e-3


class SmallPool:
    """A fixed pool of 12 RunningSum problems (2-4 terms): a distribution the tiny policy can improve on within
    a test's budget (on the full long-tailed task it needs far more steps than a test can spend)."""

    def __init__(self):
        rng = np.random.default_rng(7)
        self.pool = RunningSum(max_terms=4).sample(rng, 12)
        self.inner = RunningSum()

    def sample(self, rng, n):
        return [self.pool[i] for i in rng.integers(0, len(self.pool), size=n)]

    def reward(self, completion, problem):
        return self.inner.reward(completion, problem)


def test_reward_rises_over_a_short_async_run(tiny_policy):
    """Before/after on the same 400 evaluation draws (fixed seeds); the rise must exceed 4 standard errors of
    the difference of two independent 400-sample means, a bound that holds without the pairing."""
    with Trainer(_cfg(lr=3e-4, group_size=8, consumer_batch_size=8, max_staleness=2, max_new_tokens=32),
                 tiny_policy, SmallPool()) as t:
        before = t.evaluate_sync(400, seed=1)
        t.run_sync(steps=40)
        after = t.evaluate_sync(400, seed=1)
    se = math.sqrt((before * (1 - before) + after * (1 - after)) / 400)
    print(f"reward on the pool: {before:.3f} -> {after:.3f} (4 SE = {4 * se:.3f})")
    assert after - before > 4 * se, (before, after, se)
