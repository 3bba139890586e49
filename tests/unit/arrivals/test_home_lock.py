"""One `arrivals up` per home: the lock between real processes, and `up` holding it."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arrivals import cli
from arrivals.home_lock import HomeBusy, hold_home

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from arrivals.home_lock import HomeBusy, hold_home

    try:
        with hold_home(Path(sys.argv[1])):
            print("held", flush=True)
            sys.stdin.read()  # until the test closes our stdin
    except HomeBusy as error:
        print(error, flush=True)
        sys.exit(1)
    """
)


def hold(run_dir: Path) -> subprocess.Popen:
    """Another process that holds the home's lock until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def release(holder: subprocess.Popen) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=10) == 0


def test_a_second_process_is_refused_naming_the_first(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = hold(run_dir)
    try:
        second = subprocess.run(
            [sys.executable, "-c", HOLDER, str(run_dir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        release(first)
    assert second.returncode == 1
    assert second.stdout == (
        f"another `arrivals up` is starting or running this home (pid {first.pid}); "
        "wait for it to return, or stop it first\n"
    )
    with hold_home(run_dir):  # released with its holder
        pass


def test_a_killed_holder_leaves_the_home_free(tmp_path: Path) -> None:
    holder = hold(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with hold_home(tmp_path / "run"):
        pass


def test_processes_started_under_the_lock_do_not_keep_it(tmp_path: Path) -> None:
    """A detached `up` leaves its services running: they must not hold the lock after it."""
    with hold_home(tmp_path / "run"):
        # close_fds=False: even a spawner that passes its descriptors on does not pass this one.
        service = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True,
            close_fds=False,
        )
    try:
        with hold_home(tmp_path / "run"):
            assert service.poll() is None
    finally:
        service.kill()
        service.wait(timeout=10)


def test_up_refuses_while_another_process_holds_the_home(
    settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started = []
    monkeypatch.setattr(cli, "_up", lambda *_args: started.append(True) or 0)
    holder = hold(settings.dirs.run)
    try:
        with caplog.at_level(logging.ERROR, logger="arrivals"):
            assert cli.main(["up", "--detach"]) == 1
    finally:
        release(holder)
    assert started == [], "nothing starts while another up holds the home"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"another `arrivals up` is starting or running this home (pid {holder.pid}); "
        "wait for it to return, or stop it first"
    ]


def test_up_holds_the_home_until_it_returns(settings, monkeypatch) -> None:
    seen = []

    def fake_up(*_args) -> int:
        # A second `up` now would be refused.
        with pytest.raises(HomeBusy), hold_home(settings.dirs.run):
            pass
        seen.append("held")
        return 0

    monkeypatch.setattr(cli, "_up", fake_up)
    assert cli.main(["up", "--detach"]) == 0
    assert seen == ["held"]
    with hold_home(settings.dirs.run):  # free again once `up` returned
        pass
