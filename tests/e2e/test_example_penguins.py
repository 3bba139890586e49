"""The penguins example on a real stack: no source, the holdout from arrivals, missing values.

Its params.yaml is used as shipped (examples/penguins/params.yaml); only the home and the
ports come from the environment. The drop files are cut from the vendored CSV here.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from arrivals.harness import RunningStack
from shared.events import FILE_REJECTED, file_resource_id
from shared.settings import PROJECT_ROOT
from tests.support.stack import stored_events

pytestmark = pytest.mark.e2e

EXAMPLE = PROJECT_ROOT / "examples" / "penguins"
CONFIG_FILE = EXAMPLE / "params.yaml"
FILES = 6
# Rows no model can use, one each in two files: a missing label, a mass that is not a number.
BAD_ROWS = {
    "penguins_2.csv": ",Dream,40.1,18.2,190,3900,female,2008",
    "penguins_4.csv": "Gentoo,Biscoe,47.0,15.0,215,heavy,male,2008",
}


def make_drops(folder: Path) -> dict[str, int]:
    """Six files of ~57 rows from the vendored CSV, each with missing values; the last gzipped.

    Returns each file's name and its usable rows (all but the bad row it may hold).
    """
    header, *rows = (EXAMPLE / "penguins.csv").read_text(encoding="utf-8").splitlines()
    missing = [row for row in rows if "NA" in row.split(",")]
    complete = [row for row in rows if "NA" not in row.split(",")]
    random.Random(12).shuffle(complete)
    chunks: list[list[str]] = [[] for _ in range(FILES)]
    for i, row in enumerate(missing + complete):  # the 11 rows with NA go round first
        chunks[i % FILES].append(row)
    folder.mkdir(parents=True, exist_ok=True)
    usable = {}
    for number, chunk in enumerate(chunks, start=1):
        name = f"penguins_{number}.csv"
        usable_rows = len(chunk)
        if name in BAD_ROWS:
            chunk = [*chunk[:20], BAD_ROWS[name], *chunk[20:]]
        random.Random(number).shuffle(chunk)
        text = "\n".join([header, *chunk]) + "\n"
        if number == FILES:
            name += ".gz"
            (folder / name).write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            (folder / name).write_text(text, encoding="utf-8")
        usable[name] = usable_rows
    return usable


def rows_of(paths: list[Path], columns: list[str]) -> set[tuple]:
    frames = [pd.read_parquet(path)[columns] for path in paths]
    if not frames:
        return set()
    return set(pd.concat(frames).astype(str).itertuples(index=False, name=None))


def test_penguins_train_from_arrivals_alone(stack: RunningStack, tmp_path: Path) -> None:
    settings = stack.settings
    assert settings.dataset.source is None and settings.automation.producer is False
    deployments = stack.prefect("POST", "/deployments/filter", json={}).json()
    assert {d["name"] for d in deployments} == {"retrain-on-arrival"}, "no producer"

    drops = tmp_path / "drops"
    usable = make_drops(drops)
    (drops / "report.json").write_text('{"note": "not a table"}\n', encoding="utf-8")
    names = sorted(p.name for p in drops.iterdir())
    inbox = settings.dirs.inbox

    # One file first: its holdout rows are too few to judge on, so no champion yet.
    first = "penguins_1.csv"
    subprocess.run(["cp", str(drops / first), str(inbox)], check=True)
    record = stack.wait_terminal(first, timeout=300)
    assert record.state == "trained", record.reason
    held_first = len(pd.read_parquet(settings.dirs.holdout_rows / f"{record.sha256}.parquet"))
    assert 0 < held_first < settings.holdout.min_rows
    assert stack.status()["champion"] is None
    (version,) = stack.model_versions()
    assert "min_rows" in version["tags"]["arrivals.decision_reason"]

    # The rest with one `cp`: the holdout grows past min_rows.
    rest = [str(drops / n) for n in names if n != first]
    subprocess.run(["cp", *rest, str(inbox)], check=True)
    records = {name: stack.wait_terminal(name, timeout=300) for name in names}
    assert {n: r.state for n, r in records.items() if n in usable} == dict.fromkeys(
        usable, "trained"
    ), {n: r.reason for n, r in records.items()}

    # Not a CSV: rejected at the door, with a reason, in the quarantine, in a count.
    report = records["report.json"]
    assert report.state == "rejected"
    assert report.reason == "not a CSV: report.json; Arrivals reads .csv and .csv.gz files"
    quarantine = settings.dirs.quarantine
    assert json.loads((quarantine / "report.json.reason.json").read_text())["reason"] == (
        report.reason
    )
    (event,) = stored_events(stack, FILE_REJECTED, file_resource_id(report.sha256))
    assert event["payload"]["reason"] == report.reason

    # Bad rows dropped and listed; rows with missing values in nullable columns kept.
    for name in BAD_ROWS:
        total = usable[name] + 1
        assert records[name].reason.startswith(f"accepted {usable[name]} of {total} rows"), records[
            name
        ].reason
        listed = pd.read_csv(quarantine / f"{name}.rows.csv")
        assert len(listed) == 1 and "line" in listed.columns
    columns = list(settings.dataset.columns)
    accepted, held = settings.dirs.accepted, settings.dirs.holdout_rows
    for name, record in records.items():
        if name in usable:
            trained = pd.read_parquet(accepted / f"{record.sha256}.parquet")
            holdout = pd.read_parquet(held / f"{record.sha256}.parquet")
            assert len(trained) + len(holdout) == usable[name], name
    trained_nan = pd.concat(pd.read_parquet(p) for p in accepted.glob("*.parquet"))
    held_nan = pd.concat(pd.read_parquet(p) for p in held.glob("*.parquet"))
    assert pd.concat([trained_nan, held_nan])["sex"].isna().sum() == 11, "every NA row is used"

    # The holdout never shares a row with the training data.
    holdout_files = sorted(held.glob("*.parquet"))
    holdout_rows = rows_of(holdout_files, columns)
    assert holdout_rows and rows_of(sorted(accepted.glob("*.parquet")), columns)
    assert holdout_rows.isdisjoint(rows_of(sorted(accepted.glob("*.parquet")), columns))

    # Every file that came in is in exactly one count, and the inbox is empty.
    assert list(settings.dirs.inbox.iterdir()) == []
    status = stack.status()
    assert status["files"]["trained"] == len(usable)
    assert status["files"]["rejected"] == 1
    assert status["files"]["pending"] == 0 and status["files"]["duplicate"] == 0
    stack.assert_counts_match_ledger()

    # The holdout grew past min_rows from the arrivals: a champion exists.
    rows_held = sum(len(pd.read_parquet(p)) for p in holdout_files)
    assert rows_held >= settings.holdout.min_rows
    champion = status["champion"]
    assert champion is not None and champion["model"] == "arrivals-penguins", status
    assert champion["version"] != version["version"], "v1 was judged on too few rows"
