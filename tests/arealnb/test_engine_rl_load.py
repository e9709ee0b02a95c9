"""VLLMEngine under the load and inputs of an RL loop (issue 17): seeded requests with frequent pushes in every
interrupt mode, the sampler's log-probs against an HF recompute, every bad request typed, one engine per
process, groups, cost counters, pushes from a learner thread, phase listeners, vLLM pass-through arguments."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from arealnb.engines.vllm_engine import VLLMEngine
from arealnb.errors import ConfigError, EngineInUseError, InvalidRequestError, WeightUpdateError
from arealnb.models import load_policy, token_logprobs
from arealnb.tasks import RunningSum

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TIMEOUT = 240


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture(scope="module")
def model_tok(tiny_policy):
    return load_policy(tiny_policy)


@pytest.fixture(scope="module")
def prompts(model_tok):
    _, tok = model_tok
    return [tok(p.prompt)["input_ids"] for p in RunningSum().sample(np.random.default_rng(11), 200)]


def engine(path, **kw) -> VLLMEngine:
    kw.setdefault("kv_cache_bytes", 32 << 20)
    return VLLMEngine(path, dtype="float32", **kw)


@pytest.mark.parametrize("mode", ["recompute", "keep", "abort"])
def test_seeded_load_with_frequent_pushes_survives_every_interrupt_mode(tiny_policy, model_tok, prompts, mode):
    """200 seeded requests (1..300 tokens) and a push every 50 ms: chunked prefill used to discard a sample and
    rewind a CPU generator ("CPU Generator does not use offset"), killing the engine within seconds."""
    model, _ = model_tok
    sd = model.state_dict()
    lens = np.random.default_rng(0).integers(1, 301, len(prompts))

    async def main():
        async with engine(tiny_policy, interrupt=mode) as eng:
            tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=int(n), ignore_eos=True, seed=i))
                     for i, (p, n) in enumerate(zip(prompts, lens, strict=True))]
            v = 0
            while not all(t.done() for t in tasks) and v < 40:
                await asyncio.sleep(0.05)
                v += 1
                await eng.update_weights(sd, v)
            return await asyncio.gather(*tasks), eng.stats(), v

    outs, stats, pushes = run(main())
    assert pushes >= (2 if mode == "abort" else 5)
    for o, n in zip(outs, lens, strict=True):
        if mode == "abort" and o.finish_reason == "abort":
            assert 0 < o.n_tokens < n
        else:
            assert o.finish_reason == "length" and o.n_tokens == n
        assert np.all(np.diff(o.versions) >= 0) and len(o.logprobs) == o.n_tokens
    if mode == "recompute":
        assert stats["recompute_tokens"] > 0 and stats["recompute_step_s"] > 0
    assert stats["prefill_tokens"] >= sum(len(p) for p in prompts)


def test_seeds_reproduce_and_out_of_range_seeds_are_refused(tiny_policy, prompts):
    async def main():
        async with engine(tiny_policy) as eng:
            for bad in (2**64, -1, 2.7, True, "1"):
                with pytest.raises(InvalidRequestError, match="seed"):
                    await eng.generate(prompts[0], max_new_tokens=4, seed=bad)
            big = await eng.generate(prompts[0], max_new_tokens=20, ignore_eos=True, seed=2**64 - 1)
            a = await asyncio.gather(*[eng.generate(p, max_new_tokens=40, seed=7) for p in prompts[:60]])
            b = await asyncio.gather(*[eng.generate(p, max_new_tokens=40, seed=7) for p in prompts[:60]])
            return big, a, b

    big, a, b = run(main())
    assert big.n_tokens == 20
    assert [o.output_ids for o in a] == [o.output_ids for o in b]


def _sampler_logprobs(model, out, temperature, top_p):
    """Oracle: the sampler's distribution recomputed in float64 from a plain HF forward pass."""
    return token_logprobs(model, out.prompt_ids, out.output_ids, temperature, top_p)


@pytest.mark.parametrize(("temperature", "top_p"), [(0.5, 1.0), (1.0, 1.0), (1.3, 1.0), (1.0, 0.8), (0.7, 0.9),
                                                    (0.0, 1.0)])
def test_recorded_logprobs_are_the_samplers_distribution(tiny_policy, model_tok, prompts, temperature, top_p):
    model, _ = model_tok

    async def main():
        async with engine(tiny_policy) as eng:
            return await asyncio.gather(*[eng.generate(p, max_new_tokens=60, temperature=temperature, top_p=top_p,
                                                       seed=i) for i, p in enumerate(prompts[:16])])

    outs = run(main())
    gaps = np.concatenate([np.abs(_sampler_logprobs(model, o, temperature, top_p) - o.logprobs) for o in outs])
    assert len(gaps) > 100 and np.isfinite(gaps).all()
    assert gaps.max() < 1e-4, f"max |engine - sampler oracle| {gaps.max():.2e}"
    if temperature not in (0.0, 1.0) or top_p < 1:      # and not the model's raw log-softmax
        raw = np.concatenate([np.abs(_sampler_logprobs(model, o, 1.0, 1.0) - o.logprobs) for o in outs])
        assert raw.max() > 1e-2


