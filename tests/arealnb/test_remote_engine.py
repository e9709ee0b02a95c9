"""``RemoteVLLMEngine`` over two real ``vllm serve`` processes of the tiny policy: routing, behaviour log-probs
against an HF recompute before and after a push in each interrupt mode, per-token versions from the servers, a
refused push that leaves the servers on their weights, the trainer's invariants through the servers, and a
server killed mid-run (the run completes on the other; with none left, ``EngineDeadError``).

The two servers are shared by the module (starting one costs ~40 s here); the test that kills one runs last."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from arealnb import (
    ConfigError,
    EngineDeadError,
    InvalidRequestError,
    RunningSum,
    Trainer,
    TrainerConfig,
    WeightUpdateError,
)
from arealnb.engines import RemoteVLLMEngine
from arealnb.serve import start_servers

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(tiny_policy, tmp_path_factory):
    shm = {f.path for f in os.scandir("/dev/shm")}
    ss = start_servers(tiny_policy, 2, log_dir=tmp_path_factory.mktemp("serve-logs"), kv_cache_bytes=32 << 20)
    yield ss
    for s in ss:
        s.stop()
    # killed servers too: no shared-memory queue of theirs and no pushed weight file is left in /dev/shm (a
    # SIGKILLed server's multiprocessing resource tracker dies with it and leaves its named semaphore, "sem.*")
    assert not {f for f in {f.path for f in os.scandir("/dev/shm")} - shm if "/sem." not in f}


@pytest.fixture(scope="module")
def policies(tiny_policy):
    """The served weights and a perturbed copy (the "new" policy of a push), fp32 HF models."""
    import torch
    from transformers import AutoModelForCausalLM

    old = AutoModelForCausalLM.from_pretrained(tiny_policy, dtype=torch.float32).eval()
    new = AutoModelForCausalLM.from_pretrained(tiny_policy, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return old, new


def _hf_logp(model, out) -> np.ndarray:
    """HF's log-softmax of each output token given the prompt and the tokens before it (T = 1, top-p = 1)."""
    import torch

    ids = torch.tensor([list(out.prompt_ids) + list(out.output_ids)])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].double(), -1)
    n = len(out.prompt_ids)
    return np.array([lp[n - 1 + i, t].item() for i, t in enumerate(out.output_ids)])


