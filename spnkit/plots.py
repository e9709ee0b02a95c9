"""Comparison plots (matplotlib) over ``spnkit.compare``'s tidy results.

Each function draws on ``ax`` (a new figure when None) and returns the axes, so notebooks can compose them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import battle, query_keys, summary, wins


def _ax(ax, figsize=(5, 3.2)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def _methods(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["method"]))


def win_bars(df: pd.DataFrame, ax=None):
    """WINCNT per method: queries on which the method is within 1e-6 of the best value found."""
    ax = _ax(ax)
    d = df.assign(win=wins(df))
    methods = _methods(df)
    counts = d.groupby("method")["win"].sum().reindex(methods)
    n = d.groupby(query_keys(d)).ngroups
    ax.bar(methods, counts.to_numpy(), color="tab:blue")
    ax.axhline(n, color="0.4", lw=0.8, ls="--")
    ax.set_ylabel(f"wins (of {n} queries)")
    ax.set_title("WINCNT: best value found (within 1e-6)")
    ax.tick_params(axis="x", rotation=30)
    return ax


def gap_to_best(df: pd.DataFrame) -> pd.Series:
    """Per row, ``best log value for its query - this method's`` (0 for the winners; inf when impossible)."""
    best = df.groupby(query_keys(df))["log_value"].transform("max")
    gap = best - df["log_value"]
    return gap.where(~((best == -np.inf) & (df["log_value"] == -np.inf)), 0.0)


def time_quality(df: pd.DataFrame, ax=None):
    """Seconds per query (log x) against the log-probability gap to the best method (symlog y), one colour
    per method; each method's median is the large marker."""
    ax = _ax(ax)
    d = df.assign(gap=gap_to_best(df))
    for m, g in d.groupby("method", sort=False):
        pts = ax.scatter(g["seconds"], g["gap"].clip(upper=1e3), s=8, alpha=0.35, label=m)
        ax.scatter([g["seconds"].median()], [g["gap"].clip(upper=1e3).median()], s=90, marker="D",
                   color=pts.get_facecolor()[0], edgecolor="k")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("seconds per query")
    ax.set_ylabel("log gap to best")
    ax.set_title("time vs quality (diamond = median)")
    ax.legend(fontsize=7, ncol=2)
    return ax


def battle_heatmap(df: pd.DataFrame, ax=None):
    """The BATTLE matrix: row method finished, was faster *and* better than the column method."""
    ax = _ax(ax, figsize=(4.6, 4))
    b = battle(df)
    im = ax.imshow(b.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(b.columns)), b.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(b.index)), b.index)
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            ax.text(j, i, int(b.iat[i, j]), ha="center", va="center", fontsize=7,
                    color="w" if b.iat[i, j] > b.to_numpy().max() / 2 else "k")
    ax.set_xlabel("beaten")
    ax.set_ylabel("winner")
    ax.set_title("BATTLE: faster and better")
    ax.figure.colorbar(im, ax=ax, shrink=0.7)
    return ax


def setting_lines(df: pd.DataFrame, metric: str = "WINCNT", ax=None):
    """A summary metric (WINCNT, FINISH, TIMEAVG, RESAVG, RESLSE) per Q:E:H setting, one line per method."""
    ax = _ax(ax)
    s = summary(df, by=("setting",))
    order = list(dict.fromkeys(df["setting"]))
    for m in _methods(df):
        g = s[s["method"] == m].set_index("setting").reindex(order)
        ax.plot(order, g[metric].to_numpy(), marker="o", label=m)
    if metric == "TIMEAVG":
        ax.set_yscale("log")
    ax.set_xlabel("Q:E:H")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per setting")
    ax.legend(fontsize=7, ncol=2)
    return ax


def anytime_curves(results, ax=None, optimum: float | None = None):
    """Incumbent (solid) and upper bound (dashed) over time for exact solvers.

    ``results``: ``{label: MapResult}`` from ``spnkit.map(..., method="exact-...")`` (their ``.trace``).
    ``optimum``: draw the known optimum as a grey line.
    """
    ax = _ax(ax, figsize=(6.5, 3.6))
    for label, r in results.items():
        tr = r.trace
        t = tr["seconds"].clip(lower=1e-6)
        line, = ax.step(t, tr["incumbent"], where="post", label=f"{label} incumbent")
        ub = tr["upper_bound"].where(np.isfinite(tr["upper_bound"]))
        ax.step(t, ub, where="post", ls="--", color=line.get_color(), label=f"{label} bound")
    if optimum is not None:
        ax.axhline(optimum, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("log value")
    ax.set_title("anytime: incumbent (solid) and upper bound (dashed)")
    ax.legend(fontsize=7, ncol=2)
    return ax
