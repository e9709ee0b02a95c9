"""FlatSPN: a sum-product network as flat arrays, the layout every numba kernel loops over.

Nodes are stored in topological order, **children before parents**, so the root is the last node and
every bottom-up pass is one loop ``for i in range(n_nodes)`` (Mei, Jiang & Tu 2018 keep the same order).
Children are stored CSR-style: the children of node ``i`` are ``children[child_ptr[i]:child_ptr[i+1]]``,
with the matching natural-log edge weights in ``log_w`` (sum nodes) or 0.0 (product nodes).
Leaves are indicators ``[X_var = val]``.
"""

from __future__ import annotations

import functools
from dataclasses import InitVar, dataclass, field

import numpy as np

from .errors import QueryError, SPNStructureError
from .kernels.structure import STRUCT_OK, check_structure

LEAF: int = 0
SUM: int = 1
PRODUCT: int = 2
NODE_TYPE_NAMES = {LEAF: "leaf", SUM: "sum", PRODUCT: "product"}


@dataclass(frozen=True, eq=False)
class FlatSPN:
    """A validated SPN over categorical variables with indicator leaves.

    Attributes
    ----------
    node_type : int8 array, shape (n_nodes,)
        ``LEAF`` (0), ``SUM`` (1) or ``PRODUCT`` (2).
    child_ptr : int64 array, shape (n_nodes + 1,)
        CSR offsets into ``children`` / ``log_w``; leaves have no children.
    children : int64 array, shape (n_edges,)
        Child node indices; every child index is smaller than its parent's (children first).
    log_w : float64 array, shape (n_edges,)
        Natural-log weight of each sum edge (may be ``-inf`` for a zero weight); 0.0 on product edges.
    leaf_var, leaf_val : int64 arrays, shape (n_nodes,)
        Variable and value of each indicator leaf; -1 on internal nodes.
    cardinalities : int64 array, shape (n_vars,)
        Number of states of each variable (2 for binary).
    """

    node_type: np.ndarray
    child_ptr: np.ndarray
    children: np.ndarray
    log_w: np.ndarray
    leaf_var: np.ndarray
    leaf_val: np.ndarray
    cardinalities: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)
    validate: InitVar[bool] = True   # False only for networks spnkit derives from a validated one

    def __post_init__(self, validate: bool = True) -> None:
        for name, dtype in (("node_type", np.int8), ("child_ptr", np.int64), ("children", np.int64),
                            ("log_w", np.float64), ("leaf_var", np.int64), ("leaf_val", np.int64),
                            ("cardinalities", np.int64)):
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if validate:
            self._validate()

    def __reduce__(self):
        """Pickled as its arrays and ``meta``, not what it computed and compiled on first use (``kernel_net`` is
        process-local): ``spnkit.cluster`` ships networks to Dask workers this way."""
        return _restore, (self.node_type, self.child_ptr, self.children, self.log_w, self.leaf_var, self.leaf_val,
                          self.cardinalities, self.meta)

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.children.shape[0])

    @property
    def n_vars(self) -> int:
        return int(self.cardinalities.shape[0])

    @property
    def root(self) -> int:
        return self.n_nodes - 1

    def counts(self) -> dict[str, int]:
        """Numbers of nodes by type, edges and variables."""
        return {
            "nodes": self.n_nodes,
            "sum": int(np.sum(self.node_type == SUM)),
            "product": int(np.sum(self.node_type == PRODUCT)),
            "leaf": int(np.sum(self.node_type == LEAF)),
            "edges": self.n_edges,
            "vars": self.n_vars,
        }

    def __repr__(self) -> str:
        c = self.counts()
        return (f"FlatSPN(nodes={c['nodes']} [sum={c['sum']}, product={c['product']}, leaf={c['leaf']}], "
                f"edges={c['edges']}, vars={c['vars']}, max_card={int(self.cardinalities.max(initial=0))})")

    @functools.cached_property
    def linear_weights(self) -> tuple[np.ndarray, bool]:
        """``(exp(log_w), safe)``: the linear weights of the kernels' fast path, and whether every non-zero one
        lies in the range that path needs (``kernels.passes``); computed once per network."""
        from .kernels.passes import linear_weights_safe

        W = np.exp(self.log_w)
        W.setflags(write=False)
        return W, bool(linear_weights_safe(W, self.log_w))

    @functools.cached_property
    def map_plan(self) -> tuple[np.ndarray, ...]:
        """What the MAP kernels' first sweep needs about this network, computed once: ``(uni, tab, rest,
        uni_index, var_ptr, z, scope64)`` as in ``kernels.linear.map_plan`` (``z``: every node's marginal, all
        variables summed out)."""
        from .kernels.linear import map_plan

        W, _ = self.linear_weights
        plan = map_plan(self.node_type, self.child_ptr, self.children, self.log_w, W, self.leaf_var, self.leaf_val,
                        self.cardinalities)
        for a in plan:
            a.setflags(write=False)
        return plan

    @functools.cached_property
    def kernel_net(self):
        """The network, its linear weights and ``map_plan`` as one ``kernels.net.KernelNet``: what a MAP call
        passes to its kernel (one argument instead of sixteen)."""
        from .kernels.net import make_net
        from .kernels.solve import scratch

        W, lin_ok = self.linear_weights
        return make_net(self.node_type, self.child_ptr, self.children, self.log_w, W, lin_ok, self.leaf_var,
                        self.leaf_val, self.cardinalities, *self.map_plan,
                        *scratch(self.n_nodes, self.n_edges, self.n_vars, int(self.cardinalities.max(initial=1))))

    @functools.cached_property
    def kernel_arrays(self) -> tuple:
        """The arrays of ``kernel_net`` but its scratch, as the tuple ``map_batch``'s workers take:
        ``(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, map_plan, cardinalities)``."""
        W, lin_ok = self.linear_weights
        return (self.node_type, self.child_ptr, self.children, self.log_w, W, lin_ok, self.leaf_var, self.leaf_val,
                self.map_plan, self.cardinalities)

    def query_entry(self, method: int):
        """``kernels.solve.query_entry`` for this network and method code: ``spnkit.map``'s kernel without
        per-call typing (looked up once per method family)."""
        try:
            return self._query_entries[method]
        except KeyError:
            from .kernels.solve import query_entry

            self._query_entries[method] = fn = query_entry(self.kernel_net, method)
            return fn

    @functools.cached_property
    def _query_entries(self) -> dict:
        return {}

    # -- inference -----------------------------------------------------------------------------------
    def log_prob(self, X) -> np.ndarray:
        """Log value of the network at each row of ``X``.

        Parameters
        ----------
        X : int array, shape (n, n_vars) or (n_vars,)
            A value per variable, or -1 to marginalise that variable (its indicators are all set to 1).

        Returns
        -------
        float64 array, shape (n,)
            ``log S(x)``; for a normalised SPN this is the log-probability of the observed part of ``x``.
        """
        from .kernels.passes import log_value_batch

        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise QueryError(f"X has shape {X.shape}; expected (n, {self.n_vars}) for this SPN "
                             f"({self.n_vars} variables)")
        if not np.issubdtype(X.dtype, np.integer):
            if not np.all(np.isfinite(X)) or np.any(X != np.round(X)):
                raise QueryError("X must hold integer values (use -1 to marginalise a variable)")
        X = np.ascontiguousarray(X, dtype=np.int64)
        bad = (X < -1) | (X >= self.cardinalities[None, :])
        if bad.any():
            r, v = map(int, np.argwhere(bad)[0])
            raise QueryError(f"X[{r}, {v}] = {X[r, v]} is out of range for variable {v} "
                             f"(cardinality {self.cardinalities[v]}); use 0..{self.cardinalities[v] - 1} "
                             "or -1 to marginalise")
        return log_value_batch(self.node_type, self.child_ptr, self.children, self.log_w, *self.linear_weights,
                               self.leaf_var, self.leaf_val, X, int(self.cardinalities.max()))

    def log_partition(self) -> float:
        """``log Z``: the network's value with every variable marginalised (0 for a normalised SPN)."""
        return float(self.log_prob(-np.ones((1, self.n_vars), dtype=np.int64))[0])

    # -- validation ----------------------------------------------------------------------------------
    def _validate(self) -> None:
        n, e = self.n_nodes, self.n_edges
        if n == 0:
            raise SPNStructureError("the SPN has no nodes")
        if self.child_ptr.shape != (n + 1,) or self.child_ptr[0] != 0 or self.child_ptr[-1] != e:
            raise SPNStructureError(f"child_ptr must have {n + 1} entries from 0 to {e}")
        if np.any(np.diff(self.child_ptr) < 0):
            raise SPNStructureError("child_ptr must be non-decreasing")
        if self.log_w.shape != (e,):
            raise SPNStructureError(f"log_w has {self.log_w.shape[0]} entries; expected one per edge ({e})")
        if self.leaf_var.shape != (n,) or self.leaf_val.shape != (n,):
            raise SPNStructureError("leaf_var and leaf_val need one entry per node")
        if np.any(self.cardinalities < 1):
            v = int(np.argmax(self.cardinalities < 1))
            raise SPNStructureError(f"variable {v} has cardinality {self.cardinalities[v]}; expected >= 1")
        code, node, extra = check_structure(self.node_type, self.child_ptr, self.children, self.log_w,
                                            self.leaf_var, self.leaf_val, self.cardinalities)
        if code != STRUCT_OK:
            msg = _structure_message(self, code, int(node), int(extra))
            src = self.meta.get("source")
            raise SPNStructureError(f"{src}: {msg}" if src else msg)

    def node_label(self, i: int) -> str:
        """How the model file names node ``i``: ``node <id> (line <n>)`` for readers that keep the file's ids
        (``meta["node_labels"]``), else ``node <i>`` (maxspn: the 0-based node line after line 1)."""
        labels = self.meta.get("node_labels")
        if labels is not None and 0 <= i < len(labels):
            return labels[i]
        return f"node {i}"

    # -- normalisation -------------------------------------------------------------------------------
    @functools.cached_property
    def weight_sums(self) -> np.ndarray:
        """Per node: the sum of its outgoing linear weights for sum nodes, NaN for the others."""
        out = np.full(self.n_nodes, np.nan)
        sums = np.flatnonzero(self.node_type == SUM)
        w = np.exp(self.log_w)
        csum = np.concatenate([[0.0], np.cumsum(w)])
        out[sums] = csum[self.child_ptr[sums + 1]] - csum[self.child_ptr[sums]]
        return out

    @functools.cached_property
    def is_normalized(self) -> bool:
        """True when every sum node's weights sum to 1 (within ``NORM_TOL``): values are then probabilities."""
        s = self.weight_sums
        s = s[~np.isnan(s)]
        return bool(np.all(np.abs(s - 1.0) <= NORM_TOL))

    def normalize(self) -> FlatSPN:
        """The same distribution with locally normalised weights (every sum node's weights sum to 1), so that
        values are probabilities: ``log_w'(i->j) = log_w(i->j) + log Z_j - log Z_i`` with ``Z`` each node's value
        with every variable summed out (Peharz et al., AISTATS 2015). MAP assignments do not change; log values
        drop by the root's ``log Z``. Refuses a network with a node of zero mass (``Z = 0``)."""
        n = self.n_nodes
        logz = np.zeros(n)
        lw = self.log_w.copy()
        t, ptr, ch = self.node_type, self.child_ptr, self.children
        for i in range(n):
            a, b = ptr[i], ptr[i + 1]
            if t[i] == PRODUCT:
                logz[i] = logz[ch[a:b]].sum()
            elif t[i] == SUM:
                v = self.log_w[a:b] + logz[ch[a:b]]
                m = v.max()
                if m == -np.inf:
                    raise SPNStructureError(f"{self.node_label(i)} has zero mass (every weight or child is 0): "
                                            "it cannot be normalised; remove it or give it a positive weight")
                logz[i] = m + np.log(np.exp(v - m).sum())
                lw[a:b] = v - logz[i]
        return FlatSPN(node_type=t, child_ptr=ptr, children=ch, log_w=lw, leaf_var=self.leaf_var,
                       leaf_val=self.leaf_val, cardinalities=self.cardinalities,
                       meta={**self.meta, "normalized_from_log_z": float(logz[-1])}, validate=False)


