"""``Dashboard``: a live ipywidgets 8 view of a running :class:`arealnb.Trainer`.

Fed by ``trainer.subscribe`` (step events carry the batch's staleness counts) and by cheap polls of
``trainer.status()``, both on the kernel's event loop; nothing runs in another thread. Two rates:

* counters (version, capacity, groups running / accepted / rejected, buffer, η, tok/s, reward) refresh at
  ``hz`` (default 2 Hz): a dozen ``HTML`` values, well under a millisecond;
* the plots (one Agg figure, PNG into an ``Image`` widget: no ipympl needed, works in any front end) are
  redrawn when a learner step brought news, at most at ``hz`` and at most as often as keeps the renderer busy
  under ``draw_budget`` of one core (a redraw takes ~0.2 s here alone, ~0.4 s beside a run; with the default
  0.15, one every 2–3 s).

The figure is drawn in a **renderer process** (one per kernel, started on first use, shared by every dashboard,
fed pickled panel data over a pipe) at the lowest CPU priority (nice 19): drawn in the kernel's process, matplotlib holds the GIL for the whole
redraw and stalls the engine thread; drawn at normal priority in another process, it takes its CPU share from
the engine and the learner (either way about 6 % of async throughput on the tiny policy at one redraw every
2.5 s). At nice 19 it draws with the time they leave idle. The kernel only gathers the panels' data
(a few columns, the activity window, twelve version arrays) and pickles it. Where a process cannot be started
the dashboard draws in-process instead and says so. ``benchmarks/rl_throughput.py --dashboard`` measures the
cost either way.

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
import atexit
import math
import threading
import time

import numpy as np

from .errors import ConfigError

_COUNTERS = [("version", "policy version"), ("steps", "learner steps"), ("capacity", "capacity (Eq. 3)"),
             ("running", "groups running"), ("accepted", "accepted"), ("rejected", "rejected"),
             ("buffered", "buffered"), ("eta", "η (max staleness)"), ("gen_tok_per_s", "generated tok/s"),
             ("effective_tok_per_s", "trained tok/s"), ("reward_mean", "reward (last batch)"),
             ("state", "state")]


class RendererError(RuntimeError):
    """The renderer process failed to draw (the message says why) or is gone."""


class _Renderer:
    """One renderer process (``python -c 'arealnb.plots.serve_renderer()'``) fed over pipes. A plain
    subprocess rather than multiprocessing: spawn would re-run a user's script without a main guard."""

    def __init__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", "from arealnb.plots import serve_renderer; "
                                      "serve_renderer()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lock = threading.Lock()

    def render(self, payload: dict) -> bytes:
        """Blocking: send one payload, return the PNG (call it from a worker thread)."""
        import pickle
        import struct

        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            try:
                self.proc.stdin.write(struct.pack("<Q", len(blob)) + blob)
                self.proc.stdin.flush()
                head = self.proc.stdout.read(9)
                if len(head) < 9:
                    raise RendererError(f"renderer process exited (code {self.proc.poll()})")
                body = self.proc.stdout.read(struct.unpack("<Q", head[1:])[0])
            except (BrokenPipeError, ValueError) as exc:
                raise RendererError(f"renderer process is gone: {exc}") from None
        if head[:1] != b"\x01":
            raise RendererError(body.decode(errors="replace"))
        return body

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except Exception:  # noqa: BLE001
                self.proc.kill()


_renderer: _Renderer | None = None
_renderer_lock = threading.Lock()


def close_renderer() -> None:
    """Stop the renderer process now (it also stops when the kernel exits; the next redraw starts a new one)."""
    global _renderer
    with _renderer_lock:
        if _renderer is not None:
            _renderer.close()
            _renderer = None


