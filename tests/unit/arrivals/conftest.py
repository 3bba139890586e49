"""Fixtures of the arrivals package's tests."""

from __future__ import annotations

import pytest

from tests.support.healthy_stack import fake_healthy_stack


@pytest.fixture
def healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`arrivals status` sees every service healthy (tests.support.healthy_stack)."""
    fake_healthy_stack(monkeypatch)
