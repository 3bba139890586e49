"""A full data folder during a retrain (issue 16): the files it has no room for wait, with a
note saying why, while the run trains the rest; they train once, exactly once, when there is
room again. A move interrupted before the ledger heard of it is found, not called vanished.

The runs here are `consumer.flows.run_rounds` with the flow's own round (`_train_round`),
its Prefect tasks called as plain functions, on the rig's ledger, registry and emitter.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from consumer import commit, flows
from consumer import ingest as ingesting
from consumer import retrain as stages
from producer.batches import select_batch
from shared.dataset import training_pool
from shared.events import FILE_REJECTED
from shared.ledger import FileState, Ledger
from shared.settings import Settings, load_settings
from tests.support.fakes import FakeClock
from tests.support.full_disk import FullDisk, temp_files
from tests.support.rigs import RetrainRig


@pytest.fixture
def plain_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The round's Prefect tasks as plain functions (no Prefect run, no artifact)."""
    for name in ("ingest_files", "train_model", "judge_challenger"):
        monkeypatch.setattr(flows, name, getattr(flows, name).fn)
    monkeypatch.setattr(
        flows,
        "register_and_judge",
        lambda ctx, judged: commit.register_and_judge(ctx, judged, ctx.model_registry()),
    )


def _rig(settings: Settings):
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


@pytest.fixture
def rig(settings: Settings, plain_tasks: None):
    yield from _rig(settings)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(monkeypatch)


def run(rig: RetrainRig, run_id: str) -> list[dict]:
    """One retrain run, as the flow runs it: rounds until nothing is claimable."""
    return flows.run_rounds(
        rig.context(run_id),
        flows.RoundSteps(claim=stages.claim, train_round=flows._train_round),
        rebuild=False,
        announced=[],
        window_seconds=0.0,
        trigger="a test",
    )


def batch(settings: Settings, number: int) -> pd.DataFrame:
    pool = training_pool(settings.dataset, settings.holdout)
    return select_batch(pool, number, batch_size=22, seed=42, dataset_name="tips").rows


def new_in(rig: RetrainRig, sha: str) -> list[str]:
    """The versions that trained on `sha` for the first time (exactly one, once trained)."""
    return [
        version
        for version in rig.registry.tags
        if any(r.sha256 == sha and new for r, new in rig.ledger.files_of_version(version))
    ]


def in_folder(folder: Path, sha: str) -> Callable[[Path], bool]:
    return lambda path: path.parent == folder and sha in path.name


# -- a full data folder -----------------------------------------------------------------------
def test_a_file_with_no_room_waits_with_a_note_while_the_run_trains_the_rest(
    rig: RetrainRig, disk: FullDisk
) -> None:
    dirs = rig.settings.dirs
    first = rig.drop("b1.csv", batch(rig.settings, 1))
    second = rig.drop("b2.csv", batch(rig.settings, 2))
    disk.fill(in_folder(dirs.accepted, second))

    (summary,) = run(rig, "run-1")  # no error: one round, and the file is not taken again

    assert (summary["version"], summary["files"], summary["waiting"]) == (
        "1",
        ["b1.csv"],
        ["b2.csv"],
    )
    assert rig.ledger.get(first).state == FileState.TRAINED
    waiting = rig.ledger.get(second)
    assert waiting.state == FileState.ANNOUNCED, "given back at the run's end, claimable again"
    assert waiting.claimed_by is None, "no partial work of run-1 for the next claimer to undo"
    assert waiting.reason == (
        f"waiting for space: {dirs.data} is full "
        f"(no space left on device writing accepted/{second}.parquet)"
    )
    assert disk.refused == [dirs.accepted / f"{second}.parquet"]
    assert not (dirs.accepted / f"{second}.parquet").exists()
    assert temp_files(dirs.data) == [], "no half-written file anywhere"
    assert waiting.stored_path == str(dirs.archive / "b2.csv")  # where the file is
    assert Path(waiting.stored_path).is_file()
    assert rig.ledger.waiting_for_space() == 1
    assert new_in(rig, second) == []

    disk.free()
    (summary,) = run(rig, "run-2")
    assert summary["files"] == ["b2.csv"] and "waiting" not in summary
    trained = rig.ledger.get(second)
    assert (trained.state, trained.reason) == (FileState.TRAINED, None), "the note is gone"
    assert new_in(rig, second) == [summary["version"]], "trained once, exactly once"
    assert new_in(rig, first) == ["1"]
    assert (dirs.accepted / f"{second}.parquet").is_file()
    assert rig.ledger.waiting_for_space() == 0
    assert run(rig, "run-3") == [], "nothing left over"


