"""matplotlib figures from arealnb records. Figures only: no computation beyond what they show.

Each function draws on an ``ax`` it is given (or a new one) and returns it, so the dashboard, the notebooks and
users' own figures share them. :func:`run_figure` puts the dashboard's five panels on one figure;
:func:`render_png` draws it from plain data, for the dashboard's renderer process.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ACTIVITY_COLOURS = {"generate": "#2a9d8f", "learn": "#264653", "push": "#e76f51", "pause": "#bbbbbb"}


def _axes(ax, figsize=(6, 3)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def version_timeline(outputs, ax=None, title: str | None = None):
    """One bar per request along its output tokens, coloured by the policy version that produced each token.

    ``outputs`` are :class:`GenerationOutput` or :class:`Trajectory` records (prompt positions, version -1,
    are left out). A colour change inside a bar is a weight update the request lived through; an ``x`` marks a
    request that ended aborted."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * max(len(outputs), 4) + 1))
    tokens = [np.asarray(o.versions)[np.asarray(o.versions) >= 0] for o in outputs]
    versions = sorted({int(x) for v in tokens for x in v})
    cmap = plt.get_cmap("viridis", max(len(versions), 2))
    colour = {v: cmap(i) for i, v in enumerate(versions)}
    segments: dict[int, list] = {}                     # version -> [(row, start, length)]: one collection each
    for i, (o, v) in enumerate(zip(outputs, tokens, strict=True)):
        if len(v) == 0:
            continue
        cuts = np.flatnonzero(np.diff(v)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(v)]])
        for a, b in zip(starts, ends, strict=True):
            segments.setdefault(int(v[a]), []).append((i, a, b - a))
        if o.finish_reason == "abort":
            ax.plot(len(v), i, "x", color="crimson")
    for ver, segs in segments.items():
        ax.add_collection(PolyCollection([[(a, i - 0.4), (a, i + 0.4), (a + n, i + 0.4), (a + n, i - 0.4)]
                                          for i, a, n in segs], facecolors=colour[ver], edgecolors="none"))
    if segments:
        ax.set_xlim(0, max(len(v) for v in tokens) * 1.02)
    shown = versions if len(versions) <= 8 else versions[:: max(1, len(versions) // 6)] + [versions[-1]]
    handles = [Patch(color=colour[v], label=f"version {v}") for v in dict.fromkeys(shown)]
    ax.set(xlabel="output token", ylabel="request", title=title or "policy version of each generated token")
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_ylim(max(len(outputs), 1) - 0.5, -0.5)
    return ax


def staleness_histogram(counts, eta: float, ax=None, title: str | None = None):
    """Share of consumed tokens by staleness (learner version − token version), with the bound η drawn."""
    ax = _axes(ax)
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total > 0:
        ax.bar(np.arange(len(counts)), counts / total, color="#457b9d", width=0.8)
    if np.isfinite(eta):
        ax.axvline(eta + 0.5, color="crimson", ls="--", lw=1.5, label=f"η = {int(eta)}")
        ax.legend(loc="best", fontsize=8)
        ax.set_xlim(-0.6, max(len(counts), int(eta) + 1) + 0.1)
    ax.set(xlabel="staleness (versions)", ylabel="share of tokens",
           title=title or f"staleness of {int(total):,} consumed tokens")
    return ax


def _smooth(y, n: int = 5):
    y = np.asarray(y, dtype=float)
    if len(y) < n:
        return y
    k = np.ones(n) / n
    head = np.cumsum(y[: n - 1]) / np.arange(1, n)
    return np.concatenate([head, np.convolve(y, k, mode="valid")])


def throughput_curves(metrics, ax=None, title: str | None = None, smooth: int = 5):
    """Generation tok/s and effective training tok/s (consumed tokens per second) against wall-clock."""
    ax = _axes(ax)
    if len(metrics):
        t = metrics["wall_s"].to_numpy()
        ax.plot(t, _smooth(metrics["gen_tok_per_s"], smooth), label="generated", color="#2a9d8f")
        ax.plot(t, _smooth(metrics["effective_tok_per_s"], smooth), label="trained on (effective)", color="#264653")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="wall-clock (s)", ylabel="tokens / s", title=title or "throughput")
    ax.set_ylim(bottom=0)
    return ax


def reward_curve(metrics, ax=None, title: str | None = None, label: str | None = None, smooth: int = 10,
                 x: str = "wall_s", color=None):
    """Mean reward of each consumed batch (dots) and its running mean (line) against wall-clock or steps."""
    ax = _axes(ax)
    if len(metrics):
        t = metrics[x].to_numpy()
        (line,) = ax.plot(t, _smooth(metrics["reward_mean"], smooth), label=label, color=color)
        ax.plot(t, metrics["reward_mean"].to_numpy(), ".", ms=2, alpha=0.3, color=line.get_color())
        if label:
            ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="wall-clock (s)" if x == "wall_s" else x, ylabel="reward", title=title or "reward of consumed batches")
    return ax


