"""What every solver returns, so that one harness can time and compare them all."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MapResult:
    """The answer to one MAP query.

    Attributes
    ----------
    assignment : int64 array (n_vars,): evidence values, the MAP values on query variables, -1 on hidden ones.
    log_value : ``log P(query assignment, evidence)`` with the hidden variables summed out.
    exact : True when the assignment is proven optimal.
    upper_bound : log upper bound on the optimum, when the method has one (else None).
    seconds : wall time of the call, reduction included.
    kernel_seconds : the compiled kernel's own time for the query (reduction, solver and evaluation of the
        answer; ``spnkit.map`` only, else None): what ``seconds`` is without the Python call around it.
    method : the solver's name.
    stats : the solver's counters (expansions, passes, stagings, ..., timed_out).
    trace : exact solvers only: incumbent and upper bound over time, a DataFrame built when first read.
    note : None, or what to keep in mind reading ``log_value`` (e.g. the SPN's weights are not normalised, so
        it is a log value, not a log-probability).

    A plain class with slots, and ``stats``/``trace`` built when read: a small query takes a few microseconds,
    so the result object must not cost more than the solver.
    """

    __slots__ = ("assignment", "log_value", "exact", "upper_bound", "seconds", "method", "_trace", "_tick",
                 "_stats", "_stat_names", "_timed_out", "_kernel_ticks", "note")

    def __init__(self, assignment: np.ndarray, log_value: float, exact: bool, upper_bound: float | None,
                 seconds: float, method: str, stats: dict | tuple | None = None,
                 trace_array: np.ndarray | bytes | None = None, stat_names: tuple = (), timed_out: bool = False,
                 trace_tick: float = 1.0, kernel_ticks: int | None = None):
        self.assignment = assignment
        self.log_value = log_value
        self.exact = exact
        self.upper_bound = upper_bound
        self.seconds = seconds
        self.method = method
        self._trace = trace_array               # (time, incumbent, upper bound) rows; time in units of trace_tick s
        self._tick = trace_tick
        self._stats = {} if stats is None else stats
        self._stat_names = stat_names
        self._timed_out = timed_out
        self._kernel_ticks = kernel_ticks       # clock.now() ticks
        self.note = None

    @property
    def kernel_seconds(self) -> float | None:
        """The kernel's own seconds for this query (see the class docstring)."""
        if self._kernel_ticks is None:
            return None
        from ..kernels.clock import ticks_per_second

        return self._kernel_ticks / ticks_per_second()

    @property
    def stats(self) -> dict:
        """The solver's counters by name, and ``timed_out``."""
        if not isinstance(self._stats, dict):
            st = dict(zip(self._stat_names, self._stats, strict=True))
            st["timed_out"] = self._timed_out
            self._stats = st
        return self._stats

    @property
    def trace_array(self) -> np.ndarray | None:
        """The anytime trace as a float array of (seconds, incumbent, upper bound) rows (None for non-exact)."""
        if isinstance(self._trace, bytes):          # spnkit.map hands the rows over as bytes (cheaper to copy)
            self._trace = np.frombuffer(self._trace, dtype=np.float64).reshape(-1, 3).copy()
        if self._trace is not None and self._tick != 1.0:
            self._trace = self._trace * np.array([self._tick, 1.0, 1.0])
            self._tick = 1.0
        return self._trace

    @property
    def trace(self) -> pd.DataFrame | None:
        """Anytime trace of the exact solvers: ``seconds``, ``incumbent``, ``upper_bound`` (None for others).

        Built on access: a DataFrame costs ~0.1 ms, more than a whole small query."""
        if self.trace_array is None:
            return None
        return pd.DataFrame(self.trace_array, columns=["seconds", "incumbent", "upper_bound"])

    def __repr__(self) -> str:
        return (f"MapResult(method={self.method!r}, log_value={self.log_value!r}, exact={self.exact}, "
                f"upper_bound={self.upper_bound!r}, seconds={self.seconds:.3g}, assignment={self.assignment!r}"
                + (f", note={self.note!r})" if self.note else ")"))
