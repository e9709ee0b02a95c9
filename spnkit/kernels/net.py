"""A network's kernel arrays as one numba struct, so that a MAP call passes one argument instead of sixteen.

numba's dispatcher types every argument on every call, ~45 ns per array; a struct is typed once as a whole
(~0.4 us). On a small network (157 nodes, a 1.5 us query) the sixteen arrays cost about as much as the query.
``FlatSPN.kernel_net`` builds it once per network; kernels read its fields.
"""

from __future__ import annotations

import numba as nb
from numba.core import types
from numba.experimental import structref


@structref.register
class KernelNetType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class KernelNet(structref.StructRefProxy):
    """The arrays of ``FlatSPN`` that the MAP kernels read: the network, ``W = exp(log_w)``, ``lin_ok``
    (``passes.linear_weights_safe``), the cardinalities, ``FlatSPN.map_plan`` (``uni`` ... ``scope64``) and one
    set of ``kernels.solve.scratch`` buffers for ``spnkit.map``'s queries (``scratch_f/i/b/t``)."""


FIELDS = ("node_type", "child_ptr", "children", "log_w", "W", "lin_ok", "leaf_var", "leaf_val", "cards",
          "uni", "tab", "rest", "uni_index", "var_ptr", "z", "scope64", "scratch_f", "scratch_i", "scratch_b",
          "scratch_t")
structref.define_proxy(KernelNet, KernelNetType, list(FIELDS))


@nb.njit(cache=True)
def make_net(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, cards, uni, tab, rest, uni_index,
             var_ptr, z, scope64, scratch_f, scratch_i, scratch_b, scratch_t):
    """A ``KernelNet`` (compiled once and cached: the proxy's own constructor is compiled in every process)."""
    return KernelNet(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, cards, uni, tab, rest,
                     uni_index, var_ptr, z, scope64, scratch_f, scratch_i, scratch_b, scratch_t)
