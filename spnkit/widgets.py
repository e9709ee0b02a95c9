"""ipywidgets 8 panel over ``spnkit.compare`` results: pick SPN, evidence, setting and methods; the plots
redraw."""

from __future__ import annotations

import pandas as pd

from . import plots
from .compare import summary

ALL = "(all)"


class ComparisonExplorer:
    """``ComparisonExplorer(results_df)``; display it as the last expression of a cell (or ``.widget``).

    Dropdowns choose the SPN, where the evidence came from and the Q:E:H setting (or all), a multi-select the
    methods; four plots (win counts, time vs quality, BATTLE, a metric per setting), drawn into one figure shown
    as an image, and the summary table follow the selection, redrawn in place.
    """

    def __init__(self, results: pd.DataFrame, metric: str = "WINCNT", dpi: int = 80):
        import ipywidgets as w

        if results.empty:
            raise ValueError("ComparisonExplorer needs the rows of spnkit.compare(...); this DataFrame is empty")
        self.results = results
        self.dpi = dpi
        self.redraws = 0
        methods = list(dict.fromkeys(results["method"]))
        self.spn = w.Dropdown(options=[ALL, *dict.fromkeys(results["spn"])], description="SPN")
        kinds = list(dict.fromkeys(results["evidence"])) if "evidence" in results.columns else []
        self.evidence = w.Dropdown(options=[ALL, *kinds] if len(kinds) > 1 else kinds or [ALL],
                                   description="evidence")
        self.setting = w.Dropdown(options=[ALL, *dict.fromkeys(results["setting"])], description="Q:E:H")
        self.methods = w.SelectMultiple(options=methods, value=tuple(methods), description="methods", rows=6)
        self.metric = w.Dropdown(options=["WINCNT", "FINISH", "TIMEAVG", "RESAVG", "RESLSE"], value=metric,
                                 description="per setting")
        self.image = w.Image(format="png", layout=w.Layout(max_width="900px"))
        self.table = w.HTML()
        self._fig = None
        for c in (self.spn, self.evidence, self.setting, self.methods, self.metric):
            c.observe(lambda _change: self.redraw(), names="value")
        self.widget = w.VBox([w.HBox([w.VBox([self.spn, self.evidence, self.setting, self.metric]), self.methods]),
                              self.image, self.table])
        self.redraw()

    def selection(self) -> pd.DataFrame:
        """The rows the controls select."""
        d = self.results
        if self.spn.value != ALL:
            d = d[d["spn"] == self.spn.value]
        if self.evidence.value != ALL:
            d = d[d["evidence"] == self.evidence.value]
        if self.setting.value != ALL:
            d = d[d["setting"] == self.setting.value]
        return d[d["method"].isin(self.methods.value)]

    def redraw(self) -> None:
        """Draw the selection into the panel's one figure (never a pyplot figure: nothing accumulates, nothing is
        printed) and show it with the summary table."""
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        d = self.selection()
        self.redraws += 1
        if d.empty:
            self.image.layout.display = "none"
            self.table.value = "<i>nothing selected: choose at least one method (and an SPN and setting with rows)</i>"
            return
        if self._fig is None:
            self._fig = Figure(figsize=(11, 7.5), layout="constrained")
            FigureCanvasAgg(self._fig)
        fig = self._fig
        fig.clear()
        axes = fig.subplots(2, 2)
        plots.win_bars(d, axes[0, 0])
        plots.time_quality(d, axes[0, 1])
        plots.battle_heatmap(d, axes[1, 0])
        plots.setting_lines(d, self.metric.value, axes[1, 1])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        self.image.value = buf.getvalue()
        self.image.layout.display = None
        self.table.value = summary(d).round(6).to_html(index=False, border=0)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
