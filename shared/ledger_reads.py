"""The ledger's read-only queries: files, arrivals, lineage, counts (mixed into `Ledger`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared import ledger_schema as schema
from shared.ledger_schema import PENDING_STATES, Arrival, Disposition, FileRecord, FileState


class LedgerReads:
    """Queries that never write; they need only the ledger's engine."""

    engine: Engine

    # -- lineage --------------------------------------------------------------------------
    def versions_using(self, sha256: str) -> list[str]:
        """Model versions trained on this content, oldest first."""
        with self.engine.connect() as conn:
            versions = conn.execute(
                sa.select(schema.lineage_table.c.version).where(
                    schema.lineage_table.c.sha256 == sha256
                )
            ).scalars()
            return sorted(versions, key=int)

    def files_of_version(self, version: str) -> list[tuple[FileRecord, bool]]:
        """The files behind a version, with whether the version was their first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.files_table, schema.lineage_table.c.new)
                .join(
                    schema.lineage_table,
                    schema.lineage_table.c.sha256 == schema.files_table.c.sha256,
                )
                .where(schema.lineage_table.c.version == version)
                .order_by(schema.files_table.c.detected_at)
            ).all()
        return [(schema.file_record(row), bool(row.new)) for row in rows]

    def versions_without(self, shas: set[str]) -> list[str]:
        """Versions none of whose files is in `shas`."""
        with self.engine.connect() as conn:
            versions = conn.execute(sa.select(schema.lineage_table.c.version).distinct()).scalars()
            all_versions = set(versions)
            tainted = set(
                conn.execute(
                    sa.select(schema.lineage_table.c.version).where(
                        schema.lineage_table.c.sha256.in_(shas)
                    )
                ).scalars()
            )
        return sorted(all_versions - tainted, key=int)

    # -- files and arrivals ---------------------------------------------------------------
    def find(self, name_or_sha: str) -> FileRecord | None:
        """A file by sha256 (or a unique prefix of 8+ characters) or by any name it came as."""
        with self.engine.connect() as conn:
            if len(name_or_sha) >= 8:
                rows = conn.execute(
                    sa.select(schema.files_table).where(
                        schema.files_table.c.sha256.startswith(name_or_sha)
                    )
                ).all()
                if len(rows) == 1:
                    return schema.file_record(rows[0])
            shas = (
                conn.execute(
                    sa.select(schema.arrivals_table.c.sha256)
                    .where(schema.arrivals_table.c.name == name_or_sha)
                    .order_by(schema.arrivals_table.c.id.desc())
                )
                .scalars()
                .first()
            )
        return self.get(shas) if shas else None

    def get(self, sha256: str) -> FileRecord | None:
        """The file with this content, if the ledger has it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.files_table).where(schema.files_table.c.sha256 == sha256)
            ).first()
        return schema.file_record(row) if row else None

    def files(self, state: FileState | None = None) -> list[FileRecord]:
        """Every file (or those in `state`), oldest first."""
        query = sa.select(schema.files_table).order_by(schema.files_table.c.detected_at)
        if state is not None:
            query = query.where(schema.files_table.c.state == state)
        with self.engine.connect() as conn:
            return [schema.file_record(row) for row in conn.execute(query)]

    def arrivals(self) -> list[Arrival]:
        """Every arrival, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.arrivals_table).order_by(schema.arrivals_table.c.id)
            ).all()
        return [schema.arrival_record(row) for row in rows]

    def recent_arrivals(self, limit: int) -> list[tuple[Arrival, FileRecord]]:
        """The newest `limit` arrivals, newest first, each with its content's file record."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.arrivals_table)
                .order_by(schema.arrivals_table.c.id.desc())
                .limit(limit)
            ).all()
            shas = {row.sha256 for row in rows}
            files = {
                row.sha256: schema.file_record(row)
                for row in conn.execute(
                    sa.select(schema.files_table).where(schema.files_table.c.sha256.in_(shas))
                )
            }
        recent = []
        for row in rows:
            record = files[row.sha256]  # file rows are never deleted (foreign key)
            first_name = record.name if row.disposition == Disposition.DUPLICATE else None
            recent.append((schema.arrival_record(row, first_name), record))
        return recent

    def oldest_pending_detected_at(self) -> float | None:
        """When the oldest still-pending file was detected (None: nothing pending)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(schema.files_table.c.detected_at)).where(
                    schema.files_table.c.state.in_(PENDING_STATES)
                )
            ).scalar_one()

    def counts(self) -> dict[str, int]:
        """Distinct files by outcome: pending (some unannounced), trained, rejected, duplicate."""
        with self.engine.connect() as conn:
            by_state = dict(
                conn.execute(
                    sa.select(schema.files_table.c.state, sa.func.count()).group_by(
                        schema.files_table.c.state
                    )
                ).all()
            )
            duplicates = conn.execute(
                sa.select(sa.func.count()).where(
                    schema.arrivals_table.c.disposition == Disposition.DUPLICATE
                )
            ).scalar_one()
        return {
            "pending": sum(by_state.get(state, 0) for state in PENDING_STATES),
            # Recorded but not yet accepted by the Prefect API (it is down or unreachable).
            "unannounced": by_state.get(FileState.DETECTED, 0),
            "trained": by_state.get(FileState.TRAINED, 0),
            "rejected": by_state.get(FileState.REJECTED, 0),
            "duplicate": duplicates,
            "retracted": by_state.get(FileState.RETRACTED, 0),
            "suspect": by_state.get(FileState.SUSPECT, 0),
        }
