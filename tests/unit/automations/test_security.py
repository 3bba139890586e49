"""Safe by default: exposure needs auth, odd file names are plain data, no shell anywhere."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from arrivals.environment import prefect_env
from consumer.context import RetrainContext
from consumer.ingest import ingest
from shared.events import FILE_ARRIVED, prefect_headers
from shared.ledger import Ledger
from shared.settings import PROJECT_ROOT, SettingsError, load_settings
from tests.support.data import ROWS
from tests.support.fakes import FakeEmitter
from tests.support.rigs import SensorRig

HEADER = "total_bill,tip,sex,smoker,day,time,size\n"


def _services(**changes):
    def change(params):
        params["services"].update(changes)

    return change


@pytest.mark.parametrize(
    ("changes", "auth", "key"),
    [
        pytest.param({"host": "0.0.0.0"}, None, "services.host", id="wildcard-without-expose"),
        pytest.param({"host": "10.1.2.3"}, None, "services.host", id="lan-without-expose"),
        pytest.param(
            {"host": "0.0.0.0", "expose": True, "allowed_hosts": ["box.lan"]},
            None,
            "services.expose",
            id="expose-without-auth-string",
        ),
        pytest.param(
            {"host": "0.0.0.0", "expose": True},
            "s3cret",
            "services.allowed_hosts",
            id="expose-without-allowed-hosts",
        ),
    ],
)
def test_exposure_without_auth_is_refused(write_config, monkeypatch, changes, auth, key):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    if auth:
        monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", auth)
    with pytest.raises(SettingsError) as refused:
        load_settings(write_config(_services(**changes)))
    message = str(refused.value)
    assert key in message
    assert "\n" not in message


def test_explicit_exposure_with_auth_is_accepted_and_clients_authenticate(
    write_config, monkeypatch
):
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:s3cret")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    config = write_config(_services(host="0.0.0.0", expose=True, allowed_hosts=["box.lan"]))
    settings = load_settings(config)
    assert settings.prefect_api_url.startswith("http://127.0.0.1:")  # clients use loopback
    assert prefect_env(settings)["PREFECT_API_AUTH_STRING"] == "admin:s3cret"
    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert prefect_headers() == {"Authorization": expected}


def test_default_is_loopback_without_auth(settings, monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    assert settings.services.host == "127.0.0.1"
    assert settings.services.expose is False
    assert prefect_headers() == {}


ODD_NAMES = [
    "with space.csv",
    "ünïcødé 数据.csv",
    "-leading-dash.csv",
    "--help.csv",
    "a..b.csv",
    "$(touch pwned).csv",
    "semi;colon'quote\".csv",
]


@pytest.fixture
def rig(settings, tmp_path) -> SensorRig:
    settings.dirs.ensure()
    return SensorRig(settings, tmp_path)


def test_odd_names_are_detected_announced_and_ingested_as_plain_data(rig, settings, tmp_path):
    for i, name in enumerate(ODD_NAMES):
        (rig.inbox / name).write_bytes(ROWS + f"1{i}.5,2.0,Male,No,Sat,Dinner,2\n".encode())
    rig.detect()
    rig.step(rig.settle + 0.1)
    announced = {e.payload["name"] for e in rig.emitter.named(FILE_ARRIVED)}
    assert set(ODD_NAMES) <= announced

    ctx = RetrainContext(
        settings=settings, ledger=rig.ledger, emitter=FakeEmitter(), run_id="run-odd"
    )
    for record in rig.ledger.claim_pending("run-odd", ttl_seconds=60):
        accepted = ingest(ctx, record)
        assert accepted is not None, record.name
        assert accepted.path.parent == settings.dirs.archive
        assert accepted.path.name == record.name  # kept verbatim, not interpreted
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_dotdot_name_is_a_temp_name_and_never_leaves_the_inbox(rig):
    (rig.inbox / "..sneaky.csv").write_bytes(ROWS)
    rig.detect()
    rig.step(rig.settle + 0.1)
    assert rig.ledger.files() == []
    assert (rig.inbox / "..sneaky.csv").exists()


def test_oversized_file_is_rejected_with_the_limit_named(settings, tmp_path):
    big = settings.model_copy(
        update={"dataset": settings.dataset.model_copy(update={"max_file_bytes": 100})}
    )
    big.dirs.ensure()
    path = big.dirs.inbox / "big.csv"
    path.write_text(HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n" * 10)
    ledger = Ledger(big.ledger_url)
    arrival = ledger.record_arrival(
        name="big.csv",
        path=str(path),
        size=path.stat().st_size,
        sha256="b" * 64,
        detected_via="push",
    )
    ledger.mark_announced(arrival.id)
    (record,) = ledger.claim_pending("run-big", ttl_seconds=60)
    ctx = RetrainContext(settings=big, ledger=ledger, emitter=FakeEmitter(), run_id="run-big")
    assert ingest(ctx, record) is None
    rejected = ledger.get("b" * 64)
    assert rejected.state == "rejected"
    assert "100-byte limit" in rejected.reason
    assert Path(rejected.stored_path).parent == big.dirs.quarantine


def test_drop_copies_odd_names_without_a_shell(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("ARRIVALS_HOME", str(settings.home))
    source = tmp_path / "-dash $(x).csv"
    source.write_text(HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n")
    result = subprocess.run(
        [sys.executable, "-m", "arrivals.cli", "drop", f"./{source.name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (settings.dirs.inbox / source.name).read_bytes() == source.read_bytes()


def test_no_shell_is_ever_built():
    """Every subprocess takes an argument list: no shell=True, os.system or os.popen."""
    offenders = []
    for package in ("arrivals", "automations", "consumer", "producer", "shared"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", text):
                offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []


def test_a_vanished_file_is_rejected_with_its_reason_in_the_quarantine(settings):
    settings.dirs.ensure()
    path = settings.dirs.inbox / "gone.csv"
    ledger = Ledger(settings.ledger_url)
    arrival = ledger.record_arrival(
        name="gone.csv", path=str(path), size=10, sha256="d" * 64, detected_via="push"
    )
    ledger.mark_announced(arrival.id)
    (record,) = ledger.claim_pending("run-gone", ttl_seconds=60)
    ctx = RetrainContext(settings=settings, ledger=ledger, emitter=FakeEmitter(), run_id="run-gone")
    assert ingest(ctx, record) is None  # the file was deleted before the run read it
    assert ledger.get("d" * 64).state == "rejected"
    assert "vanished" in ledger.get("d" * 64).reason
    assert (settings.dirs.quarantine / "gone.csv.reason.json").exists()
    assert list(settings.dirs.inbox.iterdir()) == []  # nothing a sensor would take for a file