def test_a_waiting_file_is_announced_again_after_reannounce_after_seconds(
    rig: RetrainRig, disk: FullDisk
) -> None:
    sha = rig.drop("b1.csv", batch(rig.settings, 1))
    disk.fill(in_folder(rig.settings.dirs.accepted, sha))
    (summary,) = run(rig, "run-1")
    assert summary == {"version": None, "files": [], "rejected": [], "waiting": ["b1.csv"]}
    assert rig.registry.tags == {}, "nothing trained, nothing registered"

    # The sensor's sweep: an announced file no run took is announced again, once its time came.
    after = rig.settings.sensor.reannounce_after_seconds
    announced_at = rig.ledger.get(sha).announced_at
    for waited, straggles in ((after - 1, False), (after + 1, True)):
        sweep = Ledger(rig.settings.ledger_url, clock=FakeClock(announced_at + waited))
        assert (sha in {r.sha256 for r in sweep.stragglers(after)}) is straggles
        sweep.close()


def test_rows_the_quarantine_has_no_room_for_make_the_file_wait(
    rig: RetrainRig, disk: FullDisk
) -> None:
    dirs = rig.settings.dirs
    frame = batch(rig.settings, 1)
    frame.loc[3, "tip"] = -1.0  # one bad row: the file is accepted without it
    sha = rig.drop("b1.csv", frame)
    disk.fill(lambda path: path.parent == dirs.quarantine)
    run(rig, "run-1")
    assert rig.ledger.get(sha).reason.endswith("writing quarantine/b1.csv.rows.csv)")
    assert rig.ledger.get(sha).state == FileState.ANNOUNCED

    disk.free()
    run(rig, "run-2")
    record = rig.ledger.get(sha)
    assert record.state == FileState.TRAINED
    assert record.reason == "accepted 21 of 22 rows (1 dropped: see quarantine/b1.csv.rows.csv)"
    assert temp_files(dirs.data) == []


def test_holdout_rows_with_no_room_make_the_file_wait(
    write_config, plain_tasks: None, disk: FullDisk
) -> None:
    settings = load_settings(write_config(lambda p: p["dataset"].pop("source")))
    dirs = settings.dirs
    for rig in _rig(settings):
        frame = pd.concat([batch(load_settings(), n) for n in (1, 2, 3)], ignore_index=True)
        sha = rig.drop("b1.csv", frame)
        disk.fill(lambda path: path.parent == dirs.holdout_rows)
        run(rig, "run-1")
        assert rig.ledger.get(sha).reason.endswith(f"writing holdout/{sha}.parquet)")
        disk.free()
        run(rig, "run-2")
        assert rig.ledger.get(sha).state == FileState.TRAINED
        assert (dirs.holdout_rows / f"{sha}.parquet").is_file()


def test_a_quota_says_so_and_waits_too(rig: RetrainRig, monkeypatch: pytest.MonkeyPatch) -> None:
    def over_quota(path: Path, data: bytes) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path))

    monkeypatch.setattr(ingesting, "atomic_write_bytes", over_quota)
    sha = rig.drop("b1.csv", batch(rig.settings, 1))
    run(rig, "run-1")
    assert rig.ledger.get(sha).reason == (
        f"waiting for space: {rig.settings.dirs.data} is over quota "
        f"(disk quota exceeded writing accepted/{sha}.parquet)"
    )


def test_any_other_write_error_still_fails_the_run_and_gives_the_files_back(
    rig: RetrainRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: Path, data: bytes) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(ingesting, "atomic_write_bytes", denied)
    sha = rig.drop("b1.csv", batch(rig.settings, 1))
    with pytest.raises(PermissionError):
        run(rig, "run-1")
    record = rig.ledger.get(sha)
    assert (record.state, record.reason) == (FileState.ANNOUNCED, None)


# -- a rejection, and moves the ledger did not hear of ----------------------------------------
BROKEN = pd.DataFrame({"not": [1], "tips": [2]})  # wrong header: rejected whole


