"""Ingest of a file with bad rows: its rows.csv in the quarantine, its note in ledger and CLI."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from arrivals.ledger_commands import cmd_lineage
from arrivals.status import recent_arrivals
from consumer import csvfile
from consumer.context import RetrainContext
from consumer.ingest import Accepted, accepted_copy, ingest
from shared.ledger import Ledger
from shared.settings import Settings
from tests.support.data import BAD_AT, COLUMNS, GOOD, TIPS, rows_with, write_rows
from tests.support.fakes import FakeEmitter


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shipped settings (home under tmp_path) with the tips dataset of the row tests."""
    return settings.model_copy(update={"dataset": TIPS})


def test_bad_rows_file_is_written_once_and_never_overwritten(tmp_path: Path) -> None:
    rows = pd.DataFrame({"line": [3], "reason": ["r"], "a": ["x"]})
    first = csvfile.write_bad_rows(rows, tmp_path, "f.csv")
    assert first == tmp_path / "f.csv.rows.csv"
    assert csvfile.write_bad_rows(rows, tmp_path, "f.csv") == first, "a retry reuses it"
    other = csvfile.write_bad_rows(rows.assign(line=[4]), tmp_path, "f.csv")
    assert other != first and first.read_text() == "line,reason,a\n3,r,x\n"
    assert other.read_text() == "line,reason,a\n4,r,x\n"


def test_rows_note_without_and_with_dropped_rows(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": range(60)})
    assert Accepted(None, tmp_path, frame).rows_note == "accepted 60 of 60 rows"  # type: ignore[arg-type]
    dropped = Accepted(
        None,  # type: ignore[arg-type]
        tmp_path,
        frame.head(58),
        total_rows=60,
        dropped=2,
        bad_rows_file=tmp_path / "quarantine" / "tips_007.csv.rows.csv",
    )
    assert dropped.rows_note == (
        "accepted 58 of 60 rows (2 dropped: see quarantine/tips_007.csv.rows.csv)"
    )


def _claimed(settings: Settings, ledger: Ledger, path: Path, sha256: str) -> Any:
    arrival = ledger.record_arrival(
        name=path.name, path=str(path), size=path.stat().st_size, sha256=sha256, detected_via="push"
    )
    ledger.mark_announced(arrival.id)
    (record,) = ledger.claim_pending("run-rows", ttl_seconds=60)
    return record


def test_ingest_quarantines_dropped_rows_and_notes_them(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.dirs.ensure()
    rows = rows_with({BAD_AT: {"day": "Mon"}, 12: {"tip": "NA", "size": "2.5"}})
    path = write_rows(settings.dirs.inbox, rows, "tips_007.csv")
    ledger = Ledger(settings.ledger_url)
    record = _claimed(settings, ledger, path, "c" * 64)
    ctx = RetrainContext(settings=settings, ledger=ledger, emitter=FakeEmitter(), run_id="run-rows")

    accepted = ingest(ctx, record)

    assert accepted is not None
    assert (accepted.total_rows, accepted.dropped, len(accepted.frame)) == (20, 2, 18)
    assert accepted.path.parent == settings.dirs.archive
    rows_file = settings.dirs.quarantine / "tips_007.csv.rows.csv"
    assert accepted.bad_rows_file == rows_file
    assert accepted.rows_note == (
        "accepted 18 of 20 rows (2 dropped: see quarantine/tips_007.csv.rows.csv)"
    )
    written = list(csv.reader(io.StringIO(rows_file.read_text(encoding="utf-8"))))
    assert written[0] == ["line", "reason", *COLUMNS]
    assert [r[:2] for r in written[1:]] == [
        ["7", "column day: unknown value 'Mon'; allowed: Thur, Fri, Sat, Sun"],
        ["14", "missing label: column tip is 'NA'; column size: '2.5' is not a whole number"],
    ]
    file_lines = accepted.path.read_text(encoding="utf-8").splitlines()
    for row in written[1:]:
        assert file_lines[int(row[0]) - 1] == ",".join(row[2:]), "line numbers match the file"
    assert len(pd.read_parquet(accepted_copy(ctx, record.sha256))) == 18
    assert ledger.get(record.sha256).reason == accepted.rows_note

    ledger.mark_trained({record.sha256: 18}, run_id="run-rows", version="1")
    (recent,) = recent_arrivals(ledger, 5, now=ledger.get(record.sha256).detected_at)
    assert (recent["outcome"], recent["note"]) == ("trained", accepted.rows_note)
    ledger.record_lineage("1", {record.sha256: True})
    args = argparse.Namespace(version=None, file="tips_007.csv", json=False)
    assert cmd_lineage(settings, args) == 0
    assert f"  {accepted.rows_note}\n" in capsys.readouterr().out
    assert cmd_lineage(settings, argparse.Namespace(version=1, file=None, json=False)) == 0
    assert accepted.rows_note in capsys.readouterr().out
    ledger.close()


def test_ingest_of_a_clean_file_writes_no_rows_file(settings: Settings) -> None:
    settings.dirs.ensure()
    path = write_rows(settings.dirs.inbox, GOOD, "clean.csv")
    ledger = Ledger(settings.ledger_url)
    record = _claimed(settings, ledger, path, "d" * 64)
    ctx = RetrainContext(settings=settings, ledger=ledger, emitter=FakeEmitter(), run_id="run-rows")
    accepted = ingest(ctx, record)
    assert accepted is not None and accepted.rows_note == "accepted 20 of 20 rows"
    assert accepted.bad_rows_file is None
    assert list(settings.dirs.quarantine.iterdir()) == []
    assert ledger.get(record.sha256).reason is None
    ledger.close()
