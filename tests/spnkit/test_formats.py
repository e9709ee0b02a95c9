"""pyspn and node-link JSON readers: the shared benchmark files, an independent JSON evaluator, bad files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings

import spnkit
from spnkit import SPNFormatError, SPNStructureError
from spnkit.flat_spn import LEAF, SUM

from .conftest import shared_file
from .random_spns import random_spn, spn_seeds


def to_pyspn(spn) -> str:
    """Test-side writer: reversed ids (the reader must not rely on them), linear weights."""
    rid = {i: 10 * (spn.n_nodes - i) + 7 for i in range(spn.n_nodes)}
    lines = []
    for i in range(spn.n_nodes):
        a, b = spn.child_ptr[i], spn.child_ptr[i + 1]
        if spn.node_type[i] == LEAF:
            lines.append(f"indicator {rid[i]} {spn.leaf_var[i]} {spn.leaf_val[i]}")
        elif spn.node_type[i] == SUM:
            lines.append(f"+ {rid[i]} " + " ".join(f"{rid[int(spn.children[j])]} {math.exp(spn.log_w[j])!r}"
                                                     for j in range(a, b)))
        else:
            lines.append(f"* {rid[i]} " + " ".join(str(rid[int(c)]) for c in spn.children[a:b]))
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None)
@given(spn_seeds)
def test_pyspn_reader_gives_the_same_network(seed):
    spn = random_spn(seed, n_vars=5)
    back = spnkit.io.READERS["pyspn"](to_pyspn(spn))
    # pyspn has no cardinality line: a variable's states are inferred from its largest indicator value
    for v in range(5):
        assert back.cardinalities[v] == spn.leaf_val[spn.leaf_var == v].max() + 1
    X = np.array([[-1] * 5, [0] * 5, [1, 0, 1, 0, -1], [2, 2, 2, 2, 2]])
    X = np.minimum(X, back.cardinalities - 1)
    np.testing.assert_allclose(back.log_prob(X), spn.log_prob(X), atol=1e-12)
    assert back.n_nodes == spn.n_nodes and back.n_edges == spn.n_edges


def test_pac_map_nltcs_spn():
    spn = spnkit.load(shared_file("spn/pyspn/nltcs/nltcs_em.spn"))
    assert (spn.n_nodes, spn.n_edges, spn.n_vars) == (1855, 4280, 16) and abs(spn.log_partition()) < 1e-9


def json_log_prob(data: dict, x) -> float:
    """Independent evaluator of the JSON graph itself (Bernoulli leaves, linear weights)."""
    nodes = {n["id"]: n for n in data["nodes"]}
    kids: dict = {}
    for ln in data["links"]:
        kids.setdefault(ln["target"], {})[ln["idx"]] = ln["source"]
    parents = {ln["source"] for ln in data["links"]}
    (root,) = [i for i in nodes if i not in parents]
    memo: dict = {}

    def val(i):
        if i not in memo:
            n = nodes[i]
            ch = [kids[i][k] for k in sorted(kids.get(i, {}))]
            if n["class"] == "Sum":
                memo[i] = sum(w * val(c) for w, c in zip(n["weights"], ch, strict=True))
            elif n["class"] == "Product":
                memo[i] = math.prod(val(c) for c in ch)
            else:
                p, v = n["params"]["p"], x[n["scope"][0]]
                memo[i] = 1.0 if v < 0 else (p if v == 1 else 1 - p)
        return memo[i]

    return math.log(val(root))


@pytest.mark.parametrize("name", ["nltcs", "plants"])
def test_json_spns_match_an_independent_evaluation(name):
    path = shared_file(f"spn/json/{name}/spn.json")
    data = json.loads(path.read_text())
    spn = spnkit.load(path)
    rng = np.random.default_rng(0)
    X = rng.integers(-1, 2, size=(5, spn.n_vars))
    for x, got in zip(X, spn.log_prob(X), strict=True):
        assert got == pytest.approx(json_log_prob(data, x), abs=1e-9)
    assert abs(spn.log_partition()) < 1e-6   # weights have 8 significant digits


def test_categorical_spnetworks_file_loads():
    spn = spnkit.load(shared_file("spn/spnetworks/breast-cancer.spn"))
    assert spn.n_vars == 10 and int(spn.cardinalities.max()) == 13 and abs(spn.log_partition()) < 1e-9


@pytest.mark.parametrize("text, err, what", [
    ("indicator 0 0 0\nindicator 1 0 1\n+ 2 0 0.5 1 -0.5\n", SPNFormatError, ":3"),
    ("indicator 0 0 0\nindicator 1 0 1\n+ 2 0 0.5 9 0.5\n", SPNFormatError, "never defined"),
    ("indicator 0 0 0\nindicator 0 0 1\n", SPNFormatError, "defined twice"),
    ("indicator 0 0 0\nindicator 1 0 1\n+ 2 0 0.5 1 0.5\n+ 3 0 0.5 1 0.5\n", SPNStructureError, "one root"),
    ("indicator 0 0 0\n* 1 2\n* 2 1\n+ 3 0 1.0\n", SPNStructureError, "root"),
    ("gaussian 0 0 0.0 1.0\n", SPNFormatError, "Gaussian"),
])
def test_malformed_pyspn(tmp_path, text, err, what):
    p = tmp_path / "bad.spn"
    p.write_text(text)
    with pytest.raises(err, match=what):
        spnkit.load(p, format="pyspn")


def test_malformed_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"nodes": [{"id": 0, "class": "Gaussian", "scope": [0]}], "links": []}')
    with pytest.raises(SPNFormatError, match="unsupported node class 'Gaussian'"):
        spnkit.load(p)
    p.write_text("{not json")
    with pytest.raises(SPNFormatError, match="node-link"):
        spnkit.load(p)


def _same_arrays(a, b):
    for name in ("node_type", "child_ptr", "children", "log_w", "leaf_var", "leaf_val", "cardinalities"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


@settings(max_examples=40, deadline=None)
@given(spn_seeds)
def test_maxspn_and_json_round_trip_exactly(seed):
    spn = random_spn(seed, n_vars=6, normalised=bool(seed % 2))      # zero weights (-inf) included
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        for fmt, name in (("maxspn", "s.spn"), ("json", "s.json")):
            spnkit.save(spn, Path(d) / name, format=fmt)
            _same_arrays(spnkit.load(Path(d) / name), spn)


def test_json_writer_output_is_strict_json_other_tools_can_read(tmp_path):
    spn = random_spn(4, n_vars=4)
    spnkit.save(spn, tmp_path / "s.json", format="json")
    data = json.loads((tmp_path / "s.json").read_text())          # strict: no NaN/Infinity tokens
    for node in data["nodes"]:
        if node["class"] == "Sum":
            assert all(w >= 0 for w in node["weights"])
            assert all((lw is None and w == 0) or math.isclose(math.exp(lw), w) for w, lw in
                       zip(node["weights"], node["log_weights"], strict=True))
    for node in data["nodes"]:                                     # the linear weights alone give the same SPN
        node.pop("log_weights", None)
    (tmp_path / "linear.json").write_text(json.dumps(data))
    back = spnkit.load(tmp_path / "linear.json")
    X = np.array([[v % int(c) for v, c in enumerate(spn.cardinalities)], [-1] * spn.n_vars])
    np.testing.assert_allclose(back.log_prob(X), spn.log_prob(X), rtol=0, atol=1e-12)


AC_TEXT = """(2 2)
v 0 0
v 0 1
v 1 0
v 1 1
n 0.3
n 0.7
* 4 0 2
* 5 1 3
n 2.0
+ 6 7
* 8 9
EOF
features after EOF are ignored
"""


def test_libra_ac_reader_folds_constants_into_weights(tmp_path):
    """The circuit 2 * (0.3 [X0=0][X1=0] + 0.7 [X0=1][X1=1]), checked by hand."""
    p = tmp_path / "m.ac"
    p.write_text(AC_TEXT)
    spn = spnkit.load(p)
    assert spn.meta["format"] == "ac" and spn.n_vars == 2
    X = np.array([[0, 0], [1, 1], [0, 1], [-1, -1]])
    np.testing.assert_allclose(np.exp(spn.log_prob(X)), [0.6, 1.4, 0.0, 2.0], rtol=1e-12)
    assert spnkit.io.detect_format(AC_TEXT) == "ac"


@settings(max_examples=30, deadline=None)
@given(spn_seeds)
def test_ac_writer_and_reader_agree_with_the_network(seed):
    spn = random_spn(seed, n_vars=5, normalised=False)
    back = spnkit.io.READERS["ac"](spnkit.io.WRITERS["ac"](spn))
    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(-1, spn.cardinalities) for _ in range(20)])
    np.testing.assert_allclose(back.log_prob(X), spn.log_prob(X), rtol=0, atol=1e-9)


@pytest.mark.parametrize("text,err,what", [
    ("(2)\nv 0 0\nn -1\n* 0 1\nEOF\n", SPNFormatError, ":3: constant '-1'"),
    ("(2)\nv 0 0\nv 0 1\n+ 0 5\nEOF\n", SPNFormatError, ":4: child 5 does not come before"),
    ("(2)\nv 0 0\nv 0 1\nn 0.5\n+ 0 2\nEOF\n", SPNStructureError, "mixes constants"),
    ("(2)\nv 0 3\nEOF\n", SPNFormatError, "X0=3 is out of range"),
    ("(2)\nv 0 0\nn 0.5\n", SPNFormatError, "no 'EOF'"),
    ("(2)\nn 0.5\nEOF\n", SPNStructureError, "constant"),
    ("(2)\nv 0 0\nx 1\nEOF\n", SPNFormatError, "unknown node kind 'x'"),
])
def test_malformed_ac(tmp_path, text, err, what):
    p = tmp_path / "bad.ac"
    p.write_text(text)
    with pytest.raises(err, match=what):
        spnkit.load(p)


def test_save_refuses_unknown_formats_and_leaves_no_file(tmp_path):
    with pytest.raises(SPNFormatError, match="writable: maxspn, json, ac"):
        spnkit.save(random_spn(1), tmp_path / "x.spn", format="pickle")
    assert not list(tmp_path.iterdir())
