"""A real stack (Prefect server, MLflow server, worker, sensor) for one test module.

The stack is started through the operator's own command (`arrivals up --detach`) in a
fresh home with free ports, and stopped by pid with `arrivals down`, whatever happens.
The e2e and scale conftests each wrap this in their module-scoped `stack` fixture.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest

from arrivals.harness import RunningStack, stack_environ, wait_for, write_params


@contextmanager
def stack_for(
    module: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """A running stack for `module`; the module may set PARAMS_OVERRIDES (merged into the
    shipped params.yaml) or CONFIG_FILE (another params.yaml, used as it is)."""
    home = tmp_path_factory.mktemp("arrivals-home")
    overrides = getattr(module, "PARAMS_OVERRIDES", None)
    config = getattr(module, "CONFIG_FILE", None)  # e.g. an examples/ config
    if config is None and overrides:
        config = write_params(tmp_path_factory.mktemp("config") / "params.yaml", overrides)
    running = RunningStack.fresh(home, config)
    # Code a test runs in this process sees the same stack as the CLI.
    with stack_environ(running.env):
        try:
            running.up()
            sys.stderr.write(f"\nstack healthy in {running.up_seconds:.1f} s\n")
            yield running
        finally:
            running.down()
            for name in ("prefect", "mlflow", "worker", "sensor", "serve"):
                log = home / "logs" / f"{name}.log"
                if log.exists():
                    sys.stderr.write(f"\n--- tail of {name}.log ---\n")
                    sys.stderr.write("\n".join(log.read_text(errors="replace").splitlines()[-15:]))


def stored_events(
    stack: RunningStack, name: str, resource_id: str | None = None, timeout: float = 60
) -> list[dict]:
    """The events `name` once Prefect stored one: its persister writes a few seconds after
    the API accepted them, and the sensor resends an arrival event a restart lost."""
    return wait_for(
        lambda: stack.events(name, resource_id), timeout, f"Prefect to store a {name} event"
    )
