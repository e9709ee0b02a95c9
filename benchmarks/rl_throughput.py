"""arealnb's headline number: effective training throughput of asynchronous vs synchronous RL on this machine.

    python benchmarks/rl_throughput.py [--sizes tiny,small] [--seconds 60] [--etas 0,1,2,4,8] [--warmup 3]
                                       [--interrupt keep] [--concurrency N]
    python benchmarks/rl_throughput.py --dashboard [--sizes tiny] [--seconds 30] [--repeats 2]
                                       [--draw-budgets 0.15,0.05] [--modes sync,async]
    python benchmarks/rl_throughput.py --packing
    python benchmarks/rl_throughput.py --engine inprocess,remote --servers 1,2 [--learner-ranks 1,2]
    python benchmarks/rl_throughput.py --gen-only --engine inprocess,remote --servers 1,2

For each policy and each configuration — strict ``sync`` (engine paused while the learner trains on every core),
then ``async`` with η = 0, 1, 2, 4, 8 — one :class:`arealnb.Trainer` on the long-tailed ``RunningSum`` task
(B = 8 prompt groups of 4 samples, up to 128 new tokens) runs ``--warmup`` learner steps, then trains for the
same wall-clock budget (``--seconds``). Columns:

* ``eff_tok_s`` — effective training throughput (AReaL's definition): generated tokens consumed by PPO updates
  per second of the timed window; ``x_sync`` = that over the sync row of the same policy.
* ``engine_busy`` / ``learner_busy`` — fraction of the window the engine spent inside vLLM steps / the learner
  inside its steps.
* ``steps``, ``staleness_avg`` / ``staleness_max`` of consumed tokens, ``gen_tok_s`` (all generated tokens).
* ``reward_end`` — mean training-batch reward over the last third of the window's steps.
* ``other_cpu`` — cores used by other processes during the window (from /proc/stat minus this process): on 2
  cores anything above ~0.1 makes the row suspect.

``--engine remote`` runs the same configurations with the rollouts on ``--servers`` local ``vllm serve`` processes
(:mod:`arealnb.serve`, each bound to its own core, started once per server count and reused: each trainer first
loads its initial weights onto them) through :class:`arealnb.engines.RemoteVLLMEngine`; ``--learner-ranks`` adds
data-parallel learners (``learner_world_size``). Column ``engine`` says which (``in-process``, ``remote x1``, ...),
``ranks`` the learner ranks; ``x_sync`` compares with the sync row of the same policy, engine and ranks.

``--gen-only`` times generation alone, no learner (table ``rl_generation``): per engine, ``--repeats`` rounds of a
trainer-sized batch (8 groups x 4 samples of exactly 128 tokens, ``ignore_eos``) after one warm-up round;
``tok_s`` per round.

``--dashboard`` instead measures what the live :class:`arealnb.widgets.Dashboard` costs (table
``rl_dashboard``): per policy, ``sync`` and ``async eta=4`` run alternately without a dashboard and with one per
``--draw-budgets`` value (``--repeats`` times each, same budget), the dashboard drawing its PNG figure and updating its widgets exactly as
in a notebook (there is no front end to send them to: the serialisation to the kernel's socket is not timed).
``draws`` / ``draw_s`` are its redraws and the seconds they took (in its renderer process), ``draw_loop_s`` the
part spent on the kernel's event loop (gathering and pickling the panels' data).

``--packing`` instead times the learner alone (1 torch thread, table ``rl_learner_packing``): the same 10 batches
of 32 RunningSum demonstrations (8 groups x 4) per layout, one PPO step each, after 2 warm-up steps: all
sequences in one packed row, packed rows of at most 128 / 256 / 512 tokens, and a right-padded 2-D batch. On CPU
the packed-sequence attention mask is dense, so one long row pays (Σ len)² attention; rows bound it.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import numpy as np
import pandas as pd
from _report import report

from arealnb import RunningSum, Trainer, TrainerConfig
from arealnb.models import build_policy
from arealnb.serve import start_servers


def _cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (user + nice + system + irq + softirq + steal)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _kv_bytes(size: str) -> int:
    return (64 if size == "tiny" else 256) << 20


def run_one(path, size: str, mode: str, eta: float, seconds: float, warmup: int, interrupt: str,
            concurrency: int | None, learner_threads: int = 1, dashboard: float | None = None,
            servers: list | None = None, ranks: int = 1) -> dict:
    cfg = TrainerConfig(mode=mode, max_staleness=eta, consumer_batch_size=8, group_size=4, max_new_tokens=128,
                        lr=1e-4, seed=0, interrupt=interrupt, max_concurrent_rollouts=concurrency,
                        kv_cache_bytes=_kv_bytes(size), learner_threads=learner_threads,
                        rollout_servers=[s.url for s in servers] if servers else None, learner_world_size=ranks)
    with Trainer(cfg, path, RunningSum()) as t:
        t.run_sync(steps=warmup)
        n0 = len(t.metrics)
        dash = None
        if dashboard is not None:
            from arealnb.widgets import Dashboard

            dash = Dashboard(t, draw_budget=dashboard)
        cpu0, self0, w0 = _cpu_busy_seconds(), _self_cpu_seconds(), time.monotonic()
        es0 = t.engine.stats()
        t.run_sync(seconds=seconds)
        elapsed = time.monotonic() - w0
        other = max(0.0, (_cpu_busy_seconds() - cpu0) - (_self_cpu_seconds() - self0)) / elapsed
        es1 = t.engine.stats()
        df = t.metrics.iloc[n0:]
        draws = (dash.draws, dash.draw_seconds, dash.loop_seconds) if dash else (0, 0.0, 0.0)
    tail = df.iloc[-max(1, len(df) // 3):]
    return {
        "policy": size, "engine": f"remote x{len(servers)}" if servers else "in-process", "ranks": ranks,
        "config": "sync" if mode == "sync" else f"async eta={eta}", "steps": len(df),
        "eff_tok_s": round(df.consumed_tokens.sum() / elapsed, 1),
        "gen_tok_s": round((es1["tokens_generated"] - es0["tokens_generated"]) / elapsed, 1),
        "engine_busy": round((es1["step_s"] - es0["step_s"]) / elapsed, 3),
        "learner_busy": round(df.learner_seconds.sum() / elapsed, 3),
        "staleness_avg": round(df.staleness_avg.mean(), 2), "staleness_max": int(df.staleness_max.max()),
        "reward_end": round(tail.reward_mean.mean(), 3), "other_cpu": round(other, 2),
        "seconds": round(elapsed, 1), "dashboard": "off" if dashboard is None else f"budget {dashboard:g}", "draws": draws[0],
        "draw_s": round(draws[1], 2), "draw_loop_s": round(draws[2], 3),
    }


def generation_only(sizes: list[str], engines: list[str], servers: list[int], repeats: int) -> None:
    import asyncio

    from arealnb.engines import RemoteVLLMEngine, VLLMEngine

    async def rounds(eng) -> list[float]:
        async def one_round():
            return await asyncio.gather(*[eng.generate_group([3, 4, 5 + g], n=4, max_new_tokens=128, seed=g,
                                                             ignore_eos=True) for g in range(8)])
        await one_round()
        out = []
        for _ in range(repeats):
            t = time.monotonic()
            await one_round()
            out.append(32 * 128 / (time.monotonic() - t))
        return out

    rows = []
    for size in sizes:
        path = build_policy(size=size)
        placements = ([0] if "inprocess" in engines else []) + (servers if "remote" in engines else [])
        for n in placements:
            async def go(eng):
                async with eng:
                    return await rounds(eng)

            if n == 0:
                tok = asyncio.run(go(VLLMEngine(path, kv_cache_bytes=_kv_bytes(size), max_num_seqs=64)))
            else:
                ss = start_servers(path, n, kv_cache_bytes=_kv_bytes(size), max_num_seqs=64)
                try:
                    tok = asyncio.run(go(RemoteVLLMEngine(ss, path)))
                finally:
                    for s in ss:
                        s.stop()
            rows.append({"policy": size, "engine": f"remote x{n}" if n else "in-process",
                         "tok_s_median": round(float(np.median(tok))), "tok_s_min": round(min(tok)),
                         "tok_s_max": round(max(tok)), "rounds": len(tok)})
            print(rows[-1], flush=True)
    report(pd.DataFrame(rows), "rl_generation")


def dashboard_cost(sizes: list[str], seconds: float, warmup: int, repeats: int, budgets: list[float],
                   modes: list[str]) -> None:
    rows = []
    for size in sizes:
        path = build_policy(size=size)
        for mode, eta in [("sync", 0), ("async", 4)]:
            if mode not in modes:
                continue
            for _ in range(repeats):
                for budget in [None, *budgets]:
                    rows.append(run_one(path, size, mode, eta, seconds, warmup, "keep", None, dashboard=budget))
                    print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    g = df.groupby(["policy", "config", "dashboard"], sort=False).agg(
        runs=("eff_tok_s", "size"), eff_tok_s=("eff_tok_s", "mean"), eff_tok_s_min=("eff_tok_s", "min"),
        eff_tok_s_max=("eff_tok_s", "max"), draws=("draws", "mean"), draw_s=("draw_s", "mean"),
        draw_loop_s=("draw_loop_s", "mean"),
        other_cpu=("other_cpu", "max")).reset_index()
    off = g[g.dashboard == "off"].set_index(["policy", "config"]).eff_tok_s
    g["x_off"] = [round(r.eff_tok_s / off[(r.policy, r.config)], 3) for r in g.itertuples()]
    print()
    report(g.round({"eff_tok_s": 1, "eff_tok_s_min": 1, "eff_tok_s_max": 1, "draws": 1, "draw_s": 2,
                    "draw_loop_s": 3}), "rl_dashboard")


def _demo_batches(n: int, seed: int = 0):
    from arealnb.api import Trajectory
    from arealnb.models import EOS_ID, build_tokenizer

    task = RunningSum()
    tok = build_tokenizer(task.alphabet)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        trajs = []
        for g, p in enumerate(task.sample(rng, 8)):
            prompt = tok(p.prompt)["input_ids"]
            ids = np.array(prompt + tok(p.demonstration, add_special_tokens=False)["input_ids"] + [EOS_ID])
            mask = np.arange(len(ids)) >= len(prompt)
            for _ in range(4):
                trajs.append(Trajectory(ids, mask, np.where(mask, -0.5, 0.0), np.where(mask, 0, -1),
                                        float(rng.random() < 0.3), g))
        out.append(trajs)
    return out


def packing(sizes: list[str]) -> None:
    import torch

    from arealnb import runtime
    from arealnb.learner import Learner

    runtime.set_torch_threads(1)
    batches = _demo_batches(12)
    tokens = sum(len(t.input_ids) for b in batches[2:] for t in b)
    rows = []
    for size in sizes:
        path = build_policy(size=size)
        for layout in (None, 128, 256, 512, "padded"):
            learner = Learner(path, TrainerConfig(pack_row_tokens=None if layout == "padded" else layout))
            if layout == "padded":                       # the same loss on a right-padded batch
                def step(b, learner=learner):
                    m = learner.model
                    T = max(len(t.input_ids) for t in b)
                    ids = torch.zeros(len(b), T, dtype=torch.long)
                    att = torch.zeros(len(b), T, dtype=torch.long)
                    for i, t in enumerate(b):
                        ids[i, :len(t.input_ids)] = torch.from_numpy(t.input_ids)
                        att[i, :len(t.input_ids)] = 1
                    lp = torch.log_softmax(m(input_ids=ids, attention_mask=att, use_cache=False).logits.float(), -1)
                    lp = lp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
                    mask = torch.stack([torch.from_numpy(np.pad(t.loss_mask, (0, T - len(t.input_ids))))
                                        for t in b])[:, 1:]
                    loss = -(lp * mask).sum() / mask.sum()
                    learner.optimizer.zero_grad()
                    loss.backward()
                    learner.optimizer.step()
            else:
                def step(b, learner=learner):
                    learner.step(b, 0)
            for b in batches[:2]:
                step(b)
            t0 = time.perf_counter()
            for b in batches[2:]:
                step(b)
            dt = time.perf_counter() - t0
            rows.append({"policy": size, "layout": "one row" if layout is None else
                         (layout if layout == "padded" else f"rows <= {layout}"),
                         "ms_per_step": round(dt / 10 * 1000, 1), "us_per_token": round(dt / tokens * 1e6, 1)})
            print(rows[-1], flush=True)
    report(pd.DataFrame(rows), "rl_learner_packing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--seconds", type=float, default=60.0, help="timed window per configuration")
    ap.add_argument("--etas", default="0,1,2,4,8", help="async staleness bounds (inf allowed)")
    ap.add_argument("--warmup", type=int, default=3, help="learner steps before the window")
    ap.add_argument("--interrupt", default="keep", choices=["keep", "recompute", "abort"])
    ap.add_argument("--concurrency", type=int, default=None, help="max_concurrent_rollouts (default: B)")
    ap.add_argument("--learner-threads", type=int, default=1, help="async learner's torch threads")
    ap.add_argument("--engine", default="inprocess", help="inprocess and/or remote (comma-separated)")
    ap.add_argument("--servers", default="1", help="--engine remote: numbers of local vllm serve processes")
    ap.add_argument("--learner-ranks", default="1", help="learner_world_size values (data-parallel learner)")
    ap.add_argument("--gen-only", action="store_true", help="only time generation on each --engine")
    ap.add_argument("--packing", action="store_true", help="only time the learner's packing layouts")
    ap.add_argument("--dashboard", action="store_true", help="only measure the live dashboard's cost")
    ap.add_argument("--repeats", type=int, default=2, help="--dashboard: runs per configuration and setting; "
                    "--gen-only: timed rounds")
    ap.add_argument("--draw-budgets", default="0.15", help="--dashboard: Dashboard(draw_budget=...) values to run")
    ap.add_argument("--modes", default="sync,async", help="--dashboard: sync (η=0) and/or async (η=4)")
    args = ap.parse_args()
    if args.dashboard:
        return dashboard_cost(args.sizes.split(","), args.seconds, args.warmup, args.repeats,
                              [float(b) for b in args.draw_budgets.split(",")], args.modes.split(","))
    if args.packing:
        return packing(args.sizes.split(","))
    if args.gen_only:
        return generation_only(args.sizes.split(","), args.engine.split(","),
                               [int(n) for n in args.servers.split(",")], args.repeats)
    etas = [math.inf if e == "inf" else int(e) for e in args.etas.split(",")]
    engines = args.engine.split(",")
    if not set(engines) <= {"inprocess", "remote"}:
        ap.error(f"--engine {args.engine!r}: expected inprocess and/or remote")
    ranks = [int(r) for r in args.learner_ranks.split(",")]
    rows = []
    for size in args.sizes.split(","):
        path = build_policy(size=size)
        configs = [("sync", 0)] + [("async", e) for e in etas]
        placements = ([0] if "inprocess" in engines else []) + \
                     ([int(n) for n in args.servers.split(",")] if "remote" in engines else [])
        for n_servers in placements:
            servers = start_servers(path, n_servers, kv_cache_bytes=_kv_bytes(size), max_num_seqs=64) \
                if n_servers else None
            try:
                for r in ranks:
                    for mode, eta in configs:
                        rows.append(run_one(path, size, mode, eta, args.seconds, args.warmup, args.interrupt,
                                            args.concurrency, args.learner_threads, servers=servers, ranks=r))
                        print(rows[-1], flush=True)
            finally:
                for s in servers or []:
                    s.stop()
    df = pd.DataFrame(rows)
    key = df.policy + "|" + df.engine + "|" + df.ranks.astype(str)
    sync = df[df.config == "sync"].assign(key=key).set_index("key").eff_tok_s
    df.insert(5, "x_sync", (df.eff_tok_s / key.map(sync)).round(2))
    df["interrupt"] = args.interrupt
    df["learner_threads"] = args.learner_threads
    print()
    report(df, "rl_throughput")


if __name__ == "__main__":
    main()
