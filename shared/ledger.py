"""The ledger: one durable row per distinct content (sha256), every name it arrived under.

Lifecycle of a file (content):
    detected -> announced -> claimed -> trained | rejected (-> released -> detected)
                                        trained -> retracted
and of lineage: which model versions were trained on which files (both directions).
and of an arrival (a name under which content came in): new | duplicate, announced or not.

Every transition is a single conditional UPDATE inside a transaction, so two processes
can never claim the same file. SQLite by default, any SQLAlchemy URL by configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

DETECTED = "detected"
ANNOUNCED = "announced"
CLAIMED = "claimed"
TRAINED = "trained"
REJECTED = "rejected"
RELEASED = "released"  # a rejected file a person re-admitted; its next arrival counts as new
RETRACTED = "retracted"  # a trained file a person marked bad: never trained on again
# A file the judge blamed for a challenger's loss: held out of training until a person runs
# `arrivals accept` (-> trained) or `arrivals retract` (-> retracted).
SUSPECT = "suspect"
PENDING_STATES = (DETECTED, ANNOUNCED, CLAIMED)

NEW = "new"
DUPLICATE = "duplicate"
REFUSED = "refused"  # new content the sensor rejected at the door (not a CSV): never claimed

metadata = sa.MetaData()

files_table = sa.Table(
    "files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("stored_path", sa.Text, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("announced_at", sa.Float),
    sa.Column("claimed_by", sa.String(64)),
    # The run that held the claim before (it crashed or failed): its partial work is undone.
    sa.Column("previous_claimed_by", sa.String(64)),
    sa.Column("claim_expires_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("rows", sa.Integer),
    sa.Column("model_version", sa.String(32)),
    sa.Column("reason", sa.Text),
)

arrivals_table = sa.Table(
    "arrivals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("detected_via", sa.String(8), nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("disposition", sa.String(16), nullable=False),
    sa.Column("announced_at", sa.Float),
)


lineage_table = sa.Table(
    "lineage",
    metadata,
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), primary_key=True),
    sa.Column("new", sa.Boolean, nullable=False),  # first trained on in this version
    sa.Column("recorded_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    name: str
    size: int
    state: str
    stored_path: str
    detected_at: float
    announced_at: float | None
    claimed_by: str | None
    previous_claimed_by: str | None
    finished_at: float | None
    rows: int | None
    model_version: str | None
    reason: str | None


@dataclass(frozen=True)
class Arrival:
    id: int
    sha256: str
    name: str
    path: str
    size: int
    detected_via: str
    detected_at: float
    disposition: str
    announced_at: float | None
    duplicate_of: str | None = None  # the first name of the content, for duplicates


def _file(row: sa.Row) -> FileRecord:
    m = row._mapping
    return FileRecord(**{field: m[field] for field in FileRecord.__dataclass_fields__})


def _arrival(row: sa.Row, duplicate_of: str | None = None) -> Arrival:
    m = row._mapping
    fields = {f: m[f] for f in Arrival.__dataclass_fields__ if f != "duplicate_of"}
    return Arrival(**fields, duplicate_of=duplicate_of)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver hook
    cursor = dbapi_connection.cursor()
    # WAL lets the status CLI read while the sensor or a retrain writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _refused_at_door(conn: sa.Connection, sha256: str) -> bool:
    first = conn.execute(
        sa.select(arrivals_table.c.disposition)
        .where(arrivals_table.c.sha256 == sha256)
        .order_by(arrivals_table.c.id)
        .limit(1)
    ).scalar_one_or_none()
    return first == REFUSED


class Ledger:
    """Transactional record of every file that reached the inbox."""

    def __init__(self, url: str, *, clock=time.time) -> None:
        self.url = url
        self._clock = clock
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- arrivals (sensor side) ---------------------------------------------------------
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
                "state": DETECTED if refused is None else REJECTED,
                "stored_path": path,
                "detected_at": now,
                "finished_at": None if refused is None else now,
                "reason": refused,
            }
            first = NEW if refused is None else REFUSED
            if existing is None:
                conn.execute(files_table.insert().values(sha256=sha256, **fresh))
                disposition, duplicate_of = first, None
            elif existing.state == RELEASED or (
                # Refused at the door for its *name* (not a CSV): the same bytes under a CSV
                # name are a new arrival, not a duplicate of a file that was never read.
                refused is None and existing.state == REJECTED and _refused_at_door(conn, sha256)
            ):
                conn.execute(
                    files_table.update()
                    .where(files_table.c.sha256 == sha256)
                    .values(**fresh, announced_at=None)
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
                disposition, duplicate_of = DUPLICATE, existing.name
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
        return _arrival(row, duplicate_of)

    def unannounced(self) -> list[Arrival]:
        """Arrivals whose event the Prefect API has not confirmed yet, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(arrivals_table, files_table.c.name.label("first_name"))
                .join(files_table, files_table.c.sha256 == arrivals_table.c.sha256)
                .where(arrivals_table.c.announced_at.is_(None))
                .order_by(arrivals_table.c.id)
            ).all()
        return [
            _arrival(row, row.first_name if row.disposition == DUPLICATE else None) for row in rows
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
                .where(files_table.c.sha256 == sha256, files_table.c.state == DETECTED)
                .values(state=ANNOUNCED, announced_at=now)
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
        announced = files_table.c.state == ANNOUNCED
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(files_table)
                .where(
                    sa.or_(
                        sa.and_(announced, files_table.c.announced_at < now - older_than_seconds),
                        sa.and_(announced, files_table.c.claimed_by.in_(released_from)),
                        sa.and_(
                            files_table.c.state == CLAIMED,
                            files_table.c.claim_expires_at < now,
                        ),
                    )
                )
                .order_by(files_table.c.detected_at)
            ).all()
        return [_file(row) for row in rows]

    def touch_announced(self, sha256: str) -> None:
        """A straggler was announced again: restart its wait."""
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256)
                .values(announced_at=self._clock())
            )

    # -- claims (consumer side) ---------------------------------------------------------
    def _claimable(self, now: float) -> sa.ColumnElement[bool]:
        return sa.or_(
            files_table.c.state == ANNOUNCED,
            sa.and_(files_table.c.state == CLAIMED, files_table.c.claim_expires_at < now),
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
                    state=CLAIMED,
                    previous_claimed_by=files_table.c.claimed_by,  # the old value, in SQL
                    claimed_by=run_id,
                    claim_expires_at=now + ttl_seconds,
                )
            )
            rows = conn.execute(
                sa.select(files_table)
                .where(files_table.c.state == CLAIMED, files_table.c.claimed_by == run_id)
                .order_by(files_table.c.detected_at)
            ).all()
        return [_file(row) for row in rows]

    def release_claims(self, run_id: str) -> int:
        """Give a failed run's files back so the next run takes them.

        `claimed_by` stays as a note of who held them, so the next claimer can undo any
        partial work of that run (see `previous_claimed_by`).
        """
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.state == CLAIMED, files_table.c.claimed_by == run_id)
                .values(state=ANNOUNCED, claim_expires_at=None)
            )
        return result.rowcount

    def claiming_runs(self) -> set[str]:
        """Runs that hold claims now."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(files_table.c.claimed_by)
                    .where(files_table.c.state == CLAIMED)
                    .distinct()
                ).scalars()
            )

    def readmit(self, sha256: str, path: str) -> bool:
        """A person released a rejected file: the next arrival of this content is new again."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state == REJECTED)
                .values(state=RELEASED, stored_path=path)
            )
        return result.rowcount == 1

    def set_stored_path(self, sha256: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update().where(files_table.c.sha256 == sha256).values(stored_path=path)
            )

    def set_note(self, sha256: str, note: str) -> None:
        """A remark on an accepted file (e.g. rows dropped), kept in `reason` once it trains."""
        with self.engine.begin() as conn:
            conn.execute(
                files_table.update().where(files_table.c.sha256 == sha256).values(reason=note)
            )

    def mark_rejected(self, sha256: str, *, run_id: str, reason: str, path: str) -> None:
        self._finish([sha256], run_id, state=REJECTED, reason=reason, stored_path=path, rows=None)

    def mark_suspect(self, reasons_by_sha: dict[str, str], *, run_id: str) -> None:
        """Hold these claimed files out of training, each with the evidence against it."""
        with self.engine.begin() as conn:
            for sha256, reason in reasons_by_sha.items():
                self._finish_in(conn, sha256, run_id, state=SUSPECT, reason=reason)

    def accept_suspect(self, sha256: str, note: str) -> bool:
        """A person vouched for a suspect: it is training data again (no version yet)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state == SUSPECT)
                .values(state=TRAINED, reason=note, model_version=None)
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
                    conn, sha256, run_id, state=TRAINED, model_version=version, rows=rows
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
                files_table.c.state == CLAIMED,
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

    def versions_using(self, sha256: str) -> list[str]:
        """Model versions trained on this content, oldest first."""
        with self.engine.connect() as conn:
            versions = conn.execute(
                sa.select(lineage_table.c.version).where(lineage_table.c.sha256 == sha256)
            ).scalars()
            return sorted(versions, key=int)

    def files_of_version(self, version: str) -> list[tuple[FileRecord, bool]]:
        """The files behind a version, with whether the version was their first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(files_table, lineage_table.c.new)
                .join(lineage_table, lineage_table.c.sha256 == files_table.c.sha256)
                .where(lineage_table.c.version == version)
                .order_by(files_table.c.detected_at)
            ).all()
        return [(_file(row), bool(row.new)) for row in rows]

    def versions_without(self, shas: set[str]) -> list[str]:
        """Versions none of whose files is in `shas`."""
        with self.engine.connect() as conn:
            versions = conn.execute(sa.select(lineage_table.c.version).distinct()).scalars()
            all_versions = set(versions)
            tainted = set(
                conn.execute(
                    sa.select(lineage_table.c.version).where(lineage_table.c.sha256.in_(shas))
                ).scalars()
            )
        return sorted(all_versions - tainted, key=int)

    def retract(self, sha256: str, reason: str) -> bool:
        """Mark a trained (or suspect) file bad: later retrains leave it out.

        False if it was neither."""
        with self.engine.begin() as conn:
            result = conn.execute(
                files_table.update()
                .where(files_table.c.sha256 == sha256, files_table.c.state.in_((TRAINED, SUSPECT)))
                .values(state=RETRACTED, reason=reason, finished_at=self._clock())
            )
        return result.rowcount == 1

    def find(self, name_or_sha: str) -> FileRecord | None:
        """A file by sha256 (or a unique prefix of 8+ characters) or by any name it came as."""
        with self.engine.connect() as conn:
            if len(name_or_sha) >= 8:
                rows = conn.execute(
                    sa.select(files_table).where(files_table.c.sha256.startswith(name_or_sha))
                ).all()
                if len(rows) == 1:
                    return _file(rows[0])
            shas = (
                conn.execute(
                    sa.select(arrivals_table.c.sha256)
                    .where(arrivals_table.c.name == name_or_sha)
                    .order_by(arrivals_table.c.id.desc())
                )
                .scalars()
                .first()
            )
        return self.get(shas) if shas else None

    # -- reading --------------------------------------------------------------------------
    def get(self, sha256: str) -> FileRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(files_table).where(files_table.c.sha256 == sha256)).first()
        return _file(row) if row else None

    def files(self, state: str | None = None) -> list[FileRecord]:
        query = sa.select(files_table).order_by(files_table.c.detected_at)
        if state is not None:
            query = query.where(files_table.c.state == state)
        with self.engine.connect() as conn:
            return [_file(row) for row in conn.execute(query)]

    def arrivals(self) -> list[Arrival]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(arrivals_table).order_by(arrivals_table.c.id)).all()
        return [_arrival(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Distinct files by outcome: pending (some unannounced), trained, rejected, duplicate."""
        with self.engine.connect() as conn:
            by_state = dict(
                conn.execute(
                    sa.select(files_table.c.state, sa.func.count()).group_by(files_table.c.state)
                ).all()
            )
            duplicates = conn.execute(
                sa.select(sa.func.count()).where(arrivals_table.c.disposition == DUPLICATE)
            ).scalar_one()
        return {
            "pending": sum(by_state.get(state, 0) for state in PENDING_STATES),
            # Recorded but not yet accepted by the Prefect API (it is down or unreachable).
            "unannounced": by_state.get(DETECTED, 0),
            "trained": by_state.get(TRAINED, 0),
            "rejected": by_state.get(REJECTED, 0),
            "duplicate": duplicates,
            "retracted": by_state.get(RETRACTED, 0),
            "suspect": by_state.get(SUSPECT, 0),
        }


class ClaimLost(RuntimeError):
    """A run tried to finish a file it no longer holds (its claim expired and moved on)."""
