"""Ingest: validate a claimed file, quarantine it with a reason or accept it into the archive.

Trust boundary: a file is opened only through its ledger row, and only when the recorded
path lies inside the data folder. Nothing here reads a path from event parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.context import RetrainContext, now_iso
from shared import events
from shared.fs import atomic_write_json, is_within, move_into

if TYPE_CHECKING:
    import pandas as pd

    from shared.ledger import FileRecord


@dataclass(frozen=True)
class Accepted:
    record: FileRecord
    path: Path
    frame: pd.DataFrame


def reject(ctx: RetrainContext, record: FileRecord, path: Path, reason: str) -> None:
    dirs = ctx.settings.dirs
    where = move_into(path, dirs.quarantine, record.name) if path.exists() else path
    atomic_write_json(
        where.with_name(where.name + ".reason.json"),
        {
            "file": record.name,
            "sha256": record.sha256,
            "reason": reason,
            "rejected_at": now_iso(),
            "run": ctx.run_url,
            "release": f"fix the file in place, then: arrivals release {where.name}",
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


def ingest(ctx: RetrainContext, record: FileRecord) -> Accepted | None:
    """Validate one claimed file: accepted files move to the archive, bad ones to quarantine."""
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
        frame = validate_csv(path, ctx.settings.dataset)
    except Rejected as rejection:
        reject(ctx, record, path, str(rejection))
        return None
    if not is_within(path, dirs.archive):
        path = move_into(path, dirs.archive, record.name)
        ctx.ledger.set_stored_path(record.sha256, str(path))
    copy = accepted_copy(ctx, record.sha256)
    copy.parent.mkdir(parents=True, exist_ok=True)
    tmp = copy.with_name(f".{copy.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(copy)
    return Accepted(record, path, frame)


def accepted_copy(ctx: RetrainContext, sha256: str) -> Path:
    return ctx.settings.dirs.accepted / f"{sha256}.parquet"


def load_accepted(ctx: RetrainContext, record: FileRecord) -> pd.DataFrame:
    """The typed rows of an accepted file: its Parquet copy, else its archived CSV again."""
    import pandas as pd

    from consumer.validate import validate_csv

    copy = accepted_copy(ctx, record.sha256)
    if copy.exists():
        return pd.read_parquet(copy)
    return validate_csv(Path(record.stored_path), ctx.settings.dataset)
