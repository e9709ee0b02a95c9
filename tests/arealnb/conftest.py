from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_policy():
    """The embedded tiny policy, built once into data/models/ (cached across runs)."""
    from arealnb.models import build_policy

    return build_policy(size="tiny", progress=False)
