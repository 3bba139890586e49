"""The ledger's sensor side: arrivals, their announcement, stragglers (mixed into `Ledger`)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.ledger_schema import (
    PENDING_STATES,
    Arrival,
    Disposition,
    FileRecord,
    FileState,
    arrival_record,
    arrivals_table,
    file_record,
    files_table,
)


def _refused_at_door(conn: sa.Connection, sha256: str) -> bool:
    """Whether this content's first arrival was refused at the door (for its name)."""
    first = conn.execute(
        sa.select(arrivals_table.c.disposition)
        .where(arrivals_table.c.sha256 == sha256)
        .order_by(arrivals_table.c.id)
        .limit(1)
    ).scalar_one_or_none()
    return first == Disposition.REFUSED


class LedgerArrivals:
    """What the sensor writes: one arrival per name content came in under, then its event."""

    engine: Engine
    _clock: Callable[[], float]

    def record_arrival(
        self,
        *,
        name: str,
        path: str,
        size: int,
        sha256: str,
        detected_via: str,
        refused: str | None = None,
    ) -> Arrival | None:
        """Record that `path` (content `sha256`) is complete in the inbox.

        Returns the new arrival, or None when this exact file (same content at the same
        path, still pending) is already recorded: the push and the scan both see a file,
        and that is one arrival, not two. With `refused` (a reason), new content is
        recorded as rejected right away (disposition `refused`), so no run ever claims it.
        """
        now = self._clock()
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(files_table).where(files_table.c.sha256 == sha256)
            ).first()
            fresh = {
                "name": name,
                "size": size,
                "state": FileState.DETECTED if refused is None else FileState.REJECTED,
                "stored_path": path,
                "detected_at": now,
                "finished_at": None if refused is None else now,
                "reason": refused,
            }
            first = Disposition.NEW if refused is None else Disposition.REFUSED
            if existing is None:
                conn.execute(files_table.insert().values(sha256=sha256, **fresh))
                disposition, duplicate_of = first, None
            elif existing.state == FileState.RELEASED or (
                # Refused at the door for its *name* (not a CSV): the same bytes under a CSV
                # name are a new arrival, not a duplicate of a file that was never read.
                refused is None
                and existing.state == FileState.REJECTED
                and _refused_at_door(conn, sha256)
            ):
                # Content let in again starts over: the run that rejected it finished it,
                # so it is no dead run whose partial work the next claimer should undo.
                conn.execute(
                    files_table.update()
                    .where(files_table.c.sha256 == sha256)
                    .values(**fresh, announced_at=None, claimed_by=None, previous_claimed_by=None)
                )
                disposition, duplicate_of = first, None
            else:
                seen_here = conn.execute(
                    sa.select(arrivals_table.c.id).where(
                        arrivals_table.c.sha256 == sha256, arrivals_table.c.path == path
                    )
                ).first()
                if seen_here is not None and existing.state in PENDING_STATES:
                    return None
                disposition, duplicate_of = Disposition.DUPLICATE, existing.name
            result = conn.execute(
                arrivals_table.insert().values(
                    sha256=sha256,
                    name=name,
                    path=path,
                    size=size,
                    detected_via=detected_via,
                    detected_at=now,
                    disposition=disposition,
                )
            )
            row = conn.execute(
                sa.select(arrivals_table).where(
                    arrivals_table.c.id == result.inserted_primary_key[0]
                )
            ).one()
        return arrival_record(row, duplicate_of)

    def unannounced(self) -> list[Arrival]:
        """Arrivals whose event the Prefect API has not confirmed yet, oldest first."""
        return self._arrivals_where(arrivals_table.c.announced_at.is_(None))

    def announced_since(self, since: float) -> list[Arrival]:
        """Arrivals whose event the API accepted at or after `since`, oldest first."""
        return self._arrivals_where(arrivals_table.c.announced_at >= since)

    def _arrivals_where(self, condition: sa.ColumnElement[bool]) -> list[Arrival]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(arrivals_table, files_table.c.name.label("first_name"))
                .join(files_table, files_table.c.sha256 == arrivals_table.c.sha256)
                .where(condition)
                .order_by(arrivals_table.c.id)
            ).all()
        return [
            arrival_record(
                row, row.first_name if row.disposition == Disposition.DUPLICATE else None
            )
            for row in rows
        ]

    def mark_announced(self, arrival_id: int) -> None:
        """The API accepted the arrival's event; a new file becomes claimable."""
        now = self._clock()
        with self.engine.begin() as conn:
            sha256 = conn.execute(
                arrivals_table.update()
                .where(arrivals_table.c.id == arrival_id)
                .values(announced_at=now)
                .returning(arrivals_table.c.sha256)
            ).scalar_one()
            conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state == FileState.DETECTED)
                .values(state=FileState.ANNOUNCED, announced_at=now)
            )

    def move_arrival(self, arrival_id: int, path: str) -> None:
        """Record where a duplicate's bytes were moved (its terminal place on disk)."""
        with self.engine.begin() as conn:
            conn.execute(
                arrivals_table.update().where(arrivals_table.c.id == arrival_id).values(path=path)
            )

    def stragglers(
        self, older_than_seconds: float, released_from: set[str] = frozenset()
    ) -> list[FileRecord]:
        """Files no run took, to announce again.

        Announced more than `older_than_seconds` ago and still unclaimed; released just now
        from the runs in `released_from` (they ended without finishing them); or held by a
        claim that expired (a run killed with its worker).
        """
        now = self._clock()
        announced = files_table.c.state == FileState.ANNOUNCED
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(files_table)
                .where(
                    sa.or_(
                        sa.and_(announced, files_table.c.announced_at < now - older_than_seconds),
                        sa.and_(announced, files_table.c.claimed_by.in_(released_from)),
                        sa.and_(
                            files_table.c.state == FileState.CLAIMED,
                            files_table.c.claim_expires_at < now,
                        ),
                    )
                )
                .order_by(files_table.c.detected_at)
            ).all()
        return [file_record(row) for row in rows]

    def touch_announced(self, sha256: str) -> None:
        """A straggler was announced again: restart its wait."""
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256)
                .values(announced_at=self._clock())
            )
