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


class SPNWeightsWarning(UserWarning):
    """A loaded SPN's sum weights do not sum to 1: its values are not probabilities (``spn.normalize()``)."""
