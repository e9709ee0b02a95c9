"""arealnb's headline number: effective training throughput of asynchronous vs synchronous RL on this machine.

    python benchmarks/rl_throughput.py [--sizes tiny,small] [--seconds 60] [--etas 0,1,2,4,8] [--warmup 3]
                                       [--interrupt keep] [--concurrency N]

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


def _cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (user + nice + system + irq + softirq + steal)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(path, size: str, mode: str, eta: float, seconds: float, warmup: int, interrupt: str,
            concurrency: int | None) -> dict:
    cfg = TrainerConfig(mode=mode, max_staleness=eta, consumer_batch_size=8, group_size=4, max_new_tokens=128,
                        lr=1e-4, seed=0, interrupt=interrupt, max_concurrent_rollouts=concurrency,
                        kv_cache_bytes=(64 if size == "tiny" else 256) << 20)
    with Trainer(cfg, path, RunningSum()) as t:
        t.run_sync(steps=warmup)
        n0 = len(t.metrics)
        es0 = None
        cpu0, self0, w0 = _cpu_busy_seconds(), _self_cpu_seconds(), time.monotonic()
        es0 = t.engine.stats()
        t.run_sync(seconds=seconds)
        elapsed = time.monotonic() - w0
        other = max(0.0, (_cpu_busy_seconds() - cpu0) - (_self_cpu_seconds() - self0)) / elapsed
        es1 = t.engine.stats()
        df = t.metrics.iloc[n0:]
    tail = df.iloc[-max(1, len(df) // 3):]
    return {
        "policy": size, "config": "sync" if mode == "sync" else f"async eta={eta}", "steps": len(df),
        "eff_tok_s": round(df.consumed_tokens.sum() / elapsed, 1),
        "gen_tok_s": round((es1["tokens_generated"] - es0["tokens_generated"]) / elapsed, 1),
        "engine_busy": round((es1["step_s"] - es0["step_s"]) / elapsed, 3),
        "learner_busy": round(df.learner_seconds.sum() / elapsed, 3),
        "staleness_avg": round(df.staleness_avg.mean(), 2), "staleness_max": int(df.staleness_max.max()),
        "reward_end": round(tail.reward_mean.mean(), 3), "other_cpu": round(other, 2),
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--seconds", type=float, default=60.0, help="timed window per configuration")
    ap.add_argument("--etas", default="0,1,2,4,8", help="async staleness bounds (inf allowed)")
    ap.add_argument("--warmup", type=int, default=3, help="learner steps before the window")
    ap.add_argument("--interrupt", default="keep", choices=["keep", "recompute", "abort"])
    ap.add_argument("--concurrency", type=int, default=None, help="max_concurrent_rollouts (default: B)")
    args = ap.parse_args()
    etas = [math.inf if e == "inf" else int(e) for e in args.etas.split(",")]
    rows = []
    for size in args.sizes.split(","):
        path = build_policy(size=size)
        configs = [("sync", 0)] + [("async", e) for e in etas]
        for mode, eta in configs:
            rows.append(run_one(path, size, mode, eta, args.seconds, args.warmup, args.interrupt, args.concurrency))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    sync = df[df.config == "sync"].set_index("policy").eff_tok_s
    df.insert(4, "x_sync", (df.eff_tok_s / df.policy.map(sync)).round(2))
    df["interrupt"] = args.interrupt
    print()
    report(df, "rl_throughput")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
