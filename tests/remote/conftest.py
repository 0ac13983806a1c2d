"""Fixtures of the device-server tests (skipped without the ``remote`` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from remote_lab import Lab, lab


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Lab]:
    """A loopback server of a 4-mode noise-free chip; bob's budget is 6 reconfigurations."""
    with lab(tmp_path / "state", budgets={"bob": (6, None)}) as running:
        yield running
