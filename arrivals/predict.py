"""`arrivals predict FILE`: score a CSV with the served champion (the local one when the serve
does not answer) and write its rows back with each row's prediction and model version."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from arrivals.reach import START_HINT
from shared.fs import atomic_write_text

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger("arrivals")
ADDED_COLUMNS = ("prediction", "model_version")
CONNECT_TIMEOUT_SECONDS = 3.0
SCORE_TIMEOUT_SECONDS = 120.0  # one chunk of up to serve.max_rows rows, scored by the serve


class NotScored(Exception):
    """Rows that cannot be scored (bad, too many) or an answer that makes no sense: exit 1."""


class NoChampion(NotScored):
    """Neither the serve nor the home has a champion to score with."""


class Unanswered(Exception):
    """The serve is down, timed out or has no champion: the local champion scores instead."""


@dataclass(frozen=True)
class Answer:
    """One chunk's predictions and the model that made them."""

    predictions: list[Any]
    model: str
    version: str


@dataclass(frozen=True)
class LocalChampion:
    """models/champion.joblib, with the version champion.json gives it."""

    path: Path
    pipeline: Any
    model: str
    version: str


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows as text, blank lines skipped (as the serve skips them)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        records = [(reader.line_num, record) for record in reader if record]
    if not records:
        return [], []
    (_, header), rows = records[0], records[1:]
    for line, row in rows:
        if len(row) != len(header):
            raise NotScored(f"line {line} has {len(row)} cells for {len(header)} columns")
    return header, [row for _, row in rows]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def ask_serve(client: httpx.Client, url: str, header: list[str], rows: list[list[str]]) -> Answer:
    """The serve's answer for `rows`; Unanswered when it cannot give one."""
    try:
        response = client.post(
            f"{url}/invocations",
            content=csv_text(header, rows).encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )
    except httpx.TransportError as error:
        raise Unanswered(f"did not answer ({type(error).__name__})") from error
    if response.status_code == 503:
        raise Unanswered("has no champion yet")
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code != 200:
        text = body.get("message") or (response.text.strip().splitlines() or ["?"])[0]
        raise NotScored(f"the serve answered {response.status_code}: {text}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(rows):
        raise NotScored(f"the serve at {url} did not answer one prediction per row")
    return Answer(
        predictions,
        response.headers.get("X-Model-Name", ""),
        response.headers.get("X-Model-Version", "?"),
    )


def load_local(settings: Settings) -> LocalChampion | None:
    """The champion the last promotion exported into <home>/models, if there is one."""
    import joblib

    path = settings.dirs.models / "champion.joblib"
    about = settings.dirs.models / "champion.json"
    if not path.is_file() or not about.is_file():
        return None
    try:
        info = json.loads(about.read_text(encoding="utf-8"))
        version = str(info["version"])
        pipeline = joblib.load(path)  # written by our own retrain, never a user's file
    except Exception as error:  # a torn or foreign file: json, joblib and pickle raise many kinds
        raise NotScored(f"cannot load the local champion {path}: {error}") from error
    return LocalChampion(path, pipeline, str(info.get("model") or settings.model.name), version)


def score_locally(
    settings: Settings, local: LocalChampion, header: list[str], rows: list
) -> Answer:
    """The rows checked and typed as the serve does, then predicted by the local champion."""
    import pandas as pd

    from serving import scoring

    cells = pd.DataFrame(rows, columns=[name.strip() for name in header], dtype=object)
    try:
        features = scoring.features_of(cells, settings.dataset, settings.serve.max_rows)
        predictions = local.pipeline.predict(features)
    except ValueError as error:  # scoring.BadRequest is one
        raise NotScored(str(error)) from error
    return Answer(scoring.predictions_json(predictions), local.model, local.version)


class Scorer:
    """Scores chunks on the serve until it stops answering, then on the local champion."""

    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.settings, self.client, self.url = settings, client, settings.serve_url
        self.local: LocalChampion | None = None
        self.served = 0  # rows the serve answered
        self.why = ""  # why the serve was left

    def score(self, header: list[str], chunk: list[list[str]]) -> Answer:
        """NotScored for rows that cannot be scored; NoChampion when nothing can score."""
        if self.local is None:
            try:
                answer = ask_serve(self.client, self.url, header, chunk)
                self.served += len(chunk)
                return answer
            except Unanswered as error:
                self.why = str(error)
            self.local = load_local(self.settings)
            if self.local is None:
                todo = "drop a file (`arrivals drop FILE`)"
                if self.why.startswith("did not"):
                    todo = f"{START_HINT}, then {todo}"
                raise NoChampion(
                    f"No champion to score with: the serve at {self.url} {self.why} and "
                    f"{self.settings.dirs.models} has no champion.joblib: {todo}; a version "
                    "becomes champion once the holdout can judge it (`arrivals status`)"
                )
            log.warning(
                "The serve at %s %s: scoring with the local champion %s (v%s)",
                self.url, self.why, self.local.path, self.local.version,
            )  # fmt: skip
        return score_locally(self.settings, self.local, header, chunk)

    def how(self) -> str:
        """Where the predictions came from, for the last line."""
        if self.local is None:
            return f"served at {self.url}"
        if self.served == 0:
            return f"loaded locally from {self.local.path}, the serve {self.why}"
        return (
            f"{self.served} rows served at {self.url}, the rest loaded locally from "
            f"{self.local.path}: the serve then {self.why}"
        )


def read_input(source: Path) -> tuple[list[str], list[list[str]]] | int:
    """FILE's header and rows, or the exit code after saying why it cannot be scored."""
    try:
        header, rows = read_rows(source)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        log.error("cannot read %s: %s", source, reason)
        return 2
    except NotScored as error:
        log.error("%s: %s", source, error)
        return 1
    names = [name.strip() for name in header]
    if taken := [name for name in ADDED_COLUMNS if name in names]:
        log.error("%s already has a %s column: score the original file", source, taken[0])
        return 2
    if twice := [name for name in names if names.count(name) > 1]:
        log.error("%s: the column %s appears twice in the header", source, twice[0])
        return 1
    if not rows:
        log.error("%s has no rows to score", source)
        return 1
    return header, rows


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    """Score FILE with the champion (served, else local); write rows, prediction and version."""
    source = Path(args.file)
    if not source.name.lower().endswith(".csv"):
        log.error("%s is not a .csv file: predict reads a CSV with a header row", source)
        return 2
    read = read_input(source)
    if isinstance(read, int):
        return read
    out = Path(args.output or source.with_name(source.name[:-4] + ".predictions.csv"))
    if out.exists() and os.path.samefile(out, source):  # the same spelled otherwise, or linked
        log.error("%s is the input file: give another output (-o OUT)", out)
        return 2
    header, rows = read
    step, answers = settings.serve.max_rows, []
    timeout = httpx.Timeout(SCORE_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    with httpx.Client(timeout=timeout) as client:
        scorer = Scorer(settings, client)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            try:
                answers.append(scorer.score(header, chunk))
            except NoChampion as error:
                log.error("%s", error)
                return 1
            except NotScored as error:  # the serve's row numbers count from the chunk's first
                where = "" if len(rows) <= step else f", rows {start + 1}-{start + len(chunk)}"
                log.error("%s%s: %s (nothing written)", source, where, error)
                return 1
    scored = [(p, a.version) for a in answers for p in a.predictions]
    lines = [[*row, *pair] for row, pair in zip(rows, scored, strict=True)]
    try:
        atomic_write_text(out, csv_text([*header, *ADDED_COLUMNS], lines))
    except OSError as error:
        log.error("cannot write %s: %s", out, error)
        return 1
    named = ", ".join(dict.fromkeys(a.model or settings.model.name for a in answers))
    label = ", ".join(dict.fromkeys(f"v{a.version}" for a in answers))
    log.info("Scored %d rows with %s %s (%s) -> %s", len(rows), named, label, scorer.how(), out)
    return 0
