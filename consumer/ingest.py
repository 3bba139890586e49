"""Ingest: validate a claimed file, quarantine it with a reason or accept it into the archive.

Trust boundary: a file is opened only through its ledger row, and only when the recorded
path lies inside the data folder. Nothing here reads a path from event parameters.
"""

from __future__ import annotations

import errno
import glob
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.context import RetrainContext, now_iso
from shared import events
from shared.alerts import rejected_alert
from shared.fs import (
    atomic_write_bytes,
    atomic_write_json,
    is_out_of_space,
    is_within,
    move_into,
    sha256_file,
    split_suffix,
    unique_destination,
)
from shared.ledger import WAITING_FOR_SPACE

if TYPE_CHECKING:
    import pandas as pd

    from shared.ledger import FileRecord


@dataclass(frozen=True)
class Accepted:
    record: FileRecord
    path: Path
    frame: pd.DataFrame
    total_rows: int = -1  # data rows in the file; -1 (the default): len(frame) + dropped
    dropped: int = 0  # bad rows left out, listed in bad_rows_file
    bad_rows_file: Path | None = None  # quarantine/<name>.rows.csv

    def __post_init__(self) -> None:
        if self.total_rows < 0:
            object.__setattr__(self, "total_rows", len(self.frame) + self.dropped)

    @property
    def rows_note(self) -> str:
        """E.g. "accepted 58 of 60 rows (2 dropped: see quarantine/tips_007.csv.rows.csv)"."""
        total = self.total_rows
        note = f"accepted {total - self.dropped} of {total} row{'s' if total != 1 else ''}"
        if not self.dropped:
            return note
        where = self.bad_rows_file
        shown = f"{where.parent.name}/{where.name}" if where else "the quarantine"
        return f"{note} ({self.dropped} dropped: see {shown})"


def reject(ctx: RetrainContext, record: FileRecord, path: Path, reason: str) -> None:
    """Quarantine the file (when it is there) with a `.reason.json` sidecar, and say so."""
    dirs = ctx.settings.dirs
    there = path.exists()
    if there and is_within(path, dirs.quarantine):
        where = path  # moved here by an attempt that stopped before the ledger said so
    elif there:
        where = unique_destination(dirs.quarantine, record.name)
    else:
        where = path
    # The sidecar always goes to the quarantine, named after the file: beside a vanished inbox
    # file it would be taken for a new arrival, and a path outside the data folder is no place.
    # It is written before the file moves: if that fails (a full disk) the file is still where
    # the ledger says, and the next attempt writes both again.
    sidecar = dirs.quarantine / f"{where.name if there else record.name}.reason.json"
    release = f"fix the file in place, then: arrivals release {where.name}"
    atomic_write_json(
        sidecar,
        {
            "file": record.name,
            "sha256": record.sha256,
            "reason": reason,
            "rejected_at": now_iso(),
            "run": ctx.run_url,
            "release": release,
        },
    )
    if where != path:
        os.replace(path, where)  # a rename in the data folder; a crash right after is found
    ctx.ledger.mark_rejected(record.sha256, run_id=ctx.run_id, reason=reason, path=str(where))
    ctx.logger.warning("Rejected %s: %s (moved to %s)", record.name, reason, where)
    ctx.emit(
        events.file_event(
            events.FILE_REJECTED,
            sha256=record.sha256,
            file_name=record.name,
            payload={"name": record.name, "reason": reason, "quarantine_path": str(where)},
            id=events.event_id(events.FILE_REJECTED, record.sha256),
            related=[ctx.run_related()],
        ),
    )
    ctx.notify(rejected_alert(record.name, reason, str(where), release, ctx.run_url))


@dataclass(frozen=True)
class Ingested:
    """A round's claimed files after ingest: accepted, rejected, or waiting for space."""

    accepted: list[Accepted]
    rejected: list[str]  # names of the files quarantined (the ledger has each one's reason)
    waiting: list[str]  # names of the files the data folder had no room for (still pending)


def ingest_all(ctx: RetrainContext, records: list[FileRecord]) -> Ingested:
    """Ingest each claimed file; a file the data folder has no room for waits, the rest go on."""
    accepted: list[Accepted] = []
    rejected: list[str] = []
    waiting: list[str] = []
    for record in records:
        try:
            outcome = _ingest(ctx, record)
        except OSError as error:
            if not is_out_of_space(error):
                raise
            # Not the file's fault, and no reason to fail the others: it waits for space.
            wait_for_space(ctx, record, error)
            waiting.append(record.name)
            continue
        if outcome is None:
            rejected.append(record.name)
        else:
            accepted.append(outcome)
    return Ingested(accepted, rejected, waiting)


def ingest(ctx: RetrainContext, record: FileRecord) -> Accepted | None:
    """Validate one claimed file: accepted files move to the archive, bad ones to quarantine.

    None: rejected, or waiting for space (the data folder is full, see `wait_for_space`).
    """
    accepted = ingest_all(ctx, [record]).accepted
    return accepted[0] if accepted else None


