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
  variable summed out, the same for every query (stored). In the log domain, when at least half of the
  variables are hidden, the sweep visits only the ancestors of the query and evidence leaves (found by walking
  parent links up from them) and reads the stored marginals below them.
* **Linear domain.** The sweeps run on linear values (no exp or log; ``passes``' range checks) and fall back
  to the log domain for the query when a value leaves the safe range.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .maxprod import descend_into
from .passes import leaf_role, lin_product, lin_sum, node_value, out_of_range, product_edges, sum_edges
from .reduce import build_reduced

# In the log domain, visit only the relevant part when at least this share of the variables is hidden: a
# skipped node saves an exp and a log per sum edge (ad at 2:3:5: 346 -> 292 us per query). In the linear
# domain the parent walk and the indirect order cost about what they save (nltcs, 1:1:8), so it always sweeps.
SPARSE_LOG = 0.5


# -- per network --------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def map_plan(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, cards):
    """What the sweeps need about a network, computed once.

    Returns ``(link_ptr, links, uni, tab, rest, uni_index)``:

    * ``link_ptr``/``links``: one CSR of n_nodes + n_vars rows: node i's parents (row i), then variable v's
      leaves (row n_nodes + v);
    * ``uni`` (int64, (2, n_uni)): the univariate sums (sum nodes whose children are all leaves) and their
      variable; ``tab`` (float64, (2, n_uni, K + 2), K the largest cardinality): for each, linear (``tab[0]``)
      and log (``tab[1]``) value with the variable observed at value k (column k), summed out (column K), and
      the best single term (column K + 1, max-product);
    * ``rest``: the other nodes, children first; ``uni_index``: each node's row in ``uni``, or -1.
    """
    n = node_type.shape[0]
    nv = cards.shape[0]
    m = children.shape[0]
    count = np.zeros(n + nv + 1, dtype=np.int64)
    for j in range(m):
        count[children[j] + 1] += 1
    for i in range(n):
        if node_type[i] == 0:
            count[n + leaf_var[i] + 1] += 1
    link_ptr = np.cumsum(count)
    links = np.empty(link_ptr[-1], dtype=np.int64)
    fill = link_ptr[:-1].copy()
    for i in range(n):
        for j in range(child_ptr[i], child_ptr[i + 1]):
            c = children[j]
            links[fill[c]] = i
            fill[c] += 1
        if node_type[i] == 0:
            r = n + leaf_var[i]
            links[fill[r]] = i
            fill[r] += 1

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
    return link_ptr, links, uni, tab, rest, uni_index


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


@nb.njit(cache=True, inline="always")
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
def _uni_lin(uni, tab, role, value, use_max, u, kept):
    col = _uni_columns(role, value, use_max, tab.shape[2] - 2)
    for k in range(uni.shape[1]):
        i, v = uni[0, k], uni[1, k]
        u[i] = tab[0, k, col[v]]
        kept[i] = role[v] == 0


@nb.njit(cache=True)
def _rest_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, role, value, use_max, u, kept):
    bad = False
    for p in range(rest.shape[0]):
        bad |= _upward_node_lin(rest[p], node_type, child_ptr, children, W, leaf_var, leaf_val, role, value,
                                use_max, u, kept)
    return bad


@nb.njit(cache=True)
def _upward_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, uni, tab, rest, role, value, use_max, u,
                kept):
    """Every node, linear values: the univariate sums from the table, then the rest children first. Returns
    0 (no query variable), 1 (done) or -1 (a value left the range; ``u`` is unusable).

    The two loops are separate functions on purpose: written in one, numba's inlining of the node body gave
    code 2.7x slower (nltcs: 25.7 instead of 9.4 us)."""
    _uni_lin(uni, tab, role, value, use_max, u, kept)
    if _rest_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, role, value, use_max, u, kept):
        return -1
    return 1 if kept[node_type.shape[0] - 1] else 0