def _run(coro, timeout: float = 300.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_routing_parity_and_versions_across_a_push_in_each_interrupt_mode(servers, tiny_policy, policies):
    old, new = policies

    async def main(mode, first_version) -> int:
        """Push mid-generation (up to 3 tries: on 2 shared cores a stalled client can miss every sample); every
        try's samples are checked. Returns the next free version."""
        async with RemoteVLLMEngine(servers, tiny_policy, interrupt=mode) as eng:
            before, target = old, new
            v = first_version
            for _attempt in range(3):
                await eng.reset_weights(_state(before), v)          # whatever the last try left served
                outs = await eng.generate_group([3, 4, 5, 6], n=4, max_new_tokens=12, seed=1, ignore_eos=True)
                assert sorted(o.meta["server"] for o in outs) == sorted([s.url for s in servers] * 2)   # 2 + 2
                for o in outs:
                    assert (o.versions == v).all()
                    assert np.abs(o.logprobs - _hf_logp(before, o)).max() < 1e-4
                await eng.pause()                    # the samples queue on the paused servers: all admitted
                task = asyncio.ensure_future(eng.generate_group([3, 4, 5], n=6, max_new_tokens=500, seed=2,
                                                                ignore_eos=True))
                while eng.stats()["running"] < 6:
                    await asyncio.sleep(0.005)
                await eng.resume()
                await asyncio.sleep(0.05)            # 500 tokens take the tiny policy ~0.5 s or more here
                await eng.update_weights(_state(target), v + 1)
                outs = await task
                assert eng.version == v + 1
                cut = []
                for o in outs:
                    ver = o.versions
                    assert set(np.unique(ver)) <= {v, v + 1}
                    assert (np.diff(ver) >= 0).all()                 # one cut at most, old then new
                    m0, m1 = ver == v, ver == v + 1
                    if m0.any():                                     # before the cut: the old weights' tokens
                        assert np.abs(o.logprobs - _hf_logp(before, o))[m0].max() < 1e-4
                    if mode == "recompute" and m1.any():             # after it: the new weights', KV recomputed
                        assert np.abs(o.logprobs - _hf_logp(target, o))[m1].max() < 1e-4
                    if mode == "abort":                 # cut samples end at the push, with old tokens only
                        assert o.finish_reason == "abort" or o.n_tokens == 500
                        assert not m1.any()
                    cut.append(bool(m0.any() and (m1.any() or o.finish_reason == "abort")))
                v += 2
                if any(cut):
                    return v
            raise AssertionError("in 3 tries the push landed after every sample finished: nothing was interrupted")

    v = 0
    for mode in ("recompute", "keep", "abort"):
        v = _run(main(mode, v))


def test_a_refused_push_touches_no_server(servers, tiny_policy, policies):
    import torch

    old, new = policies

    async def main():
        async with RemoteVLLMEngine(servers, tiny_policy, version=10) as eng:
            v = eng.version
            await eng.update_weights(_state(old), v + 1)             # known state: the original weights
            bad = _state(new)
            bad["model.norm.weight"] = torch.full_like(bad["model.norm.weight"], float("nan"))
            with pytest.raises(WeightUpdateError, match="NaN"):
                await eng.update_weights(bad, v + 2)
            wrong = _state(new)
            wrong["model.embed_tokens.weight"] = wrong["model.embed_tokens.weight"][:-1]
            with pytest.raises(WeightUpdateError, match="shape"):
                await eng.update_weights(wrong, v + 2)
            with pytest.raises(WeightUpdateError, match="above the last pushed"):
                await eng.update_weights(_state(new), v + 1)
            assert not list(eng.weight_dir.glob("arealnb-weights-*"))   # nothing written, nothing left
            outs = await eng.generate_group([7, 8, 9], n=2, max_new_tokens=8, seed=3)
            for o in outs:
                assert (o.versions == v + 1).all() and np.abs(o.logprobs - _hf_logp(old, o)).max() < 1e-4
            assert eng.stats()["servers_alive"] == 2
            with pytest.raises(InvalidRequestError, match="prompt_ids"):
                await eng.generate([], max_new_tokens=4)
            with pytest.raises(InvalidRequestError, match="does not fit"):
                await eng.generate([1, 2], max_new_tokens=10_000)

    _run(main())


def test_bad_arguments_and_unreachable_servers(tiny_policy, tmp_path):
    from arealnb.serve import free_port

    with pytest.raises(ConfigError, match="at least one"):
        RemoteVLLMEngine([], tiny_policy)
    with pytest.raises(ConfigError, match="http://host:port"):
        RemoteVLLMEngine(["localhost:8000"], tiny_policy)
    with pytest.raises(ConfigError, match="twice"):
        RemoteVLLMEngine(["http://127.0.0.1:1", "http://127.0.0.1:1"], tiny_policy)
    with pytest.raises(ConfigError, match="weight_dir"):
        RemoteVLLMEngine(["http://gpu1.example:8000"], tiny_policy)
    with pytest.raises(ConfigError, match="no config.json"):
        RemoteVLLMEngine(["http://127.0.0.1:1"], tmp_path)
    with pytest.raises(ConfigError, match="rollout_servers"):
        TrainerConfig(rollout_servers="http://127.0.0.1:8000")
    eng = RemoteVLLMEngine([f"http://127.0.0.1:{free_port()}"], tiny_policy)
    with pytest.raises(ConfigError, match="does not answer"):
        _run(eng.start())


def _cfg(servers, **kw):
    base = dict(consumer_batch_size=4, group_size=2, max_new_tokens=48, lr=1e-4, seed=0,
                rollout_servers=[s.url for s in servers])
    return TrainerConfig(**{**base, **kw})


def test_trainer_through_the_servers_keeps_the_staleness_bound_and_learner_parity(servers, tiny_policy):
    with Trainer(_cfg(servers, max_staleness=1, max_concurrent_rollouts=8, interrupt="recompute"), tiny_policy,
                 RunningSum()) as t:
        df = t.run_sync(steps=6)
        assert (df.staleness_max <= 1).all() and (df.staleness_violations == 0).all()
        assert df.version.tolist() == list(range(df.version.iloc[0], df.version.iloc[0] + 6))
        for tr in t.recent:
            assert (tr.versions[tr.loss_mask] >= 0).all() and (tr.versions[~tr.loss_mask] == -1).all()
        # the learner's recompute of current-version tokens equals what the servers sampled them with
        assert df.behav_logp_gap.max() < 1e-3
        assert (df.servers_lost == 0).all()
    with Trainer(_cfg(servers, mode="sync"), tiny_policy, RunningSum()) as t:
        df = t.run_sync(steps=3)
        assert (df.staleness_max == 0).all() and df.behav_logp_gap.max() < 1e-3


def test_a_server_killed_mid_run_and_then_all_of_them(servers, tiny_policy):
    killed = []

    def on_event(e):
        if e["type"] == "step" and e["step"] == 2 and not killed:
            os.killpg(servers[0].proc.pid, signal.SIGKILL)
            killed.append(e["step"])

    with Trainer(_cfg(servers, max_staleness=2, max_new_tokens=96, max_concurrent_rollouts=8), tiny_policy,
                 RunningSum()) as t:
        t.subscribe(on_event)
        df = t.run_sync(steps=6)
        assert killed and len(df) == 6 and df.version.tolist()[-1] == df.version.tolist()[0] + 5
        assert df.servers_lost.iloc[-1] == 1 and (df.staleness_max <= 2).all()
        st = t.engine.stats()
        assert st["servers_alive"] == 1 and st["servers_lost"] == 1
        lost = [s for s in t.engine.servers if not s["alive"]]
        assert lost[0]["url"] == servers[0].url and lost[0]["lost_reason"]

    async def all_dead():
        async with RemoteVLLMEngine(servers[1:], tiny_policy) as eng:
            await eng.pause()                         # the request waits on the server: it cannot finish first
            task = asyncio.ensure_future(eng.generate([3, 4, 5], max_new_tokens=400, ignore_eos=True))
            while eng.stats()["running"] < 1:
                await asyncio.sleep(0.005)
            os.killpg(servers[1].proc.pid, signal.SIGKILL)
            with pytest.raises(EngineDeadError, match="every rollout server is lost"):
                await task
            with pytest.raises(EngineDeadError):
                await eng.generate([3, 4, 5], max_new_tokens=4)

    _run(all_dead())
