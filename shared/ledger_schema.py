"""The ledger's vocabulary and tables: file states, arrival dispositions, rows as records.

Lifecycle of a file (content):
    detected -> announced -> claimed -> trained | rejected (-> released -> detected)
                                        trained -> retracted
and of lineage: which model versions were trained on which files (both directions).
and of an arrival (a name under which content came in): new | duplicate, announced or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa


class FileState(StrEnum):
    """Where a file (content) is in its lifecycle; the values are what the database stores."""

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


# Waiting for a run to finish them: not an outcome yet.
PENDING_STATES = (FileState.DETECTED, FileState.ANNOUNCED, FileState.CLAIMED)


class Disposition(StrEnum):
    """What one arrival (a name content came in under) was; stored as these values."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REFUSED = "refused"  # new content the sensor rejected at the door (not a CSV): never claimed


# The schema revision this code reads and writes: the head of shared/ledger_migrations
# (a unit test holds the two equal). `arrivals up` upgrades a ledger to it.
SCHEMA_REVISION = "0004_alerts_sent"
# Not Alembic's default `alembic_version`: a ledger URL may name MLflow's database, which has one.
VERSION_TABLE = "ledger_version"

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

# Alerts already sent about a file, so each goes out once: keyed by the file's detection
# (content let in again after a release is detected anew and may be alerted about again).
alerts_table = sa.Table(
    "alerts_sent",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), primary_key=True),
    sa.Column("detected_at", sa.Float, primary_key=True),
    sa.Column("sent_at", sa.Float, nullable=False),
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


class LedgerSchemaError(RuntimeError):
    """The ledger's schema is not the one this code needs; the message says what to do."""


class ClaimLost(RuntimeError):
    """A run tried to finish a file it no longer holds (its claim expired and moved on)."""


def file_record(row: sa.Row) -> FileRecord:
    """A `files` row as a record."""
    m = row._mapping
    return FileRecord(**{field: m[field] for field in FileRecord.__dataclass_fields__})


def arrival_record(row: sa.Row, duplicate_of: str | None = None) -> Arrival:
    """An `arrivals` row as a record; `duplicate_of` names the content's first name."""
    m = row._mapping
    fields = {f: m[f] for f in Arrival.__dataclass_fields__ if f != "duplicate_of"}
    return Arrival(**fields, duplicate_of=duplicate_of)
