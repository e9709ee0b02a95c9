"""Generation and training side by side: how well do they share the 2 cores, per engine placement?

    python benchmarks/engine_overlap.py [--sizes tiny,small] [--placements inprocess,subprocess] [--seconds 20]

Placements: ``inprocess`` is arealnb's ``VLLMEngine`` (vLLM on a thread of this process); ``subprocess`` is
vLLM's ``AsyncLLM``, whose engine core always runs in a separate process (the alternative design).
Per policy and placement, phases of ``--seconds`` each: the engine alone (64 requests kept in flight), the
learner alone (fwd + bwd + AdamW on task demonstrations, in a worker thread, 1 torch thread; and 2 threads for
reference), then both at once. Overlap efficiency = gen_together / gen_alone + train_together / train_alone
(2.0 = perfect overlap on 2 cores, 1.0 = no gain over taking turns).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import numpy as np
import pandas as pd
import torch
from _report import report

from arealnb.engines import VLLMEngine
from arealnb.models import _demo_batch, build_policy, load_policy
from arealnb.runtime import set_torch_threads
from arealnb.tasks import RunningSum

KV = {"tiny": 64 << 20, "small": 256 << 20}


def train_for(model, tok, seconds: float, threads: int, stop: threading.Event | None = None) -> float:
    """Train until ``seconds`` elapse; returns trained (non-pad) tokens per second."""
    set_torch_threads(threads)
    task, rng = RunningSum(), np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    tokens, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and not (stop and stop.is_set()):
        ids, labels = _demo_batch(tok, task.sample(rng, 16))
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens += int((ids != tok.pad_token_id).sum())
    return tokens / (time.perf_counter() - t0)


async def generate_for(eng: VLLMEngine, prompts, seconds: float) -> float:
    """Keep 64 requests in flight for ``seconds``; returns generated tokens per second."""
    start_tokens, t0 = eng.stats()["tokens_generated"], time.perf_counter()

    async def worker(i):
        while time.perf_counter() - t0 < seconds:
            await eng.generate(prompts[i % len(prompts)], max_new_tokens=64, ignore_eos=True)

    await asyncio.gather(*[worker(i) for i in range(64)])
    return (eng.stats()["tokens_generated"] - start_tokens) / (time.perf_counter() - t0)


async def generate_for_asyncllm(llm, prompts, seconds: float) -> float:
    """Same load as :func:`generate_for`, through vLLM's AsyncLLM (engine core in another process)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    sp = SamplingParams(max_tokens=64, ignore_eos=True, logprobs=0, detokenize=False,
                        output_kind=RequestOutputKind.FINAL_ONLY)
    t0, tokens = time.perf_counter(), 0

    async def worker(i):
        nonlocal tokens
        n = 0
        while time.perf_counter() - t0 < seconds:
            async for chunk in llm.generate(TokensPrompt(prompt_token_ids=prompts[i % len(prompts)]), sp,
                                            request_id=f"w{i}-{n}-{t0}"):
                last = chunk
            tokens += len(last.outputs[0].token_ids)
            n += 1

    await asyncio.gather(*[worker(i) for i in range(64)])
    return tokens / (time.perf_counter() - t0)


async def measure(size: str, seconds: float, placement: str) -> dict:
    path = build_policy(size=size)
    model, tok = load_policy(path)
    prompts = [tok(p.prompt)["input_ids"] for p in RunningSum().sample(np.random.default_rng(0), 64)]
    t_start = time.perf_counter()
    if placement == "inprocess":
        eng = await VLLMEngine(path, dtype="float32", max_num_seqs=64, kv_cache_bytes=KV[size]).start()
        gen = lambda s: generate_for(eng, prompts, s)  # noqa: E731
        learner_threads = eng.learner_threads()
        close = eng.close
    else:
        from arealnb import runtime

        runtime.before_engine_build()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(
            model=str(path), dtype="float32", enforce_eager=True, kv_cache_memory_bytes=KV[size], max_num_seqs=64,
            enable_prefix_caching=False))
        gen = lambda s: generate_for_asyncllm(llm, prompts, s)  # noqa: E731
        learner_threads = 1

        async def close():
            llm.shutdown()
    startup = time.perf_counter() - t_start
    try:
        await gen(2.0)                                                      # warm-up
        gen_alone = await gen(seconds)
        train_alone_1 = await asyncio.to_thread(train_for, model, tok, seconds, 1)
        train_alone_2 = await asyncio.to_thread(train_for, model, tok, seconds, 2)
        train_task = asyncio.create_task(asyncio.to_thread(train_for, model, tok, seconds, learner_threads))
        gen_together = await gen(seconds)
        train_together = await train_task
    finally:
        await close()
    return {"policy": size, "placement": placement, "startup_s": round(startup, 1),
            "gen_alone_tok_s": round(gen_alone), "train_alone_1t_tok_s": round(train_alone_1),
            "train_alone_2t_tok_s": round(train_alone_2), "gen_together_tok_s": round(gen_together),
            "train_together_tok_s": round(train_together),
            "gen_frac": round(gen_together / gen_alone, 2), "train_frac": round(train_together / train_alone_1, 2),
            "overlap_efficiency": round(gen_together / gen_alone + train_together / train_alone_1, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--placements", default="inprocess,subprocess")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    rows = [asyncio.run(measure(s, args.seconds, p)) for s in args.sizes.split(",")
            for p in args.placements.split(",")]
    report(pd.DataFrame(rows), "engine_overlap")


if __name__ == "__main__":
    main()