def wait_for_space(ctx: RetrainContext, record: FileRecord, error: OSError) -> None:
    """Leave the file pending, its note saying which write found the data folder full.

    It keeps this run's claim, so the run does not take it again at once; at its end the
    run gives it back (`Ledger.release_waiting`) and the sensor's sweep announces it again.
    """
    note = space_note(ctx.settings.dirs.data, error)
    ctx.ledger.set_note(record.sha256, note)
    ctx.logger.warning("%s waits: %s", record.name, note)


def space_note(data: Path, error: OSError) -> str:
    """E.g. `waiting for space: /d is full (no space left on device writing accepted/x.parquet)`."""
    full = "is over quota" if error.errno == errno.EDQUOT else "is full"
    # A failed rename names (source, destination); a failed write its destination.
    target = error.filename2 or error.filename
    what = (error.strerror or "out of space").lower()
    if target is not None:
        written = Path(os.fsdecode(target))
        shown = written.relative_to(data) if written.is_relative_to(data) else written
        what += f" writing {shown}"
    return f"{WAITING_FOR_SPACE}: {data} {full} ({what})"


def _ingest(ctx: RetrainContext, record: FileRecord) -> Accepted | None:
    # These read CSVs with pandas (a second to import with them): loaded when a file is read.
    from consumer.csvfile import write_bad_rows
    from consumer.holdout import split_arrival
    from consumer.validate import Rejected, validate_csv

    dirs = ctx.settings.dirs
    path = Path(record.stored_path)
    if not is_within(path, dirs.data) or path.is_symlink():
        # Never open it: the path did not come from the sensor's own recording.
        reject(ctx, record, Path("/nonexistent"), f"recorded path {path} is outside {dirs.data}")
        return None
    if not path.is_file():
        path = find_moved(ctx, record) or path
    if not path.is_file():
        reject(ctx, record, path, f"file vanished from {path} before it could be read")
        return None
    try:
        validated = validate_csv(path, ctx.settings.dataset)
    except Rejected as rejection:
        reject(ctx, record, path, str(rejection))
        return None
    frame = validated.frame
    if not is_within(path, dirs.archive):
        path = move_into(path, dirs.archive, record.name)
        ctx.ledger.set_stored_path(record.sha256, str(path))
    # No source: holdout.fraction of the rows go to the holdout, and never into training.
    frame = split_arrival(ctx.settings, record.sha256, frame)
    atomic_write_bytes(accepted_copy(ctx, record.sha256), frame.to_parquet(index=False))
    accepted = Accepted(record, path, frame, validated.total_rows, validated.dropped)
    if validated.dropped:
        rows_file = write_bad_rows(validated.bad_rows, dirs.quarantine, record.name)
        accepted = replace(accepted, bad_rows_file=rows_file)
        ctx.logger.warning("%s: %s", record.name, accepted.rows_note)
    if validated.dropped or (record.reason or "").startswith(WAITING_FOR_SPACE):
        # Shown by status and lineage; an earlier attempt's wait is over.
        ctx.ledger.set_note(record.sha256, accepted.rows_note if validated.dropped else None)
    return accepted


def find_moved(ctx: RetrainContext, record: FileRecord) -> Path | None:
    """The file in the archive or the quarantine, under the name a move gives it, when an
    attempt moved it there and stopped (killed, or the disk full) before the ledger said so.

    Only a regular file of the recorded size and sha256 counts; the ledger then points to it.
    """
    dirs = ctx.settings.dirs
    stem, suffix = split_suffix(record.name)
    numbered = re.compile(rf"{re.escape(stem)}-\d+{re.escape(suffix)}")
    for folder in (dirs.archive, dirs.quarantine):
        pattern = f"{glob.escape(stem)}-*{glob.escape(suffix)}"
        renamed = sorted(p for p in folder.glob(pattern) if numbered.fullmatch(p.name))
        for candidate in [folder / record.name, *renamed]:
            if (
                candidate.is_file()
                and not candidate.is_symlink()
                and candidate.stat().st_size == record.size
                and sha256_file(candidate) == record.sha256
            ):
                ctx.ledger.set_stored_path(record.sha256, str(candidate))
                ctx.logger.warning(
                    "%s was not at %s: found it at %s, where an interrupted attempt moved it",
                    record.name,
                    record.stored_path,
                    candidate,
                )
                return candidate
    return None


def accepted_copy(ctx: RetrainContext, sha256: str) -> Path:
    return ctx.settings.dirs.accepted / f"{sha256}.parquet"


def load_accepted(ctx: RetrainContext, record: FileRecord) -> pd.DataFrame:
    """The typed rows of an accepted file: its Parquet copy, else its archived CSV again."""
    import pandas as pd  # see ingest

    from consumer.holdout import training_rows
    from consumer.validate import validate_csv

    copy = accepted_copy(ctx, record.sha256)
    if copy.exists():
        return pd.read_parquet(copy)
    frame = validate_csv(Path(record.stored_path), ctx.settings.dataset).frame
    return training_rows(ctx.settings, record.sha256, frame)