def test_a_rejection_with_no_room_for_its_sidecar_waits_where_the_ledger_says(
    rig: RetrainRig, disk: FullDisk
) -> None:
    dirs = rig.settings.dirs
    sha = rig.drop("bad.csv", BROKEN)
    disk.fill(lambda path: path.parent == dirs.quarantine)
    run(rig, "run-1")
    waiting = rig.ledger.get(sha)
    assert waiting.state == FileState.ANNOUNCED
    assert waiting.reason.endswith("writing quarantine/bad.csv.reason.json)")
    assert waiting.stored_path == str(dirs.inbox / "bad.csv")
    assert (dirs.inbox / "bad.csv").is_file(), "the file stays where the ledger says it is"
    assert list(dirs.quarantine.iterdir()) == []
    assert rig.emitter.named(FILE_REJECTED) == []

    disk.free()
    run(rig, "run-2")
    rejected = rig.ledger.get(sha)
    assert rejected.state == FileState.REJECTED
    assert rejected.reason.startswith("missing column(s) "), "its own reason, not vanished"
    assert rejected.stored_path == str(dirs.quarantine / "bad.csv")
    assert (dirs.quarantine / "bad.csv.reason.json").is_file()
    (event,) = rig.emitter.named(FILE_REJECTED)
    assert event.payload["reason"] == rejected.reason


@pytest.mark.parametrize("taken", [False, True], ids=["own-name", "name-taken"])
def test_a_file_moved_to_the_quarantine_before_the_ledger_knew_is_rejected_for_its_reason(
    rig: RetrainRig, taken: bool
) -> None:
    """A run killed between the move and its ledger write: the next one finds the file."""
    dirs = rig.settings.dirs
    sha = rig.drop("bad.csv", BROKEN)
    if taken:  # another file of that name was quarantined before: the move numbered it
        (dirs.quarantine / "bad.csv").write_text("other,content\n1,2\n")
    moved = dirs.quarantine / ("bad-1.csv" if taken else "bad.csv")
    os.replace(dirs.inbox / "bad.csv", moved)

    run(rig, "run-1")
    record = rig.ledger.get(sha)
    assert record.state == FileState.REJECTED
    assert record.reason.startswith("missing column(s) "), "its own reason, not vanished"
    assert record.stored_path == str(moved)
    assert (dirs.quarantine / f"{moved.name}.reason.json").is_file()
    assert sorted(p.name for p in dirs.quarantine.glob("bad*.csv")) == (
        ["bad-1.csv", "bad.csv"] if taken else ["bad.csv"]
    ), "not moved again"


def test_a_file_moved_to_the_archive_before_the_ledger_knew_trains(rig: RetrainRig) -> None:
    dirs = rig.settings.dirs
    sha = rig.drop("b1.csv", batch(rig.settings, 1))
    os.replace(dirs.inbox / "b1.csv", dirs.archive / "b1.csv")
    (summary,) = run(rig, "run-1")
    assert summary["files"] == ["b1.csv"]
    record = rig.ledger.get(sha)
    assert (record.state, record.stored_path) == (FileState.TRAINED, str(dirs.archive / "b1.csv"))


def test_another_file_of_that_name_in_the_archive_is_not_taken_for_it(rig: RetrainRig) -> None:
    dirs = rig.settings.dirs
    sha = rig.drop("b1.csv", batch(rig.settings, 1))
    original = (dirs.inbox / "b1.csv").read_bytes()
    (dirs.inbox / "b1.csv").unlink()
    # Same name, same size, a valid file: but other content, so not it.
    other = original[:-2] + bytes([original[-2] ^ 1]) + original[-1:]
    (dirs.archive / "b1.csv").write_bytes(other)
    run(rig, "run-1")
    record = rig.ledger.get(sha)
    assert record.state == FileState.REJECTED
    assert record.reason.startswith("file vanished from ")


def test_the_space_note_names_the_folder_and_the_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    full = OSError(errno.ENOSPC, "No space left on device", str(data / "accepted" / "x.parquet"))
    assert ingesting.space_note(data, full) == (
        f"waiting for space: {data} is full (no space left on device writing accepted/x.parquet)"
    )
    rename = OSError(errno.ENOSPC, "No space left on device", "/a", None, str(data / "archive"))
    assert ingesting.space_note(data, rename).endswith("writing archive)")
    bare = OSError(errno.ENOSPC, "No space left on device")
    assert ingesting.space_note(data, bare).endswith("is full (no space left on device)")
