"""Shared by the benchmark scripts: print a table, write a CSV with the machine's context."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def context() -> dict:
    """What else was running matters on 2 cores: record the load average next to every result."""
    load1, _, _ = os.getloadavg()
    return {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "host_cpus": os.cpu_count(),
            "loadavg_1min": round(load1, 2), "python": platform.python_version()}


def report(df: pd.DataFrame, name: str) -> Path:
    ctx = context()
    out = df.assign(**ctx)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    out.to_csv(path, index=False)
    print(df.to_string(index=False))
    print(f"\n[{name}] {ctx['when']}, load average {ctx['loadavg_1min']} on {ctx['host_cpus']} CPUs -> {path}")
    return path
