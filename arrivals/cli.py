"""The `arrivals` command: up, down, status, events, drop, release, lineage, accept, retract,
retrain."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path

from shared.logs import setup_logging
from shared.settings import Settings, SettingsError, load_settings

log = logging.getLogger("arrivals")
RETRAIN_TIMEOUT_SECONDS = 900.0  # `retrain` / `retract` wait this long for their run


def _use_prefect_of(settings: Settings) -> None:
    """Point this process's Prefect client at this home's server, before prefect is imported."""
    os.environ.update(settings.prefect_env())


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from arrivals.stack import Stack, StackError
    from automations.apply import apply_all, producer_off_reason

    _use_prefect_of(settings)
    stack = Stack(settings)
    started = time.monotonic()
    try:
        stack.up(apply_all)
    except StackError as error:
        log.error("%s", error)
        return 1
    log.info("All services healthy in %.1f s", time.monotonic() - started)
    log.info("Prefect UI: %s", settings.prefect_ui_url)
    log.info("MLflow UI:  %s", settings.mlflow_url)
    log.info("Inbox:      %s  (drop CSVs here)", settings.dirs.inbox)
    log.info("Logs:       %s", settings.dirs.logs)
    producer_off = producer_off_reason(settings)
    if producer_off is not None:
        log.info("Producer:   off: %s", producer_off)
    if args.detach:
        return 0
    return _follow(settings, stack)


class _FeedPoller:
    """Polls the event feed; says once that the Prefect API went away and once it is back."""

    def __init__(self, hint: str) -> None:
        self.hint = hint
        self.unreachable = False

    def fetch(self, read) -> list[dict] | None:
        """`read()`'s events, or None while the API is unreachable."""
        from arrivals.events_feed import FeedUnavailable

        try:
            events = read()
        except FeedUnavailable as error:
            if not self.unreachable:
                log.warning("%s; %s", error, self.hint)
            self.unreachable = True
            return None
        if self.unreachable:
            log.info("Prefect API reachable again")
        self.unreachable = False
        return events


def _follow(settings: Settings, stack) -> int:
    """Show arrivals, retrains and promotions (and log warnings) until Ctrl-C, then stop."""
    from arrivals.events_feed import EventFeed, LogAlerts, event_names

    log.info("Live feed of arrivals, retrains and promotions; Ctrl-C stops the stack.")
    feed = EventFeed(settings.prefect_api_url, event_names(runs=True))
    poller = _FeedPoller("retrying (the sensor keeps every file meanwhile)")
    alerts = None
    try:
        # The sensor's warnings (Prefect unreachable, files waiting) and the worker's errors
        # (its warnings are the retrain's rejections, which the feed shows already).
        logs = settings.dirs.logs
        alerts = LogAlerts({logs / "sensor.log": "WARNING", logs / "worker.log": "ERROR"})
        backlog = True
        while True:
            fresh = poller.fetch(partial(feed.recent, 5) if backlog else feed.poll)
            if fresh is not None:
                backlog = False
                _write_events(settings, fresh)
            for name, line in alerts.read():
                sys.stdout.write(f"{'':8} {name:<10} | {line}\n")
            sys.stdout.flush()
            time.sleep(1.0)
    except KeyboardInterrupt:
        log.info("Stopping…")
    finally:
        if alerts is not None:
            alerts.close()
        feed.close()
        stack.down()
    return 0


