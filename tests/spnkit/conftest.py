from __future__ import annotations

import pytest

from spnkit.datasets import data_path
from spnkit.errors import DataNotFoundError


def shared_file(rel: str):
    try:
        return data_path(rel)
    except DataNotFoundError as exc:  # only when neither $SPNKIT_DATA, the cache nor the network has it
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def nltcs_path():
    return shared_file("spn/maxspn/nltcs.spn")
