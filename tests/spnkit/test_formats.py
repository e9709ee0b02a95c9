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


def assert_load_fails(path, text: str, err, what: str, **kw) -> None:
    """Write ``text`` to ``path``; loading it raises ``err`` matching ``what``."""
    path.write_text(text)
    with pytest.raises(err, match=what):
        spnkit.load(path, **kw)


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
    assert_load_fails(tmp_path / "bad.spn", text, err, what, format="pyspn")


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
    assert_load_fails(tmp_path / "bad.ac", text, err, what)


def test_save_refuses_unknown_formats_and_leaves_no_file(tmp_path):
    with pytest.raises(SPNFormatError, match="writable: maxspn, json, ac"):
        spnkit.save(random_spn(1), tmp_path / "x.spn", format="pickle")
    assert not list(tmp_path.iterdir())


SPNETWORKS = ["nltcs.spn", "nltcs.pyspnformat.spn", "nltcs.learnspn.em.spn", "nltcs.learnspn.notuning.spn",
              "breast-cancer.spn", "hmm.spn", "xor.spn", "small.spn", "test.spn", "example.pyspn.spn"]


@pytest.mark.parametrize("name", SPNETWORKS)
def test_every_spnetworks_jl_file_loads_as_a_normalised_spn(name):
    spn = spnkit.load(shared_file(f"spn/spnetworks/{name}"))
    n_vars = {"breast-cancer.spn": 10, "hmm.spn": 3, "xor.spn": 3, "small.spn": 2, "test.spn": 2,
              "example.pyspn.spn": 2}.get(name, 16)
    assert spn.n_vars == n_vars and spn.is_normalized and abs(spn.log_partition()) < 1e-9


def test_one_based_and_zero_based_files_of_the_same_network_agree():
    a = spnkit.load(shared_file("spn/spnetworks/nltcs.spn"))               # 1-based, root first
    b = spnkit.load(shared_file("spn/spnetworks/nltcs.pyspnformat.spn"))   # 0-based, root last
    assert a.meta["format"] == "spnetworks" and b.meta["format"] == "pyspn"
    X = np.random.default_rng(0).integers(-1, 2, size=(50, 16))
    np.testing.assert_allclose(a.log_prob(X), b.log_prob(X), atol=1e-12)


def test_categorical_leaves_by_hand():
    # small.spn: 0.2 c5(X1) c7(X2) + 0.5 c5(X1) c8(X2) + 0.3 c6(X1) c8(X2), 1-based variables and values
    spn = spnkit.load(shared_file("spn/spnetworks/small.spn"))
    c5, c6, c7, c8 = [0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2]
    for x0 in range(2):
        for x1 in range(2):
            p = 0.2 * c5[x0] * c7[x1] + 0.5 * c5[x0] * c8[x1] + 0.3 * c6[x0] * c8[x1]
            assert spn.log_prob(np.array([[x0, x1]]))[0] == pytest.approx(math.log(p), abs=1e-12)


def test_a_byte_order_mark_is_not_content_and_binary_files_are_refused(tmp_path):
    text = shared_file("spn/maxspn/nltcs.spn").read_text()
    p = tmp_path / "bom.spn"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert spnkit.load(p).n_nodes == spnkit.load(shared_file("spn/maxspn/nltcs.spn")).n_nodes
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SPNFormatError, match=r"bom.spn: not a text file \(byte 128"):
        spnkit.load(p)
    p.write_bytes(b"(2 2)\n\x00\x00")
    with pytest.raises(SPNFormatError, match="NUL bytes"):
        spnkit.load(p)


@pytest.mark.parametrize("text, err, what", [
    # every node has a parent: the cycle is named, not "0 roots"
    ("indicator 0 0 0\n* 1 0 2\n* 2 1\n", SPNStructureError, r"bad.spn: no root .* cycle node 1 \(line 2\) -> "
     r"node 2 \(line 3\) -> node 1 \(line 2\)"),
    # structure errors name the file's ids and lines, not array positions
    ("indicator 10 0 0\nindicator 11 0 1\n* 12 10 11\n", SPNStructureError,
     r"bad.spn: node 12 \(line 3\) \(product\): not decomposable: child 11 \(line 2\)"),
    ("indicator 10 0 0\nindicator 11 1 1\n+ 12 10 0.5 11 0.5\n", SPNStructureError,
     r"node 12 \(line 3\) \(sum\): not complete: child 11 \(line 2\)"),
    ("# a comment\n+ 1 2 0.5 3 0.5\ncategorical 2 1 0.5 0.5\ncategorical 3 1 1.5 -0.5\n", SPNFormatError,
     r"bad.spn:4: categorical probability = 1.5 for X0 = 0"),
])
def test_structure_messages_name_the_file_node_and_line(tmp_path, text, err, what):
    assert_load_fails(tmp_path / "bad.spn", text, err, what)


def test_maxspn_structure_errors_name_the_file_and_line(tmp_path):
    assert_load_fails(tmp_path / "bad.spn", "(2)\nv 0 0\n\nv 0 1\n* 0 1\nEOF\n", SPNStructureError,
                      r"bad.spn: node 2 \(line 5\) \(product\): not decomposable: child 1 \(line 4\)")


def test_bernoulli_probability_out_of_range_is_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"nodes": [{"id": 0, "class": "Bernoulli", "scope": [0], "params": {"p": 1.7}}],
                             "links": []}))
    with pytest.raises(SPNFormatError, match=r"node 0: Bernoulli p = 1.7; expected a probability in \[0, 1\]"):
        spnkit.load(p)


def test_unnormalised_weights_warn_once_and_normalize_keeps_the_distribution(tmp_path):
    p = tmp_path / "w.spn"
    p.write_text("+ 0 1 0.9 2 0.9\nindicator 1 0 0\nindicator 2 0 1\n")
    with pytest.warns(spnkit.SPNWeightsWarning, match=r"1 of 1 sum nodes .* node 0 \(line 1\), 1.8.*normalize") as w:
        spn = spnkit.load(p)
    assert len(w) == 1 and not spn.is_normalized
    r = spnkit.map(spn, spnkit.Query(1), method="bt")
    assert r.note and "not a log-probability" in r.note and "note=" in repr(r)
    assert spnkit.map_batch(spn, [spnkit.Query(1)]).attrs["note"] == r.note
    n = spn.normalize()
    assert n.is_normalized and spnkit.map(n, spnkit.Query(1)).note is None
    np.testing.assert_allclose(np.exp(n.log_w), [0.5, 0.5])


@settings(max_examples=30, deadline=None)
@given(spn_seeds)
def test_normalize_divides_every_value_by_z(seed):
    base = random_spn(seed, n_vars=5, zero_weight_prob=0.0)
    rng = np.random.default_rng(seed)
    log_w = np.where(base.node_type[np.repeat(np.arange(base.n_nodes), np.diff(base.child_ptr))] == SUM,
                     base.log_w + rng.normal(0, 1, base.n_edges), 0.0)
    spn = spnkit.FlatSPN(base.node_type, base.child_ptr, base.children, log_w, base.leaf_var, base.leaf_val,
                         base.cardinalities)
    n = spn.normalize()
    assert n.is_normalized and abs(n.log_partition()) < 1e-9
    X = np.minimum(rng.integers(-1, 3, size=(20, 5)), spn.cardinalities - 1)
    np.testing.assert_allclose(n.log_prob(X), spn.log_prob(X) - spn.log_partition(), atol=1e-9)
