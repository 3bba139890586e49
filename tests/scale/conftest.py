"""Scale-profile fixtures: the e2e stack on PostgreSQL + Redis, in databases of its own.

PostgreSQL and Redis are the machine's (127.0.0.1:5432, :6379). Each test module gets
uniquely named databases and its own Redis database numbers, and drops/flushes them after.
Unreachable engines skip these tests on a workstation but fail them in CI (CI is set).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from arrivals.harness import RunningStack
from arrivals.scale import drop_databases
from tests.support.scale import POSTGRES
from tests.support.stack import stack_for


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[RunningStack]:
    """The e2e stack (tests/support/stack.py) for one scale-profile test module."""
    with stack_for(request.module, tmp_path_factory) as running:
        yield running


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", autouse=True)
def engines(request) -> Iterator[None]:
    """Fail in CI (skip elsewhere) without PostgreSQL and Redis; clean up after the module."""
    engines = (("PostgreSQL", 5432), ("Redis", 6379))
    missing = [name for name, port in engines if not _reachable(port)]
    if missing:
        message = f"{' and '.join(missing)} not reachable on 127.0.0.1"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: the scale tests need them in CI")
        pytest.skip(message)
    yield
    scale = request.module.PARAMS_OVERRIDES["scale"]
    drop_databases(
        POSTGRES,
        [scale["prefect_database"], scale["mlflow_database"], scale["ledger_database"]],
    )
    import redis

    for db in (scale["redis_db"], scale["docket_redis_db"]):
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
