"""The ledger: one durable row per distinct content (sha256), every name it arrived under.

Every transition is a single conditional UPDATE inside a transaction, so two processes
can never claim the same file. SQLite by default, any SQLAlchemy URL by configuration.
States, tables and records live in `shared.ledger_schema` (re-exported here), the sensor's
writes in `shared.ledger_arrivals`, the read-only queries in `shared.ledger_reads`, the
alerts sent about files in `shared.ledger_alerts`, the schema's revisions in
`shared.ledger_migrations` (`arrivals up` upgrades a ledger to the head).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.ledger_alerts import LedgerAlerts
from shared.ledger_arrivals import LedgerArrivals
from shared.ledger_engine import ledger_engine
from shared.ledger_reads import LedgerReads
from shared.ledger_schema import (
    PENDING_STATES,
    SCHEMA_REVISION,
    VERSION_TABLE,
    Arrival,
    ClaimLost,
    Disposition,
    FileRecord,
    FileState,
    LedgerSchemaError,
    file_record,
    files_table,
    lineage_table,
)

__all__ = [
    "PENDING_STATES",
    "WAITING_FOR_SPACE",
    "Arrival",
    "ClaimLost",
    "Disposition",
    "FileRecord",
    "FileState",
    "Ledger",
    "LedgerSchemaError",
]

# How the note of a pending file starts when its last attempt found the data folder full
# (`consumer.ingest.wait_for_space`); `arrivals status` counts these files.
WAITING_FOR_SPACE = "waiting for space"


class Ledger(LedgerArrivals, LedgerReads, LedgerAlerts):
    """Transactional record of every file that reached the inbox."""

    def __init__(self, url: str, *, clock=time.time) -> None:
        self.url = url
        self._clock = clock
        self.engine: Engine = ledger_engine(url)
        self._check_schema()

    def _check_schema(self) -> None:
        """Create a new ledger at the head revision; refuse one at another revision."""
        with self.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            revision = (
                conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                if VERSION_TABLE in tables
                else None
            )
            # Alembic is imported only here and below: a ledger is new or unstamped once.
            if revision is None and "files" in tables:  # from before migrations: by its shape
                from shared.ledger_migrations import legacy_revision

                revision = legacy_revision(conn)
        if "files" not in tables:
            from shared.ledger_migrations import upgrade_ledger

            upgrade_ledger(self.url)
        elif revision != SCHEMA_REVISION:
            self.close()
            raise LedgerSchemaError(
                f"the ledger's schema is at revision {revision}, this Arrivals needs "
                f"{SCHEMA_REVISION}: `arrivals up` upgrades it"
            )

    def close(self) -> None:
        self.engine.dispose()

    # -- claims (consumer side) ---------------------------------------------------------
    def _claimable(self, now: float) -> sa.ColumnElement[bool]:
        return sa.or_(
            files_table.c.state == FileState.ANNOUNCED,
            sa.and_(files_table.c.state == FileState.CLAIMED, files_table.c.claim_expires_at < now),
        )

    def has_claimable(self) -> bool:
        """Whether `claim_pending` would find anything (a read: no lock, no write)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(files_table.c.sha256).where(self._claimable(self._clock())).limit(1)
            ).first()
        return found is not None

    def claim_pending(self, run_id: str, *, ttl_seconds: float) -> list[FileRecord]:
        """Atomically claim every announced file, and every claim that expired.

        One statement, so concurrent callers split the pending files and never share one.
        """
        now = self._clock()
        claimable = self._claimable(now)
        # PostgreSQL: lock the rows being claimed and skip rows another claimer holds, so
        # concurrent claimers never wait on each other nor share a file. SQLite serializes
        # writers anyway (and compiles no FOR UPDATE).
        claimable_ids = (
            sa.select(files_table.c.sha256)
            .where(claimable)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update()
                .where(files_table.c.sha256.in_(claimable_ids))
                .values(
                    state=FileState.CLAIMED,
                    previous_claimed_by=files_table.c.claimed_by,  # the old value, in SQL
                    claimed_by=run_id,
                    claim_expires_at=now + ttl_seconds,
                )
            )
            rows = conn.execute(
                sa.select(files_table)
                .where(files_table.c.state == FileState.CLAIMED, files_table.c.claimed_by == run_id)
                .order_by(files_table.c.detected_at)
            ).all()
        return [file_record(row) for row in rows]

    def release_claims(self, run_id: str) -> int:
        """Give a failed run's files back so the next run takes them.

        `claimed_by` stays as a note of who held them, so the next claimer can undo any
        partial work of that run (see `previous_claimed_by`).
        """
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.state == FileState.CLAIMED, files_table.c.claimed_by == run_id)
                .values(state=FileState.ANNOUNCED, claim_expires_at=None)
            )
        return result.rowcount

    def release_waiting(self, run_id: str) -> int:
        """Give back the files this run could not store (the data folder was full).

        Announced again, so a later run retries them. This run left no partial work to
        undo, so the claim note goes back to the run before it (if that one died).
        """
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(
                    files_table.c.state == FileState.CLAIMED,
                    files_table.c.claimed_by == run_id,
                    files_table.c.reason.startswith(WAITING_FOR_SPACE),
                )
                .values(
                    state=FileState.ANNOUNCED,
                    claim_expires_at=None,
                    claimed_by=files_table.c.previous_claimed_by,
                )
            )
        return result.rowcount

    def waiting_for_space(self) -> int:
        """How many pending files wait for space in the data folder (see `release_waiting`)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count())
                .select_from(files_table)
                .where(
                    files_table.c.state.in_(PENDING_STATES),
                    files_table.c.reason.startswith(WAITING_FOR_SPACE),
                )
            ).scalar_one()

    def claiming_runs(self) -> set[str]:
        """Runs that hold claims now."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(files_table.c.claimed_by)
                    .where(files_table.c.state == FileState.CLAIMED)
                    .distinct()
                ).scalars()
            )

    def readmit(self, sha256: str, path: str) -> bool:
        """A person released a rejected file: the next arrival of this content is new again."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state == FileState.REJECTED)
                .values(state=FileState.RELEASED, stored_path=path)
            )
        return result.rowcount == 1

    def set_stored_path(self, sha256: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update().where(files_table.c.sha256 == sha256).values(stored_path=path)
            )

    def set_note(self, sha256: str, note: str | None) -> None:
        """A remark on a file (rows dropped, waiting for space) in `reason`; None clears it."""
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update().where(files_table.c.sha256 == sha256).values(reason=note)
            )

    def mark_rejected(self, sha256: str, *, run_id: str, reason: str, path: str) -> None:
        self._finish(
            [sha256], run_id, state=FileState.REJECTED, reason=reason, stored_path=path, rows=None
        )

    def mark_suspect(self, reasons_by_sha: dict[str, str], *, run_id: str) -> None:
        """Hold these claimed files out of training, each with the evidence against it."""
        with self.engine.begin() as conn:
            for sha256, reason in reasons_by_sha.items():
                self._finish_in(conn, sha256, run_id, state=FileState.SUSPECT, reason=reason)

    def accept_suspect(self, sha256: str, note: str) -> bool:
        """A person vouched for a suspect: it is training data again (no version yet)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state == FileState.SUSPECT)
                .values(state=FileState.TRAINED, reason=note, model_version=None)
            )
        return result.rowcount == 1

    def assign_first_version(self, shas: Iterable[str], version: str) -> None:
        """Record `version` as the first one trained on these files, where none is yet."""
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update()
                .where(files_table.c.sha256.in_(list(shas)), files_table.c.model_version.is_(None))
                .values(model_version=version)
            )

    def mark_trained(
        self, rows_by_sha: dict[str, int], *, run_id: str, version: str | None
    ) -> None:
        with self.engine.begin() as conn:
            for sha256, rows in rows_by_sha.items():
                self._finish_in(
                    conn, sha256, run_id, state=FileState.TRAINED, model_version=version, rows=rows
                )

    def _finish(self, shas: Iterable[str], run_id: str, **values) -> None:
        with self.engine.begin() as conn:
            for sha256 in shas:
                self._finish_in(conn, sha256, run_id, **values)

    def _finish_in(self, conn: sa.Connection, sha256: str, run_id: str, **values) -> None:
        result = conn.execute(
            files_table.update()
            .where(
                files_table.c.sha256 == sha256,
                files_table.c.state == FileState.CLAIMED,
                files_table.c.claimed_by == run_id,
            )
            .values(finished_at=self._clock(), claim_expires_at=None, **values)
        )
        if result.rowcount != 1:
            raise ClaimLost(f"file {sha256[:12]} is no longer claimed by run {run_id}")

    # -- lineage and retraction -----------------------------------------------------------
    def record_lineage(self, version: str, files: dict[str, bool]) -> None:
        """Version `version` was trained on these files (sha256 -> first time or not)."""
        now = self._clock()
        with self.engine.begin() as conn:
            conn.execute(lineage_table.delete().where(lineage_table.c.version == version))
            if files:
                conn.execute(
                    lineage_table.insert(),
                    [
                        {"version": version, "sha256": sha, "new": new, "recorded_at": now}
                        for sha, new in files.items()
                    ],
                )

    def retract(self, sha256: str, reason: str) -> bool:
        """Mark a trained (or suspect) file bad: later retrains leave it out.

        False if it was neither."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(
                    files_table.c.sha256 == sha256,
                    files_table.c.state.in_((FileState.TRAINED, FileState.SUSPECT)),
                )
                .values(state=FileState.RETRACTED, reason=reason, finished_at=self._clock())
            )
        return result.rowcount == 1
