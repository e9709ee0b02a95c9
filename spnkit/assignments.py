"""The ``assignment`` column of ``spnkit.map_batch``: one int64 array per row, stored as one (rows, n_vars) array.

A column of separate arrays (numpy object dtype) costs a Python object per query, ~0.05-0.1 us a row built on
one thread after the parallel kernel: on microsecond queries that serial step alone kept two threads under 1.8x
(``benchmarks/spn_solvers.py``). This pandas extension array wraps the kernel's output as it is and hands out a
row (a view, as ``spnkit.map``'s ``assignment``) only when one is read. Filtering, sorting, ``take``, ``concat``
(of equal widths; different widths fall back to an object column), ``groupby``/``unique`` on the rows, missing
rows (``reindex``), pickling and display work as on any pandas column. ``.rows`` is the whole (n, n_vars) array.
"""

from __future__ import annotations

import numbers
import re

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray, ExtensionDtype, register_extension_dtype
from pandas.api.indexers import check_array_indexer

_MISSING_FILL = -1   # what a missing row's entries hold in ``rows`` (as on a hidden variable: no value)


@register_extension_dtype
class AssignmentDtype(ExtensionDtype):
    """One assignment of ``width`` variables per row (``"assignment[width]"``)."""

    type = np.ndarray
    kind = "O"
    na_value = np.nan
    _metadata = ("width",)
    _match = re.compile(r"assignment\[(\d+)\]")

    def __init__(self, width: int = 0):
        self.width = int(width)

    @property
    def name(self) -> str:
        return f"assignment[{self.width}]"

    @classmethod
    def construct_array_type(cls) -> type[AssignmentArray]:
        return AssignmentArray

    @classmethod
    def construct_from_string(cls, string):
        if not isinstance(string, str):
            raise TypeError(f"'construct_from_string' expects a string, got {type(string)}")
        m = cls._match.fullmatch(string)
        if m is None:
            raise TypeError(f"Cannot construct a '{cls.__name__}' from '{string}'")
        return cls(int(m.group(1)))


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