@nb.njit(cache=True)
def _upward_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, tab, uni_index, role, value, use_max,
                u, kept, order, n_order):
    """The log-domain sweep over ``order[:n_order]`` (children first); every other node must already hold its
    value in ``u`` and ``kept``. Univariate sums come from the table. Returns whether the root is kept."""
    col = _uni_columns(role, value, use_max, tab.shape[2] - 2)
    for p in range(n_order):
        i = order[p]
        k = uni_index[i]
        if k >= 0:
            v = leaf_var[children[child_ptr[i]]]
            u[i] = tab[1, k, col[v]]
            kept[i] = role[v] == 0
        else:
            _upward_node(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u,
                         kept)
    return kept[node_type.shape[0] - 1]


@nb.njit(cache=True)
def relevant_nodes(parent_ptr, parents, var_leaf_ptr, var_leaves, role, mark, order):
    """The nodes with a query or evidence variable in their scope, children first, into ``order``; returns
    their count. Walks parent links up from those variables' leaves (work in proportion to the part of the
    network found). ``mark`` (bool) and ``order`` (int64): scratch of size n_nodes."""
    mark[:] = False
    top = 0
    for v in range(role.shape[0]):
        if role[v] != 2:
            for p in range(var_leaf_ptr[v], var_leaf_ptr[v + 1]):
                leaf = var_leaves[p]
                mark[leaf] = True
                order[top] = leaf
                top += 1
    while top > 0:
        top -= 1
        i = order[top]
        for p in range(parent_ptr[i], parent_ptr[i + 1]):
            par = parents[p]
            if not mark[par]:
                mark[par] = True
                order[top] = par
                top += 1
    c = 0
    for i in range(mark.shape[0]):
        order[c] = i
        c += mark[i]
    return c


@nb.njit(cache=True, inline="always")
def _hidden_share(role):
    h = 0
    for v in range(role.shape[0]):
        h += role[v] == 2
    return h / role.shape[0]


@nb.njit(cache=True)
def upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value, use_max, u,
           kept, order, force_log):
    """The sweep every method starts with: ``u[i]`` as described above and ``kept[i]`` (a query variable is in
    node i's scope), in the linear domain when the network allows it (``lin_ok``) and the values stay in range
    (unless ``force_log``), else in the log domain.

    ``plan``: ``(link_ptr, links, uni, tab, rest, uni_index, z)``, the network's ``FlatSPN.map_plan`` (``z``:
    every node's log marginal). ``order``: int64 scratch (n_nodes,). Returns ``(status, linear)``: status 0
    when no query variable occurs in the network, else 1; ``linear`` says which domain ``u`` holds.
    """
    link_ptr, links, uni, tab, rest, uni_index, z = plan
    n = node_type.shape[0]
    if lin_ok and not force_log:
        status = _upward_lin(node_type, child_ptr, children, W, leaf_var, leaf_val, uni, tab, rest, role, value,
                             use_max, u, kept)
        if status >= 0:
            return status, True
    if _hidden_share(role) >= SPARSE_LOG:
        n_order = relevant_nodes(link_ptr[:n + 1], links, link_ptr[n:], links, role, np.empty(n, dtype=np.bool_),
                                 order)
        u[:] = z
        kept[:] = False
    else:
        for i in range(n):
            order[i] = i
        n_order = n
    found = _upward_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, tab, uni_index, role, value,
                        use_max, u, kept, order, n_order)
    return (1 if found else 0), False


# -- after the sweep ----------------------------------------------------------------------------------------
@nb.njit(cache=True)
def evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, x, u, kept, linear,
                  scratch):
    """``log S(x)`` (hidden variables of ``x`` at -1) after ``upward`` for the same query: only the nodes with
    a query variable are evaluated, the others keep their values in ``u`` (overwritten on query nodes).
    Returns ``(log value, ok, number of query nodes)``; ``ok`` False when a linear value left the range.
    ``scratch``: int64 (n_nodes,)."""
    _, _, _, tab, _, uni_index, _ = plan
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
    order = np.empty(n, dtype=np.int64)
    force_log = False
    while True:
        status, linear = upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role,
                                value, use_max, u, kept, order, force_log)
        if status == 0:
            return -np.inf, 0
        _start_answer(x, role, value)
        descend_into(node_type, child_ptr, children, W if linear else log_w, linear, leaf_var, leaf_val, u, kept,
                     x, order)
        lv, ok, n_kept = evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, x, u,
                                       kept, linear, order)
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
