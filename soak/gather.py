"""Gathering the invariants' snapshot from a quiet running stack: the ledger, MLflow's versions
and alias, Prefect's event feed and `arrivals status`; then `check` (soak/invariants.py judges)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from consumer.registry import CHAMPION
from shared import ledger_schema as schema
from shared.events import FILE_ARRIVED, file_resource_id
from shared.fs import is_temp_name, sha256_file
from shared.ledger import FileState, Ledger
from soak.invariants import Delivered, Findings, LineageRow, Places, Snapshot, evaluate

if TYPE_CHECKING:
    from arrivals.harness import RunningStack

log = logging.getLogger("arrivals.soak")


def read_lineage(ledger: Ledger) -> list[LineageRow]:
    """Every lineage row."""
    table = schema.lineage_table
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.version, table.c.sha256, table.c.new)).all()
    return [LineageRow(str(version), sha, bool(new)) for version, sha, new in rows]


def read_claims(ledger: Ledger) -> dict[str, float | None]:
    """claim_expires_at of every claimed file and every file that still has one."""
    table = schema.files_table
    query = sa.select(table.c.sha256, table.c.claim_expires_at).where(
        sa.or_(table.c.state == FileState.CLAIMED, table.c.claim_expires_at.is_not(None))
    )
    with ledger.engine.connect() as conn:
        return dict(conn.execute(query).all())


def inbox_contents(inbox: Path) -> dict[str, str]:
    """Files left in the inbox, temp names aside: name -> sha256 ("" for a non-file)."""
    found = {}
    for entry in sorted(inbox.iterdir()) if inbox.is_dir() else []:
        if is_temp_name(entry.name) or entry.is_dir():
            continue
        regular = entry.is_file() and not entry.is_symlink()
        found[entry.name] = sha256_file(entry) if regular else ""
    return found


def snapshot_from(ledger: Ledger, places: Places, **outside: Any) -> Snapshot:
    """A snapshot of the ledger's records; `outside`: versions, champion, arrived, status_files
    (and optionally inbox, read from `places.inbox` when not given)."""
    outside.setdefault("inbox", inbox_contents(places.inbox))
    return Snapshot(
        files=ledger.files(),
        arrivals=ledger.arrivals(),
        lineage=read_lineage(ledger),
        claims=read_claims(ledger),
        ledger_counts=ledger.counts(),
        places=places,
        **outside,
    )


def arrived_events(stack: RunningStack) -> dict[str, set[str]]:
    """sha256 -> payload names of every `inbox.file.arrived` event Prefect has, all pages."""
    prefix = file_resource_id("")
    events = {"name": [FILE_ARRIVED]}
    body = {"filter": {"event": events, "occurred": {"since": "2000-01-01T00:00:00Z"}}}
    page = stack.prefect("POST", "/events/filter", json={**body, "limit": 50}).json()
    arrived: dict[str, set[str]] = defaultdict(set)
    pages = 1
    while True:
        for event in page.get("events", []):
            resource = event["resource"].get("prefect.resource.id", "")
            if resource.startswith(prefix):
                arrived[resource.removeprefix(prefix)].add(event["payload"].get("name"))
        if not page.get("next_page"):
            break
        response = stack.http.get(page["next_page"])
        response.raise_for_status()
        page, pages = response.json(), pages + 1
    log.info("Read %d page(s) of %s events: %d contents", pages, FILE_ARRIVED, len(arrived))
    return dict(arrived)


def events_stored(stack: RunningStack) -> bool:
    """Every announced content's arrival event is in Prefect's store. One a restart lost
    after the API accepted it comes back when the sensor resends it (automations/delivery)."""
    announced = {r.sha256 for r in stack.open_ledger.files() if r.announced_at is not None}
    missing = announced - set(arrived_events(stack))
    if missing:
        log.info("%d announced content(s) have no stored %s event yet", len(missing), FILE_ARRIVED)
    return not missing


def champion_version(stack: RunningStack) -> str | None:
    """The version the champion alias is on (None: no alias, or no model yet)."""
    response = stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias=CHAMPION
    )
    if response.status_code in (400, 404) and response.json().get("error_code") in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
    ):
        return None
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


def snapshot(stack: RunningStack) -> Snapshot:
    """Everything the invariants read, from a quiet stack's ledger, MLflow, Prefect, status."""
    versions = {str(v["version"]): v["tags"] for v in stack.model_versions()}
    if len(versions) >= 1000:  # RunningStack.model_versions asks for one page of 1000
        log.warning("MLflow returned %d versions: the list may be cut short", len(versions))
    dirs = stack.settings.dirs
    ledger = stack.ledger()
    try:
        return snapshot_from(
            ledger,
            Places(dirs.inbox, dirs.archive, dirs.quarantine),
            versions=versions,
            champion=champion_version(stack),
            arrived=arrived_events(stack),
            status_files=stack.status()["files"],
        )
    finally:
        ledger.close()


def check(
    stack: RunningStack, delivered: list[Delivered], *, claim_ttl: float, now: float | None = None
) -> Findings:
    """Gather a quiet stack's records and check every invariant (see the module docstring)."""
    findings = evaluate(
        snapshot(stack), delivered, claim_ttl=claim_ttl, now=time.time() if now is None else now
    )
    problems = [(v.invariant, v.detail) for v in findings.violations]
    problems += [("lost", x) for x in findings.lost] + [
        ("duplicated", x) for x in findings.duplicated
    ]
    for kind, detail in problems:
        log.error("%s: %s", kind, detail)
    log.info("Soak counts: %s", findings.counts)
    return findings
