"""Learning with SPFlow's LearnSPN: the converted FlatSPN evaluates exactly as SPFlow's model does, and the
learned nltcs model reaches the literature's test log-likelihood (about -6.1 nats)."""

from __future__ import annotations

import numpy as np
import pytest

import spnkit

torch = pytest.importorskip("torch")
pytest.importorskip("spflow")

from spnkit.datasets import load_debd  # noqa: E402
from spnkit.learn import from_spflow, learn_spn  # noqa: E402


def _spflow_model(X, min_instances_slice, seed=0):
    from spflow.learn.learn_spn import learn_spn as spflow_learn_spn
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves.bernoulli import Bernoulli

    from spnkit.learn import g_test_partition, kmeans_quiet

    torch.manual_seed(seed)
    leaves = Bernoulli(scope=Scope(list(range(X.shape[1]))), out_channels=1)
    return spflow_learn_spn(torch.as_tensor(X, dtype=torch.get_default_dtype()), leaf_modules=leaves,
                            out_channels=1, min_instances_slice=min_instances_slice,
                            clustering_method=kmeans_quiet, partitioning_method=g_test_partition)


def test_g_test_splits_independent_blocks():
    from spnkit.learn import g_test_partition

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=2000)
    b = rng.integers(0, 2, size=2000)
    X = np.stack([a, a ^ (rng.random(2000) < 0.1), b, b ^ (rng.random(2000) < 0.1), rng.integers(0, 2, 2000)], 1)
    ids = g_test_partition(torch.as_tensor(X, dtype=torch.float32)).tolist()
    assert ids[0] == ids[1] and ids[2] == ids[3] and len({ids[0], ids[2], ids[4]}) == 3


def _spflow_ll(model, X):
    with torch.no_grad():
        return model.log_likelihood(torch.as_tensor(X, dtype=torch.get_default_dtype())).reshape(-1).double().numpy()


def test_conversion_is_exact_against_spflows_own_evaluation():
    from spflow.modules.leaves.bernoulli import Bernoulli

    X = load_debd("nltcs", "train")[:3000]
    model = _spflow_model(X, min_instances_slice=300)
    test = load_debd("nltcs", "test")
    # Unclipped maximum-likelihood leaves include p = 0 or 1, where SPFlow's own Bernoulli evaluates
    # 0 * log(0) = NaN; on every row where SPFlow has a number, the converted network agrees.
    raw = from_spflow(model, n_vars=16)
    theirs, ours = _spflow_ll(model, test), raw.log_prob(test.astype(np.int64))
    ok = ~np.isnan(theirs)
    assert ok.sum() >= 100 and not np.isnan(ours).any()
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-5, atol=1e-4)         # torch evaluates in fp32
    # With the leaves moved off 0 and 1 inside SPFlow itself, every row agrees.
    for leaf in model.modules():
        if isinstance(leaf, Bernoulli):
            leaf.probs = leaf.probs.detach().clamp(1e-3, 1 - 1e-3)
    spn = from_spflow(model, n_vars=16)
    theirs, ours = _spflow_ll(model, test), spn.log_prob(test.astype(np.int64))
    assert np.isfinite(theirs).all()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    assert spn.n_vars == 16 and spn.counts()["sum"] > 1 and abs(spn.log_partition()) < 1e-5


@pytest.mark.slow
def test_learned_nltcs_reaches_the_literature_test_likelihood_and_answers_map_queries():
    spn = learn_spn(load_debd("nltcs", "train"), min_instances_slice=200, seed=0)
    ll = spn.log_prob(load_debd("nltcs", "test").astype(np.int64)).mean()
    assert -6.4 < ll < -5.9, ll                                # LearnSPN on NLTCS: about -6.1 nats
    q = spnkit.Query.parse("??*01???**1?0??*")
    assert spnkit.map(spn, q, "exact").log_value == pytest.approx(spnkit.map(spn, q, "brute").log_value, abs=1e-9)


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="0/1"):
        learn_spn(np.array([[0, 2], [1, 0]]))
