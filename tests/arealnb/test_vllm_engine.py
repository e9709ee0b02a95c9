"""VLLMEngine with the real vLLM engine: parity, versions across weight updates in each interrupt mode,
refused pushes, engine death, cancellation, close, the event loop's liveness."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from arealnb.api import InferenceEngine
from arealnb.engines.vllm_engine import VLLMEngine
from arealnb.errors import EngineClosedError, EngineDeadError, InvalidRequestError, WeightUpdateError
from arealnb.models import build_policy, load_policy, token_logprobs
from arealnb.tasks import RunningSum

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TIMEOUT = 120  # seconds: no test may hang


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture(scope="module")
def policies(tiny_policy):
    """Old weights (the tiny policy) and genuinely different new ones (same architecture, other seed)."""
    other = build_policy(size="tiny", seed=1, steps=120, progress=False)
    old, tok = load_policy(tiny_policy)
    new, _ = load_policy(other)
    return old, new, tok


@pytest.fixture(scope="module")
def prompt_ids(policies):
    _, _, tok = policies
    return [tok(p.prompt)["input_ids"] for p in RunningSum().sample(np.random.default_rng(3), 64)]


def engine(path, **kw) -> VLLMEngine:
    kw.setdefault("kv_cache_bytes", 32 << 20)
    return VLLMEngine(path, dtype="float32", **kw)


def gaps(model, out, sl=slice(None)):
    ref = token_logprobs(model, out.prompt_ids, out.output_ids)
    return np.abs(ref[sl] - out.logprobs[sl])


async def wait_tokens(eng: VLLMEngine, n: int) -> None:
    while eng.stats()["tokens_generated"] < n:
        await asyncio.sleep(0.002)


def test_concurrent_generate_matches_hf_and_tags_version_0(tiny_policy, policies, prompt_ids):
    old, _, _ = policies

    async def main():
        async with engine(tiny_policy) as eng:
            assert isinstance(eng, InferenceEngine)
            outs = await asyncio.gather(*[eng.generate(p, max_new_tokens=48, seed=i)
                                          for i, p in enumerate(prompt_ids[:16])])
            return outs, eng.stats()

    outs, stats = run(main())
    assert {o.finish_reason for o in outs} <= {"stop", "length"}
    assert all(o.versions.tolist() == [0] * o.n_tokens and len(o.logprobs) == o.n_tokens > 0 for o in outs)
    assert max(gaps(old, o).max() for o in outs) < 1e-4
    assert stats["tokens_generated"] == sum(o.n_tokens for o in outs) and stats["requests_finished"] == 16


@pytest.mark.parametrize("mode", ["recompute", "keep"])
def test_update_mid_flight_cuts_versions_and_logprobs_follow_the_mode(tiny_policy, policies, prompt_ids, mode):
    old, new, _ = policies

    async def main():
        async with engine(tiny_policy, interrupt=mode) as eng:
            tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=100, ignore_eos=True, seed=i))
                     for i, p in enumerate(prompt_ids[:6])]
            await wait_tokens(eng, 6 * 20)
            await eng.pause()
            frozen = eng.stats()["tokens_generated"]
            await asyncio.sleep(0.2)
            assert eng.stats()["tokens_generated"] == frozen, "tokens were generated while paused"
            await eng.update_weights(new.state_dict(), version=1)
            await eng.resume()
            return await asyncio.gather(*tasks), eng.version

    outs, version = run(main())
    assert version == 1
    for o in outs:
        a = int((o.versions == 0).sum())
        assert o.n_tokens == 100 and 0 < a < 100
        assert o.versions.tolist() == [0] * a + [1] * (100 - a)
        assert gaps(old, o, slice(0, a)).max() < 1e-4            # before the cut: old weights
        after_new = gaps(new, o, slice(a, None))
        if mode == "recompute":                                  # KV recomputed: exactly the new policy
            assert after_new.max() < 1e-4
            assert gaps(old, o, slice(a, None)).max() > 1e-2     # ... and visibly not the old one
        else:                                                    # stale KV: new weights over old cache
            assert _keep_oracle_gap(old, new, o, a).max() < 1e-4
            assert after_new.max() > 1e-4


def _keep_oracle_gap(old, new, out, a):
    """Oracle for interrupt='keep': KV of prompt + out[:a-1] from the OLD weights, then the NEW weights decode."""
    from transformers import DynamicCache

    ids = torch.tensor([out.prompt_ids + out.output_ids])
    cut = len(out.prompt_ids) + a - 1            # positions < cut were cached before the update
    with torch.no_grad():
        cache = DynamicCache()
        old(input_ids=ids[:, :cut], past_key_values=cache, use_cache=True)
        logits = new(input_ids=ids[:, cut:], past_key_values=cache, use_cache=True).logits[0].double()
    lp = torch.log_softmax(logits, -1)[:-1]      # row j predicts token at position cut + j + 1
    got = lp[torch.arange(lp.shape[0]), ids[0, cut + 1:]].numpy()
    return np.abs(got - out.logprobs[a:])


def test_abort_mode_ends_started_requests_with_partial_output(tiny_policy, policies, prompt_ids):
    old, new, _ = policies

    async def main():
        async with engine(tiny_policy, interrupt="abort") as eng:
            tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=100, ignore_eos=True, seed=i))
                     for i, p in enumerate(prompt_ids[:4])]
            await wait_tokens(eng, 4 * 10)
            await eng.update_weights(new.state_dict(), version=1)
            first = await asyncio.gather(*tasks)
            later = await eng.generate(prompt_ids[5], max_new_tokens=30, seed=9)
            return first, later

    first, later = run(main())
    for o in first:
        assert o.finish_reason == "abort" and 0 < o.n_tokens < 100
        assert set(o.versions.tolist()) == {0} and gaps(old, o).max() < 1e-4
    assert set(later.versions.tolist()) == {1} and gaps(new, later).max() < 1e-4


def test_refused_pushes_leave_the_engine_serving_the_old_weights(tiny_policy, policies, prompt_ids):
    old, new, _ = policies
    good = new.state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    bad = {
        "unknown tensor": {**good, "model.layers.9.foo": torch.zeros(3)},
        "has shape": {**good, name: torch.zeros(7, 7)},
        "has dtype": {**good, name: good[name].to(torch.bfloat16)},
        "missing": {k: v for k, v in good.items() if k != name},
        "NaN or inf": {**good, name: torch.full_like(good[name], float("nan"))},
    }

    async def main():
        async with engine(tiny_policy) as eng:
            for what, sd in bad.items():
                with pytest.raises(WeightUpdateError, match=what):
                    await eng.update_weights(sd, version=1)
            with pytest.raises(WeightUpdateError, match="version"):
                await eng.update_weights(good, version=0)
            assert eng.version == 0 and eng.stats()["weight_updates"] == 0
            return await asyncio.gather(*[eng.generate(p, max_new_tokens=32, seed=i)
                                          for i, p in enumerate(prompt_ids[:8])])

    outs = run(main())
    assert max(gaps(old, o).max() for o in outs) < 1e-4


def test_a_crash_inside_vllm_fails_every_request_at_once(tiny_policy, policies, prompt_ids):
    """A real vLLM failure: the engine's weight spec is made to disagree with the served model, so a wrongly
    shaped tensor passes our validation and vLLM's reload breaks (what validation exists to prevent)."""
    import dataclasses

    name = "model.layers.0.mlp.up_proj.weight"

    async def main():
        eng = engine(tiny_policy)
        await eng.start()
        eng.weight_spec = dataclasses.replace(eng.weight_spec, shapes={**eng.weight_spec.shapes, name: (3, 3)})
        broken = {k: v for k, v in policies[1].state_dict().items()}
        broken[name] = torch.zeros(3, 3)
        tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=200, ignore_eos=True, seed=i))
                 for i, p in enumerate(prompt_ids[:4])]
        await wait_tokens(eng, 8)
        t0 = time.monotonic()
        with pytest.raises(EngineDeadError):
            await eng.update_weights(broken, version=1)
            await asyncio.gather(*tasks)  # if the reload "succeeded", the next step must die
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, EngineDeadError) for r in results), results
        with pytest.raises(EngineDeadError, match="died"):
            await eng.generate(prompt_ids[0], max_new_tokens=4)
        assert time.monotonic() - t0 < 30
        await eng.close()
        assert not eng._thread.is_alive()
        async with engine(tiny_policy) as again:     # the dead engine gave the process back
            assert (await again.generate(prompt_ids[0], max_new_tokens=4, ignore_eos=True)).n_tokens == 4

    run(main())


