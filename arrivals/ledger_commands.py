"""Commands about one file's fate and the retrain it triggers: release, lineage, accept,
retract, retrain. Each that changes the ledger then runs the retrain deployment and waits."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arrivals.environment import prefect_env
from arrivals.reach import MLFLOW, PREFECT, WORKER, ServiceUnreachable, prefect_calls, require
from arrivals.topology import RETRAIN_DEPLOYMENT
from automations.door import not_csv_reason
from shared.events import RunStates
from shared.fs import TEMP_SUFFIXES, is_temp_name
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.ledger import FileRecord, Ledger

log = logging.getLogger("arrivals")
RETRAIN_TIMEOUT_SECONDS = 900.0  # `retrain` / `retract` wait this long for their run


def use_prefect_of(settings: Settings) -> None:
    """Point this process's Prefect client at this home's server, before prefect is imported."""
    os.environ.update(prefect_env(settings))


def cmd_release(settings: Settings, args: argparse.Namespace) -> int:
    """Move a (fixed) file from quarantine back into the inbox; the sensor takes it as new."""
    from shared.fs import is_within, move_into, sha256_file
    from shared.ledger import Ledger

    quarantine = settings.dirs.quarantine
    path = Path(args.file)
    if not path.is_absolute() and not path.exists():
        path = quarantine / path
    if not path.is_file() or not is_within(path, quarantine) or path.is_symlink():
        log.error("%s is not a file in the quarantine folder %s", args.file, quarantine)
        return 2
    target = settings.dirs.inbox / path.name
    if target.exists():
        log.error("%s already waits in the inbox", target)
        return 2
    ledger = Ledger(settings.ledger_url)
    try:
        # Same bytes as the rejected file: the ledger must let this content in again.
        readmitted = ledger.readmit(sha256_file(path), str(path))
    finally:
        ledger.close()
    sidecar = path.with_name(path.name + ".reason.json")
    if sidecar.exists():
        move_into(sidecar, quarantine / "released")
    path.replace(target)  # same file system: an atomic rename into the inbox
    log.info(
        "Released %s into the inbox (%s)",
        path.name,
        "same content, re-admitted" if readmitted else "new content",
    )
    return 0


def cmd_lineage(settings: Settings, args: argparse.Namespace) -> int:
    """Which versions used a file, or which files are behind a version."""
    from shared.ledger import Ledger

    ledger = Ledger(settings.ledger_url)
    try:
        if args.version is not None:
            files = ledger.files_of_version(str(args.version))
            if not files:
                log.error("no lineage recorded for version %s", args.version)
                return 2
            result = {
                "model": settings.model.name,
                "version": str(args.version),
                "files": [
                    {
                        "name": r.name,
                        "sha256": r.sha256,
                        "rows": r.rows,
                        "state": r.state,
                        "first_trained_here": new,
                        "note": r.reason,  # e.g. "accepted 58 of 60 rows (2 dropped: …)"
                    }
                    for r, new in files
                ],
            }
        else:
            if not args.file:
                log.error("give a file name or sha256, or --version N")
                return 2
            record = ledger.find(args.file)
            if record is None:
                log.error("no file named %s (or with that sha256) in the ledger", args.file)
                return 2
            names = sorted({a.name for a in ledger.arrivals() if a.sha256 == record.sha256})
            result = {
                "model": settings.model.name,
                "file": {
                    "name": record.name,
                    "sha256": record.sha256,
                    "names": names,
                    "state": record.state,
                    "reason": record.reason,
                    "first_version": record.model_version,
                },
                "versions": ledger.versions_using(record.sha256),
            }
    finally:
        ledger.close()
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    elif "files" in result:
        sys.stdout.write(f"{settings.model.name} v{result['version']} was trained on:\n")
        for f in result["files"]:
            mark = " (new here)" if f["first_trained_here"] else ""
            note = f": {f['note']}" if f["note"] else ""
            sys.stdout.write(f"  {f['name']:<40} {f['sha256'][:12]} {f['rows']} rows{mark}{note}\n")
    else:
        f = result["file"]
        versions = ", ".join(f"v{v}" for v in result["versions"]) or "none"
        sys.stdout.write(
            f"{f['name']} ({f['sha256'][:12]}, {f['state']}) is in versions: {versions}\n"
        )
        if f["reason"]:  # why it was rejected, or e.g. "accepted 58 of 60 rows (2 dropped: …)"
            sys.stdout.write(f"  {f['reason']}\n")
    return 0


# What a retrain needs: Prefect to start the run, a worker to run it, MLflow to register it.
RETRAIN_NEEDS = (PREFECT, WORKER, MLFLOW)


@dataclass(frozen=True)
class StateChange:
    """One ledger change a retrain follows: `retract` or `accept`."""

    command: str  # the CLI command, to say how to finish the work
    apply: Callable[[Ledger, str], bool]  # False: the file is not in a state it applies to
    done_already: Callable[[FileRecord], bool]  # applied before, its retrain maybe never ran
    refused: str  # why it does not apply, after "<name> is <state>, "
    done: str  # the past tense, for the log
    again: str  # why the retrain runs again when `done_already`, after "<name> "


def drop_refusal(name: str) -> str | None:
    """Why `arrivals drop` refuses a file named `name`: the sensor would ignore or refuse it."""
    if is_temp_name(name):
        return (
            f"{name} has a temporary or hidden name (starting with . or ~$, or ending in "
            f"{', '.join(TEMP_SUFFIXES)}): the sensor ignores such files while they are "
            "written, so it would wait in the inbox forever; rename it"
        )
    refused = not_csv_reason(name)
    if refused is not None:
        return f"{refused}; the sensor would quarantine it, so it is not dropped"
    return None


def _change_state_and_retrain(settings: Settings, name: str, change: StateChange) -> int:
    """Find a file, reach every service the retrain needs, change its state, then retrain.

    In that order, so a service that is down changes nothing. A file changed already (by a
    run of the command whose retrain failed or never started) is retrained again, so
    running the command again always finishes the work.
    """
    from shared.ledger import Ledger

    ledger = Ledger(settings.ledger_url)
    try:
        record = ledger.find(name)
        if record is None:
            log.error("no file named %s (or with that sha256) in the ledger", name)
            return 2
        require(settings, *RETRAIN_NEEDS)
        if change.apply(ledger, record.sha256):
            log.info("%s %s (%s); retraining", change.done, record.name, record.sha256[:12])
        else:
            now = ledger.get(record.sha256) or record
            if not change.done_already(now):
                log.error("%s is %s, %s", now.name, now.state, change.refused)
                return 2
            log.info("%s %s; retraining again", now.name, change.again)
    finally:
        ledger.close()
    again = (
        f"`arrivals {change.command} {name}` again retrains (the file stays {change.done.lower()})"
    )
    try:
        code = run_retrain(settings)
    except ServiceUnreachable as error:
        raise error.then(again) from error
    if code != 0:
        log.error("The retrain did not end well; %s", again)
    return code


def cmd_retract(settings: Settings, args: argparse.Namespace) -> int:
    """Mark a trained or suspect file bad and retrain without it; a tainted champion moves."""
    from shared.ledger import FileState

    return _change_state_and_retrain(
        settings,
        args.file,
        StateChange(
            command="retract",
            apply=lambda ledger, sha: ledger.retract(sha, args.reason),
            done_already=lambda record: record.state == FileState.RETRACTED,
            refused="neither trained nor suspect: nothing to retract",
            done="Retracted",
            again="was retracted already (the retrain after it may never have run)",
        ),
    )


def cmd_accept(settings: Settings, args: argparse.Namespace) -> int:
    """Vouch for a suspect file: it is training data again, and a retrain runs with it."""
    from shared.ledger import FileState

    return _change_state_and_retrain(
        settings,
        args.file,
        StateChange(
            command="accept",
            apply=lambda ledger, sha: ledger.accept_suspect(
                sha, f"suspect, accepted: {args.reason}"
            ),
            # Accepted (trained) but in no version yet: the retrain after the accept never ran.
            done_already=lambda record: (
                record.state == FileState.TRAINED and record.model_version is None
            ),
            refused="not suspect: nothing to accept",
            done="Accepted",
            again="is accepted data no version has yet (the retrain after it may never have run)",
        ),
    )


def cmd_retrain(settings: Settings, _args: argparse.Namespace) -> int:
    """Retrain now on the accepted data; says which version it made and what was decided."""
    require(settings, *RETRAIN_NEEDS)
    return run_retrain(settings)


def run_retrain(settings: Settings) -> int:
    """Run the retrain deployment once with rebuild=True, wait for it, print what it decided.

    The deployment is single flight: a run that starts while another retrain runs (or, after
    an arrival, listens for more for a few seconds) is cancelled. So this waits for its turn,
    and submits again if an automation's run slipped in first.
    """
    use_prefect_of(settings)
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + RETRAIN_TIMEOUT_SECONDS
    with prefect_calls(settings):
        while True:
            _wait_until_no_retrain_runs(deadline)
            run = run_deployment(
                RETRAIN_DEPLOYMENT,
                parameters={"rebuild": True},
                timeout=max(1.0, deadline - time.monotonic()),
                tags=["manual"],
            )
            state = run.state
            lost_the_race = (
                state is not None
                and state.is_cancelled()
                and "concurrency limit" in (state.message or "")
                and time.monotonic() < deadline
            )
            if not lost_the_race:
                break
            log.info("Another retrain started first; submitting again once it has ended")
    log.info("Retrain run %s: %s", run.name, state.name if state else "?")
    if state is None or not state.is_completed():
        return 1
    from arrivals.outcome import read_outcome, render_outcome

    try:
        require(settings, MLFLOW)  # its versions and the champion are read from the registry
        with prefect_calls(settings):
            outcome = read_outcome(settings, str(run.id), run.name)
    except ServiceUnreachable as error:
        log.error(
            "Retrain run %s completed, but what it decided cannot be read: %s", run.name, error
        )
        return 1
    sys.stdout.write("\n".join(render_outcome(settings.model.name, outcome)) + "\n")
    return 0


def _wait_until_no_retrain_runs(deadline: float) -> None:
    """Until no retrain run is scheduled, pending or running (or the deadline passes)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    active = [StateType(state) for state in sorted(RunStates.ACTIVE)]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(RETRAIN_DEPLOYMENT)
        said = False
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))
                ),
                limit=1,
            )
            if not runs:
                return
            if not said:
                log.info("Waiting for retrain run %s to end (one retrain at a time)", runs[0].name)
                said = True
            time.sleep(0.5)


