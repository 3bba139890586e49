"""Which files an alert went out about: so a stuck file is reported once, not every sweep."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.ledger_schema import PENDING_STATES, FileRecord, alerts_table, file_record, files_table

STUCK = "stuck"  # a file pending (detected, not decided) longer than alerts.stuck_after_seconds


class LedgerAlerts:
    """Alerts sent per file detection, and the pending files no alert covers yet."""

    engine: Engine
    _clock: Callable[[], float]

    def stuck_unalerted(self, older_than_seconds: float) -> list[FileRecord]:
        """Files pending longer than `older_than_seconds` and not alerted about, oldest first."""
        sent = sa.select(alerts_table.c.sha256).where(
            alerts_table.c.kind == STUCK,
            alerts_table.c.sha256 == files_table.c.sha256,
            alerts_table.c.detected_at == files_table.c.detected_at,
        )
        query = (
            sa.select(files_table)
            .where(
                files_table.c.state.in_(PENDING_STATES),
                files_table.c.detected_at < self._clock() - older_than_seconds,
                ~sa.exists(sent),
            )
            .order_by(files_table.c.detected_at)
        )
        with self.engine.connect() as conn:
            return [file_record(row) for row in conn.execute(query)]

    def mark_alerted(self, kind: str, sha256: str, detected_at: float) -> bool:
        """Note an alert about this detection of a file; False if one was noted already."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    alerts_table.insert().values(
                        kind=kind, sha256=sha256, detected_at=detected_at, sent_at=self._clock()
                    )
                )
        except sa.exc.IntegrityError:  # another sensor (or an earlier sweep) noted it first
            return False
        return True
