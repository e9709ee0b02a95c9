"""Learn an SPN from data with SPFlow 1.x's LearnSPN and convert it into spnkit's layout, exactly.

SPFlow (``pip install spflow``; it needs torch) represents a circuit as tensor modules whose outputs are grids
of (features x channels) values; LearnSPN with one output channel builds Bernoulli leaf layers, products over
features, sums over channels (``Cat(dim=2)`` stacks the children of a sum) and ``Cat(dim=1)`` stacks the
features a product multiplies. :func:`from_spflow` walks that tree and emits one spnkit node per grid cell: a
Bernoulli(p) leaf on X becomes the sum ``(1-p)[X=0] + p[X=1]`` over shared indicators, a product the product
of its input's features, a sum a weighted sum over its input's channels. The conversion is checked by
comparing log-likelihoods with SPFlow's own evaluation (``tests/spnkit/test_learn.py``).

Bernoulli maximum-likelihood estimates of exactly 0 or 1 would give unseen test values probability 0;
:func:`learn_spn` clips them to ``[alpha, 1 - alpha]`` (Laplace-like smoothing) before converting.

Two of SPFlow's defaults are replaced by callables it accepts: its RDC variable split crashes on binary data
(SPFlow 1.1.0, ``utils/rdc.py``: after shrinking ``k`` to 0 it takes ``torch.max`` of an empty tensor), so
variables are split by pairwise G-tests of independence, as in Gens & Domingos (2013); and its k-means prints
every iteration, so rows are clustered by the same k-means with ``verbose=0``.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SPNKitError
from .flat_spn import LEAF, PRODUCT, SUM, FlatSPN


class LearningUnavailableError(SPNKitError, ImportError):
    """SPFlow (and torch) are not installed: ``pip install -e .[learn]``."""


def _spflow():
    try:
        import torch
        from spflow.learn.learn_spn import learn_spn as spflow_learn_spn
        from spflow.modules.leaves.bernoulli import Bernoulli
        from spflow.modules.ops.cat import Cat
        from spflow.modules.products.product import Product
        from spflow.modules.sums.sum import Sum
    except ImportError as e:
        raise LearningUnavailableError(f"learning SPNs needs SPFlow 1.x and torch ({e}); install them with "
                                       "`pip install -e .[learn]` (CPU torch: add `-c constraints.txt`)") from None
    return torch, spflow_learn_spn, Bernoulli, Cat, Product, Sum


def g_test_partition(data, p_value: float = 0.001):
    """Variable split for binary data: a pairwise G-test of independence (2x2 tables, 1 degree of freedom);
    variables whose dependence is significant at ``p_value`` are linked, and the connected components are the
    parts. Returns a torch int tensor of part ids, one per column (SPFlow's partitioning interface)."""
    import torch
    from scipy.sparse.csgraph import connected_components
    from scipy.stats import chi2

    X = np.asarray(data.detach().cpu().numpy() if hasattr(data, "detach") else data, dtype=np.float64)
    n = X.shape[0]
    ones = X.sum(axis=0)
    n11 = X.T @ X
    n10 = ones[:, None] - n11
    n01 = ones[None, :] - n11
    n00 = n - n11 - n10 - n01
    g = np.zeros_like(n11)
    for obs, row, col in ((n11, ones, ones), (n10, ones, n - ones), (n01, n - ones, ones),
                          (n00, n - ones, n - ones)):
        expected = np.outer(row, col) / max(n, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g += np.where(obs > 0, obs * np.log(obs / expected), 0.0)
    g *= 2.0
    dependent = g > chi2.isf(p_value, 1)
    np.fill_diagonal(dependent, False)
    _, labels = connected_components(dependent, directed=False)
    return torch.as_tensor(labels + 1, dtype=torch.int32)


def kmeans_quiet(data, n_clusters: int = 2):
    """SPFlow's k-means row split (fast_pytorch_kmeans), without its per-iteration printing."""
    from fast_pytorch_kmeans import KMeans

    return KMeans(n_clusters=n_clusters, mode="euclidean", verbose=0).fit_predict(data)


def learn_spn(X: np.ndarray, min_instances_slice: int = 200, p_value: float = 0.001, n_clusters: int = 2,
              alpha: float = 1e-3, seed: int = 0) -> FlatSPN:
    """LearnSPN (Gens & Domingos 2013) on binary data ``X`` (rows, n_vars) through SPFlow, as a FlatSPN.

    ``min_instances_slice``: below this many rows a slice is fully factorised; ``p_value``: G-test level for
    splitting variables; ``n_clusters``: k-means clusters per row split; ``alpha``: Bernoulli probabilities are
    clipped to ``[alpha, 1 - alpha]``; ``seed`` seeds torch's and numpy's generators (k-means).
    """
    torch, spflow_learn_spn, Bernoulli, _Cat, _Product, _Sum = _spflow()
    from spflow.meta.data.scope import Scope

    X = np.asarray(X)
    if X.ndim != 2 or not np.isin(X, (0, 1)).all():
        raise ValueError(f"learn_spn needs a 2-D array of 0/1 values; got shape {X.shape}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = torch.as_tensor(X, dtype=torch.get_default_dtype())
    leaves = Bernoulli(scope=Scope(list(range(X.shape[1]))), out_channels=1)
    model = spflow_learn_spn(data, leaf_modules=leaves, out_channels=1, min_instances_slice=int(min_instances_slice),
                             clustering_method=kmeans_quiet, partitioning_method=g_test_partition,
                             clustering_args={"n_clusters": int(n_clusters)},
                             partitioning_args={"p_value": float(p_value)})
    spn = from_spflow(model, n_vars=X.shape[1], clip=alpha)
    spn.meta.update({"learner": "spflow.learn_spn", "min_instances_slice": int(min_instances_slice),
                     "p_value": float(p_value), "n_clusters": int(n_clusters), "alpha": alpha, "seed": seed,
                     "rows": int(X.shape[0])})
    return spn


class _Builder:
    def __init__(self, n_vars: int):
        self.node_type: list[int] = []
        self.kids: list[list[int]] = []
        self.logw: list[list[float]] = []
        self.leaf: list[tuple[int, int]] = []
        self.indicator: dict[tuple[int, int], int] = {}
        self.n_vars = n_vars

    def add(self, t, kids=(), logw=(), leaf=(-1, -1)) -> int:
        self.node_type.append(t)
        self.kids.append(list(kids))
        self.logw.append(list(logw) if t == SUM else [0.0] * len(kids))   # product edges carry 0.0
        self.leaf.append(leaf)
        return len(self.node_type) - 1

    def ind(self, var: int, val: int) -> int:
        if (var, val) not in self.indicator:
            self.indicator[(var, val)] = self.add(LEAF, leaf=(var, val))
        return self.indicator[(var, val)]

    def build(self, root: int) -> FlatSPN:
        # creation order is children first; keep only what the root reaches
        reach = np.zeros(len(self.node_type), dtype=bool)
        reach[root] = True
        for i in range(root, -1, -1):
            if reach[i]:
                reach[self.kids[i]] = True
        order = np.flatnonzero(reach)
        new = np.cumsum(reach) - 1
        counts = [len(self.kids[i]) for i in order]
        return FlatSPN(node_type=np.array([self.node_type[i] for i in order], dtype=np.int8),
                       child_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       children=np.array([new[c] for i in order for c in self.kids[i]], dtype=np.int64),
                       log_w=np.array([w for i in order for w in self.logw[i]], dtype=np.float64),
                       leaf_var=np.array([self.leaf[i][0] for i in order], dtype=np.int64),
                       leaf_val=np.array([self.leaf[i][1] for i in order], dtype=np.int64),
                       cardinalities=np.full(self.n_vars, 2, dtype=np.int64), meta={"format": "spflow"})


def from_spflow(model, n_vars: int, clip: float = 0.0) -> FlatSPN:
    """Convert an SPFlow 1.x circuit of Bernoulli leaves, Product, Sum and Cat modules (one repetition) into a
    FlatSPN over ``n_vars`` binary variables. ``clip`` > 0 clips Bernoulli probabilities to
    ``[clip, 1 - clip]`` (0: exact conversion). Other module types raise ``ValueError``."""
    torch, _learn, Bernoulli, Cat, Product, Sum = _spflow()
    b = _Builder(n_vars)

    def grid(m) -> list[list[int]]:
        """spnkit node ids of module ``m``'s outputs, indexed [feature][channel]."""
        if m.out_shape.repetitions != 1:
            raise ValueError(f"{type(m).__name__} has {m.out_shape.repetitions} repetitions; only 1 is supported")
        if isinstance(m, Bernoulli):
            p = m.probs.detach().double().cpu().numpy()          # (features, channels, repetitions)
            if clip > 0:
                p = np.clip(p, clip, 1 - clip)
            out = []
            for f, var in enumerate(m.scope.query):
                row = []
                for c in range(p.shape[1]):
                    pf = float(p[f, c, 0])
                    lw = [math.log1p(-pf) if pf < 1 else -math.inf, math.log(pf) if pf > 0 else -math.inf]
                    row.append(b.add(SUM, [b.ind(int(var), 0), b.ind(int(var), 1)], lw))
                out.append(row)
            return out
        if isinstance(m, Cat):
            parts = [grid(x) for x in m.inputs]
            if m.dim == 1:                                         # stack features
                return [row for g in parts for row in g]
            return [[c for g in parts for c in g[f]] for f in range(len(parts[0]))]   # stack channels
        if isinstance(m, Product):
            g = grid(m.inputs)
            return [[b.add(PRODUCT, [g[f][c] for f in range(len(g))]) if len(g) > 1 else g[0][c]
                     for c in range(len(g[0]))]]
        if isinstance(m, Sum):
            g = grid(m.inputs)
            lw = m.log_weights.detach().double().cpu().numpy()    # (features, in channels, out channels, reps)
            return [[b.add(SUM, g[f], [float(lw[f, ci, co, 0]) for ci in range(len(g[f]))])
                     for co in range(lw.shape[2])] for f in range(len(g))]
        raise ValueError(f"cannot convert SPFlow module {type(m).__name__}; supported: Bernoulli, Product, Sum, Cat")

    with torch.no_grad():
        g = grid(model)
    if len(g) != 1 or len(g[0]) != 1:
        raise ValueError(f"the model has {len(g)} features x {len(g[0])} channels of output; expected one root")
    return b.build(g[0][0])
