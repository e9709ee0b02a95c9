"""No kernel compiled without reference counting (``_nrt=False``) reaches code that allocates.

numba compiles a function called from an ``_nrt=False`` kernel with the caller's flags unless the callee sets
its own: an allocation below such a kernel then fails to compile, but only in a process where that callee had
not been compiled (or loaded from the cache) first. A fresh clone found one that way (``log_value_fast`` ->
``assignment_mask``); this reads the kernels' source instead, so the order of compilation cannot hide one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import spnkit.kernels

KERNELS = Path(spnkit.kernels.__file__).parent
# what allocates (or needs numba's runtime) inside a kernel
ALLOCATING_CALLS = {"empty", "zeros", "ones", "full", "array", "empty_like", "zeros_like", "full_like", "copy",
                    "concatenate", "arange", "argsort", "sort", "List", "Dict", "stack", "where", "unique"}


def _njit_functions():
    """name -> (file, FunctionDef, options of the njit decorator) for every numba kernel in spnkit.kernels."""
    out = {}
    for path in sorted(KERNELS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", getattr(deco.func, "id", "")) == "njit":
                    opts = {k.arg: ast.literal_eval(k.value) for k in deco.keywords if k.arg}
                    out[node.name] = (path.name, node, opts)
    return out


def _calls(fn: ast.FunctionDef):
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            yield f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def test_no_kernel_without_reference_counting_reaches_an_allocation():
    kernels = _njit_functions()
    no_nrt = [name for name, (_, _, opts) in kernels.items() if opts.get("_nrt") is False]
    assert "linear_map_fast" in no_nrt and "upward" in no_nrt        # the audit sees the kernels it is about
    problems = []
    for root in no_nrt:
        seen, todo = set(), [(root, (root,))]
        while todo:
            name, path = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for callee in _calls(kernels[name][1]):
                if callee in ALLOCATING_CALLS:
                    problems.append(" -> ".join(path) + f" calls {callee}()")
                elif callee in kernels and kernels[callee][2].get("_nrt") is not True:
                    todo.append((callee, (*path, callee)))
    assert not problems, "\n".join(problems)
