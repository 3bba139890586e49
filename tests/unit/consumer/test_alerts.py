"""A retrain tells people (alerts.urls) about the files it rejects or holds out as suspect,
with the reason and the command a person runs; a receiver that is down never fails it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from consumer.ingest import Accepted, ingest
from consumer.publish import announce_suspects
from consumer.retrain import claim
from shared.alerts import AppriseNotifier
from shared.events import FILE_REJECTED, FILE_SUSPECT
from shared.ledger import FileRecord, FileState
from shared.settings import Settings
from tests.support.fakes import FakeNotifier
from tests.support.rigs import RetrainRig

NO_TIP = "total_bill,sex,smoker,day,time,size\n16.99,Female,No,Sun,Dinner,2\n"


@pytest.fixture
def rig(settings: Settings) -> Iterator[RetrainRig]:
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


def _claim_bad_file(rig: RetrainRig, name: str = "no_tip.csv") -> tuple[FileRecord, object]:
    path = rig.settings.dirs.inbox / name
    path.write_text(NO_TIP)
    arrival = rig.ledger.record_arrival(
        name=name, path=str(path), size=len(NO_TIP), sha256="f" * 64, detected_via="push"
    )
    rig.ledger.mark_announced(arrival.id)
    ctx = rig.context("run-alerts")
    (record,) = claim(ctx)
    return record, ctx


def test_a_rejected_file_is_alerted_with_its_reason_and_the_way_back(rig: RetrainRig) -> None:
    record, ctx = _claim_bad_file(rig)
    ctx.notifier = notifier = FakeNotifier()
    assert ingest(ctx, record) is None
    reason = rig.ledger.get(record.sha256).reason
    assert reason and "tip" in reason
    (alert,) = notifier.sent
    assert alert.title == "Arrivals: no_tip.csv rejected"
    assert f"Reason: {reason}" in alert.body
    assert f"Now at: {rig.settings.dirs.quarantine / 'no_tip.csv'}" in alert.body
    assert "arrivals release no_tip.csv" in alert.body
    assert f"Run: {ctx.run_url}" in alert.body


def test_a_receiver_that_is_down_never_fails_the_rejection(
    rig: RetrainRig, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    record, ctx = _claim_bad_file(rig)
    ctx.notifier = AppriseNotifier([f"json://127.0.0.1:{port}/hook"])
    with caplog.at_level(logging.WARNING, logger="arrivals.alerts"):
        assert ingest(ctx, record) is None
    assert rig.ledger.get(record.sha256).state == FileState.REJECTED
    assert (rig.settings.dirs.quarantine / "no_tip.csv").exists()
    assert len(rig.emitter.named(FILE_REJECTED)) == 1
    assert "Alert 'Arrivals: no_tip.csv rejected' not delivered" in caplog.text


def test_no_alerts_configured_sends_nothing_and_rejects_as_before(rig: RetrainRig) -> None:
    record, ctx = _claim_bad_file(rig)
    assert ingest(ctx, record) is None  # the context's default notifier: none
    assert rig.ledger.get(record.sha256).state == FileState.REJECTED


def test_each_suspect_is_alerted_with_the_evidence_and_both_commands(rig: RetrainRig) -> None:
    ctx = rig.context("run-suspects")
    ctx.notifier = notifier = FakeNotifier()
    suspects = []
    for i, name in enumerate(("odd_1.csv", "odd_2.csv")):
        record = FileRecord(
            f"{i}" * 64, name, 10, "claimed", f"/a/{name}", 0.0, 0.0, None, None, None, None, None,
            None,
        )  # fmt: skip
        accepted = Accepted(record, Path(record.stored_path), pd.DataFrame({"x": [1]}))
        suspects.append((accepted, f"with {name} roc_auc 0.60, without it 0.80"))
    announce_suspects(ctx, suspects, round_no=1)
    assert len(rig.emitter.named(FILE_SUSPECT)) == 2
    assert [a.title for a in notifier.sent] == [
        "Arrivals: odd_1.csv is suspect",
        "Arrivals: odd_2.csv is suspect",
    ]
    body = notifier.sent[1].body
    assert "Evidence: with odd_2.csv roc_auc 0.60, without it 0.80" in body
    assert "arrivals accept odd_2.csv" in body and "arrivals retract odd_2.csv" in body
    assert ctx.run_url in body