def cmd_drop(settings: Settings, args: argparse.Namespace) -> int:
    """Copy a CSV into the inbox atomically, or run the producer for one batch now."""
    if args.batch is not None:
        producer_off = settings.producer_off_reason
        if producer_off is not None:
            log.error(
                "Cannot produce batch %d: the demo producer is off, %s; "
                "drop a file of your own instead: arrivals drop FILE",
                args.batch,
                producer_off,
            )
            return 2
        return _run_producer(settings, args.batch)
    source = Path(args.file)
    if not source.is_file():
        log.error("%s is not a file", source)
        return 2
    refused = drop_refusal(source.name)
    if refused is not None:
        log.error("%s", refused)
        return 2
    from shared.fs import atomic_copy

    target = settings.dirs.inbox / source.name
    settings.dirs.inbox.mkdir(parents=True, exist_ok=True)
    if target.exists():
        log.error("%s already waits in the inbox; rename the file to drop it again", target)
        return 2
    atomic_copy(source, target)
    log.info("Dropped %s into %s", source, settings.dirs.inbox)
    return 0


def _run_producer(settings: Settings, batch: int) -> int:
    """Run the producer deployment for one batch now, and wait for it."""
    from arrivals.reach import PREFECT, WORKER, prefect_calls, require

    require(settings, PREFECT, WORKER)
    use_prefect_of(settings)
    from prefect.deployments import run_deployment

    from arrivals.topology import PRODUCER_DEPLOYMENT

    with prefect_calls(settings):
        run = run_deployment(
            PRODUCER_DEPLOYMENT, parameters={"batch": batch}, timeout=120, tags=["manual"]
        )
    state = run.state
    log.info("Producer run %s for batch %d: %s", run.name, batch, state.name if state else "?")
    return 0 if state is not None and state.is_completed() else 1
