"""What every solver returns, so that one harness can time and compare them all."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class MapResult:
    """The answer to one MAP query.

    Attributes
    ----------
    assignment : int64 array (n_vars,): evidence values, the MAP values on query variables, -1 on hidden ones.
    log_value : ``log P(query assignment, evidence)`` with the hidden variables summed out.
    exact : True when the assignment is proven optimal.
    upper_bound : log upper bound on the optimum, when the method has one (else None).
    seconds : wall time, reduction included.
    method : the solver's name.
    stats : the solver's counters (expansions, passes, stagings, ..., timed_out).
    trace : exact solvers only: incumbent and upper bound over time, a DataFrame built when first read.
    """

    assignment: np.ndarray
    log_value: float
    exact: bool
    upper_bound: float | None
    seconds: float
    method: str
    stats: dict = field(default_factory=dict)
    trace_array: np.ndarray | None = field(default=None, repr=False)   # (seconds, incumbent, upper bound) rows

    @property
    def trace(self) -> pd.DataFrame | None:
        """Anytime trace of the exact solvers: ``seconds``, ``incumbent``, ``upper_bound`` (None for others).

        Built on access: a DataFrame costs ~0.1 ms, more than a whole small query."""
        if self.trace_array is None:
            return None
        return pd.DataFrame(self.trace_array, columns=["seconds", "incumbent", "upper_bound"])