def activity_gantt(activity, ax=None, title: str | None = None, window: float | None = None):
    """Engine-vs-learner timeline from :meth:`Trainer.activity`: where one waits for the other, a row is empty.

    ``window`` shows only the last that many seconds (the dashboard's live view)."""
    from matplotlib.patches import Patch

    ax = _axes(ax, figsize=(7, 2))
    if len(activity):
        end = float(activity["end"].max())
        first = float(activity["start"].min())
        lo = max(end - window, first) if window else first
        shown = activity[activity["end"] > lo]
        for row, who in enumerate(("engine", "learner")):
            part = shown[(shown["who"] == who) & (shown["what"] != "wait")]
            for what, seg in part.groupby("what"):
                spans = list(zip(seg["start"].clip(lower=lo), (seg["end"] - seg["start"].clip(lower=lo)),
                                 strict=True))
                ax.broken_barh(spans, (row - 0.35, 0.7), color=ACTIVITY_COLOURS.get(what, "grey"))
        ax.set_xlim(lo, end)
        busy = {w: _busy(activity[(activity["who"] == w) & (activity["what"].isin(["generate", "learn", "push"]))],
                         lo, end) for w in ("engine", "learner")}
        ax.set_yticks([0, 1], [f"engine {busy['engine']:.0%}", f"learner {busy['learner']:.0%}"])
    else:
        ax.set_yticks([0, 1], ["engine", "learner"])
    ax.set_ylim(1.6, -0.6)
    ax.set(xlabel="wall-clock (s)", title=title or "who is busy (share of the time shown)")
    ax.legend(handles=[Patch(color=c, label=w) for w, c in ACTIVITY_COLOURS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.35), ncol=4, fontsize=7, frameon=False)
    return ax


def _busy(segments, lo: float, hi: float) -> float:
    if hi <= lo or not len(segments):
        return 0.0
    a = segments["start"].clip(lower=lo, upper=hi).to_numpy()
    b = segments["end"].clip(lower=lo, upper=hi).to_numpy()
    return float((b - a).sum() / (hi - lo))


def run_figure(metrics, activity, staleness_counts, eta: float, trajectories=(), fig=None, window: float = 30.0,
               title: str | None = None):
    """The dashboard's panels on one figure: staleness, throughput, reward, activity, recent trajectories.

    ``fig`` is reused (cleared) when given: the live dashboard redraws into one Agg figure."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(13, 7.2))
    axes = getattr(fig, "_arealnb_axes", None)
    if axes is None or fig.axes != axes:
        fig.clear()
        gs = fig.add_gridspec(3, 3, height_ratios=[1, 1, 1.1], hspace=0.9, wspace=0.3)
        axes = [fig.add_subplot(g) for g in (gs[0, 0], gs[0, 1], gs[0, 2], gs[1, :], gs[2, :])]
        fig._arealnb_axes = axes
    else:                                   # a redraw: the axes stay, their contents go
        for ax in axes:
            ax.cla()
    staleness_histogram(staleness_counts, eta, ax=axes[0])
    throughput_curves(metrics, ax=axes[1])
    reward_curve(metrics, ax=axes[2])
    activity_gantt(activity, ax=axes[3], window=window,
                   title=f"who is busy: the last {window:.0f} s (share of the time shown)" if window else None)
    version_timeline(list(trajectories), ax=axes[4],
                     title="longest recent trajectories: colour = policy version that produced each token")
    if title:
        fig.suptitle(title)
    return fig


class VersionBar(NamedTuple):
    """What :func:`version_timeline` needs of a record: per-token versions (-1 = prompt) and how it ended."""

    versions: np.ndarray
    finish_reason: str


_render_fig = None


def render_png(payload: dict) -> bytes:
    """:func:`run_figure` to PNG bytes from plain data (picklable: the dashboard calls it in a worker process).

    ``payload``: ``metrics`` (DataFrame with wall_s, gen_tok_per_s, effective_tok_per_s, reward_mean),
    ``activity``, ``counts``, ``eta``, ``bars`` (:class:`VersionBar` list), ``window``, ``dpi``, ``size``."""
    global _render_fig
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if _render_fig is None:
        _render_fig = Figure(figsize=payload.get("size", (13, 7.2)))
        FigureCanvasAgg(_render_fig)
    run_figure(payload["metrics"], payload["activity"], payload["counts"], payload["eta"], payload["bars"],
               fig=_render_fig, window=payload["window"], title=payload.get("title"))
    buf = io.BytesIO()
    _render_fig.savefig(buf, format="png", dpi=payload.get("dpi", 72))
    return buf.getvalue()


def serve_renderer() -> None:
    """The dashboard's renderer process: read pickled :func:`render_png` payloads from stdin (8-byte length
    prefix), write PNG bytes back the same way; exit at end of input (the kernel went away). Anything printed
    goes to stderr: stdout carries only the frames."""
    import os
    import pickle
    import struct
    import sys

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        os.nice(19)            # draw with the CPU time the engine and the learner leave idle
    except OSError:
        pass
    inp = sys.stdin.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        payload = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        try:
            body, ok = render_png(payload), b"\x01"
        except Exception as exc:  # noqa: BLE001 - reported to the dashboard, the renderer stays up
            body, ok = f"{type(exc).__name__}: {exc}".encode(), b"\x00"
        out.write(ok + struct.pack("<Q", len(body)) + body)
        out.flush()
