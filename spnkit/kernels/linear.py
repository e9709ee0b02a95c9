"""The sweep every MAP method starts with, and BT and NG straight on the original network.

The MAP->MAX reduction need not be built for the linear methods. One upward sweep computes, for every node,
``u[i]``: for a node with no query variable in its scope the constant the reduction would fold it into (its
sum-product value at the evidence, hidden variables summed out), and for a node with query variables the
solver's score (max-product value for BT, marginal for NG) *including* the constants the reduction would push
into the edge weights above it. At a query sum node, ``log_w[j] + u[child_j]`` is then exactly the reduced
network's ``w'_j + score(child_j)``, so the top-down pass makes the reduced network's choices. A second sweep
re-evaluates only the query part at the chosen assignment, reusing the constants. The other methods build the
reduced network from the same sweep's constants (``reduce_after_upward``).

Three things keep the sweep short (``FlatSPN.map_plan`` computes what they need once per network):

* **Univariate sums.** Learned SPNs are mostly sums over the indicators of one variable (2,105 of nltcs's
  2,320 nodes). Their value for a query depends only on the variable's role and evidence value, so a table
  holds it per value, with the sum and the max: one lookup each instead of a loop over children. The table
  entries are computed by the same arithmetic as the general pass, so the values are identical.
* **Hidden-only sub-networks.** A node whose scope holds only hidden variables has the value it has with every
  variable summed out, the same for every query (stored). On networks over at most 64 variables each node's
  scope is a bit set, so the sweep recognises such a node in one AND and takes the stored value instead of
  visiting its children (at 1:1:8 on nltcs, four fifths of the product edges).
* **Linear domain.** The sweeps run on linear values (no exp or log; ``passes``' range checks) and fall back
  to the log domain for the query when a value leaves the safe range.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .maxprod import descend_into
from .passes import leaf_role, lin_product, lin_sum, node_value, out_of_range, product_edges, sum_edges
from .reduce import build_reduced


# -- per network --------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def map_plan(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, cards):
    """What the sweeps need about a network, computed once.

    Returns ``(uni, tab, rest, uni_index, scope64)``:

    * ``uni`` (int64, (2, n_uni)): the univariate sums (sum nodes whose children are all leaves) and their
      variable; ``tab`` (float64, (2, n_uni, K + 2), K the largest cardinality): for each, linear (``tab[0]``)
      and log (``tab[1]``) value with the variable observed at value k (column k), summed out (column K), and
      the best single term (column K + 1, max-product);
    * ``rest``: the other nodes, children first; ``uni_index``: each node's row in ``uni``, or -1;
    * ``scope64``: each node's scope as a bit set when the network has at most 64 variables (all bits set
      otherwise: no node is then ever skipped as hidden-only).
    """
    n = node_type.shape[0]
    nv = cards.shape[0]
    uni_index = np.full(n, -1, dtype=np.int64)
    n_uni = 0
    for i in range(n):
        if node_type[i] == 1:
            all_leaves = True
            for j in range(child_ptr[i], child_ptr[i + 1]):
                all_leaves &= node_type[children[j]] == 0
            if all_leaves:
                uni_index[i] = n_uni
                n_uni += 1
    K = 1
    for v in range(nv):
        K = max(K, cards[v])
    uni = np.empty((2, n_uni), dtype=np.int64)
    tab = np.empty((2, n_uni, K + 2))
    rest = np.empty(n - n_uni, dtype=np.int64)
    u_lin = np.zeros(n)                       # leaf indicators for the table entries, as the general pass has them
    u_log = np.full(n, -np.inf)
    n_rest = 0
    for i in range(n):
        k = uni_index[i]
        if k < 0:
            rest[n_rest] = i
            n_rest += 1
            continue
        a, b = child_ptr[i], child_ptr[i + 1]
        uni[0, k] = i
        uni[1, k] = leaf_var[children[a]]
        for val in range(K + 1):              # column K: every indicator on
            for j in range(a, b):
                on = val == K or leaf_val[children[j]] == val
                u_lin[children[j]] = 1.0 if on else 0.0
                u_log[children[j]] = 0.0 if on else -np.inf
            tab[0, k, val] = lin_sum(a, b, children, W, u_lin)
            tab[1, k, val] = sum_edges(a, b, children, log_w, u_log)
        best_lin = 0.0
        best_log = -np.inf
        for j in range(a, b):
            best_lin = max(best_lin, W[j])
            best_log = max(best_log, log_w[j])
        tab[0, k, K + 1] = best_lin
        tab[1, k, K + 1] = best_log
    scope64 = np.full(n, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if nv <= 64:
        for i in range(n):
            if node_type[i] == 0:
                scope64[i] = np.uint64(1) << np.uint64(leaf_var[i])
            else:
                acc = np.uint64(0)
                for j in range(child_ptr[i], child_ptr[i + 1]):
                    acc |= scope64[children[j]]
                scope64[i] = acc
    return uni, tab, rest, uni_index, scope64


# -- the upward sweep ---------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _uni_columns(role, value, use_max, K):
    """Per variable, the table column its univariate sums read: the evidence value, K (summed out: hidden, or
    a query variable under NG) or K + 1 (a query variable under max-product). Looked up per node, branch-free:
    a branch on the role per node mispredicts on every new query (nltcs 3:5:2: 28 instead of 20 us)."""
    col = np.empty(role.shape[0], dtype=np.int64)
    for v in range(role.shape[0]):
        r = role[v]
        col[v] = value[v] if r == 1 else (K + 1 if (r == 0 and use_max) else K)
    return col


@nb.njit(cache=True)
def _upward_node(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u, kept):
    t = node_type[i]
    a, b = child_ptr[i], child_ptr[i + 1]
    if t == 0:
        kept[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
        u[i] = -np.inf if off else 0.0
    elif t == 1:
        k = kept[children[a]]                  # completeness: all children alike
        kept[i] = k
        if k and use_max:
            best = -np.inf
            for j in range(a, b):
                s = log_w[j] + u[children[j]]
                if s > best:
                    best = s
            u[i] = best
        else:
            u[i] = sum_edges(a, b, children, log_w, u)
    else:
        k = False
        for j in range(a, b):
            if kept[children[j]]:
                k = True
                break
        kept[i] = k
        u[i] = product_edges(a, b, children, u)


@nb.njit(cache=True, inline="always")
def _upward_node_lin(i, node_type, child_ptr, children, W, leaf_var, leaf_val, role, value, use_max, u, kept):
    """One node of the linear sweep; returns whether its value left the linear range.

    Written without query-dependent branches (a sum computes both its total and its best term and then picks
    one): the branch predictor cannot learn the pattern of a new query, and mispredictions cost more than the
    arithmetic saved."""
    t = node_type[i]
    a, b = child_ptr[i], child_ptr[i + 1]
    if t == 0:
        kept[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
        u[i] = 1.0 - np.float64(off)
        return False
    if t == 1:
        k = kept[children[a]]
        kept[i] = k
        tot = 0.0
        best = 0.0
        for j in range(a, b):
            s = W[j] * u[children[j]]
            tot += s
            best = max(best, s)
        v = best if (k & use_max) else tot
        u[i] = v
        return out_of_range(v, True)
    k = False
    for j in range(a, b):
        k |= kept[children[j]]
    kept[i] = k
    v, zero = lin_product(a, b, children, u)
    u[i] = v
    return out_of_range(v, zero)


@nb.njit(cache=True)
def _uni_values(uni, tab, d, role, value, use_max, u, kept):
    """The univariate sums from the table: linear (``d = 0``) or log (``d = 1``) values."""
    col = _uni_columns(role, value, use_max, tab.shape[2] - 2)
    for k in range(uni.shape[1]):
        i, v = uni[0, k], uni[1, k]
        u[i] = tab[d, k, col[v]]
        kept[i] = role[v] == 0


@nb.njit(cache=True, inline="always")
def _seen_bits(role):
    """The query and evidence variables as a bit set (networks over > 64 variables have every scope bit set)."""
    seen = np.uint64(0)
    for v in range(role.shape[0]):
        if role[v] != 2:
            seen |= np.uint64(1) << np.uint64(v & 63)
    return seen


@nb.njit(cache=True)
def _rest_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, scope64, z_lin, role, value, use_max, u,
              kept):
    """The non-univariate nodes, children first, linear values; returns whether a value left the range. A node
    whose scope (``scope64``) holds no query or evidence variable takes its stored marginal ``z_lin`` (what the
    pass would compute, bit for bit) without visiting its children."""
    seen = _seen_bits(role)
    bad = False
    for p in range(rest.shape[0]):
        i = rest[p]
        if scope64[i] & seen:
            bad |= _upward_node_lin(i, node_type, child_ptr, children, W, leaf_var, leaf_val, role, value,
                                    use_max, u, kept)
        else:
            u[i] = z_lin[i]
            kept[i] = False
    return bad


@nb.njit(cache=True)
def _rest_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, rest, scope64, z_log, role, value,
              use_max, u, kept):
    """``_rest_lin`` in the log domain. (``_upward_node`` is deliberately not inlined here: inlined, the loop
    ran 4x slower on ad, 356 instead of 88 us.)"""
    seen = _seen_bits(role)
    for p in range(rest.shape[0]):
        i = rest[p]
        if scope64[i] & seen:
            _upward_node(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u,
                         kept)
        else:
            u[i] = z_log[i]
            kept[i] = False


@nb.njit(cache=True)
def upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value, use_max, u,
           kept, force_log):
    """The sweep every method starts with: ``u[i]`` as described above and ``kept[i]`` (a query variable is in
    node i's scope): the univariate sums from the table, then the other nodes children first. In the linear
    domain when the network allows it (``lin_ok``) and the values stay in range (unless ``force_log``), else in
    the log domain.

    ``plan``: ``(uni, tab, rest, uni_index, z, scope64)``, the network's ``FlatSPN.map_plan`` (``z``: every
    node's marginal, linear ``z[0]`` and log ``z[1]``). Returns ``(status, linear)``: status 0 when no query
    variable occurs in the network, else 1; ``linear`` says which domain ``u`` holds.

    The table loop and the node loop are separate functions on purpose: written in one, numba's inlining of
    the node body gave code 2.7x slower (nltcs: 25.7 instead of 9.4 us).
    """
    uni, tab, rest, _, z, scope64 = plan
    root = node_type.shape[0] - 1
    if lin_ok and not force_log:
        _uni_values(uni, tab, 0, role, value, use_max, u, kept)
        if not _rest_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, scope64, z[0], role, value,
                         use_max, u, kept):
            return (1 if kept[root] else 0), True
    _uni_values(uni, tab, 1, role, value, use_max, u, kept)
    _rest_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, rest, scope64, z[1], role, value, use_max,
              u, kept)
    return (1 if kept[root] else 0), False


# -- after the sweep ----------------------------------------------------------------------------------------
@nb.njit(cache=True)
def evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, x, u, kept, linear,
                  scratch):
    """``log S(x)`` (hidden variables of ``x`` at -1) after ``upward`` for the same query: only the nodes with
    a query variable are evaluated, the others keep their values in ``u`` (overwritten on query nodes).
    Returns ``(log value, ok, number of query nodes)``; ``ok`` False when a linear value left the range.
    ``scratch``: int64 (n_nodes,)."""
    _, tab, _, uni_index, _, _ = plan
    n = node_type.shape[0]
    nk = 0
    for i in range(n):                        # the query nodes, listed by a branch-free loop
        scratch[nk] = i
        nk += kept[i]
    d = 0 if linear else 1
    bad = False
    for p in range(nk):
        i = scratch[p]
        k = uni_index[i]
        if k >= 0:
            u[i] = tab[d, k, x[leaf_var[children[child_ptr[i]]]]]
        elif not linear:
            node_value(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u)
        else:
            t = node_type[i]
            a, b = child_ptr[i], child_ptr[i + 1]
            if t == 0:
                u[i] = np.float64(x[leaf_var[i]] == leaf_val[i])
            elif t == 1:
                v = lin_sum(a, b, children, W, u)
                bad |= out_of_range(v, True)
                u[i] = v
            else:
                v, zero = lin_product(a, b, children, u)
                bad |= out_of_range(v, zero)
                u[i] = v
    if bad:
        return 0.0, False, nk
    return (np.log(u[n - 1]) if linear else u[n - 1]), True, nk


@nb.njit(cache=True)
def _start_answer(x, role, value):
    """Evidence values, 0 on query variables (until the descent sets them), -1 on hidden ones."""
    for v in range(x.shape[0]):
        x[v] = value[v] if role[v] == 1 else (0 if role[v] == 0 else -1)


@nb.njit(cache=True)
def linear_map_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value,
                    use_max, x):
    """BT (``use_max``) or NG for one query on the original network. ``x`` (int64, (n_vars,)) receives the
    evidence values, the answer on query variables (0 where unreached) and -1 on hidden ones.

    ``upward``, the top-down choice, ``evaluate_kept``; all again in the log domain if a linear value left the
    range. Arguments as for ``upward``. Returns ``(log P(answer, evidence) with hidden summed out, number of
    query nodes)``; the count is 0 when no query variable occurs in the network (then ``x`` is not filled).
    """
    n = node_type.shape[0]
    u = np.empty(n)
    kept = np.empty(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int64)        # the descent's stack, then evaluate_kept's scratch
    force_log = False
    while True:
        status, linear = upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role,
                                value, use_max, u, kept, force_log)
        if status == 0:
            return -np.inf, 0
        _start_answer(x, role, value)
        descend_into(node_type, child_ptr, children, W if linear else log_w, linear, leaf_var, leaf_val, u, kept,
                     x, stack)
        lv, ok, n_kept = evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, x, u,
                                       kept, linear, stack)
        if ok:
            return lv, n_kept
        force_log = True


@nb.njit(cache=True)
def reduce_after_upward(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, u, kept, linear, ck):
    """The MAP->MAX reduction (``reduce.reduce_to_max``'s arrays) from an NG-style ``upward`` for the query:
    ``u`` holds every non-query node's constant. ``ck``: float scratch (n_nodes,), gets each query product's
    carried log constant."""
    n = node_type.shape[0]
    for i in range(n):                     # children first; only the constants the reduced network reads
        if kept[i]:
            acc = 0.0
            for j in range(child_ptr[i], child_ptr[i + 1]):
                c = children[j]
                if not kept[c]:
                    ck[c] = np.log(u[c]) if linear else u[c]
                if node_type[i] == 2:
                    acc += ck[c]
            ck[i] = acc
    return build_reduced(node_type, child_ptr, children, log_w, leaf_var, leaf_val, qindex, kept, ck)
