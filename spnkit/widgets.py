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
    methods; four plots (win
    counts, time vs quality, BATTLE, a metric per setting) and the summary table follow the selection.
    """

    def __init__(self, results: pd.DataFrame, metric: str = "WINCNT"):
        import ipywidgets as w

        if results.empty:
            raise ValueError("ComparisonExplorer needs the rows of spnkit.compare(...); this DataFrame is empty")
        self.results = results
        methods = list(dict.fromkeys(results["method"]))
        self.spn = w.Dropdown(options=[ALL, *dict.fromkeys(results["spn"])], description="SPN")
        kinds = list(dict.fromkeys(results["evidence"])) if "evidence" in results.columns else []
        self.evidence = w.Dropdown(options=[ALL, *kinds] if len(kinds) > 1 else kinds or [ALL],
                                   description="evidence")
        self.setting = w.Dropdown(options=[ALL, *dict.fromkeys(results["setting"])], description="Q:E:H")
        self.methods = w.SelectMultiple(options=methods, value=tuple(methods), description="methods", rows=6)
        self.metric = w.Dropdown(options=["WINCNT", "FINISH", "TIMEAVG", "RESAVG", "RESLSE"], value=metric,
                                 description="per setting")
        self.out = w.Output()
        for c in (self.spn, self.evidence, self.setting, self.methods, self.metric):
            c.observe(lambda _change: self.redraw(), names="value")
        self.widget = w.VBox([w.HBox([w.VBox([self.spn, self.evidence, self.setting, self.metric]), self.methods]),
                              self.out])
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
        import matplotlib.pyplot as plt
        from IPython.display import display

        d = self.selection()
        self.out.clear_output(wait=True)
        with self.out:
            if d.empty:
                print("nothing selected")
                return
            fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
            plots.win_bars(d, axes[0, 0])
            plots.time_quality(d, axes[0, 1])
            plots.battle_heatmap(d, axes[1, 0])
            plots.setting_lines(d, self.metric.value, axes[1, 1])
            plt.show()
            display(summary(d).round(6))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
