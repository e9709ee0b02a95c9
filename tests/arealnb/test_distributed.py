"""The data-parallel learner (real torch.distributed gloo ranks in spawned processes) against the single-process
learner on the same batch: same parameters after a step, on every rank; the trainer with 2 learner ranks; a rank
that dies fails the step with a typed error and leaves no process."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from arealnb import RunningSum, Trainer, TrainerConfig
from arealnb.api import Trajectory
from arealnb.distributed import Comm, DataParallelLearner, LearnerRankError
from arealnb.learner import Learner

pytestmark = [pytest.mark.slow]


def _batch(vocab: int, n_groups: int = 3, group: int = 3, seed: int = 0) -> list[Trajectory]:
    """Trajectories of random tokens and lengths, behaviour log-probs near the policy's, two versions."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n_groups):
        for _ in range(group):
            n_p, n_o = int(rng.integers(3, 12)), int(rng.integers(1, 40))
            ids = rng.integers(0, vocab, n_p + n_o)
            mask = np.r_[np.zeros(n_p, bool), np.ones(n_o, bool)]
            lp = np.where(mask, -rng.uniform(0.5, 5.0, n_p + n_o), 0.0)
            ver = np.where(mask, rng.integers(2, 4, n_p + n_o), -1)
            out.append(Trajectory(ids.astype(np.int64), mask, lp, ver.astype(np.int64), float(rng.uniform()), g))
    return out


def _cfg(**kw):
    return TrainerConfig(**{**dict(lr=1e-3, seed=3, max_tokens_per_mb=64, pack_row_tokens=32), **kw})


@pytest.mark.parametrize("minibatches", [1, 2])
def test_two_ranks_take_the_same_step_as_one_process(tiny_policy, minibatches):
    import torch

    cfg = _cfg(ppo_n_minibatches=minibatches, learner_world_size=2)
    torch.manual_seed(cfg.seed)
    single = Learner(tiny_policy, cfg)
    batch = _batch(single.model.config.vocab_size)
    s1 = [single.step(batch, 3) for _ in range(2)]              # two steps: AdamW's state matters on the second
    dp = DataParallelLearner(tiny_policy, cfg)
    try:
        s2 = [dp.step(batch, 3) for _ in range(2)]
        want = {k: v.detach() for k, v in single.model.state_dict().items()}
        ranks = [dp.rank_params(r) for r in (0, 1)]
        assert ranks[0].keys() == ranks[1].keys() == want.keys()
        # the ranks apply the same summed gradient: bit-for-bit equal parameters
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in want)
        # against one process: the gradient sums in another order (fp32 rounding), which AdamW's normalised
        # update (about lr per element and step) turns into differences far below one step
        worst = max(float((ranks[0][k] - want[k]).abs().max()) for k in want)
        assert worst < 1e-2 * cfg.lr, f"2 ranks differ from single-process by {worst}"
        moved = max(float((want[k] - v).abs().max()) for k, v in Learner(tiny_policy, cfg).model.state_dict().items())
        assert moved > 1e-4                                     # the step really changed the weights
        for a, b in zip(s1, s2, strict=True):
            for k in ("loss", "clip_fraction", "filtered_fraction", "approx_kl", "imp_weight_max", "grad_norm"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
            assert a["microbatches"] <= b["microbatches"]
    finally:
        dp.close()


def test_the_deal_balances_tokens_and_covers_every_sequence():
    lengths = [50, 10, 30, 30, 5, 40, 20]
    idx = np.arange(100, 107)
    parts = [Comm(None, r, 3).shard(idx, lengths) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == idx.tolist()
    loads = [sum(lengths[i - 100] for i in p) for p in parts]
    assert max(loads) - min(loads) <= max(lengths)
    assert Comm(None, 1, 4).shard(idx[:2], lengths[:2]).tolist() == [101]
    assert Comm(None, 3, 4).shard(idx[:2], lengths[:2]).tolist() == []     # an empty share still joins the sum


@pytest.mark.vllm
def test_trainer_with_two_learner_ranks(tiny_policy):
    cfg = TrainerConfig(consumer_batch_size=4, group_size=2, max_new_tokens=32, seed=0, kv_cache_bytes=32 << 20,
                        learner_world_size=2, mode="sync", interrupt="recompute")
    with Trainer(cfg, tiny_policy, RunningSum()) as t:
        df = t.run_sync(steps=3)
        assert df.version.tolist() == [1, 2, 3] and (df.staleness_max == 0).all()
        assert df.behav_logp_gap.max() < 1e-3       # rank 0's pushed weights are what the engine then samples with
        a, b = t._learner.rank_params(0), t._learner.rank_params(1)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
        procs = list(t._learner._procs)
    assert not any(p.is_alive() for p in procs)


def test_a_dead_rank_fails_the_step_with_a_typed_error(tiny_policy):
    dp = DataParallelLearner(tiny_policy, _cfg(learner_world_size=2), timeout=60)
    proc = dp._procs[0]
    batch = _batch(dp.model.config.vocab_size)
    dp.step(batch, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    with pytest.raises(LearnerRankError, match="rank 1"):
        dp.step(batch, 3)
    assert not proc.is_alive() and not dp._procs