def _vllm_tmp_files() -> set[str]:
    import glob
    import tempfile

    return set(glob.glob(f"{tempfile.gettempdir()}/vllm_dist_*"))


def test_close_leaves_nothing_behind_and_a_second_engine_starts(tiny_policy, prompt_ids):
    import psutil

    threads_before = {t.ident for t in threading.enumerate()}
    tmp_before = _vllm_tmp_files()
    # processes that were already there (the multiprocessing resource tracker an earlier test's spawned learner
    # ranks started lives as long as this interpreter, by design) are not the engine's
    children_before = {c.pid for c in psutil.Process().children(recursive=True)}

    async def one_engine(seed):
        async with engine(tiny_policy) as eng:
            return await eng.generate(prompt_ids[0], max_new_tokens=16, seed=seed)

    a = run(one_engine(5))
    left = [f"{t.name} ({type(t).__name__})" for t in threading.enumerate() if t.ident not in threads_before]
    assert left == [], f"threads left behind: {left}"
    assert not [t for t in threading.enumerate() if type(t).__name__ == "TMonitor"], "tqdm monitor left running"
    assert [c for c in psutil.Process().children(recursive=True) if c.pid not in children_before] == []
    assert _vllm_tmp_files() <= tmp_before, f"temp files left: {_vllm_tmp_files() - tmp_before}"
    b = run(one_engine(5))                       # a second engine in the same process
    assert a.output_ids == b.output_ids          # same seed, same weights -> same tokens


