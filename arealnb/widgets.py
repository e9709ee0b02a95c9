"""``Dashboard``: a live ipywidgets 8 view of a running :class:`arealnb.Trainer`.

Fed by ``trainer.subscribe`` (step events carry the batch's staleness counts) and by cheap polls of
``trainer.status()``, both on the kernel's event loop; nothing runs in another thread. Two rates:

* counters (version, capacity, groups running / accepted / rejected, buffer, η, tok/s, reward) refresh at
  ``hz`` (default 2 Hz): a dozen ``HTML`` values, well under a millisecond;
* the plots (one Agg figure, PNG into an ``Image`` widget: no ipympl needed, works in any front end) are
  redrawn when a learner step brought news, at most at ``hz`` and at most as often as keeps drawing under
  ``draw_budget`` of the wall-clock (one redraw costs ~0.1-0.3 s, measured each time; with the default 5 %
  a 0.2 s redraw happens at most every 4 s). ``benchmarks/rl_throughput.py --dashboard`` measures the cost.

When the run stops the figure is drawn once more; :meth:`Dashboard.wait` awaits the run and then displays that
figure as a plain image output, which is what a headless run (nbconvert, nbval, ``make demo``) leaves in the
report. The Pause and Stop buttons call ``trainer.pause()`` / ``unpause()`` / ``stop()``: they act between
learner steps, cleanly (no step is cut short, the engine keeps its requests while paused).

Widget callbacks run when the kernel reads their messages: while a cell is executing (``await
dash.wait()``, say), clicks wait for it. Start the run with ``trainer.start(...)`` and leave the kernel idle to
use the buttons.
"""

from __future__ import annotations

import asyncio
import io
import math
import time

import numpy as np

from .errors import ConfigError

_COUNTERS = [("version", "policy version"), ("steps", "learner steps"), ("capacity", "capacity (Eq. 3)"),
             ("running", "groups running"), ("accepted", "accepted"), ("rejected", "rejected"),
             ("buffered", "buffered"), ("eta", "η (max staleness)"), ("gen_tok_per_s", "generated tok/s"),
             ("effective_tok_per_s", "trained tok/s"), ("reward_mean", "reward (last batch)"),
             ("state", "state")]


def _fmt(key: str, value) -> str:
    if key == "eta":
        return "∞" if value == math.inf else str(int(value))
    if key in ("gen_tok_per_s", "effective_tok_per_s"):
        return f"{value:,.0f}"
    if key == "reward_mean":
        return "–" if value != value else f"{value:.3f}"
    return str(value)


