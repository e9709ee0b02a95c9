"""What every solver returns, so that one harness can time and compare them all."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    """

    assignment: np.ndarray
    log_value: float
    exact: bool
    upper_bound: float | None
    seconds: float
    method: str
    stats: dict = field(default_factory=dict)