def test_every_bad_request_field_is_typed_and_arrays_are_accepted(tiny_policy, prompts):
    p = prompts[0]

    async def main():
        async with engine(tiny_policy, max_model_len=128) as eng:
            ref = await eng.generate(p, max_new_tokens=12, seed=3)
            as_np = await eng.generate(np.asarray(p, dtype=np.int64), max_new_tokens=12, seed=3)
            as_torch = await eng.generate(torch.tensor(p), max_new_tokens=12, seed=3)
            cases = [
                (dict(prompt_ids=np.zeros((2, 3), dtype=np.int64)), "1-D"),
                (dict(prompt_ids=np.array([1.5, 2.0])), "1-D integer"),
                (dict(prompt_ids="1+2="), "tokenize"),
                (dict(prompt_ids=[1, 64]), "token ids in"),
                (dict(prompt_ids=[1, -2]), "token ids in"),
                (dict(max_new_tokens=None), "max_new_tokens"),
                (dict(max_new_tokens=float("inf")), "max_new_tokens"),
                (dict(max_new_tokens=2.7), "max_new_tokens"),
                (dict(max_new_tokens=0), "max_new_tokens"),
                (dict(max_new_tokens=10_000), "leaves room for"),
                (dict(temperature=float("nan")), "temperature"),
                (dict(temperature=float("inf")), "temperature"),
                (dict(temperature=-1), "temperature"),
                (dict(top_p=0), "top_p"),
                (dict(top_p=1.5), "top_p"),
                (dict(stop_token_ids=[99]), "stop_token_ids"),
                (dict(request_id=5), "request_id"),
            ]
            for kw, match in cases:
                args = {"prompt_ids": p, "max_new_tokens": 4, **kw}
                with pytest.raises(InvalidRequestError, match=match):
                    await eng.generate(**args)
            with pytest.raises(InvalidRequestError, match="n="):
                await eng.generate_group(p, n=0)
            after = await eng.generate(p, max_new_tokens=12, seed=3)
            return ref, as_np, as_torch, after

    ref, as_np, as_torch, after = run(main())
    assert ref.output_ids == as_np.output_ids == as_torch.output_ids == after.output_ids
    assert ref.meta["max_model_len"] == 128


def test_one_vllm_engine_per_process(tiny_policy, prompts):
    from arealnb.offline import OfflineGenerator

    async def concurrent():
        a, b = engine(tiny_policy), engine(tiny_policy)
        res = await asyncio.gather(a.start(), b.start(), return_exceptions=True)
        errors = [r for r in res if isinstance(r, BaseException)]
        live = [e for e, r in zip((a, b), res, strict=True) if not isinstance(r, BaseException)]
        assert len(live) == 1 and len(errors) == 1 and isinstance(errors[0], EngineInUseError), res
        assert "one engine per kernel" in str(errors[0])
        out = await live[0].generate(prompts[0], max_new_tokens=8, ignore_eos=True)
        with pytest.raises(EngineInUseError):
            OfflineGenerator(tiny_policy, kv_cache_bytes=16 << 20)
        with pytest.raises(EngineInUseError):
            await engine(tiny_policy).start()
        await live[0].close()
        async with engine(tiny_policy) as c:                 # after close, a new one starts
            again = await c.generate(prompts[0], max_new_tokens=8, ignore_eos=True)
        return out, again

    out, again = run(concurrent())
    assert out.n_tokens == again.n_tokens == 8
    with OfflineGenerator(tiny_policy, kv_cache_bytes=16 << 20) as gen:
        assert len(gen.generate([prompts[0]], max_new_tokens=4, ignore_eos=True)[0].output_ids) == 4


def test_groups_push_from_a_learner_thread_and_phase_listeners(tiny_policy, model_tok, prompts):
    model, _ = model_tok
    sd = model.state_dict()
    phases = []

    async def main():
        async with engine(tiny_policy) as eng:
            eng.add_phase_listener(lambda phase, threads: phases.append((phase, threads)))
            group = await eng.generate_group(prompts[0], n=4, max_new_tokens=30, seed=100, request_id="g")
            single = [await eng.generate(prompts[0], max_new_tokens=30, seed=100 + i) for i in range(4)]
            long = [asyncio.create_task(eng.generate(p, max_new_tokens=200, ignore_eos=True)) for p in prompts[:8]]
            results = {}

            def learner():
                try:
                    eng.push_weights({**sd, "lm_head.weight": torch.zeros(2, 2)}, version=1)
                except WeightUpdateError as err:
                    results["refused"] = str(err)
                results["seconds"] = eng.push_weights(sd, version=1)

            t = threading.Thread(target=learner)
            t.start()
            while t.is_alive():                       # the event loop keeps running meanwhile
                await asyncio.sleep(0.01)
            await eng.pause()
            await eng.resume()
            done = await asyncio.gather(*long)
            return group, single, results, done, eng.version

    group, single, results, done, version = run(main())
    assert [o.request_id for o in group] == ["g.0", "g.1", "g.2", "g.3"]
    assert [o.output_ids for o in group] == [o.output_ids for o in single]
    assert "has shape" in results["refused"] and results["seconds"] > 0 and version == 1
    assert all(o.n_tokens == 200 for o in done)
    assert phases == [("paused", 2), ("generating", 1)]


def test_engine_kwargs_pass_through_and_are_checked_before_start(tiny_policy, prompts):
    for bad, match in [({"nope": 1}, "not a vllm.EngineArgs field"), ({"logprobs_mode": "raw_logprobs"}, "fixed"),
                       ({"enable_chunked_prefill": True}, "fixed"), ({"dtype": "float32"}, "own parameter")]:
        with pytest.raises(ConfigError, match=match):
            engine(tiny_policy, engine_kwargs=bad)

    async def main():
        async with engine(tiny_policy, engine_kwargs={"max_num_batched_tokens": 8192}) as eng:
            assert eng._engine.vllm_config.scheduler_config.max_num_batched_tokens == 8192
            return await eng.generate(prompts[0], max_new_tokens=5, ignore_eos=True)

    assert run(main()).n_tokens == 5
