"""matplotlib figures from arealnb records. Figures only: no computation beyond what they show."""

from __future__ import annotations

import numpy as np


def version_timeline(outputs, ax=None, title: str | None = None):
    """One bar per request along its output tokens, coloured by the policy version that produced each token."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * max(len(outputs), 4) + 1))
    versions = sorted({int(v) for o in outputs for v in o.versions})
    cmap = plt.get_cmap("viridis", max(len(versions), 2))
    colour = {v: cmap(i) for i, v in enumerate(versions)}
    for i, o in enumerate(outputs):
        v = np.asarray(o.versions)
        if len(v) == 0:
            continue
        cuts = np.flatnonzero(np.diff(v)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(v)]])
        for a, b in zip(starts, ends, strict=True):
            ax.broken_barh([(a, b - a)], (i - 0.4, 0.8), color=colour[int(v[a])])
        if o.finish_reason == "abort":
            ax.plot(len(v), i, "x", color="crimson")
    from matplotlib.patches import Patch

    handles = [Patch(color=colour[v], label=f"version {v}") for v in versions]
    ax.set(xlabel="output token", ylabel="request", title=title or "policy version of each generated token")
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.invert_yaxis()
    return ax
