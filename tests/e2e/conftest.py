"""End-to-end fixtures: a real stack (Prefect server, MLflow server, worker, sensor).

The stack is started through the operator's own command (`arrivals up --detach`) in a
fresh home with free ports, and stopped by pid with `arrivals down`, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arrivals.harness import RunningStack
from tests.support.stack import stack_for


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[RunningStack]:
    """A running stack for one test module; the module may set PARAMS_OVERRIDES (merged
    into the shipped params.yaml) or CONFIG_FILE (another params.yaml, used as it is)."""
    with stack_for(request.module, tmp_path_factory) as running:
        yield running