NORM_TOL = 1e-6     # |Σ w - 1| a sum node may show and still count as normalised (JSON files carry 8 digits)


def _structure_message(spn: FlatSPN, code: int, node: int, extra: int) -> str:
    from .kernels import structure as s

    what = NODE_TYPE_NAMES.get(int(spn.node_type[node]), "?") if 0 <= node < spn.n_nodes else "?"
    where = f"{spn.node_label(node)} ({what})"
    if code in (s.STRUCT_CHILD_ORDER, s.STRUCT_WEIGHT, s.STRUCT_INCOMPLETE, s.STRUCT_NOT_DECOMPOSABLE) \
            and 0 <= extra < spn.n_nodes:
        extra = spn.node_label(extra).removeprefix("node ")
    if code == s.STRUCT_BAD_TYPE:
        return f"{where}: unknown node type {int(spn.node_type[node])}; expected 0 (leaf), 1 (sum) or 2 (product)"
    if code == s.STRUCT_CHILD_ORDER:
        return (f"{where}: child {extra} does not come before its parent (index out of range, a cycle, or "
                "nodes not in children-first order)")
    if code == s.STRUCT_LEAF_CHILDREN:
        return f"{where}: a leaf has children"
    if code == s.STRUCT_NO_CHILDREN:
        return f"{where}: an internal node has no children"
    if code == s.STRUCT_LEAF_VAR:
        return f"{where}: leaf variable {extra} is out of range 0..{spn.n_vars - 1}"
    if code == s.STRUCT_LEAF_VAL:
        v = int(spn.leaf_var[node])
        return (f"{where}: indicator value {extra} of variable {v} is out of range "
                f"0..{int(spn.cardinalities[v]) - 1} (cardinality {int(spn.cardinalities[v])})")
    if code == s.STRUCT_WEIGHT:
        return f"{where}: edge to child {extra} has a NaN or +inf log-weight (weights must be finite and >= 0)"
    if code == s.STRUCT_INCOMPLETE:
        return (f"{where}: not complete: child {extra} has a different scope from the sum node's first child "
                "(every child of a sum node must depend on the same variables)")
    if code == s.STRUCT_NOT_DECOMPOSABLE:
        return (f"{where}: not decomposable: child {extra} shares a variable with an earlier child "
                "(the children of a product node must have disjoint scopes)")
    if code == s.STRUCT_MULTI_ROOT:
        return (f"{where} has no parent but is not the root ({spn.node_label(spn.n_nodes - 1)}); an SPN has "
                "exactly one root")
    return f"{where}: structure check failed with code {code}"


def _restore(node_type, child_ptr, children, log_w, leaf_var, leaf_val, cardinalities, meta) -> FlatSPN:
    """``FlatSPN.__reduce__``'s inverse: the arrays were validated when the network was first made."""
    return FlatSPN(node_type=node_type, child_ptr=child_ptr, children=children, log_w=log_w, leaf_var=leaf_var,
                   leaf_val=leaf_val, cardinalities=cardinalities, meta=meta, validate=False)
