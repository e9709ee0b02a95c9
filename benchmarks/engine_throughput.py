"""Asyncio engine vs plain vLLM: throughput, and the latency of a weight update and of pause/resume.

    python benchmarks/engine_throughput.py [--sizes tiny,small] [--tokens 128] [--repeats 3] [--push-only]

For each policy and each concurrency c in 1, 8, 32, 64: c prompts each generate exactly ``--tokens`` tokens
(EOS ignored), fp32, eager, same KV cache and batch limit; median of ``--repeats`` runs after a warm-up.
``offline`` is vLLM's own ``LLM.generate`` (arealnb.offline) on the main thread with torch's default thread count
(2 here). ``engine_1t`` is ``VLLMEngine`` (c concurrent ``generate`` calls from asyncio tasks) on its default of 1
torch thread, ``engine_2t`` on 2 (``engine_threads(2)``). ``ratio`` = the better engine column / offline: our
wrapper's overhead (target >= 0.9). Measured here: an OpenMP team of 2 started from a non-main thread runs
slower than one started from the main thread, so the engine thread gains little or nothing from a second thread.
Then, on the engine: a full weight push (validation + reload) idle and with 64 requests in flight
(interrupt="recompute"), and ``pause()`` / ``resume()`` with 64 requests in flight.

Then the cost of a push in each interrupt mode (table ``engine_push_cost``): 64 requests of 256 tokens in flight,
each with >= 32 tokens; ``push_ms`` = pause + update_weights + resume; ``next64_ms`` = from resume until the engine
has produced 64 more tokens (one decode step's worth when nothing is recomputed); ``recompute_tokens`` re-prefilled
per push (prompt + output so far of every running request under ``recompute``); ``aborted`` requests per push
(``abort`` ends the started ones: their tokens are wasted for a trainer that needs whole answers). Median of
``--repeats`` pushes. This is the measurement behind the trainer's default interrupt mode.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import pandas as pd
import torch
from _report import report

from arealnb.engines import VLLMEngine
from arealnb.models import build_policy, load_policy
from arealnb.offline import OfflineGenerator
from arealnb.tasks import RunningSum

KV = {"tiny": 64 << 20, "small": 256 << 20}


def offline_rates(path, prompts, conc, tokens, repeats, kv):
    rates = {}
    with OfflineGenerator(path, dtype="float32", max_num_seqs=64, kv_cache_bytes=kv) as gen:
        for c in conc:
            batch = (prompts * (c // len(prompts) + 1))[:c]
            gen.generate(batch, max_new_tokens=8, ignore_eos=True)
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                gen.generate(batch, max_new_tokens=tokens, ignore_eos=True, seed=r)
                times.append(time.perf_counter() - t0)
            rates[c] = c * tokens / float(np.median(times))
    return rates


async def engine_rates(path, prompts, conc, tokens, repeats, kv, state_dict, threads):
    rates, lat = {}, {}
    async with VLLMEngine(path, dtype="float32", max_num_seqs=64, kv_cache_bytes=kv) as eng:
        for n in threads:
            await eng.engine_threads(n)
            for c in conc:
                batch = (prompts * (c // len(prompts) + 1))[:c]
                await asyncio.gather(*[eng.generate(p, max_new_tokens=8, ignore_eos=True) for p in batch])
                times = []
                for r in range(repeats):
                    t0 = time.perf_counter()
                    await asyncio.gather(*[eng.generate(p, max_new_tokens=tokens, ignore_eos=True, seed=r + i)
                                           for i, p in enumerate(batch)])
                    times.append(time.perf_counter() - t0)
                rates[(n, c)] = c * tokens / float(np.median(times))
        await eng.engine_threads(1)
        version = 0
        idle, busy, pause, resume = [], [], [], []
        for _ in range(repeats + 2):
            version += 1
            t0 = time.perf_counter()
            await eng.update_weights(state_dict, version)
            idle.append(time.perf_counter() - t0)
        for _ in range(repeats + 2):
            tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=tokens, ignore_eos=True))
                     for p in (prompts * 2)[:64]]
            while eng.stats()["running"] < 64:
                await asyncio.sleep(0.001)
            t0 = time.perf_counter()
            await eng.pause()
            pause.append(time.perf_counter() - t0)
            version += 1
            t0 = time.perf_counter()
            await eng.update_weights(state_dict, version)
            busy.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await eng.resume()
            resume.append(time.perf_counter() - t0)
            await asyncio.gather(*tasks)
        lat = {"update_idle_ms": 1e3 * np.median(idle), "update_64_inflight_ms": 1e3 * np.median(busy),
               "pause_ms": 1e3 * np.median(pause), "resume_ms": 1e3 * np.median(resume)}
    return rates, lat


async def push_costs(path, prompts, kv, state_dict, repeats, mode):
    rows = []
    async with VLLMEngine(path, dtype="float32", max_num_seqs=64, kv_cache_bytes=kv, interrupt=mode) as eng:
        for v in range(1, repeats + 2):
            base = eng.stats()["tokens_generated"]
            tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=256, ignore_eos=True))
                     for p in (prompts * 2)[:64]]
            while eng.stats()["tokens_generated"] < base + 64 * 32:      # all 64 decode in lockstep
                await asyncio.sleep(0.001)
            t0 = time.perf_counter()
            await eng.pause()
            await eng.update_weights(state_dict, v)
            await eng.resume()
            t1 = time.perf_counter()
            before = eng.stats()                 # published by resume, before the engine's next step
            while eng.stats()["tokens_generated"] < before["tokens_generated"] + 64 and not all(
                    t.done() for t in tasks):
                await asyncio.sleep(0.0005)
            t2 = time.perf_counter()
            after = eng.stats()
            outs = await asyncio.gather(*tasks)
            if v > 1:                                          # the first push warms up
                rows.append({"push_ms": 1e3 * (t1 - t0), "next64_ms": 1e3 * (t2 - t1),
                             "recompute_tokens": after["recompute_tokens"] - before["recompute_tokens"],
                             "aborted": sum(o.finish_reason == "abort" for o in outs)})
    return pd.DataFrame(rows).median().to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--push-only", action="store_true", help="only the per-interrupt-mode push costs")
    args = ap.parse_args()
    conc = [int(c) for c in args.concurrency.split(",")]
    rows, lat_rows, push_rows = [], [], []
    for size in args.sizes.split(","):
        path = build_policy(size=size)
        model, tok = load_policy(path)
        prompts = [tok(p.prompt)["input_ids"] for p in RunningSum().sample(np.random.default_rng(0), 64)]
        for mode in ("recompute", "keep", "abort"):
            cost = asyncio.run(push_costs(path, prompts, KV[size], model.state_dict(), args.repeats, mode))
            push_rows.append({"policy": size, "interrupt": mode, **{k: round(v, 1) for k, v in cost.items()}})
        if args.push_only:
            continue
        n_off = torch.get_num_threads()      # what LLM.generate uses in this thread
        off = offline_rates(path, prompts, conc, args.tokens, args.repeats, KV[size])
        eng, lat = asyncio.run(engine_rates(path, prompts, conc, args.tokens, args.repeats, KV[size],
                                            model.state_dict(), threads=(n_off, 1)))
        for c in conc:
            best = max(eng[(1, c)], eng[(n_off, c)])
            rows.append({"policy": size, "concurrency": c, f"offline_{n_off}t_tok_s": round(off[c]),
                         "engine_1t_tok_s": round(eng[(1, c)]), f"engine_{n_off}t_tok_s": round(eng[(n_off, c)]),
                         "ratio": round(best / off[c], 3)})
        lat_rows.append({"policy": size, **{k: round(v, 1) for k, v in lat.items()}})
    report(pd.DataFrame(push_rows), "engine_push_cost")
    if not args.push_only:
        print()
        report(pd.DataFrame(rows), "engine_throughput")
        print()
        report(pd.DataFrame(lat_rows), "engine_latency")


if __name__ == "__main__":
    main()
