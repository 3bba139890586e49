"""`arrivals --version` and the exit codes `--help` documents, held to what commands return."""

from __future__ import annotations

import re
import socket
from importlib.metadata import version
from pathlib import Path

import pytest

from arrivals.cli import EXIT_CODES, build_parser, main


def exit_code(argv: list[str]) -> int:
    """What `arrivals argv` exits with, whether `main` returns or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def documented_codes() -> set[int]:
    return {int(code) for code in re.findall(r"^  (\d+)  ", EXIT_CODES, flags=re.MULTILINE)}


def test_version_is_the_installed_packages(capsys) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"arrivals {version('arrivals')}\n"


def test_help_documents_the_exit_codes(capsys) -> None:
    assert exit_code(["--help"]) == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text
    for line in EXIT_CODES.splitlines():
        assert line in text, "the epilog keeps its lines"
    assert documented_codes() == {0, 1, 2}


@pytest.fixture
def closed_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """This home's Prefect on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(port))
    return port


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["status"], 0, id="status-reports"),
        pytest.param(["down"], 0, id="down-with-nothing-running"),
        pytest.param(["status", "--check"], 1, id="check-with-the-stack-down"),
        pytest.param(["events"], 1, id="events-prefect-unreachable"),
        pytest.param(["nonsense"], 2, id="unknown-command"),
        pytest.param(["status", "--recent", "-3"], 2, id="bad-option-value"),
        pytest.param(["--config", "/nonexistent/params.yaml", "status"], 2, id="bad-config"),
        pytest.param(["drop", "/nonexistent/week.csv"], 2, id="drop-not-a-file"),
        pytest.param(["lineage", "nothing.csv"], 2, id="lineage-unknown-file"),
        pytest.param(["retract", "nothing.csv"], 2, id="retract-unknown-file"),
        pytest.param(["release", "nothing.csv"], 2, id="release-not-in-quarantine"),
    ],
)
def test_commands_exit_with_the_documented_codes(
    argv: list[str], code: int, closed_port: int, capsys
) -> None:
    assert code in documented_codes()
    assert exit_code(argv) == code
    capsys.readouterr()


def test_every_documented_code_is_exercised() -> None:
    marks = test_commands_exit_with_the_documented_codes.pytestmark
    (cases,) = [mark.args[1] for mark in marks if mark.name == "parametrize"]
    assert {case.values[1] for case in cases} == documented_codes()


def test_the_parser_needs_a_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([])
    assert exit_.value.code == 2
    assert "required: command" in capsys.readouterr().err


def test_a_missing_config_is_named(capsys, caplog, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert exit_code(["--config", str(missing), "status"]) == 2
    assert str(missing) in caplog.text
