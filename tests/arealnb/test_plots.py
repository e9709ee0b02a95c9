"""The dashboard's figure code on hand-made records (no engine): what is drawn is what the data says."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from arealnb.plots import VersionBar, render_png, run_figure, version_timeline


def _metrics(n: int, t0: float = 0.0) -> pd.DataFrame:
    t = t0 + np.arange(1, n + 1, dtype=float)
    return pd.DataFrame({"wall_s": t, "gen_tok_per_s": 100 + t, "effective_tok_per_s": 50 + t,
                         "reward_mean": np.linspace(0, 1, n)})


def _activity(end: float) -> pd.DataFrame:
    return pd.DataFrame([("engine", "generate", end - 3, end - 1), ("learner", "learn", end - 2, end)],
                        columns=["who", "what", "start", "end"])


def test_version_timeline_draws_one_rectangle_per_version_run():
    bars = [VersionBar(np.array([-1, -1, 0, 0, 1, 1, 1, 3]), "stop"),     # runs 0|1|3 -> 3 rectangles
            VersionBar(np.array([-1, 2, 2, 2]), "abort"),                 # one run, ended aborted
            VersionBar(np.array([-1, -1]), "length")]                     # prompt only: nothing drawn
    fig = Figure()
    ax = version_timeline(bars, ax=fig.add_subplot())
    rects = {}
    for coll in ax.collections:
        for path in coll.get_paths():
            xs, ys = path.vertices[:, 0], path.vertices[:, 1]
            rects.setdefault(round(float(ys.mean())), []).append((float(xs.min()), float(xs.max())))
    assert sorted(rects[0]) == [(0, 2), (2, 5), (5, 6)] and rects[1] == [(0, 3)] and 2 not in rects
    assert len(ax.collections) == 4                                       # one collection per version 0, 1, 2, 3
    assert [len(line.get_xdata()) for line in ax.lines] == [1]            # the abort mark


def test_run_figure_redraws_into_the_same_five_axes_with_only_the_new_data():
    fig = Figure(figsize=(13, 7.2))
    FigureCanvasAgg(fig)
    run_figure(_metrics(10), _activity(10.0), [5, 3], 4, [], fig=fig)
    axes = list(fig.axes)
    run_figure(_metrics(20, t0=100.0), _activity(120.0), [1, 1, 1], 4, [], fig=fig)
    assert fig.axes == axes and len(axes) == 5
    lines = axes[1].lines                                                 # throughput: the second call's 2 curves
    assert len(lines) == 2 and list(lines[0].get_xdata()) == list(_metrics(20, t0=100.0).wall_s)
    assert len(axes[0].patches) == 3                                      # histogram bars of the second counts
    assert axes[3].get_xlim()[1] == 120.0
    fig.clear()                                                           # a figure used for something else is rebuilt
    fig.add_subplot()
    run_figure(_metrics(5), _activity(5.0), [1], 4, [], fig=fig)
    assert len(fig.axes) == 5


def test_render_png_is_a_png_of_the_payload():
    payload = {"metrics": _metrics(30), "activity": _activity(30.0), "counts": np.array([3, 2, 1]), "eta": 2,
               "window": 30.0, "dpi": 50, "bars": [VersionBar(np.array([-1, 0, 1]), "stop")]}
    png = render_png(payload)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
