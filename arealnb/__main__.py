"""``python -m arealnb``: the command line.

``python -m arealnb policy [--size tiny|small] [--seed N] [--steps N] [--evaluate N]`` builds (or finds in the
cache) the embedded policy, prints its folder, and with ``--evaluate`` samples N fresh problems through vLLM
and prints the reward by number of terms.
"""

from __future__ import annotations

import argparse
import json
import sys


def _policy(args) -> int:
    from .models import build_policy
    from .tasks import RunningSum

    path = build_policy(size=args.size, seed=args.seed, steps=args.steps, progress=sys.stderr.isatty())
    meta = json.loads((path / "arealnb_build.json").read_text())
    print(f"{args.size} policy: {path} ({meta['n_params']:,} parameters, final loss {meta['final_loss']:.3f}, "
          f"built in {meta['train_seconds']:.0f} s)")
    if args.evaluate:
        import pandas as pd

        from .diagnostics import evaluate_policy

        reward, df = evaluate_policy(path, RunningSum(), n=args.evaluate)
        by_k = df.groupby(pd.cut(df.n_terms, [1, 2, 3, 4, 6, 10, 32]), observed=True).reward.agg(["size", "mean"])
        print(f"reward {reward:.3f} on {args.evaluate} problems (temperature 1); by number of terms:")
        print(by_k.round(3).to_string())
    return 0


def main(argv: list[str] | None = None) -> int:
    from .models import SIZES

    ap = argparse.ArgumentParser(prog="python -m arealnb", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("policy", help="build (or find) the embedded policy; optionally evaluate it")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="policy size (default: tiny)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--steps", type=int, default=None, help="AdamW steps (default: per size)")
    p.add_argument("--evaluate", type=int, default=0, metavar="N",
                   help="then sample N fresh problems through vLLM and print the reward by number of terms")
    p.set_defaults(run=_policy)
    args = ap.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
