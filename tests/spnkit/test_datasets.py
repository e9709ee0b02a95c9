from __future__ import annotations

import numpy as np
import pytest

from spnkit import datasets
from spnkit.errors import DataNotFoundError

from .conftest import shared_file


def test_nltcs_test_split_shape_and_values():
    shared_file("debd/nltcs/nltcs.test.data")
    X = datasets.load_debd("nltcs", "test")
    assert X.shape == (3236, 16) and X.dtype == np.uint8 and set(np.unique(X)) <= {0, 1}


def test_nltcs_test_log_likelihood_is_plausible(nltcs_path):
    import spnkit

    shared_file("debd/nltcs/nltcs.test.data")
    ll = spnkit.load(nltcs_path).log_prob(datasets.load_debd("nltcs", "test")).mean()
    assert -6.3 < ll < -5.9  # LearnSPN on nltcs: about -6.1 nats in the literature


def test_offline_and_absent_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_DATA, str(tmp_path / "empty"))
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setitem(datasets.SOURCES, "debd/", "http://127.0.0.1:9/datasets/")  # nothing listens there
    with pytest.raises(DataNotFoundError) as err:
        datasets.load_debd("nltcs", "valid")
    msg = str(err.value)
    assert "SPNKIT_DATA" in msg and "http://127.0.0.1:9/datasets/nltcs/nltcs.valid.data" in msg
    assert not list((tmp_path / "cache").rglob("*.data*")), "a failed download must leave nothing behind"


def test_cache_is_used_before_download(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.ENV_DATA, raising=False)
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path))
    f = tmp_path / "debd" / "nltcs" / "nltcs.valid.data"
    f.parent.mkdir(parents=True)
    f.write_text("0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,1\n" * 3)
    X = datasets.load_debd("nltcs", "valid")
    assert X.shape == (3, 16) and X[:, 1].tolist() == [1, 1, 1]


def test_unknown_dataset_and_malformed_file(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="unknown DEBD dataset"):
        datasets.load_debd("mnist")
    monkeypatch.setenv(datasets.ENV_DATA, str(tmp_path))
    f = tmp_path / "debd" / "nltcs" / "nltcs.train.data"
    f.parent.mkdir(parents=True)
    f.write_text("0,1\n")
    with pytest.raises(datasets.SPNFormatError, match="16 comma-separated"):
        datasets.load_debd("nltcs", "train")