def renderer() -> _Renderer:
    """The kernel's renderer process, started on first use and restarted if it died."""
    global _renderer
    with _renderer_lock:
        if _renderer is None or not _renderer.alive():
            _renderer = _Renderer()
            atexit.register(_renderer.close)
        return _renderer


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
    draw_budget : share of one core the plot redraws may take (default 0.15); see the module docstring.
    in_process : draw in the kernel's process instead of the renderer process (slower training; for debugging).
    n_trajectories : how many trajectories the version-coloured bars show (the longest of the last 64 consumed).
    window : seconds of the activity timeline shown live (the final figure shows the whole run).
    """

    def __init__(self, trainer, hz: float = 2.0, draw_budget: float = 0.15, n_trajectories: int = 12,
                 window: float = 30.0, dpi: int = 72, in_process: bool = False):
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
        self.draw_seconds = 0.0          # wall-clock of the redraws (in the renderer process unless in_process)
        self.loop_seconds = 0.0          # time the redraws took on the kernel's event loop
        self.in_process = bool(in_process)
        self._pending: asyncio.Future | None = None
        self._dirty = False
        self._last_draw = -math.inf
        self._last_cost = 0.0
        self._handle: asyncio.TimerHandle | None = None
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
            await self.redraw()
            if show:
                from IPython.display import display

                display(self.figure())
        return self.trainer.metrics

    def figure(self, title: str | None = None):
        """A new matplotlib figure of the whole run so far (the panels of the live view, full timeline)."""
        import matplotlib.pyplot as plt

        from .plots import run_figure

        fig = run_figure(self.trainer.metrics, self.trainer.activity(), self.trainer.staleness_counts,
                         self.trainer.cfg.effective_staleness, self._recent(), window=None,
                         title=title or self._title())
        plt.close(fig)             # returned, not left open for pyplot to show twice
        return fig

    # events (on the event loop) ------------------------------------------------------------------------
    def _on_event(self, ev: dict) -> None:
        kind = ev["type"]
        if kind == "step":
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
            self._request_draw()

    def _schedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(1.0 / self.hz, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self._refresh_counters()
        now = time.monotonic()
        gap = max(1.0 / self.hz, self._last_cost / self.draw_budget)
        if self._dirty and now - self._last_draw >= gap:
            self._request_draw()
        if self._state in ("running", "paused"):
            self._schedule()

    def _refresh_counters(self) -> None:
        st = dict(self.trainer.status())
        st["state"] = self._state
        for key, _ in _COUNTERS:
            text = _fmt(key, st[key])
            if self._values[key].value != text:
                self._values[key].value = text

    async def redraw(self) -> None:
        """Redraw the plots now (after any redraw in progress) and wait until the image is updated."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        self._request_draw()
        if self._pending is not None:
            await self._pending

    def _request_draw(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._dirty = True                  # drawn again when the one in progress is done
            return
        self._dirty = False
        self._pending = asyncio.ensure_future(self._render())

    async def _render(self) -> None:
        from .plots import render_png

        t0 = time.monotonic()
        payload = self._payload()
        png = None
        try:
            if not self.in_process:
                try:
                    r = renderer()
                    self.loop_seconds += time.monotonic() - t0
                    png = await asyncio.to_thread(r.render, payload)
                except OSError as exc:          # no process here (sandbox, limits): draw in-process from now on
                    self.in_process = True
                    self.message.value = f"<i>plots drawn in the kernel ({type(exc).__name__}: {exc})</i>"
            if png is None:
                t1 = time.monotonic()
                png = render_png(payload)
                self.loop_seconds += time.monotonic() - t1
        except Exception as exc:  # noqa: BLE001 - a plotting failure must not touch the run: say it, keep going
            self.message.value = f"<i>plots failed: {type(exc).__name__}: {exc}</i>"
        else:
            self.image.value = png
        finally:
            t2 = time.monotonic()
            self._last_draw, self._last_cost = t2, t2 - t0
            self.draws += 1
            self.draw_seconds += t2 - t0
            self._pending = None
        if self._dirty and self._handle is None:       # news arrived while drawing and no tick will come
            self._request_draw()

    def _payload(self) -> dict:
        from .plots import VersionBar

        m = self.trainer.metrics
        cols = ["wall_s", "gen_tok_per_s", "effective_tok_per_s", "reward_mean"]
        act = self.trainer.activity(since=self.trainer.status()["wall_s"] - self.window)
        return {"metrics": m[cols] if len(m) else m, "activity": act, "counts": self.trainer.staleness_counts,
                "eta": self.trainer.cfg.effective_staleness, "window": self.window, "dpi": self.dpi,
                "bars": [VersionBar(np.asarray(t.versions), t.finish_reason) for t in self._recent()]}

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
