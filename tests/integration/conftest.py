"""Fixtures for the integration tier: the real Go-built CLIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import go_tool


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm binary."""
    return go_tool("helm")


@pytest.fixture(scope="session")
def crossplane() -> Path:
    """The pinned Crossplane CLI (crank)."""
    return go_tool("crossplane")
