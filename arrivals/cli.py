"""The `arrivals` command: up, down, status, events, drop, release, lineage, accept, retract,
retrain, serve, predict."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from arrivals.ledger_commands import (
    cmd_accept,
    cmd_drop,
    cmd_lineage,
    cmd_release,
    cmd_retract,
    cmd_retrain,
    use_prefect_of,
)
from shared.logs import setup_logging
from shared.settings import Settings, SettingsError, load_settings

log = logging.getLogger("arrivals")
# `status --check` fails once a file has waited this long. A retrain takes seconds and a stuck
# file is announced again within `sensor.reannounce_after_seconds`; a dead run's claim expires
# after `consumer.claim_ttl_seconds` (300 s): a healthy stack stays well inside ten minutes.
MAX_WAIT_SECONDS = 600


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """`up` holding the home's lock: until Ctrl-C in the foreground, until healthy detached."""
    from arrivals.home_lock import HomeBusy, hold_home

    try:
        with hold_home(settings.dirs.run):
            return _up(settings, args)
    except HomeBusy as error:
        log.error("%s", error)
        return 1


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from arrivals.remote import remote_line
    from arrivals.roles import RoleError, parse_roles
    from arrivals.stack import Stack, StackError
    from arrivals.topology import apply_all
    from consumer.estimators import check_model

    try:
        # This host's share (docs/scaling.md); callers that predate --only pass no such field.
        selected = parse_roles(getattr(args, "only", None), settings)
    except RoleError as error:
        log.error("%s", error)
        return 2
    try:
        check_model(settings)  # scikit-learn's own checks, before any service starts
    except SettingsError as error:
        log.error("%s", error)
        return 2
    use_prefect_of(settings)
    stack = Stack(settings, selected)
    started = time.monotonic()
    try:
        statuses = stack.up(apply_all)
    except StackError as error:
        log.error("%s", error)
        return 1
    log.info("All services healthy in %.1f s", time.monotonic() - started)
    if elsewhere := remote_line(statuses.values()):
        log.info("Elsewhere:  %s", elsewhere)
    log.info("Prefect UI: %s", settings.prefect_ui_url)
    log.info("MLflow UI:  %s", settings.mlflow_url)
    if "serve" in selected and settings.serve.enabled:
        log.info("Serving:    %s/invocations  (the champion)", settings.serve_url)
    log.info("Inbox:      %s  (drop CSVs here)", settings.dirs.inbox)
    log.info("Logs:       %s", settings.dirs.logs)
    producer_off = settings.producer_off_reason
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
    from arrivals.events_feed import EventFeed, FeedUnauthorized, FeedUnavailable, event_names

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
        except FeedUnauthorized as error:
            log.error("%s", error)
            return 1
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
    """The snapshot; with --check, one line and exit 1 unless all is well."""
    from arrivals.status import check_status, collect_status, render_status

    status = collect_status(settings, recent=args.recent)
    if args.check:
        healthy, line = check_status(status, args.max_wait)
        if args.json:
            status["check"] = {"healthy": healthy, "message": line}
            sys.stdout.write(json.dumps(status, indent=2) + "\n")
        else:
            sys.stdout.write(line + "\n")
        return 0 if healthy else 1
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    else:
        sys.stdout.write(render_status(status) + "\n")
    return 0


def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    """The champion over HTTP in the foreground (what `up` runs as the `serve` service)."""
    from arrivals.ledger_commands import use_prefect_of
    from serving.server import run

    use_prefect_of(settings)  # promotion events come from this home's Prefect
    run(settings)
    return 0


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    from arrivals.predict import cmd_predict as predict

    return predict(settings, args)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


# What every command returns; tests/unit/arrivals/test_cli_exit_codes.py holds them to it.
EXIT_CODES = """exit codes:
  0  done (`status --check`: every service healthy, no file waiting too long)
  1  a check failed (`status --check`), or the command failed while running: the stack did
     not start, a service did not answer, a run did not complete
  2  usage or configuration error, or the request does not apply (no such file or version,
     a file in a state that refuses it, the producer is off); nothing was changed"""


def package_version() -> str:
    """The installed `arrivals` distribution's version."""
    try:
        return version("arrivals")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arrivals",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's lines
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--config", help="params.yaml to use (default: ARRIVALS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service; --detach returns once healthy")
    up.add_argument("--detach", action="store_true")
    up.add_argument(
        "--only",
        metavar="ROLE[,ROLE]",
        help="start only these roles here: prefect, mlflow, engine, worker, sensor, serve; scale "
        "profile also replicas, services (docs/scaling.md: the others run on other hosts)",
    )
    up.set_defaults(handler=cmd_up)
    sub.add_parser("down", help="stop every service this home started").set_defaults(
        handler=cmd_down
    )
    status = sub.add_parser("status", help="services, files, recent arrivals and champion")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "-n", "--recent", type=_count, default=10, help="arrivals to list (default 10)"
    )
    status.add_argument(
        "--check",
        action="store_true",
        help="print one line; exit 1 if a service is down or a file waited over --max-wait",
    )
    status.add_argument(
        "--max-wait",
        type=_count,
        default=MAX_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"--check: how long a file may wait pending (default {MAX_WAIT_SECONDS} s)",
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
    sub.add_parser(
        "serve", help="serve the champion on services.serve_port (`up` runs it already)"
    ).set_defaults(handler=cmd_serve)
    predict = sub.add_parser("predict", help="score a CSV with the champion; write predictions")
    predict.add_argument("file", help="a CSV with the dataset's feature columns")
    predict.add_argument("-o", "--output", help="default: FILE.predictions.csv beside it")
    predict.set_defaults(handler=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        log.error("%s", error)
        return 2
    from arrivals.reach import ServiceUnreachable
    from shared.ledger_schema import LedgerSchemaError

    try:
        return args.handler(settings, args)
    except (ServiceUnreachable, LedgerSchemaError) as error:  # one line: what to start or run
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
