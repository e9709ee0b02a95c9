"""Plain vLLM (offline ``LLM.generate``, in-process, fp32, eager) throughput on the embedded policy.

    python benchmarks/offline_generation.py [--sizes tiny] [--tokens 128] [--repeats 3]

The baseline the asyncio engine is measured against. Each batch of c prompts generates exactly
``--tokens`` tokens per prompt (EOS ignored); the median of ``--repeats`` timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _report import report

from arealnb.models import build_policy, load_policy
from arealnb.offline import OfflineGenerator
from arealnb.tasks import RunningSum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny", help="comma-separated policy sizes (tiny, small)")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for size in args.sizes.split(","):
        path = build_policy(size=size)
        _, tok = load_policy(path)
        problems = RunningSum().sample(np.random.default_rng(0), 64)
        prompts = [tok(p.prompt)["input_ids"] for p in problems]
        with OfflineGenerator(path, dtype="float32", max_num_seqs=64) as gen:
            for c in map(int, args.concurrency.split(",")):
                batch = (prompts * (c // len(prompts) + 1))[:c]
                gen.generate(batch, max_new_tokens=8, ignore_eos=True)  # warm-up
                times = []
                for r in range(args.repeats):
                    t0 = time.perf_counter()
                    out = gen.generate(batch, max_new_tokens=args.tokens, ignore_eos=True, seed=r)
                    times.append(time.perf_counter() - t0)
                    assert all(len(s.output_ids) == args.tokens for s in out)
                t = float(np.median(times))
                rows.append({"policy": size, "concurrency": c, "tokens": c * args.tokens,
                             "seconds": round(t, 3), "tok_per_s": round(c * args.tokens / t)})
    report(pd.DataFrame(rows), "offline_generation")


if __name__ == "__main__":
    main()
