"""`arrivals events`: one readable line per event, and the thin paging/following HTTP part."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from arrivals.events_feed import (
    PAGE_SIZE,
    EventFeed,
    FeedUnavailable,
    LogAlerts,
    event_names,
    format_event,
    human_size,
    is_alert_line,
    is_shown,
)
from shared import events

SHA = "54b5fea5" + "0" * 56
WHEN = "2026-11-26T18:02:57.123456Z"


def event(name: str, payload: dict | None = None, **fields: Any) -> dict[str, Any]:
    """An event as `POST /events/filter` returns it."""
    return {
        "id": fields.pop("id", "e-1"),
        "occurred": fields.pop("occurred", WHEN),
        "event": name,
        "resource": fields.pop("resource", {"prefect.resource.id": "x"}),
        "related": fields.pop("related", []),
        "payload": payload or {},
    }


def line(e: dict[str, Any], **kwargs: Any) -> str:
    return format_event(e, tz=UTC, **kwargs)


FILE = {"prefect.resource.id": events.file_resource_id(SHA), "prefect.resource.name": "h3.csv"}
MODEL = {
    "prefect.resource.id": "mlflow.model.arrivals-tips.3",
    "prefect.resource.name": "arrivals-tips v3",
}


@pytest.mark.parametrize(
    ("e", "expected"),
    [
        (
            event(
                events.FILE_ARRIVED,
                {"name": "h3.csv", "size": 719, "sha256": SHA, "detected_via": "push"},
                resource=FILE,
            ),
            "18:02:57 arrived    h3.csv (719 B, sha 54b5fea5, push)",
        ),
        (
            event(
                events.FILE_ARRIVED,
                {
                    "name": "h3.csv",
                    "size": 12_345,
                    "sha256": SHA,
                    "detected_via": "scan",
                    "reannounced": True,
                    "waiting": 2,
                },
                resource=FILE,
            ),
            "18:02:57 arrived    h3.csv (12.3 KB, sha 54b5fea5, scan, announced again, 2 waiting)",
        ),
        (
            event(
                events.FILE_DUPLICATE,
                {"name": "copy.csv", "sha256": SHA, "duplicate_of": "h3.csv"},
                resource=FILE,
            ),
            "18:02:57 duplicate  copy.csv = h3.csv (same content, sha 54b5fea5; not trained again)",
        ),
        (
            event(
                events.FILE_REJECTED,
                {"name": "bad.csv", "reason": "column day: unknown value 'Mon'\n(row 3)"},
                resource=FILE,
            ),
            "18:02:57 rejected   bad.csv: column day: unknown value 'Mon' (row 3)",
        ),
        (
            event(
                events.VERSION_REGISTERED,
                {
                    "metrics": {"accuracy": 0.61, "roc_auc": 0.58123},
                    "files": ["h3.csv"],
                    "decision": "first version: no champion yet",
                },
                resource=MODEL,
            ),
            "18:02:57 registered arrivals-tips v3 roc_auc=0.5812 (files: h3.csv)"
            " - first version: no champion yet",
        ),
        (
            event(
                events.CHAMPION_PROMOTED,
                {"old_version": "2", "new_version": "3", "metric": "roc_auc", "delta": 0.0123},
                resource=MODEL,
            ),
            "18:02:57 promoted   arrivals-tips v3 -> champion (was v2, roc_auc +0.0123)",
        ),
        (
            event(
                events.CHAMPION_PROMOTED,
                {"old_version": None, "new_version": "1", "metric": "roc_auc", "delta": None},
                resource={**MODEL, "prefect.resource.name": "arrivals-tips v1"},
            ),
            "18:02:57 promoted   arrivals-tips v1 -> champion (first champion)",
        ),
        (
            event(
                events.SENSOR_HEARTBEAT,
                {"pending": 0, "watching": True},
                resource={
                    "prefect.resource.id": "inbox.sensor.box",
                    "prefect.resource.name": "sensor on box",
                },
            ),
            "18:02:57 heartbeat  sensor on box: watching, 0 pending",
        ),
        (
            event(
                "prefect.automation.triggered",
                resource={
                    "prefect.resource.id": "prefect.automation.1",
                    "prefect.resource.name": "sensor-silent",
                    "prefect.posture": "Proactive",
                },
            ),
            "18:02:57 ALERT      sensor-silent: no heartbeat from the inbox sensor: new files "
            "are not noticed (`arrivals status`; `arrivals up --detach` restarts it)",
        ),
        (
            event(
                "prefect.flow-run.Failed",
                resource={
                    "prefect.resource.id": "prefect.flow-run.1",
                    "prefect.resource.name": "fox",
                },
                related=[
                    {
                        "prefect.resource.id": "prefect.flow.1",
                        "prefect.resource.role": "flow",
                        "prefect.resource.name": "retrain",
                    }
                ],
            ),
            "18:02:57 run        retrain/fox FAILED",
        ),
    ],
    ids=lambda v: v["event"] if isinstance(v, dict) else None,
)
def test_each_event_is_one_readable_line(e: dict, expected: str) -> None:
    assert line(e, metric="roc_auc") == expected


def test_registered_without_the_primary_metric_shows_another_and_a_rebuild() -> None:
    e = event(
        events.VERSION_REGISTERED, {"metrics": {"accuracy": 0.5}, "files": []}, resource=MODEL
    )
    assert line(e, metric="roc_auc") == (
        "18:02:57 registered arrivals-tips v3 accuracy=0.5000 (no new file: rebuild)"
    )


def test_many_files_are_summarised() -> None:
    files = [f"f{i}.csv" for i in range(7)]
    e = event(events.VERSION_REGISTERED, {"metrics": {}, "files": files}, resource=MODEL)
    assert "(files: f0.csv, f1.csv, f2.csv +4 more)" in line(e)


def test_time_is_shown_in_the_given_zone() -> None:
    e = event(events.FILE_REJECTED, {"name": "x.csv", "reason": "r"})
    two_hours = timezone(timedelta(hours=2))
    assert format_event(e, tz=two_hours).startswith("20:02:57 ")
    offset = event(
        events.FILE_REJECTED, {"name": "x.csv", "reason": "r"}, occurred=WHEN[:-1] + "+00:00"
    )
    assert line(offset).startswith("18:02:57 ")


def test_unknown_events_and_missing_fields_still_format() -> None:
    assert line(event("something.else", resource={"prefect.resource.id": "r.1"})) == (
        "18:02:57 something.else r.1"
    )
    assert line(event(events.FILE_ARRIVED, {})) == "18:02:57 arrived    x (? B, sha , ?)"


def test_a_long_reason_is_cut_to_one_line() -> None:
    e = event(events.FILE_REJECTED, {"name": "bad.csv", "reason": "x" * 500})
    text = line(e)
    assert "\n" not in text
    assert text.endswith("…")
    assert len(text) < 200


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_234_567, "1.2 MB"), (5e12, "5000.0 GB")],
)
def test_human_size(size: float, text: str) -> None:
    assert human_size(size) == text


def test_only_proactive_automation_events_are_shown() -> None:
    reactive = event("prefect.automation.triggered", resource={"prefect.resource.name": "retrain"})
    proactive = event(
        "prefect.automation.triggered",
        resource={"prefect.resource.name": "sensor-silent", "prefect.posture": "Proactive"},
    )
    assert not is_shown(reactive)
    assert is_shown(proactive)
    assert is_shown(event(events.FILE_ARRIVED))


def test_event_names_cover_the_contract_and_options() -> None:
    default = event_names()
    for name in (
        events.FILE_ARRIVED,
        events.FILE_DUPLICATE,
        events.FILE_REJECTED,
        events.VERSION_REGISTERED,
        events.CHAMPION_PROMOTED,
    ):
        assert name in default
    assert events.SENSOR_HEARTBEAT not in default
    assert events.SENSOR_HEARTBEAT in event_names(heartbeats=True)
    assert "prefect.flow-run.Completed" in event_names(runs=True)


@pytest.mark.parametrize(
    ("text", "minimum", "alert"),
    [
        ("18:02:57 WARNING arrivals.sensor: Announcement of a.csv delayed", "WARNING", True),
        ("18:02:57 ERROR   arrivals.sensor: boom", "WARNING", True),
        ("18:02:57.123 | WARNING | prefect.flow_runs - Rejected bad.csv", "WARNING", True),
        ("18:02:57.123 | WARNING | prefect.flow_runs - Rejected bad.csv", "ERROR", False),
        ("18:02:57.123 | ERROR   | Flow run 'fox' - Finished in state Failed", "ERROR", True),
        ("18:02:57.123 | CRITICAL | x - y", "ERROR", True),
        ("Traceback (most recent call last):", "ERROR", True),
        ("18:02:57 INFO    arrivals.sensor: Detected a.csv", "WARNING", False),
        ("18:02:57.123 | INFO    | prefect.flow_runs.worker - Worker submitting", "WARNING", False),
        ("a line that mentions WARNING later", "WARNING", False),
    ],
)
def test_log_alert_lines(text: str, minimum: str, alert: bool) -> None:
    assert is_alert_line(text, minimum) is alert


def test_log_alerts_follow_from_the_end_at_each_files_level(tmp_path: Path) -> None:
    sensor = tmp_path / "logs" / "sensor.log"
    worker = tmp_path / "logs" / "worker.log"  # created when missing
    sensor.parent.mkdir()
    sensor.write_text("00:00:00 ERROR old: before we started\n")
    alerts = LogAlerts({sensor: "WARNING", worker: "ERROR"})
    try:
        with sensor.open("a") as handle:
            handle.write("00:00:01 INFO x: fine\n00:00:02 WARNING x: look\n")
        with worker.open("a") as handle:
            handle.write(
                "00:00:03.000 | WARNING | x - rejected\n00:00:04.000 | ERROR   | x - bad\n"
            )
        assert alerts.read() == [
            ("sensor", "00:00:02 WARNING x: look"),
            ("worker", "00:00:04.000 | ERROR   | x - bad"),
        ]
        assert alerts.read() == []
    finally:
        alerts.close()


def test_log_alerts_follow_a_log_across_its_rotation(tmp_path: Path) -> None:
    from arrivals.logpump import RotatingLog

    sensor = tmp_path / "sensor.log"
    log = RotatingLog(sensor, max_bytes=90, backups=2)
    alerts = LogAlerts({sensor: "WARNING"})
    try:
        log.write(b"00:00:01 WARNING x: before the rotation\n")
        assert alerts.read() == [("sensor", "00:00:01 WARNING x: before the rotation")]
        # One line still goes into the old file, the next starts sensor.log anew.
        log.write(b"00:00:02 WARNING x: last in the old file\n00:00:03 ERROR x: first in new\n")
        assert (tmp_path / "sensor.log.1").exists()
        assert alerts.read() == [
            ("sensor", "00:00:02 WARNING x: last in the old file"),
            ("sensor", "00:00:03 ERROR x: first in new"),
        ]
        log.write(b"00:00:04 WARNING x: and on\n")
        assert alerts.read() == [("sensor", "00:00:04 WARNING x: and on")]
    finally:
        log.close()
        alerts.close()


# -- HTTP, against a fake Prefect API --------------------------------------------------------
class FakeEventsApi:
    """`POST /events/filter` + `GET next_page` over a list of events, as Prefect pages them."""

    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self.stored = stored
        self.bodies: list[dict[str, Any]] = []
        self.down = False

    def page(self, matching: list[dict], start: int) -> httpx.Response:
        chunk = matching[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(matching)
        self._matching = matching
        return httpx.Response(
            200,
            json={
                "events": chunk,
                "total": len(matching),
                "next_page": f"http://api/events/filter/next?start={start + PAGE_SIZE}"
                if more
                else None,
            },
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "GET":
            return self.page(self._matching, int(request.url.params["start"]))
        body = json.loads(request.content)
        self.bodies.append(body)
        flt = body["filter"]
        since = datetime.fromisoformat(flt["occurred"]["since"])
        matching = [
            e
            for e in self.stored
            if e["event"] in flt["event"]["name"]
            and datetime.fromisoformat(e["occurred"].replace("Z", "+00:00")) >= since
        ]
        matching.sort(key=lambda e: e["occurred"], reverse=flt["order"] == "DESC")
        return self.page(matching, 0)


def stamped(i: int, base: datetime, name: str = events.FILE_ARRIVED) -> dict[str, Any]:
    occurred = (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
    return event(name, {"name": f"f{i}.csv"}, id=f"e-{i}", occurred=occurred)


def feed_over(api: FakeEventsApi) -> EventFeed:
    client = httpx.Client(transport=httpx.MockTransport(api))
    return EventFeed("http://api", event_names(), client=client)


def test_recent_pages_past_50_and_returns_the_newest_oldest_first() -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    api = FakeEventsApi([stamped(i, base) for i in range(120)])
    feed = feed_over(api)
    got = feed.recent(70)
    assert [e["id"] for e in got] == [f"e-{i}" for i in range(50, 120)]
    assert api.bodies[0]["limit"] == PAGE_SIZE
    assert api.bodies[0]["filter"]["order"] == "DESC"


def test_recent_skips_reactive_automation_noise() -> None:
    base = datetime.now(UTC) - timedelta(minutes=5)
    noise = [
        {**stamped(i, base, "prefect.automation.triggered"), "id": f"n-{i}"} for i in range(10)
    ]
    api = FakeEventsApi([stamped(100, base), *noise])
    assert [e["id"] for e in feed_over(api).recent(3)] == ["e-100"]


def test_poll_returns_only_new_events_including_late_ones() -> None:
    base = datetime.now(UTC) - timedelta(seconds=5)  # within the feed's 10 s lookback
    api = FakeEventsApi([stamped(i, base) for i in range(3)])
    feed = feed_over(api)
    assert [e["id"] for e in feed.recent(10)] == ["e-0", "e-1", "e-2"]
    assert feed.poll() == []
    api.stored.append(stamped(5, base))
    late = stamped(1, base)  # occurred before the newest seen, delivered after
    late["id"] = "late"
    api.stored.append(late)
    assert [e["id"] for e in feed.poll()] == ["late", "e-5"]
    assert feed.poll() == []
    assert api.bodies[-1]["filter"]["order"] == "ASC"


def test_an_unreachable_api_is_one_clear_error() -> None:
    api = FakeEventsApi([])
    api.down = True
    feed = feed_over(api)
    with pytest.raises(FeedUnavailable, match="Prefect API unreachable at http://api"):
        feed.recent(5)
    api.down = False
    assert feed.poll() == []


# -- the `arrivals events` command -------------------------------------------------------------
def test_cli_events_when_prefect_is_down_says_so(monkeypatch, caplog) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(port))
    from arrivals.cli import main

    assert main(["events"]) == 1
    assert f"Prefect API unreachable at http://127.0.0.1:{port}/api" in caplog.text
    assert "arrivals up --detach" in caplog.text


def test_cli_events_prints_lines_or_json_and_follows(monkeypatch, capsys) -> None:
    import arrivals.events_feed as feed_module
    from arrivals.cli import main

    base = datetime.now(UTC) - timedelta(seconds=5)
    api = FakeEventsApi([stamped(i, base) for i in range(3)])
    real = feed_module.EventFeed
    created: list[EventFeed] = []

    def fake_feed(api_url: str, names, **kwargs) -> EventFeed:
        feed = real(api_url, names, client=httpx.Client(transport=httpx.MockTransport(api)))
        created.append(feed)
        return feed

    monkeypatch.setattr(feed_module, "EventFeed", fake_feed)
    assert main(["events", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("arrived    f1.csv (? B, sha , ?)")

    assert main(["events", "--json", "-n", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "e-2"

    polls = iter([None, KeyboardInterrupt])

    def sleep(_seconds: float) -> None:
        step = next(polls)
        if step is None:  # a new event, after the follower started
            api.stored.append(
                stamped(0, datetime.now(UTC)) | {"id": "new", "payload": {"name": "f4.csv"}}
            )
        else:
            raise step

    monkeypatch.setattr("arrivals.cli.time.sleep", sleep)
    # -n 0: only what happens from now on, not the events of the last seconds.
    assert main(["events", "--follow", "-n", "0"]) == 0
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == ["f4.csv"]
    assert names_asked(api) >= {events.FILE_ARRIVED, events.CHAMPION_PROMOTED}


def names_asked(api: FakeEventsApi) -> set[str]:
    return set(api.bodies[-1]["filter"]["event"]["name"])


def test_recent_remembers_the_events_it_did_not_show_within_the_lookback() -> None:
    base = datetime.now(UTC) - timedelta(seconds=5)
    api = FakeEventsApi([stamped(i, base) for i in range(4)])
    feed = feed_over(api)
    assert [e["id"] for e in feed.recent(1)] == ["e-3"]
    assert feed.poll() == []  # e-0..e-2 are older than what was asked for: not "new"


def test_feed_poller_says_once_that_prefect_is_gone_and_once_that_it_is_back(caplog) -> None:
    from arrivals.cli import _FeedPoller
    from arrivals.events_feed import FeedUnavailable

    answers = iter([FeedUnavailable("down"), FeedUnavailable("down"), [{"event": "x"}], []])

    def read():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    poller = _FeedPoller("retrying")
    with caplog.at_level("INFO", logger="arrivals"):
        results = [poller.fetch(read) for _ in range(4)]
    assert results == [None, None, [{"event": "x"}], []]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["down; retrying", "Prefect API reachable again"]
