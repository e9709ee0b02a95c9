"""The live dashboard and the trainer controls it drives (pause / unpause / stop / start in the background),
on a real engine and learner; the experiment helpers on short real runs."""

from __future__ import annotations

import asyncio
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest

from arealnb import Trainer
from arealnb.errors import ConfigError, TrainerStateError
from arealnb.experiments import ablation_table, compare, default_config, default_task, version_mixture
from arealnb.widgets import Dashboard

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(autouse=True, scope="module")
def _no_renderer_left():
    """Later tests assert this process has no children: stop the dashboards' renderer process after these."""
    from arealnb.widgets import close_renderer

    yield
    close_renderer()


def _cfg(**kw):
    return default_config(**{"consumer_batch_size": 4, "group_size": 4, "max_new_tokens": 32, **kw})


def test_buttons_pause_resume_and_stop_a_background_run(tiny_policy):
    """Pause holds the run (no version change, engine paused, pause not charged to the budget); Resume
    continues; Stop ends it after the step in progress. The dashboard's counters are the trainer's."""

    async def main():
        async with Trainer(_cfg(), tiny_policy, default_task()) as t:
            dash = Dashboard(t, hz=5)
            step_counts = []
            t.subscribe(lambda ev: ev["type"] == "step" and step_counts.append(ev["staleness_counts"]))
            t0 = time.monotonic()
            task = t.start(seconds=8)
            with pytest.raises(TrainerStateError):
                t.start(seconds=1)
            while t.version < 3:
                await asyncio.sleep(0.05)
            dash.pause_button.click()
            assert dash.pause_button.description == "Resume"
            await asyncio.sleep(1.0)                      # the step in progress ends, then the hold begins
            v, held = t.version, time.monotonic()
            await asyncio.sleep(2.5)
            assert t.version == v, "a step ran while paused"
            assert t.engine.stats()["paused"] and t.status()["paused"]
            assert dash._values["state"].value == "paused"
            dash.pause_button.click()
            paused_for = time.monotonic() - held
            while t.version < v + 3:
                await asyncio.sleep(0.05)
            assert not t.engine.stats()["paused"]
            metrics = await t.wait()
            wall = time.monotonic() - t0
            await dash.redraw()
            assert task.done() and not t.is_running
            # the time paused was added to the 8 s budget
            assert wall >= 8 + paused_for - 0.5, (wall, paused_for)
            kinds = t.activity().groupby("what").size()
            assert kinds["pause"] == 1 and kinds["generate"] > 0 and kinds["learn"] == len(metrics)

            # the histogram holds every consumed token, none older than η; it is the sum of the step events'
            counts = t.staleness_counts
            assert counts.sum() == metrics.consumed_tokens.sum()
            assert len(counts) <= t.cfg.max_staleness + 1
            per_step = np.zeros(len(counts), dtype=np.int64)
            for c in step_counts:
                per_step[: len(c)] += c
            assert len(step_counts) == len(metrics) and per_step.tolist() == counts.tolist()
            assert dash._payload()["counts"].tolist() == counts.tolist()
            # activity(since=) is the full timeline's rows that end after `since`
            full, cut = t.activity(), float(metrics.wall_s.iloc[len(metrics) // 2])
            part = t.activity(since=cut)
            assert len(part) and (part.end > cut).all()
            assert part.reset_index(drop=True).equals(full[full.end > cut].reset_index(drop=True))
            st = t.status()
            assert dash._values["version"].value == str(st["version"]) == str(metrics.version.iloc[-1])
            assert dash._values["accepted"].value == str(st["accepted"])
            assert dash._values["state"].value == "stopped"
            assert dash.pause_button.disabled and dash.stop_button.disabled
            assert dash.draws >= 1 and len(dash.image.value) > 10_000
            assert dash.draws <= (wall + 1) * dash.hz + 2

            # Stop from the button ends a second run after the step in progress
            t.start(steps=10_000)
            while t.steps_done < len(metrics) + 2:
                await asyncio.sleep(0.05)
            dash.stop_button.click()
            await asyncio.wait_for(t.wait(), 30)
            assert t.steps_done < len(metrics) + 10_000 and not t.is_running

            # drawing in the kernel's process (the fallback) gives the same image size
            size, spent = len(dash.image.value), dash.loop_seconds
            dash.in_process = True
            await dash.redraw()
            assert dash.loop_seconds > spent and abs(len(dash.image.value) - size) < 0.5 * size

            # the static figure: five panels, nothing left open in pyplot
            before = plt.get_fignums()
            fig = dash.figure()
            assert len(fig.axes) == 5 and plt.get_fignums() == before
            dash.close()

    asyncio.run(main())


def test_activity_is_consistent_and_engine_intervals_do_not_overlap(tiny_policy):
    with Trainer(_cfg(), tiny_policy, default_task()) as t:
        t.run_sync(steps=6)
        act = t.activity()
    eng = act[act.who == "engine"].sort_values("start")
    assert len(eng) >= 1 and (eng.end >= eng.start).all()
    assert (eng.start.to_numpy()[1:] >= eng.end.to_numpy()[:-1]).all()
    learn = act[(act.who == "learner")]
    assert set(learn.what) == {"wait", "learn", "push"}
    ends = learn.end.to_numpy()
    assert (np.diff(learn.start.to_numpy()) >= 0).all() and (learn.end >= learn.start).all()
    assert ends.max() >= eng.end.max() - 5.0


def test_start_refuses_without_a_loop_and_bad_dashboard_knobs(tiny_policy):
    t = Trainer(_cfg(), tiny_policy, default_task())
    with pytest.raises(TrainerStateError, match="running event loop"):
        t.start(steps=1)
    with pytest.raises(ConfigError):
        t.start()
    for bad in ({"hz": 0}, {"draw_budget": 2}, {"n_trajectories": 0}, {"window": -1}):
        with pytest.raises(ConfigError):
            Dashboard(t, **bad)
    t.close_sync()


def test_compare_summarises_each_run_and_the_ablation_table(tiny_policy):
    async def main():
        return await compare({"η=0 naive": _cfg(max_staleness=0, use_decoupled_loss=False),
                              "η=∞ decoupled": _cfg(max_staleness=math.inf)},
                             policy=tiny_policy, steps=4, eval_n=32, progress=False)

    cmp = asyncio.run(main())
    s = cmp.summary
    assert list(s.index) == ["η=0 naive", "η=∞ decoupled"]
    assert (s.steps == 4).all()
    assert s.reward_before.nunique() == 1                 # measured once, shared
    assert s.loc["η=0 naive", "staleness_max"] == 0
    r = cmp["η=∞ decoupled"]
    assert r.staleness_counts.sum() == r.metrics.consumed_tokens.sum()
    tab = ablation_table(cmp, "steps")
    assert list(tab.index) == ["0", "∞"] and set(tab.columns) == {"naive", "decoupled"}
    assert tab.loc["0", "naive"] == 4 and math.isnan(tab.loc["0", "decoupled"])
    mix = version_mixture(r.trajectories)
    assert (mix.versions >= 1).all() and (mix.tokens == [int(t.loss_mask.sum()) for t in r.trajectories
                                                        if t.loss_mask.any()]).all()


def test_renderer_process_reports_errors_and_is_restarted_after_dying():
    import pandas as pd

    from arealnb.plots import VersionBar
    from arealnb.widgets import RendererError, renderer

    payload = {"metrics": pd.DataFrame({"wall_s": [1.0, 2.0], "gen_tok_per_s": [10.0, 20.0],
                                        "effective_tok_per_s": [9.0, 19.0], "reward_mean": [0.1, 0.3]}),
               "activity": pd.DataFrame({"who": ["engine", "learner"], "what": ["generate", "learn"],
                                         "start": [0.0, 0.5], "end": [1.0, 0.9]}),
               "counts": np.array([5, 3]), "eta": 4, "window": 30.0, "dpi": 40,
               "bars": [VersionBar(np.array([-1, -1, 0, 0, 1]), "stop")]}
    r = renderer()
    png = r.render(payload)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RendererError, match="KeyError"):
        r.render({k: v for k, v in payload.items() if k != "eta"})
    assert r.render(payload)[:4] == b"\x89PNG"            # still serving after a failed payload
    r.proc.kill()
    r.proc.wait()
    with pytest.raises(RendererError, match="exited|gone"):
        r.render(payload)
    r2 = renderer()
    assert r2 is not r and r2.render(payload)[:4] == b"\x89PNG"