class AssignmentArray(ExtensionArray):
    """Rows of a (n, width) int64 array, each read as a 1-d array view; ``missing`` marks absent rows."""

    __array_ufunc__ = None          # numpy defers ``array == column`` to __eq__ instead of broadcasting

    def __init__(self, rows: np.ndarray, missing: np.ndarray | None = None):
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.dtype != np.int64:
            raise TypeError(f"AssignmentArray needs a 2-d int64 array (rows, n_vars); got {rows.ndim}-d {rows.dtype}")
        self._rows = rows
        self._missing = np.zeros(rows.shape[0], dtype=bool) if missing is None else missing
        self._dtype = AssignmentDtype(rows.shape[1])

    @property
    def rows(self) -> np.ndarray:
        """All assignments as one (n, n_vars) int64 array (a missing row holds -1 throughout)."""
        return self._rows

    # -- the ExtensionArray interface ----------------------------------------------------------------------
    @property
    def dtype(self) -> AssignmentDtype:
        return self._dtype

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes + self._missing.nbytes

    def __len__(self) -> int:
        return self._rows.shape[0]

    def __iter__(self):
        if not self._missing.any():
            return iter(self._rows)
        return (np.nan if gone else row for row, gone in zip(self._rows, self._missing, strict=True))

    def __getitem__(self, item):
        if isinstance(item, tuple) and len(item) == 1:
            item = item[0]
        if isinstance(item, numbers.Integral):
            return np.nan if self._missing[item] else self._rows[item]
        if item is Ellipsis:
            item = slice(None)
        if not isinstance(item, slice):
            item = check_array_indexer(self, item)
        return type(self)(self._rows[item], self._missing[item])

    def __setitem__(self, key, value) -> None:
        if not isinstance(key, (numbers.Integral, slice)):
            key = check_array_indexer(self, key)
        if isinstance(value, AssignmentArray):
            self._rows[key], self._missing[key] = value._rows, value._missing
        elif _is_missing(value):
            self._rows[key], self._missing[key] = _MISSING_FILL, True
        else:
            arr = np.asarray(value)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"an assignment column holds integers, not {arr.dtype} ({value!r:.60})")
            self._rows[key] = arr
            self._missing[key] = False

    def isna(self) -> np.ndarray:
        return self._missing.copy()

    def copy(self) -> AssignmentArray:
        return type(self)(self._rows.copy(), self._missing.copy())

    def take(self, indices, *, allow_fill: bool = False, fill_value=None) -> AssignmentArray:
        idx = np.asarray(indices, dtype=np.intp)
        if not allow_fill:
            return type(self)(self._rows[idx], self._missing[idx])
        if fill_value is not None and not _is_missing(fill_value):
            raise TypeError(f"an assignment column can only fill with a missing value, not {fill_value!r}")
        if (idx < -1).any():
            raise ValueError("take: indices below -1 with allow_fill=True")
        fill = idx == -1
        if len(self) == 0 and not fill.all():
            raise IndexError("cannot take rows from an empty assignment column")
        pos = np.where(fill, 0, idx)
        if len(self) == 0:
            rows = np.full((idx.size, self._rows.shape[1]), _MISSING_FILL, dtype=np.int64)
            return type(self)(rows, np.ones(idx.size, dtype=bool))
        rows = self._rows[pos]
        rows[fill] = _MISSING_FILL
        return type(self)(rows, self._missing[pos] | fill)

    @classmethod
    def _from_sequence(cls, scalars, *, dtype=None, copy=False) -> AssignmentArray:
        if isinstance(scalars, AssignmentArray):
            return scalars.copy() if copy else scalars
        items = list(scalars)
        width = dtype.width if isinstance(dtype, AssignmentDtype) else None
        missing = np.array([_is_missing(s) for s in items], dtype=bool)
        for s, gone in zip(items, missing, strict=True):
            if not gone:
                width = len(s) if width is None else width
                break
        rows = np.full((len(items), width or 0), _MISSING_FILL, dtype=np.int64)
        for i, (s, gone) in enumerate(zip(items, missing, strict=True)):
            if gone:
                continue
            row = np.asarray(s)
            if row.shape != (rows.shape[1],) or (row.size and not np.issubdtype(row.dtype, np.integer)):
                raise TypeError(f"row {i} of an assignment column is {row.dtype} of shape {row.shape}; "
                                f"expected {rows.shape[1]} integers")
            rows[i] = row
        return cls(rows, missing)

    @classmethod
    def _from_factorized(cls, uniques, original: AssignmentArray) -> AssignmentArray:
        width = original.dtype.width
        rows = np.frombuffer(b"".join(uniques), dtype=np.int64).reshape(len(uniques), width).copy()
        return cls(rows)

    def _values_for_factorize(self):
        keys = np.empty(len(self), dtype=object)       # rows as bytes: hashable, so groupby/unique work
        for i, row in enumerate(self._rows):
            keys[i] = None if self._missing[i] else row.tobytes()
        return keys, None

    def unique(self) -> AssignmentArray:
        first: dict = {}
        for i, key in enumerate(self._values_for_factorize()[0]):
            first.setdefault(key, i)
        return self.take(np.fromiter(first.values(), dtype=np.intp, count=len(first)))

    def value_counts(self, dropna: bool = True) -> pd.Series:
        codes, uniques = self.factorize(use_na_sentinel=dropna)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        return pd.Series(counts, index=pd.Index(uniques), name="count")

    def duplicated(self, keep="first") -> np.ndarray:
        return pd.Index(self.factorize(use_na_sentinel=False)[0]).duplicated(keep=keep)

    def _values_for_argsort(self) -> np.ndarray:
        """Rows as records: numpy orders them lexicographically (first variable first), for sorting/groupby."""
        rows = np.ascontiguousarray(self._rows)
        return rows.view([(f"v{j}", np.int64) for j in range(rows.shape[1])]).reshape(len(self))

    @classmethod
    def _concat_same_type(cls, to_concat) -> AssignmentArray:
        return cls(np.concatenate([a._rows for a in to_concat]), np.concatenate([a._missing for a in to_concat]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != object:
            raise TypeError(f"an assignment column converts only to an object array (one array per row), not "
                            f"{np.dtype(dtype)}; .array.rows is the (n, n_vars) int64 array")
        out = np.fromiter(self._rows, dtype=object, count=len(self))
        out[self._missing] = np.nan
        return out

    def __eq__(self, other):
        if isinstance(other, (pd.Series, pd.Index, pd.DataFrame)):
            return NotImplemented
        if isinstance(other, AssignmentArray):
            if len(other) != len(self):
                raise ValueError(f"Lengths must match to compare: {len(self)} and {len(other)}")
            if other.dtype.width != self.dtype.width:
                return np.zeros(len(self), dtype=bool)
            return (self._rows == other._rows).all(axis=1) & ~self._missing & ~other._missing
        row = np.asarray(other)
        if row.shape != (self.dtype.width,):
            return NotImplemented
        return (self._rows == row).all(axis=1) & ~self._missing

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else ~eq

    def _formatter(self, boxed: bool = False):
        return str if boxed else repr