def test_cancel_and_abort_end_one_request_only(tiny_policy, prompt_ids):
    async def main():
        async with engine(tiny_policy) as eng:
            victim = asyncio.create_task(eng.generate(prompt_ids[0], max_new_tokens=300, ignore_eos=True))
            by_id = asyncio.create_task(eng.generate(prompt_ids[1], max_new_tokens=300, ignore_eos=True,
                                                     request_id="mine"))
            other = asyncio.create_task(eng.generate(prompt_ids[2], max_new_tokens=40, ignore_eos=True, seed=1))
            await wait_tokens(eng, 30)
            victim.cancel()
            await eng.abort("mine")
            aborted = await by_id
            with pytest.raises(asyncio.CancelledError):
                await victim
            done = await other
            await asyncio.sleep(0.05)
            return aborted, done, eng.stats()

    aborted, done, stats = run(main())
    assert aborted.finish_reason == "abort" and 0 < aborted.n_tokens < 300
    assert done.finish_reason == "length" and done.n_tokens == 40
    assert stats["requests_aborted"] == 2 and stats["running"] == 0 and stats["waiting"] == 0


def test_event_loop_keeps_ticking_while_the_engine_is_busy(tiny_policy, prompt_ids):
    async def main():
        async with engine(tiny_policy) as eng:
            ticks, gaps_s, stop = [], [], asyncio.Event()

            async def heartbeat():
                last = time.monotonic()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.monotonic()
                    gaps_s.append(now - last)
                    ticks.append(now)
                    last = now

            hb = asyncio.create_task(heartbeat())
            t0 = time.monotonic()
            await asyncio.gather(*[eng.generate(p, max_new_tokens=128, ignore_eos=True) for p in prompt_ids[:32]])
            busy = time.monotonic() - t0
            stop.set()
            await hb
            return busy, len([t for t in ticks if t <= t0 + busy]), max(gaps_s)

    busy, n_ticks, worst_gap = run(main())
    assert busy > 0.2
    assert n_ticks >= busy / 0.05, f"heartbeat ticked {n_ticks} times in {busy:.2f} s"
    assert worst_gap < 0.5, f"event loop stalled for {worst_gap:.3f} s"


def test_thread_policy_is_per_thread_and_the_learner_gets_both_cores_while_paused(tiny_policy, prompt_ids):
    from arealnb.runtime import set_torch_threads, torch_threads

    async def main():
        async with engine(tiny_policy) as eng:
            policy = eng.thread_policy
            assert await eng.engine_threads() == policy.engine == 1
            assert eng.learner_threads() == policy.learner_with_engine == 1
            set_torch_threads(2)                      # the learner's thread: does not touch the engine's
            assert torch_threads() == 2 and await eng.engine_threads() == 1
            await eng.pause()
            assert eng.learner_threads() == policy.learner_alone == 2
            pending = asyncio.create_task(eng.generate(prompt_ids[0], max_new_tokens=8, ignore_eos=True))
            await asyncio.sleep(0.1)
            assert not pending.done()                 # queued while paused
            await eng.resume()
            assert eng.learner_threads() == 1
            assert (await pending).n_tokens == 8

    run(main())


def test_bad_requests_are_refused_and_the_engine_goes_on(tiny_policy, prompt_ids):
    async def main():
        eng = engine(tiny_policy, max_model_len=64)
        with pytest.raises(EngineClosedError, match="start"):
            await eng.generate(prompt_ids[0])
        async with eng:
            with pytest.raises(InvalidRequestError, match="non-empty"):
                await eng.generate([])
            with pytest.raises(InvalidRequestError, match="max_model_len=64"):
                await eng.generate([1] + [5] * 100, max_new_tokens=8)
            ok = await eng.generate(prompt_ids[0], max_new_tokens=4, ignore_eos=True)
        with pytest.raises(EngineClosedError):
            await eng.generate(prompt_ids[0])
        return ok

    assert run(main()).n_tokens == 4
