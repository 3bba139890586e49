"""The warm engine's protocol, with a real server, real clients and real forks.

The server runs `tests.unit.arrivals.warm_child` in place of `prefect.engine` and preloads
nothing, so these tests check the plumbing (environment, cwd, stdio, exit codes, signals, fallback)
in well under a second each; the e2e tests run real flow runs through it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arrivals.environment import warm_engine_socket
from arrivals.harness import wait_for, write_params
from arrivals.topology import ENGINE_CLIENT, deployment_specs, flow_run_job_variables
from shared.settings import PROJECT_ROOT, load_settings

CHILD = "tests.unit.arrivals.warm_child"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "engine.sock"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arrivals.warm_engine",
            str(sock),
            "--no-preload",
            "--run-module",
            CHILD,
        ],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(sock.exists, 20, "the warm engine's socket")
        yield sock
    finally:
        server.terminate()
        server.wait(timeout=10)


def client(sock: Path, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "arrivals.engine_client", str(sock), "extra-arg"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_run_gets_the_clients_environment_cwd_arguments_and_stdio(engine, tmp_path):
    run = client(engine, tmp_path, WARM_MARK="from-the-client")
    out, err = run.communicate(timeout=20)
    assert run.returncode == 0, err
    report = json.loads(out)
    assert report["mark"] == "from-the-client"
    assert report["cwd"] == str(tmp_path)
    assert report["argv"] == ["extra-arg"]
    assert report["pid"] != run.pid  # a fork of the server, not the client
    assert "child stderr line" in err


@pytest.mark.parametrize("code", [0, 1, 3])
def test_the_client_exits_with_the_runs_exit_code(engine, tmp_path, code):
    run = client(engine, tmp_path, WARM_EXIT=str(code))
    run.communicate(timeout=20)
    assert run.returncode == code


def test_sigterm_to_the_client_reaches_the_run(engine, tmp_path):
    # The worker cancels a run by signalling the process it started.
    run = client(engine, tmp_path, WARM_WAIT="1")
    report = json.loads(run.stdout.readline())
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=20)
    assert run.returncode == -signal.SIGTERM  # the run died of it, and so does the client
    wait_for(lambda: not Path(f"/proc/{report['pid']}").exists(), 10, "the run to be gone")


def test_a_killed_client_takes_its_run_down(engine, tmp_path):
    run = client(engine, tmp_path, WARM_WAIT="1")
    report = json.loads(run.stdout.readline())
    run.kill()
    run.wait(timeout=10)
    wait_for(lambda: not Path(f"/proc/{report['pid']}").exists(), 10, "the orphaned run to stop")


def test_the_socket_is_for_its_owner_only(engine):
    assert stat.S_IMODE(engine.stat().st_mode) == 0o600


def test_without_an_engine_the_client_runs_the_cold_engine(tmp_path):
    run = client(tmp_path / "absent.sock", tmp_path, PREFECT__FLOW_RUN_ID="not-a-uuid")
    _out, err = run.communicate(timeout=120)
    assert "warm engine unavailable" in err
    # What `python -m prefect.engine` says of a bad flow run id: the cold engine ran.
    assert "Invalid flow run id" in err, err[-2000:]
    assert run.returncode == 1


def test_warm_start_is_off_when_disabled_or_when_the_socket_path_cannot_fit(tmp_path):
    def settings(home: Path, *overrides: dict):
        config = write_params(tmp_path / f"params-{len(home.name)}.yaml", *overrides)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ARRIVALS_HOME", str(home))
            return load_settings(config)

    on = settings(tmp_path / "home")
    assert warm_engine_socket(on) == on.dirs.run / "engine.sock"
    off = settings(tmp_path / "home", {"services": {"warm_start": False}})
    assert warm_engine_socket(off) is None
    assert warm_engine_socket(settings(tmp_path / ("d" * 120))) is None


def test_the_stack_starts_the_engine_before_the_workers_and_deploys_through_it(tmp_path):
    from arrivals.stack import Stack

    with pytest.MonkeyPatch.context() as env:
        env.setenv("ARRIVALS_HOME", str(tmp_path / "home"))
        on = load_settings(write_params(tmp_path / "on.yaml"))
        off = load_settings(
            write_params(tmp_path / "off.yaml", {"services": {"warm_start": False}})
        )
    names = Stack(on).service_names()
    assert names.index("engine") < names.index("worker")
    assert "engine" not in Stack(off).service_names()
    command = flow_run_job_variables(on)["command"].split()
    assert command[1:] == ["-m", ENGINE_CLIENT, str(warm_engine_socket(on))]
    assert flow_run_job_variables(off) == {}
    for spec in deployment_specs(on):  # every flow run starts warm, the producer's too
        assert spec.job_variables == flow_run_job_variables(on), spec.full_name
