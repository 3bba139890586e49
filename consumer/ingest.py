"""Ingest: validate a claimed file, quarantine it with a reason or accept it into the archive.

Trust boundary: a file is opened only through its ledger row, and only when the recorded
path lies inside the data folder. Nothing here reads a path from event parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.context import RetrainContext, now_iso
from shared import events
from shared.alerts import rejected_alert
from shared.fs import atomic_write_bytes, atomic_write_json, is_within, move_into

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
    where = move_into(path, dirs.quarantine, record.name) if there else path
    # The sidecar always goes to the quarantine, named after the file: beside a vanished inbox
    # file it would be taken for a new arrival, and a path outside the data folder is no place.
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


def ingest(ctx: RetrainContext, record: FileRecord) -> Accepted | None:
    """Validate one claimed file: accepted files move to the archive, bad ones to quarantine."""
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
        ctx.ledger.set_note(record.sha256, accepted.rows_note)  # shown by status and lineage
        ctx.logger.warning("%s: %s", record.name, accepted.rows_note)
    return accepted


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
