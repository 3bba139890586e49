"""Where the sensor puts a file it does not leave for a retrain: a refusal or a duplicate.

Both are renames inside the data folder, which need no space; only a refusal's `.reason.json`
sidecar (and a folder made for the first time) does. The ledger lives elsewhere, so a full
data folder must never stop the sensor: the file is recorded first, the ledger is told where
each rename put it right after, and what the full disk prevents is logged and left as it is.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from automations.door import release_hint
from shared.alerts import Notifier, rejected_alert
from shared.fs import atomic_write_json, is_out_of_space, move_into
from shared.ledger import Arrival, Ledger
from shared.runtime_settings import Paths

log = logging.getLogger("arrivals.sensor")


def _moved(path: Path, folder: Path) -> Path | None:
    """`path` moved into `folder` (never overwriting); None when the data folder is full."""
    try:
        return move_into(path, folder, path.name)
    except OSError as error:
        if not is_out_of_space(error):
            raise
        # Only on a filesystem where a rename needs a new directory block, or a new folder.
        log.warning(
            "%s stays in the inbox: no room to move it to %s (%s)", path.name, folder, error
        )
        return None


def refuse(
    dirs: Paths, ledger: Ledger, notifier: Notifier, path: Path, arrival: Arrival, reason: str
) -> Path:
    """Quarantine a file refused at the door (already recorded as rejected); where it is now."""
    hint = release_hint(path.name, reason)
    where = _moved(path, dirs.quarantine)
    if where is None:  # still in the inbox, where the ledger says it is: no sidecar there
        log.warning("Rejected %s: %s (left at %s)", path.name, reason, path)
        notifier.send(rejected_alert(path.name, reason, str(path), hint))
        return path
    ledger.set_stored_path(arrival.sha256, str(where))
    ledger.move_arrival(arrival.id, str(where))
    sidecar = where.with_name(where.name + ".reason.json")
    try:
        atomic_write_json(
            sidecar,
            {
                "file": path.name,
                "sha256": arrival.sha256,
                "reason": reason,
                "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rejected_by": "sensor",
                "release": hint,
            },
        )
    except OSError as error:
        if not is_out_of_space(error):
            raise
        # The ledger, the event and the alert carry the reason; the sidecar is a convenience.
        log.warning("No %s (the reason is in the ledger): %s", sidecar.name, error)
    log.warning("Rejected %s: %s (moved to %s)", path.name, reason, where)
    notifier.send(rejected_alert(path.name, reason, str(where), hint))
    return where


def archive_duplicate(dirs: Paths, ledger: Ledger, path: Path, arrival: Arrival) -> Path:
    """Move a duplicate to `archive/duplicates/` and record where; where it is now."""
    where = _moved(path, dirs.archive / "duplicates")
    if where is None:
        log.info("%s is a duplicate of %s (left at %s)", path.name, arrival.duplicate_of, path)
        return path
    ledger.move_arrival(arrival.id, str(where))
    log.info("%s is a duplicate of %s (moved to %s)", path.name, arrival.duplicate_of, where)
    return where
