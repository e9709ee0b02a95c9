"""numba kernels over the FlatSPN arrays. Kernels never validate, print or do I/O; they read the clock only
for deadlines and per-query timings (``clock``).

Cache freshness: numba keys a function's on-disk cache on the mtime and size of *its own* source file, so a
kernel whose callee in another file changed would load stale machine code (after ``git pull``, say). Every
kernel here is therefore keyed on the stamps of all kernel sources together (``_stamped_by_all_kernels``).
"""

from __future__ import annotations

import os

from numba.core import caching

_HERE = os.path.dirname(os.path.abspath(__file__))


def _kernels_stamp() -> tuple:
    out = []
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(_HERE, name))
            out.append((name, st.st_mtime, st.st_size))
    return tuple(out)


def _stamped_by_all_kernels(base):
    """``base`` (a numba cache locator), restricted to this folder and stamped with every kernel source."""

    class Locator(base):
        def get_source_stamp(self):
            return _kernels_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _HERE:
                return None
            return super().from_function(py_func, py_file)

    Locator.__name__ = Locator.__qualname__ = f"SpnkitKernels{base.__name__}"
    return Locator


# numba's own order: $NUMBA_CACHE_DIR if set, else the in-tree __pycache__, else a user-wide cache directory.
_LOCATORS = [_stamped_by_all_kernels(b) for b in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                                                   caching.UserWideCacheLocator)]
if not any(c.__name__.startswith("SpnkitKernels") for c in caching.CacheImpl._locator_classes):
    caching.CacheImpl._locator_classes[0:0] = _LOCATORS
