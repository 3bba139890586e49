"""The sensor rig shared by the sensor's test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import load_settings
from tests.support.rigs import SensorRig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SensorRig]:
    """A sensor on the test's own home (ARRIVALS_HOME is tmp_path/home, see tests/conftest)."""
    settings = load_settings()
    assert settings.home.is_relative_to(tmp_path)
    settings.dirs.ensure()
    rig = SensorRig(settings, tmp_path)
    yield rig
    rig.ledger.close()
