"""The sweep every MAP method starts with, and BT and NG straight on the original network.

The MAP->MAX reduction need not be built for the linear methods. One upward sweep computes, for every node,
``u[i]``: for a node with no query variable in its scope the constant the reduction would fold it into (its
sum-product value at the evidence, hidden variables summed out), and for a node with query variables the
solver's score (max-product value for BT, marginal for NG) *including* the constants the reduction would push
into the edge weights above it. At a query sum node, ``w_j * u[child_j]`` is then exactly the reduced
network's ``w'_j * score(child_j)``, so the top-down pass makes the reduced network's choices. A second sweep
re-evaluates only the query part at the chosen assignment, reusing the constants. The other methods build the
reduced network from the same sweep's constants (``carry_constants``).

Three things keep the sweep short (``FlatSPN.map_plan`` computes what they need once per network):

* **Univariate sums.** Learned SPNs are mostly sums over the indicators of one variable (2,092 of nltcs's
  2,320 nodes). Their value for a query depends only on the variable's role and evidence value, so a table
  holds it per value, with the sum and the max: one lookup each instead of a loop over children. The table
  entries are computed by the same arithmetic as the general pass, so the values are identical. The table's
  rows are grouped by variable, so the re-evaluation visits only the query variables' rows.
* **Hidden-only sub-networks.** A node whose scope holds only hidden variables has the value it has with every
  variable summed out, the same for every query (stored). On networks over at most 64 variables each node's
  scope is a bit set, so the sweep recognises such a node in one AND and takes the stored value instead of
  visiting its children (at 1:1:8 on nltcs, four fifths of the product edges).
* **Scaled numbers** (``kernels.scaled``): values as mantissa and exponent (``u`` and ``ue``), so no exp or
  log and no underflow; the log domain only for networks whose weights span more than 2^+-100
  (``passes.linear_weights_safe``). Scaled values cannot leave their range, so nothing is ever computed twice
  (the linear domain this replaced gave up on ad at random evidence, values below 2^-1022, and redid the query
  in the log domain).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .maxprod import descend_into
from .passes import leaf_role, node_value, product_edges, sum_edges
from .reduce import kept_nodes
from .scaled import BLOCK, E_ZERO, best_child, normalize, pow2, product_node, to_log

ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


# -- per network --------------------------------------------------------------------------------------------
def map_plan(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, cards):
    """What the sweeps need about a network, computed once (read-only arrays).

    Returns ``(uni, tab, rest, uni_index, var_ptr, z, scope64)``:

    * ``uni`` (int64, (4, n_uni)): the univariate sums (sum nodes whose children are all leaves), their
      variable and, when that variable is queried, the value BT and NG choose there (scaled, log domain); rows
      grouped by variable (``var_ptr``, (n_vars + 1,): variable v's rows are
      ``var_ptr[v]:var_ptr[v + 1]``); ``tab`` (float64, (n_uni, K + 2, 3), K the largest cardinality): for
      each, with the variable observed at value k (column k), summed out (column K) and the best single term
      (column K + 1, max-product), the scaled value's mantissa (``[..., 0]``), its log (``[..., 1]``) and its
      exponent (``[..., 2]``, an integer held as float: read with the mantissa, from the same cache line);
    * ``rest``: the other nodes, children first, but for the leaves whose only parents are univariate sums
      (nothing reads their values); ``uni_index``: each node's row in ``uni``, or -1;
    * ``z`` (float64, (3, n)): every node's marginal (all variables summed out) as mantissa, log and exponent,
      what the sweeps would compute for it;
    * ``scope64``: each node's scope as a bit set when the network has at most 64 variables (all bits set
      otherwise: no node is then ever skipped as hidden-only).
    """
    tables = _plan_tables(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, cards)
    for t in tables:
        t.setflags(write=False)
    uni, tab, rest_all, rest, uni_index, var_ptr, scope64 = tables
    n, nv = node_type.shape[0], cards.shape[0]
    z = np.empty((3, n))
    zr = z.view()
    hidden = np.full(nv, 2, dtype=np.int8)
    no_value = np.zeros(nv, dtype=np.int64)
    no_skip = np.full(n, ALL_BITS, dtype=np.uint64)
    for t in (zr, hidden, no_value, no_skip):
        t.setflags(write=False)
    _plan_marginals(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, uni, tab, var_ptr, rest_all, no_skip,
                    ALL_BITS, zr, hidden, no_value, False, z)
    z.setflags(write=False)
    return uni, tab, rest, uni_index, var_ptr, z, scope64


@nb.njit(cache=True)
def _plan_tables(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, cards):
    """``map_plan`` but ``z``: ``(uni, tab, every node but the univariate sums, rest, uni_index, var_ptr,
    scope64)``."""
    n = node_type.shape[0]
    nv = cards.shape[0]
    uni_index = np.full(n, -1, dtype=np.int64)
    var_ptr = np.zeros(nv + 1, dtype=np.int64)
    n_uni = 0
    for i in range(n):
        if node_type[i] == 1:
            all_leaves = True
            for j in range(child_ptr[i], child_ptr[i + 1]):
                all_leaves &= node_type[children[j]] == 0
            if all_leaves:
                uni_index[i] = 0
                var_ptr[leaf_var[children[child_ptr[i]]] + 1] += 1
                n_uni += 1
    for v in range(nv):
        var_ptr[v + 1] += var_ptr[v]
    K = 1
    for v in range(nv):
        K = max(K, cards[v])
    uni = np.empty((4, n_uni), dtype=np.int64)
    tab = np.empty((n_uni, K + 2, 3))
    rest = np.empty(n - n_uni, dtype=np.int64)
    fill = var_ptr[:nv].copy()
    u_lin = np.zeros(n)                       # leaf indicators for the table entries, as the general pass has them
    u_log = np.full(n, -np.inf)
    n_rest = 0
    for i in range(n):
        if uni_index[i] < 0:
            rest[n_rest] = i
            n_rest += 1
            continue
        a, b = child_ptr[i], child_ptr[i + 1]
        v = leaf_var[children[a]]
        k = fill[v]
        fill[v] += 1
        uni_index[i] = k
        uni[0, k] = i
        uni[1, k] = v
        for val in range(K + 2):              # column K: every indicator on; K + 1: the best term
            tot = 0.0
            best = 0.0
            for j in range(a, b):
                on = val >= K or leaf_val[children[j]] == val
                u_lin[children[j]] = 1.0 if on else 0.0
                u_log[children[j]] = 0.0 if on else -np.inf
                s = W[j] * u_lin[children[j]]
                tot += s
                best = max(best, s)
            m, e = normalize(best if val == K + 1 else tot, 0)
            tab[k, val, 0] = m
            tab[k, val, 2] = e
            if val == K + 1:
                best_log = -np.inf
                for j in range(a, b):
                    best_log = max(best_log, log_w[j])
                tab[k, val, 1] = best_log
            else:
                tab[k, val, 1] = sum_edges(a, b, children, log_w, u_log)
    scope64 = np.full(n, ALL_BITS, dtype=np.uint64)
    if nv <= 64:
        for i in range(n):
            if node_type[i] == 0:
                scope64[i] = np.uint64(1) << np.uint64(leaf_var[i])
            else:
                acc = np.uint64(0)
                for j in range(child_ptr[i], child_ptr[i + 1]):
                    acc |= scope64[children[j]]
                scope64[i] = acc
    # the answer at a univariate sum of a query variable: every indicator is on, so BT and NG both take the
    # child with the largest weight (first on ties), chosen as the descent would choose it in either domain
    ones = np.ones(n)
    zeros = np.zeros(n, dtype=np.int64)
    for k in range(n_uni):
        i = uni[0, k]
        a, b = child_ptr[i], child_ptr[i + 1]
        uni[2, k] = leaf_val[children[best_child(a, b, children, W, ones, zeros)]]
        best = -np.inf
        bj = a
        for j in range(a, b):
            if log_w[j] > best:
                best = log_w[j]
                bj = j
        uni[3, k] = leaf_val[children[bj]]
    # leaves whose every parent is a univariate sum are never read by the sweeps (the table stands for them),
    # nor reached by the descent (it stops at their parent): on ad, 3,112 of the 4,042 nodes left
    rest_all = rest.copy()
    needed = np.zeros(n, dtype=np.bool_)
    needed[n - 1] = True                      # the root (a network may be one leaf)
    for p in range(n_rest):
        i = rest[p]
        for j in range(child_ptr[i], child_ptr[i + 1]):
            needed[children[j]] = True
    n_keep = 0
    for p in range(n_rest):
        i = rest[p]
        if node_type[i] != 0 or needed[i]:
            rest[n_keep] = i
            n_keep += 1
    return uni, tab, rest_all, rest[:n_keep].copy(), uni_index, var_ptr, scope64


@nb.njit(cache=True)
def _plan_marginals(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, uni, tab, var_ptr, rest_all, no_skip,
                    seen, zr, hidden, no_value, use_max, z):
    """``z``: every node's marginal, by the query sweeps' own functions (all variables hidden, no node skipped),
    called with the types the sweeps call them with (read-only network and plan; ``zr``, a read-only view of ``z``,
    is never read here), so that they are compiled once for both."""
    n = node_type.shape[0]
    ue = np.empty(n, dtype=np.int64)
    kept = np.empty(n, dtype=np.bool_)
    _uni_values(uni, tab, var_ptr, 0, hidden, no_value, use_max, z[0], ue, kept)
    _rest_scaled(node_type, child_ptr, children, W, leaf_var, leaf_val, rest_all, no_skip, seen, zr, hidden,
                 no_value, use_max, z[0], ue, kept)
    for i in range(n):
        z[2, i] = ue[i]
    _uni_values(uni, tab, var_ptr, 1, hidden, no_value, use_max, z[1], ue, kept)
    _rest_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, rest_all, no_skip, seen, zr, hidden,
              no_value, use_max, z[1], kept)


# -- the upward sweep ---------------------------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def _uni_values(uni, tab, var_ptr, d, role, value, use_max, u, ue, kept):
    """The univariate sums from the table, a variable at a time (one column and one kept flag for all its
    rows): scaled (``d = 0``: mantissa in ``u``, exponent in ``ue``) or log (``d = 1``) values."""
    K = tab.shape[1] - 2
    for v in range(role.shape[0]):
        r = role[v]
        c = value[v] if r == 1 else (K + 1 if (r == 0 and use_max) else K)
        q = r == 0
        if d == 0:
            for k in range(var_ptr[v], var_ptr[v + 1]):
                i = uni[0, k]
                u[i] = tab[k, c, 0]
                ue[i] = np.int64(tab[k, c, 2])
                kept[i] = q
        else:
            for k in range(var_ptr[v], var_ptr[v + 1]):
                i = uni[0, k]
                u[i] = tab[k, c, 1]
                kept[i] = q


@nb.njit(cache=True, _nrt=False)
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
def _seen_bits(role):
    """The query and evidence variables as a bit set (networks over > 64 variables have every scope bit set)."""
    seen = np.uint64(0)
    for v in range(role.shape[0]):
        if role[v] != 2:
            seen |= np.uint64(1) << np.uint64(v & 63)
    return seen


@nb.njit(cache=True, _nrt=False)
def _rest_scaled(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, scope64, seen, z, role, value,
                 use_max, u, ue, kept):
    """The non-univariate nodes, children first, scaled values. A node whose scope (``scope64``) holds none of
    the ``seen`` (query or evidence) variables takes its stored marginal (``z``: what the pass would compute,
    bit for bit) without visiting its children.

    The sum and product bodies are written out: a sum aligns its terms to its largest exponent (``pow2``) and
    adds them (or, with ``use_max`` at a query node, takes the largest); a product is ``kernels.scaled.
    product_node``'s arithmetic (the same values, bit for bit). As calls (``sum_node``/``product_node``), each
    node passed its ~30 array fields on the stack, and numba's ``inline="always"`` did not remove that cost. Written out, this loop took 0.53 instead of
    0.67 us on nltcs-json, 6.3 instead of 9.0 us on nltcs and 43.8 instead of 49.7 us on ad (3:5:2, a numba
    loop over the protocol queries). ``evaluate_kept`` writes them out too."""
    for p in range(rest.shape[0]):
        i = rest[p]
        if not scope64[i] & seen:
            u[i] = z[0, i]
            ue[i] = np.int64(z[2, i])
            kept[i] = False
            continue
        t = node_type[i]
        a, b = child_ptr[i], child_ptr[i + 1]
        if t == 0:
            kept[i], off = leaf_role(i, leaf_var, leaf_val, role, value)
            u[i] = 1.0 - np.float64(off)
            ue[i] = E_ZERO if off else 0
        elif t == 1:           # written out (see the docstring)
            k = kept[children[a]]
            kept[i] = k
            emax = E_ZERO
            for j in range(a, b):
                ec = ue[children[j]]
                emax = ec if ec > emax else emax
            tot = 0.0
            best = 0.0
            for j in range(a, b):
                c = children[j]
                s = W[j] * u[c] * pow2(ue[c] - emax)
                tot += s
                best = s if s > best else best
            u[i], ue[i] = normalize(best if k & use_max else tot, emax)
        elif b - a > BLOCK:
            k = False
            for j in range(a, b):
                k |= kept[children[j]]
            kept[i] = k
            u[i], ue[i] = product_node(a, b, children, u, ue)
        else:                  # kernels.scaled.product_node for at most BLOCK children, written out
            k = False
            m = 1.0
            ex = 0
            for j in range(a, b):
                c = children[j]
                k |= kept[c]
                m *= u[c]
                ex += ue[c]
            kept[i] = k
            u[i], ue[i] = normalize(m, ex)


@nb.njit(cache=True, _nrt=False)
def _rest_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, rest, scope64, seen, z, role, value,
              use_max, u, kept):
    """``_rest_scaled`` in the log domain. (``_upward_node`` is deliberately not inlined here: inlined, the loop
    ran 4x slower on ad, 356 instead of 88 us.)"""
    for p in range(rest.shape[0]):
        i = rest[p]
        if scope64[i] & seen:
            _upward_node(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, role, value, use_max, u,
                         kept)
        else:
            u[i] = z[1, i]
            kept[i] = False


@nb.njit(cache=True, _nrt=False, inline="always")
def upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value, use_max, u,
           ue, kept):
    """The sweep every method starts with: ``u[i]`` as described above and ``kept[i]`` (a query variable is in
    node i's scope): the univariate sums from the table, then the other nodes children first. Scaled values
    (mantissa ``u``, exponent ``ue``) when the network allows them (``lin_ok``), else log values in ``u``.

    ``plan``: ``(uni, tab, rest, uni_index, var_ptr, z, scope64)``, the network's ``FlatSPN.map_plan``.
    Returns ``(status, scaled)``: status 0 when no query variable occurs in the network, else 1; ``scaled``
    says which domain ``u`` holds.

    The table loop and the node loop are separate functions on purpose: written in one, numba's inlining of
    the node body gave code 2.7x slower (nltcs: 25.7 instead of 9.4 us); inlining only ``_uni_values`` here
    made bt on nltcs-json 8 % slower. This function, ``_start_answer`` and ``linear_map_fast`` hold no loop over
    nodes and are inlined into their callers: as calls, each passed its ~17 arrays as ~120 fields on the stack
    (bt on nltcs-json 3:5:2: 1.33 -> 1.18 us per query).
    """
    uni, tab, rest, _, var_ptr, z, scope64 = plan
    root = node_type.shape[0] - 1
    seen = _seen_bits(role)
    if lin_ok:
        _uni_values(uni, tab, var_ptr, 0, role, value, use_max, u, ue, kept)
        _rest_scaled(node_type, child_ptr, children, W, leaf_var, leaf_val, rest, scope64, seen, z, role, value,
                     use_max, u, ue, kept)
    else:
        _uni_values(uni, tab, var_ptr, 1, role, value, use_max, u, ue, kept)
        _rest_log(node_type, child_ptr, children, log_w, leaf_var, leaf_val, rest, scope64, seen, z, role, value,
                  use_max, u, kept)
    return (1 if kept[root] else 0), lin_ok


# -- after the sweep ----------------------------------------------------------------------------------------
@nb.njit(cache=True, _nrt=False)
def evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, x, u, ue, kept,
                  scaled):
    """``log S(x)`` (hidden variables of ``x`` at -1) after ``upward`` for the same query (``role``): only the
    nodes with a query variable are evaluated (the query variables' rows of the table, then the kept other
    nodes), the others keep their values in ``u``/``ue`` (overwritten on query nodes). Returns ``(log value,
    number of query nodes)``."""
    uni, tab, rest, _, var_ptr, _, _ = plan
    d = 0 if scaled else 1
    nk = 0
    for v in range(role.shape[0]):
        if role[v] == 0:
            c = x[v]
            for k in range(var_ptr[v], var_ptr[v + 1]):
                i = uni[0, k]
                u[i] = tab[k, c, d]
                if scaled:
                    ue[i] = np.int64(tab[k, c, 2])
            nk += var_ptr[v + 1] - var_ptr[v]
    for p in range(rest.shape[0]):
        i = rest[p]
        if not kept[i]:
            continue
        nk += 1
        if not scaled:
            node_value(i, node_type, child_ptr, children, log_w, leaf_var, leaf_val, x, u)
            continue
        t = node_type[i]       # (the scaled node bodies are written out, as in _rest_scaled and in the derivative
        a, b = child_ptr[i], child_ptr[i + 1]      # pass: as numba calls they made bt ~10-30 % slower)
        if t == 0:
            on = x[leaf_var[i]] == leaf_val[i]
            u[i] = 1.0 if on else 0.0
            ue[i] = 0 if on else E_ZERO
        elif t == 1:
            emax = E_ZERO
            for j in range(a, b):
                ec = ue[children[j]]
                emax = ec if ec > emax else emax
            tot = 0.0
            for j in range(a, b):
                c = children[j]
                tot += W[j] * u[c] * pow2(ue[c] - emax)
            u[i], ue[i] = normalize(tot, emax)
        elif b - a > BLOCK:
            u[i], ue[i] = product_node(a, b, children, u, ue)
        else:
            m = 1.0
            ex = 0
            for j in range(a, b):
                c = children[j]
                m *= u[c]
                ex += ue[c]
            u[i], ue[i] = normalize(m, ex)
    root = node_type.shape[0] - 1
    return (to_log(u[root], ue[root]) if scaled else u[root]), nk


@nb.njit(cache=True, _nrt=False, inline="always")
def _start_answer(x, role, value):
    """Evidence values, 0 on query variables (until the descent sets them), -1 on hidden ones."""
    for v in range(x.shape[0]):
        x[v] = value[v] if role[v] == 1 else (0 if role[v] == 0 else -1)


@nb.njit(cache=True, _nrt=False, inline="always")
def linear_map_fast(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value,
                    use_max, x, u, ue, stack, kept):
    """BT (``use_max``) or NG for one query on the original network. ``x`` (int64, (n_vars,)) receives the
    evidence values, the answer on query variables (0 where unreached) and -1 on hidden ones. ``u``, ``ue``,
    ``stack``, ``kept``: scratch, (n_nodes,) each (float64, int64, int64, bool).

    ``upward``, the top-down choice, ``evaluate_kept``. Arguments as for ``upward``. Returns ``(log P(answer,
    evidence) with hidden summed out, number of query nodes)``; the count is 0 when no query variable occurs
    in the network (then ``x`` is not filled).
    """
    status, scaled = upward(node_type, child_ptr, children, log_w, W, lin_ok, leaf_var, leaf_val, plan, role, value,
                            use_max, u, ue, kept)
    if status == 0:
        return -np.inf, 0
    _start_answer(x, role, value)
    uni, uni_index = plan[0], plan[3]
    descend_into(node_type, child_ptr, children, W if scaled else log_w, scaled, leaf_var, leaf_val, u, ue, kept, x,
                 stack, uni_index, uni[1], uni[2] if scaled else uni[3])
    return evaluate_kept(node_type, child_ptr, children, log_w, W, leaf_var, leaf_val, plan, role, x, u, ue, kept,
                         scaled)


@nb.njit(cache=True, _nrt=False)
def keep_uni_leaves(plan, child_ptr, children, role, kept):
    """Mark the query indicators under univariate sums as kept (``upward`` leaves them out, ``map_plan``); give
    ``kept`` zeroed before ``upward``. For building the reduced network, which keeps those leaves."""
    uni, _, _, _, var_ptr, _, _ = plan
    for v in range(role.shape[0]):
        if role[v] == 0:
            for k in range(var_ptr[v], var_ptr[v + 1]):
                i = uni[0, k]
                for j in range(child_ptr[i], child_ptr[i + 1]):
                    kept[children[j]] = True


@nb.njit(cache=True, _nrt=False)
def carry_constants(node_type, child_ptr, children, u, ue, kept, scaled, ck, order):
    """For the MAP->MAX reduction after an NG-style ``upward`` for the query (``u``/``ue`` hold every non-query
    node's constant): the kept nodes in ``order`` (int64 scratch, (n_nodes,)), and in ``ck`` (float scratch,
    (n_nodes,)) each kept product's carried log constant, the product of its constant children. Returns the
    kept count; ``reduce.count_reduced`` and ``reduce.fill_reduced`` then build the network."""
    n_kept = kept_nodes(kept, order)
    for p in range(n_kept):                # children first; only the constants the reduced network reads
        i = order[p]
        acc = 0.0                          # leaves and sums carry none (a kept sum's children are all kept)
        if node_type[i] == 2:
            m, e, n_m = 1.0, 0, 0          # the product of the constant children, scaled: one log per product
            for j in range(child_ptr[i], child_ptr[i + 1]):
                c = children[j]
                if kept[c]:
                    acc += ck[c]
                elif scaled:
                    m *= u[c]              # mantissas in [1, 2): renormalised every BLOCK factors
                    e += ue[c]
                    n_m += 1
                    if n_m == BLOCK:
                        m, e = normalize(m, e)
                        n_m = 0
                else:
                    acc += u[c]
            if scaled:
                acc += to_log(m, e)
        ck[i] = acc
    return n_kept
