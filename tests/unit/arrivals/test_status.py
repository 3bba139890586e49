"""`arrivals status`: the JSON contract, recent arrivals from the ledger, the table people read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest

from arrivals.cli import main
from arrivals.status import (
    arrival_outcome,
    champion_from_mlflow,
    champion_from_registry,
    collect_status,
    human_age,
    oldest_pending_age,
    recent_arrivals,
    render_status,
)
from consumer.registry import Champion
from shared.ledger import Ledger
from shared.settings import Settings


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def arrive(ledger: Ledger, name: str, content: str, *, via: str = "push"):
    arrival = ledger.record_arrival(
        name=name, path=f"/inbox/{name}", size=len(content), sha256=sha(content), detected_via=via
    )
    assert arrival is not None
    return arrival


@pytest.fixture
def ledger(tmp_path, clock) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    yield ledger
    ledger.close()


@pytest.fixture
def history(ledger: Ledger, clock) -> Ledger:
    """trained a.csv (v1), a duplicate, a rejected file, one pending, one not announced."""
    first = arrive(ledger, "a.csv", "A")
    ledger.mark_announced(first.id)
    clock.advance(10)
    bad = arrive(ledger, "bad.csv", "B", via="scan")
    ledger.mark_announced(bad.id)
    ledger.claim_pending("run-1", ttl_seconds=300)
    ledger.mark_trained({sha("A"): 22}, run_id="run-1", version="1")
    ledger.mark_rejected(
        sha("B"), run_id="run-1", reason="column day: unknown value 'Mon'", path="/q"
    )
    clock.advance(10)
    dup = arrive(ledger, "copy of a.csv", "A")
    ledger.mark_announced(dup.id)
    clock.advance(10)
    waiting = arrive(ledger, "c.csv", "C")
    ledger.mark_announced(waiting.id)
    clock.advance(10)
    arrive(ledger, "d.csv", "D")  # Prefect never confirmed its event
    clock.advance(5)
    return ledger


def test_recent_arrivals_newest_first_with_outcome_and_version(history: Ledger, clock) -> None:
    recent = recent_arrivals(history, 10, clock())
    assert [(r["name"], r["outcome"], r["model_version"]) for r in recent] == [
        ("d.csv", "pending", None),
        ("c.csv", "pending", None),
        ("copy of a.csv", "duplicate", None),
        ("bad.csv", "rejected", None),
        ("a.csv", "trained", "1"),
    ]
    d, c, dup, bad, a = recent
    assert d["note"] == "waiting for Prefect to accept its event"
    assert c["note"] == "waiting for a retrain run"
    assert dup["note"] == "same content as a.csv"
    assert bad["note"] == "column day: unknown value 'Mon'"
    assert bad["detected_via"] == "scan"
    assert d["age_seconds"] == 5.0
    assert a["age_seconds"] == 45.0
    assert a["sha256"] == sha("A")
    assert [r["name"] for r in recent_arrivals(history, 2, clock())] == ["d.csv", "c.csv"]


def test_oldest_pending_age(history: Ledger, ledger: Ledger, clock) -> None:
    assert oldest_pending_age(history, clock()) == 15.0  # c.csv
    empty = Ledger(f"sqlite:///{ledger.url.removeprefix('sqlite:///')}.empty")
    try:
        assert oldest_pending_age(empty, clock()) is None
    finally:
        empty.close()


def test_a_released_files_earlier_arrival_says_released(ledger: Ledger, clock) -> None:
    bad = arrive(ledger, "bad.csv", "B")
    ledger.mark_announced(bad.id)
    ledger.claim_pending("run-1", ttl_seconds=300)
    ledger.mark_rejected(sha("B"), run_id="run-1", reason="bad", path="/q/bad.csv")
    ledger.readmit(sha("B"), "/q/bad.csv")
    assert recent_arrivals(ledger, 10, clock())[0]["outcome"] == "released"
    clock.advance(60)
    arrive(ledger, "bad.csv", "B")
    assert [r["outcome"] for r in recent_arrivals(ledger, 10, clock())] == ["pending", "released"]


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        (("duplicate", "trained", 5.0, 1.0), "duplicate"),
        (("new", "detected", 1.0, 1.0), "pending"),
        (("new", "announced", 1.0, 1.0), "pending"),
        (("new", "claimed", 1.0, 1.0), "pending"),
        (("new", "trained", 1.0, 1.0), "trained"),
        (("new", "rejected", 1.0, 1.0), "rejected"),
        (("new", "retracted", 1.0, 1.0), "retracted"),
        (("new", "trained", 1.0, 9.0), "released"),
    ],
)
def test_arrival_outcome(args: tuple, outcome: str) -> None:
    assert arrival_outcome(*args) == outcome


def test_collect_status_with_everything_down_keeps_the_contract(settings: Settings, clock) -> None:
    ledger = Ledger(settings.ledger_url)
    try:
        arrive(ledger, "a.csv", "A")
        counts = ledger.counts()
    finally:
        ledger.close()
    status = collect_status(settings)
    json.dumps(status)  # serialisable as `--json` prints it
    assert set(status["services"]) >= {"prefect", "mlflow", "worker", "sensor"}
    for name in ("prefect", "mlflow", "worker", "sensor"):
        assert status["services"][name]["healthy"] is False
        assert status["services"][name]["pid"] is None
    assert status["services"]["prefect"]["url"] == settings.prefect_ui_url
    assert status["services"]["mlflow"]["url"] == settings.mlflow_url
    assert status["inbox"] == str(settings.dirs.inbox)
    assert status["quarantine"] == str(settings.dirs.quarantine)
    assert status["files"] == counts  # exactly the ledger's counts, nothing mixed in
    assert status["champion"] is None
    assert [r["name"] for r in status["recent"]] == ["a.csv"]
    assert status["oldest_pending_age_seconds"] >= 0
    assert status["primary_metric"] == settings.promotion.metric
    assert status["services"]["serve"] == {
        "healthy": False,
        "pid": None,
        "url": settings.serve_url,
    }
    assert status["serving"] is None  # nothing to ask while the serve is down
    assert collect_status(settings, recent=0)["recent"] == []


def test_status_falls_back_to_the_exported_champion(settings: Settings) -> None:
    settings.dirs.models.mkdir(parents=True, exist_ok=True)
    (settings.dirs.models / "champion.json").write_text(
        json.dumps({"model": "arrivals-tips", "version": "4", "metrics": {"roc_auc": 0.7}})
    )
    champion = collect_status(settings)["champion"]
    assert champion["version"] == "4"
    assert champion["metrics"] == {"roc_auc": 0.7}
    assert "MLflow is down" in champion["source"]


def test_cli_status_json_and_table(settings: Settings, capsys) -> None:
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["files"]["pending"] == 0
    assert main(["status", "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "SERVICE" in out
    assert "NO ARRIVALS YET" in out


class ChampionOnly:
    """The one registry call status makes: `champion()`, or MLflow failing to answer."""

    def __init__(self, champion: Champion | None = None, error: Exception | None = None) -> None:
        self._champion, self._error = champion, error

    def champion(self) -> Champion | None:
        if self._error is not None:
            raise self._error
        return self._champion


DECISION_TAGS = {
    "arrivals.decision": "promoted",
    "arrivals.decision_reason": "beats v1 by 0.030",
    "arrivals.delta": "0.03",
    "arrivals.delta_ci_low": "0.01",
    "arrivals.delta_ci_high": "",
    "arrivals.confidence": "0.97",
}


def test_the_champion_comes_from_the_registry_with_its_decision() -> None:
    champion = Champion("2", "run-2", {"roc_auc": 0.61}, DECISION_TAGS)
    assert champion_from_registry(ChampionOnly(champion), "arrivals-tips") == {
        "model": "arrivals-tips",
        "version": "2",
        "metrics": {"roc_auc": 0.61},
        "decision": {
            "outcome": "promoted",
            "reason": "beats v1 by 0.030",
            "delta": 0.03,
            "delta_ci_low": 0.01,
            "delta_ci_high": None,
            "confidence": 0.97,
        },
        "source": "mlflow",
    }
    untagged = Champion("1", "run-1", {"roc_auc": 0.5})
    assert champion_from_registry(ChampionOnly(untagged), "m")["decision"] is None
    assert champion_from_registry(ChampionOnly(None), "m") is None


def test_a_registry_that_fails_to_answer_falls_back_to_the_export(settings: Settings) -> None:
    from mlflow.exceptions import MlflowException

    broken = ChampionOnly(error=MlflowException("connection refused"))
    assert champion_from_mlflow(settings, broken) is None, "no export yet: no champion"
    settings.dirs.models.mkdir(parents=True, exist_ok=True)
    (settings.dirs.models / "champion.json").write_text(
        json.dumps({"model": "arrivals-tips", "version": "4", "metrics": {"roc_auc": 0.7}})
    )
    champion = champion_from_mlflow(settings, broken)
    assert (champion["version"], champion["metrics"]) == ("4", {"roc_auc": 0.7})
    assert champion["source"] == "models/champion.json (MLflow did not answer: connection refused)"
    found = Champion("5", "run-5", {"roc_auc": 0.8})
    assert champion_from_mlflow(settings, ChampionOnly(found))["version"] == "5"


# -- rendering (pure) -------------------------------------------------------------------------
def status_object(**changes: Any) -> dict[str, Any]:
    status = {
        "home": "/h",
        "config": "/h/params.yaml",
        "services": {
            "prefect": {"healthy": True, "pid": 101, "url": "http://127.0.0.1:4200"},
            "mlflow": {"healthy": True, "pid": 102, "url": "http://127.0.0.1:5000"},
            "worker": {"healthy": True, "pid": 103},
            "sensor": {"healthy": False, "pid": None},
        },
        "inbox": "/h/data/inbox",
        "quarantine": "/h/data/quarantine",
        "logs": "/h/logs",
        "files": {
            "pending": 2,
            "unannounced": 1,
            "trained": 5,
            "rejected": 1,
            "duplicate": 1,
            "retracted": 0,
        },
        "oldest_pending_age_seconds": 125.0,
        "recent": [
            {
                "name": "h3.csv",
                "sha256": "ab" * 32,
                "size": 719,
                "detected_via": "push",
                "detected_at": "2026-11-26T18:02:57+00:00",
                "age_seconds": 3.0,
                "outcome": "trained",
                "model_version": "3",
                "note": "",
            },
            {
                "name": "bad.csv",
                "sha256": "cd" * 32,
                "size": 2048,
                "detected_via": "scan",
                "detected_at": "2026-11-26T18:01:00+00:00",
                "age_seconds": 120.0,
                "outcome": "rejected",
                "model_version": None,
                "note": "column day: unknown value 'Mon'",
            },
        ],
        "primary_metric": "roc_auc",
        "champion": {
            "model": "arrivals-tips",
            "version": "3",
            "metrics": {"roc_auc": 0.58123, "accuracy": 0.61, "prequential_roc_auc": 0.5},
            "source": "mlflow",
        },
    }
    status.update(changes)
    return status


def test_render_shows_services_files_champion_and_arrivals() -> None:
    text = render_status(status_object(), tz=UTC)
    lines = text.splitlines()
    assert lines[0] == "Arrivals  /h"
    assert "SERVICE  HEALTHY  PID  URL" in text
    assert "prefect  yes      101  http://127.0.0.1:4200" in lines
    assert "sensor   NO       -" in lines
    assert any(line.startswith("down: sensor") and "/h/logs" in line for line in lines)
    files = next(line for line in lines if line.startswith("FILES"))
    assert "pending 2 (oldest 2 min 05 s, 1 not yet accepted by Prefect)" in files
    assert "trained 5" in files
    assert "duplicate 1" in files
    assert "CHAMPION    arrivals-tips v3  roc_auc 0.5812  accuracy 0.6100" in lines
    assert "prequential" not in text
    assert "LAST 2 ARRIVALS" in lines
    header = lines.index("LAST 2 ARRIVALS") + 1
    assert lines[header].split() == ["DETECTED", "FILE", "SIZE", "VIA", "OUTCOME", "MODEL", "NOTE"]
    assert lines[header + 1].split() == [
        "11-26",
        "18:02:57",
        "h3.csv",
        "719",
        "B",
        "push",
        "trained",
        "v3",
    ]
    assert lines[header + 2].endswith("rejected  -      column day: unknown value 'Mon'")


def test_render_when_all_is_healthy_and_nothing_happened_yet() -> None:
    services = status_object()["services"]
    services["sensor"] = {"healthy": True, "pid": 104}
    text = render_status(
        status_object(
            services=services,
            recent=[],
            champion=None,
            files={"pending": 0, "trained": 0, "rejected": 0, "duplicate": 0},
            oldest_pending_age_seconds=None,
        )
    )
    assert "down:" not in text
    assert "FILES       pending 0   trained 0   rejected 0   duplicate 0" in text
    assert "CHAMPION    none yet" in text
    assert "NO ARRIVALS YET" in text


def test_render_names_the_champions_source_when_mlflow_is_down() -> None:
    champion = {
        "model": "m",
        "version": "2",
        "metrics": {"roc_auc": 0.6},
        "source": "models/champion.json (MLflow is down)",
    }
    text = render_status(status_object(champion=champion))
    assert "m v2  roc_auc 0.6000  (from models/champion.json (MLflow is down))" in text


def test_render_shows_what_the_serve_answers_with_and_its_shadow() -> None:
    serving = {
        "url": "http://127.0.0.1:5050",
        "model": "m",
        "version": "3",
        "decision": "promoted",
        "loaded_at": "2026-11-30T16:05:16.954+00:00",
        "shadow": {"version": "5", "rows": 1234, "requests": 56, "agreement": 0.9712},
    }
    text = render_status(status_object(serving=serving), tz=UTC)
    assert (
        "SERVING     v3 since 16:05:16 at http://127.0.0.1:5050/invocations; shadow v5 agrees "
        "on 97.1% of 1,234 rows (56 requests)"
    ) in text
    quiet = {**serving, "shadow": {"version": "5", "decision": "worse than champion"}}
    assert "; shadow v5 (no request scored yet)" in render_status(status_object(serving=quiet))
    none_yet = {**serving, "version": None, "loaded_at": None, "shadow": None}
    assert "SERVING     no champion to serve yet" in render_status(status_object(serving=none_yet))
    assert "SERVING" not in render_status(status_object(serving=None))


def test_render_cuts_long_names_and_notes() -> None:
    recent = status_object()["recent"][:1]
    recent[0] = {**recent[0], "name": "n" * 80 + ".csv", "note": "why " * 60}
    text = render_status(status_object(recent=recent))
    assert max(len(line) for line in text.splitlines()) < 160


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0 s"),
        (59.9, "59 s"),
        (125, "2 min 05 s"),
        (7260, "2 h 01 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_human_age(seconds: float | None, text: str) -> None:
    assert human_age(seconds) == text
