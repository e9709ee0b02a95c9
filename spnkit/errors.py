"""spnkit's domain errors, all in one place.

Every message names the bad value, what was expected and what to change.
"""

from __future__ import annotations


class SPNKitError(Exception):
    """Base class of every error spnkit raises on purpose."""


class SPNFormatError(SPNKitError, ValueError):
    """A model file is malformed: it cannot be parsed at all (names the file and line)."""


class SPNStructureError(SPNKitError, ValueError):
    """A parsed network is not a valid SPN: not complete, not decomposable, cyclic, several roots,
    negative weights or indices out of range (names the node)."""


class QueryError(SPNKitError, ValueError):
    """A query or an evidence array does not fit the SPN it is asked of."""


class DataNotFoundError(SPNKitError, FileNotFoundError):
    """A benchmark file is neither under $SPNKIT_DATA nor in the local cache, and cannot be downloaded."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a solve. A ``KeyboardInterrupt``, so it stops a notebook cell or a script as Ctrl-C
    always does; ``partial`` holds what was done: for ``spnkit.map`` the best answer met so far (a ``MapResult``
    with ``exact=False``), for ``spnkit.map_batch`` a DataFrame of the queries that finished (their ``query``
    numbers as in the full frame)."""

    def __init__(self, message: str, partial=None):
        super().__init__(message)
        self.partial = partial


class SPNWeightsWarning(UserWarning):
    """A loaded SPN's sum weights do not sum to 1: its values are not probabilities (``spn.normalize()``)."""