def _write_events(settings: Settings, events: list[dict]) -> None:
    from arrivals.events_feed import format_event

    for event in events:
        sys.stdout.write(format_event(event, metric=settings.promotion.metric) + "\n")


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    """The project's events from Prefect, one line each; --follow keeps printing new ones."""
    from arrivals.events_feed import EventFeed, FeedUnavailable, event_names

    feed = EventFeed(
        settings.prefect_api_url, event_names(heartbeats=args.heartbeats, runs=args.runs)
    )

    def write(events: list[dict]) -> None:
        if args.json:
            for event in events:
                sys.stdout.write(json.dumps(event) + "\n")
        else:
            _write_events(settings, events)
        sys.stdout.flush()

    try:
        try:
            write(feed.recent(args.limit))
        except FeedUnavailable as error:
            log.error("%s (is the stack up? `arrivals up --detach`)", error)
            return 1
        poller = _FeedPoller("retrying")
        while args.follow:
            time.sleep(args.every)
            fresh = poller.fetch(feed.poll)
            if fresh is not None:
                write(fresh)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `arrivals events | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        feed.close()
    return 0


def cmd_down(settings: Settings, _args: argparse.Namespace) -> int:
    from arrivals.stack import Stack

    stopped = Stack(settings).down()
    log.info("Stopped: %s", ", ".join(stopped) if stopped else "nothing was running")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from arrivals.status import collect_status, render_status

    status = collect_status(settings, recent=args.recent)
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    else:
        sys.stdout.write(render_status(status) + "\n")
    return 0


def cmd_drop(settings: Settings, args: argparse.Namespace) -> int:
    if args.batch is not None:
        from automations.apply import producer_off_reason

        producer_off = producer_off_reason(settings)
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
    from shared.fs import atomic_copy

    target = settings.dirs.inbox / source.name
    settings.dirs.inbox.mkdir(parents=True, exist_ok=True)
    if target.exists():
        log.error("%s already waits in the inbox; rename the file to drop it again", target)
        return 2
    atomic_copy(source, target)
    log.info("Dropped %s into %s", source, settings.dirs.inbox)
    return 0


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


def cmd_retract(settings: Settings, args: argparse.Namespace) -> int:
    """Mark a trained file bad and retrain without it; a tainted champion moves."""
    from shared.ledger import Ledger

    ledger = Ledger(settings.ledger_url)
    try:
        record = ledger.find(args.file)
        if record is None:
            log.error("no file named %s (or with that sha256) in the ledger", args.file)
            return 2
        if not ledger.retract(record.sha256, args.reason):
            log.error(
                "%s is %s, neither trained nor suspect: nothing to retract",
                record.name,
                record.state,
            )
            return 2
    finally:
        ledger.close()
    log.info("Retracted %s (%s); retraining without it", record.name, record.sha256[:12])
    return _run_retrain(settings)


def cmd_accept(settings: Settings, args: argparse.Namespace) -> int:
    """Vouch for a suspect file: it is training data again, and a retrain runs with it."""
    from shared.ledger import Ledger

    ledger = Ledger(settings.ledger_url)
    try:
        record = ledger.find(args.file)
        if record is None:
            log.error("no file named %s (or with that sha256) in the ledger", args.file)
            return 2
        if not ledger.accept_suspect(record.sha256, f"suspect, accepted: {args.reason}"):
            log.error("%s is %s, not suspect: nothing to accept", record.name, record.state)
            return 2
    finally:
        ledger.close()
    log.info("Accepted %s (%s); retraining with it", record.name, record.sha256[:12])
    return _run_retrain(settings)


def cmd_retrain(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_retrain(settings)


def _run_retrain(settings: Settings) -> int:
    """Run the retrain deployment once with rebuild=True, and wait for it.

    The deployment is single flight: a run that starts while another retrain runs (or, after
    an arrival, listens for more for a few seconds) is cancelled. So this waits for its turn,
    and submits again if an automation's run slipped in first.
    """
    _use_prefect_of(settings)
    from prefect.deployments import run_deployment

    from automations.apply import RETRAIN_DEPLOYMENT

    deadline = time.monotonic() + RETRAIN_TIMEOUT_SECONDS
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
    return 0 if state is not None and state.is_completed() else 1


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

    from automations.apply import RETRAIN_DEPLOYMENT

    active = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
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


def _run_producer(settings: Settings, batch: int) -> int:
    """Run the producer deployment for one batch now, and wait for it."""
    _use_prefect_of(settings)
    from prefect.deployments import run_deployment

    from automations.apply import PRODUCER_DEPLOYMENT

    run = run_deployment(
        PRODUCER_DEPLOYMENT, parameters={"batch": batch}, timeout=120, tags=["manual"]
    )
    state = run.state
    log.info("Producer run %s for batch %d: %s", run.name, batch, state.name if state else "?")
    return 0 if state is not None and state.is_completed() else 1


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arrivals", description=__doc__)
    parser.add_argument("--config", help="params.yaml to use (default: ARRIVALS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service; --detach returns once healthy")
    up.add_argument("--detach", action="store_true")
    up.set_defaults(handler=cmd_up)
    sub.add_parser("down", help="stop every service this home started").set_defaults(
        handler=cmd_down
    )
    status = sub.add_parser("status", help="services, files, recent arrivals and champion")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "-n", "--recent", type=_count, default=10, help="arrivals to list (default 10)"
    )
    status.set_defaults(handler=cmd_status)
    events = sub.add_parser("events", help="the project's events from Prefect, one line each")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "-n", "--limit", type=_count, default=20, help="recent events first (default 20)"
    )
    events.add_argument("--heartbeats", action="store_true", help="include sensor heartbeats")
    events.add_argument("--runs", action="store_true", help="include flow-run state changes")
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.add_argument("--every", type=float, default=1.0, help=argparse.SUPPRESS)
    events.set_defaults(handler=cmd_events)
    drop = sub.add_parser("drop", help="copy a CSV into the inbox, or produce batch N now")
    target = drop.add_mutually_exclusive_group(required=True)
    target.add_argument("file", nargs="?", help="a CSV to copy into the inbox atomically")
    target.add_argument("--batch", type=int, help="run the producer deployment for batch N")
    drop.set_defaults(handler=cmd_drop)
    release = sub.add_parser("release", help="re-admit a (fixed) file from the quarantine")
    release.add_argument("file", help="a file in the quarantine folder (path or name)")
    release.set_defaults(handler=cmd_release)
    lineage = sub.add_parser("lineage", help="versions that used a file, or files behind a version")
    lineage.add_argument("file", nargs="?", help="a file name or sha256 (prefix of 8+)")
    lineage.add_argument("--version", type=int, help="list the files behind this model version")
    lineage.add_argument("--json", action="store_true")
    lineage.set_defaults(handler=cmd_lineage)
    accept = sub.add_parser("accept", help="vouch for a suspect file and retrain with it")
    accept.add_argument("file", help="a file name or sha256 (prefix of 8+)")
    accept.add_argument("--reason", default="vouched for by an operator")
    accept.set_defaults(handler=cmd_accept)
    retract = sub.add_parser(
        "retract", help="mark a trained or suspect file bad and retrain without it"
    )
    retract.add_argument("file", help="a file name or sha256 (prefix of 8+)")
    retract.add_argument("--reason", default="retracted by an operator")
    retract.set_defaults(handler=cmd_retract)
    sub.add_parser(
        "retrain", help="retrain now on the accepted data (no new file needed)"
    ).set_defaults(handler=cmd_retrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        log.error("%s", error)
        return 2
    return args.handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
