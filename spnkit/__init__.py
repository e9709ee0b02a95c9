"""spnkit: MAP inference in sum-product networks (after Mei, Jiang & Tu, AAAI 2018), as numba kernels
over a flat array layout.

Importing spnkit never imports torch, transformers or vllm.
"""

from . import compare
from .errors import (
    DataNotFoundError,
    Interrupted,
    QueryError,
    SPNFormatError,
    SPNKitError,
    SPNStructureError,
    SPNWeightsWarning,
)
from .flat_spn import LEAF, PRODUCT, SUM, FlatSPN
from .io import load, save
from .map_api import map, map_batch, reduce
from .query import Query, QueryBatch
from .solvers.base import MapResult

__all__ = [
    "FlatSPN", "LEAF", "SUM", "PRODUCT", "load", "save", "map", "map_batch", "reduce", "compare", "Query", "QueryBatch",
    "MapResult",
    "SPNKitError", "SPNFormatError", "SPNStructureError", "QueryError", "DataNotFoundError", "SPNWeightsWarning",
    "Interrupted",
]
__version__ = "0.1.0"
