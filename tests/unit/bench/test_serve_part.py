"""The serve part's pure helpers: load summaries, first answers, failures, ratios, the table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import PARTS, parse_args
from bench.load import (
    Call,
    failed_between,
    first_answer_after,
    identify,
    load_summary,
    ratio,
    split_body,
)
from bench.scenarios.serve import SERVERS, render_serve


def call(sent: float, done: float, status: int = 200, version: str | None = "1") -> Call:
    return Call(sent, done, status, version)


def test_load_summary_counts_only_requests_inside_the_window() -> None:
    calls = [
        call(0.5, 1.2),  # sent before the window: left out
        call(1.0, 1.010),
        call(1.0, 1.020),
        call(2.0, 2.030, status=500),
        call(2.0, 2.040, status=0, version=None),
        call(2.9, 3.1),  # answered after the window: left out
    ]
    summary = load_summary(calls, 1.0, 3.0, rows=100)
    assert summary["requests"] == 4 and summary["failed"] == 2
    assert summary["requests_per_second"] == pytest.approx(1.0)  # 2 answered in 2 s
    assert summary["rows_per_second"] == pytest.approx(100.0)
    assert summary["p50_ms"] == pytest.approx(15.0)
    assert summary["p99_ms"] == pytest.approx(19.9)


def test_load_summary_of_nothing_has_no_latency() -> None:
    summary = load_summary([], 0.0, 10.0, rows=1)
    assert summary["requests"] == 0 and summary["requests_per_second"] == 0
    assert summary["p50_ms"] is None and summary["p99_ms"] is None


def test_first_answer_after_takes_the_earliest_200_of_the_version_after_the_moment() -> None:
    calls = [
        call(0.0, 1.0, version="2"),  # before the moment
        call(1.0, 2.5, version="1"),  # the old version after it
        call(1.5, 2.2, status=503, version="2"),  # not a 200
        call(2.0, 3.0, version="2"),
        call(2.1, 2.8, version="2"),  # appended later, answered earlier
    ]
    assert first_answer_after(calls, 2.0, "2") == 2.8
    assert first_answer_after(calls, 2.0) == 2.5  # any version
    assert first_answer_after(calls, 3.5, "2") is None
    assert first_answer_after(calls, 0.0, "2", start=4) == 2.8  # the first 4 calls skipped
    assert first_answer_after(calls, 0.0, "2") == 1.0


def test_failed_between_counts_non_200_answers_and_errors_that_ended_inside() -> None:
    calls = [
        call(0.0, 0.5, status=0, version=None),
        call(1.0, 1.1, status=0, version=None),
        call(1.0, 1.5, status=503),
        call(1.0, 1.6),
        call(1.9, 2.5, status=500),
    ]
    assert failed_between(calls, 1.0, 2.0) == 2
    assert failed_between(calls, 0.0, 3.0) == 4


def test_ratio_is_none_when_either_side_is_missing_or_zero() -> None:
    assert ratio(300.0, 150.0) == 2.0
    assert ratio(None, 150.0) is None
    assert ratio(300.0, None) is None
    assert ratio(300.0, 0.0) is None


def test_identify_names_the_one_version_with_these_predictions() -> None:
    fingerprints = {"1": [0, 1, 1], "2": [0, 0, 1]}
    assert identify([0, 0, 1], fingerprints) == "2"
    assert identify([1, 1, 1], fingerprints) is None
    assert identify([0, 1, 1], {"1": [0, 1, 1], "2": [0, 1, 1]}) is None  # indistinguishable


def test_split_body_is_mlflow_dataframe_split_json() -> None:
    frame = pd.DataFrame({"total_bill": [16.99, 10.34], "sex": ["Female", "Male"], "size": [2, 3]})
    body = json.loads(split_body(frame))
    assert body == {
        "dataframe_split": {
            "columns": ["total_bill", "sex", "size"],
            "data": [[16.99, "Female", 2], [10.34, "Male", 3]],
        }
    }


def test_serve_is_a_part_of_the_default_run_and_its_options_are_checked() -> None:
    assert "serve" in PARTS and "serve" in parse_args([]).parts
    args = parse_args(["--parts", "serve", "--serve-seconds", "3", "--serve-promotions", "4"])
    assert (args.parts, args.serve_seconds, args.serve_promotions) == (["serve"], 3.0, 4)
    with pytest.raises(SystemExit):
        parse_args(["--parts", "serve", "--serve-promotions", "0"])


def _throughput(rps: float) -> dict:
    return {
        "requests": int(rps * 15),
        "requests_per_second": rps,
        "rows_per_second": rps,
        "p50_ms": 6.5,
        "p99_ms": 12.25,
        "failed": 0,
    }


PART = {
    "threads": 4,
    "seconds": 15.0,
    "probe_rows": 244,
    "versions": ["2", "1"],
    "throughput": {SERVERS[0]: {"1": _throughput(150.0)}, SERVERS[1]: {"1": _throughput(100.0)}},
    "ratio": {"1": 1.5},
    "promotions": {
        "count": 20,
        "spacing_seconds": 2.5,
        "steady_threads": 2,
        "follow_ms": {"n": 20, "p50": 51.2, "p95": 150.0, "max": 212.6},
        "not_followed": 0,
        "requests": 9000,
        "failed": 0,
    },
    "mlflow_start_seconds": 4.2,
    "same_predictions": True,
    "restarts": {
        "count": 3,
        "restart_seconds": {"n": 3, "p50": 6.0, "p95": 6.1, "max": 6.1},
        "failed": 700,
        "served_new_version": 3,
    },
}


def cells(text: str) -> list[list[str]]:
    """The table rows of a report, as their stripped cells."""
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]


def test_render_serve_shows_both_servers_and_what_a_promotion_costs() -> None:
    text = render_serve(PART)
    rows = cells(text)
    assert [SERVERS[0], "1", "2250", "150", "150", "6.50", "12.25", "0"] in rows
    assert [SERVERS[1], "1", "1500", "100", "100", "6.50", "12.25", "0"] in rows
    ours = next(row for row in rows if row[0].startswith("arrivals serve: event posted"))
    assert ours[1:] == ["51 ms", "213 ms", "0 of 9000", "yes"]
    theirs = next(row for row in rows if row[0].startswith("mlflow models serve: alias moved"))
    assert theirs[1:3] == ["6.0 s", "6.1 s"] and theirs[3].startswith("700 ")
    assert "Requests/s ours / mlflow: 1.50 at 1 row(s)" in text
    assert "served the new version 3 of 3 times" in text


def test_render_serve_flags_failed_requests_and_shows_a_part_without_mlflow() -> None:
    part = {**PART, "promotions": {**PART["promotions"], "failed": 2}}
    part["throughput"] = {SERVERS[0]: PART["throughput"][SERVERS[0]], SERVERS[1]: {}}
    part["ratio"] = {"1": None}
    del part["restarts"]
    rows = cells(render_serve(part))
    ours = next(row for row in rows if row[0].startswith("arrivals serve: event posted"))
    assert ours[3:] == ["2 of 9000", "**NO**"]
    assert not any(row[0].startswith(SERVERS[1]) for row in rows)