class Dashboard:
    """Live staleness / throughput / reward / activity view of ``trainer`` (an :class:`arealnb.Trainer`).

    Parameters
    ----------
    trainer : the trainer to watch; the dashboard subscribes at once and follows every later run.
    hz : refresh rate of the counters and upper bound on plot redraws (default 2).
    draw_budget : share of wall-clock the plot redraws may take (default 0.05); see the module docstring.
    n_trajectories : how many trajectories the version-coloured bars show (the longest of the last 64 consumed).
    window : seconds of the activity timeline shown live (the final figure shows the whole run).
    """

    def __init__(self, trainer, hz: float = 2.0, draw_budget: float = 0.05, n_trajectories: int = 12,
                 window: float = 30.0, dpi: int = 72):
        import ipywidgets as w

        for name, val, ok in (("hz", hz, 0 < hz <= 50), ("draw_budget", draw_budget, 0 < draw_budget <= 1),
                              ("n_trajectories", n_trajectories, isinstance(n_trajectories, int)
                               and 0 < n_trajectories <= 256), ("window", window, window > 0)):
            if not ok:
                raise ConfigError(f"Dashboard({name}={val!r}): expected hz in (0, 50], draw_budget in (0, 1], "
                                  "n_trajectories an int in 1..256, window > 0")
        self.trainer = trainer
        self.hz, self.draw_budget, self.n_trajectories, self.window, self.dpi = \
            float(hz), float(draw_budget), n_trajectories, float(window), dpi
        self.draws = 0
        self.draw_seconds = 0.0
        self._counts = np.zeros(0, dtype=np.int64)
        self._dirty = False
        self._last_draw = -math.inf
        self._last_cost = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._fig = None
        self._state = "idle"

        self._values = {k: w.HTML(value="–", layout=w.Layout(width="auto")) for k, _ in _COUNTERS}
        cells = []
        for key, label in _COUNTERS:
            self._values[key].add_class(f"arealnb-{key.replace('_', '-')}")
            cells.append(w.VBox([w.HTML(f"<span style='font-size:11px;color:#666'>{label}</span>"),
                                 self._values[key]], layout=w.Layout(margin="0 12px 0 0")))
        self.pause_button = w.Button(description="Pause", icon="pause", tooltip="hold after the current step")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger",
                                    tooltip="end the run after the current step")
        self.pause_button.on_click(self._on_pause)
        self.stop_button.on_click(self._on_stop)
        self.pause_button.add_class("arealnb-pause")
        self.stop_button.add_class("arealnb-stop")
        self.image = w.Image(format="png", layout=w.Layout(width="100%", max_width="1000px"))
        self.image.add_class("arealnb-plots")
        self.message = w.HTML("")
        self.widget = w.VBox([w.HBox(cells, layout=w.Layout(flex_flow="row wrap")),
                              w.HBox([self.pause_button, self.stop_button, self.message]), self.image])
        self.widget.add_class("arealnb-dashboard")
        self._unsubscribe = trainer.subscribe(self._on_event)
        self._refresh_counters()

    # display -----------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)

    def close(self) -> None:
        """Unsubscribe and stop refreshing (the widgets stay as last drawn)."""
        self._unsubscribe()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def wait(self, show: bool = True):
        """Await the run started with ``trainer.start(...)``, draw the final figure, display it as a static
        image (``show=True``) and return ``trainer.metrics``."""
        try:
            await self.trainer.wait()
        finally:
            self._draw()
            if show:
                from IPython.display import display

                display(self.figure())
        return self.trainer.metrics

    def figure(self, title: str | None = None):
        """A new matplotlib figure of the whole run so far (the panels of the live view, full timeline)."""
        import matplotlib.pyplot as plt

        from .plots import run_figure

        fig = run_figure(self.trainer.metrics, self.trainer.activity(), self._counts,
                         self.trainer.cfg.effective_staleness, self._recent(), window=None,
                         title=title or self._title())
        plt.close(fig)             # returned, not left open for pyplot to show twice
        return fig

    # events (on the event loop) ------------------------------------------------------------------------
    def _on_event(self, ev: dict) -> None:
        kind = ev["type"]
        if kind == "step":
            c = np.asarray(ev.get("staleness_counts", ()), dtype=np.int64)
            if len(c) > len(self._counts):
                self._counts = np.pad(self._counts, (0, len(c) - len(self._counts)))
            self._counts[: len(c)] += c
            self._dirty = True
        elif kind == "run_started":
            self._state = "running"
            self._set_buttons(running=True)
            self._schedule()
        elif kind == "paused":
            self._state = "paused"
        elif kind == "unpaused":
            self._state = "running"
        elif kind == "run_stopped":
            self._state = "stopped"
            self._set_buttons(running=False)
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._refresh_counters()
            self._draw()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(1.0 / self.hz, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self._refresh_counters()
        now = time.monotonic()
        gap = max(1.0 / self.hz, self._last_cost / self.draw_budget)
        if self._dirty and now - self._last_draw >= gap:
            self._draw()
        if self._state in ("running", "paused"):
            self._schedule()

    def _refresh_counters(self) -> None:
        st = dict(self.trainer.status())
        st["state"] = self._state
        for key, _ in _COUNTERS:
            text = _fmt(key, st[key])
            if self._values[key].value != text:
                self._values[key].value = text

    def _draw(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from .plots import run_figure

        t0 = time.monotonic()
        if self._fig is None:
            self._fig = Figure(figsize=(13, 7.2))
            FigureCanvasAgg(self._fig)
        run_figure(self.trainer.metrics, self.trainer.activity(), self._counts,
                   self.trainer.cfg.effective_staleness, self._recent(), fig=self._fig, window=self.window)
        buf = io.BytesIO()
        self._fig.savefig(buf, format="png", dpi=self.dpi)
        self.image.value = buf.getvalue()
        self._dirty = False
        t1 = time.monotonic()
        self._last_draw, self._last_cost = t1, t1 - t0
        self.draws += 1
        self.draw_seconds += t1 - t0

    def _recent(self) -> list:
        """The longest ``n_trajectories`` of the last 64 consumed (long samples are the ones updates cut into),
        in consumption order."""
        last = list(self.trainer.recent)[-64:]
        keep = sorted(range(len(last)), key=lambda i: -len(last[i].versions))[: self.n_trajectories]
        return [last[i] for i in sorted(keep)]

    def _title(self) -> str:
        c = self.trainer.cfg
        eta = "∞" if c.effective_staleness == math.inf else int(c.effective_staleness)
        return f"{c.mode} RL, η = {eta}, batch {c.consumer_batch_size}×{c.group_size}, interrupt={c.interrupt}"

    # buttons -------------------------------------------------------------------------------------------
    def _set_buttons(self, running: bool) -> None:
        self.pause_button.disabled = self.stop_button.disabled = not running
        if not running:
            self.pause_button.description, self.pause_button.icon = "Pause", "pause"

    def _on_pause(self, _button=None) -> None:
        if self.trainer.is_paused:
            self.trainer.unpause()
            self.pause_button.description, self.pause_button.icon = "Pause", "pause"
            self.message.value = ""
        else:
            self.trainer.pause()
            self.pause_button.description, self.pause_button.icon = "Resume", "play"
            self.message.value = "<i>pausing after the current step…</i>"

    def _on_stop(self, _button=None) -> None:
        self.trainer.stop()
        self.stop_button.disabled = True
        self.message.value = "<i>stopping after the current step…</i>"
