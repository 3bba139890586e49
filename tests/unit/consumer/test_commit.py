"""Committing a judged round (consumer.commit): the order of its writes, where the alias goes,
what the ledger records, and what a failure midway leaves for the next run."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from consumer import commit as committing
from consumer.commit import Commit, register_and_judge
from consumer.decision import KEPT
from consumer.publish import model_export
from consumer.verdict import Judged
from producer.batches import select_batch
from shared.dataset import training_pool
from shared.events import CHAMPION_PROMOTED, VERSION_REGISTERED
from shared.ledger import FileState
from shared.settings import Settings
from tests.support.fakes import FakeRegistry, RegistryDown
from tests.support.rigs import RetrainRig


@pytest.fixture
def rig(settings: Settings):
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


@pytest.fixture
def journaled_files(rig: RetrainRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local export and the history files, noted in the rig's journal when written."""
    for name, entry in (("export_version", "files.export"), ("write_history", "files.history")):
        original = getattr(committing, name)

        def journaled(*args, _original=original, _entry=entry, **kwargs):
            rig.journal.write(_entry)
            return _original(*args, **kwargs)

        monkeypatch.setattr(committing, name, journaled)


def _batch(settings: Settings, number: int) -> pd.DataFrame:
    pool = training_pool(settings.dataset, settings.holdout)
    return select_batch(pool, number, batch_size=22, seed=42, dataset_name="tips").rows


def _commit_writes(rig: RetrainRig) -> list[str]:
    """The journal from the registration on: the commit's own writes."""
    start = rig.journal.index("registry.log_and_register")
    return rig.journal[start:]


def _kept(judged: Judged) -> Judged:
    """The same round, judged not better than the champion."""
    assert judged.decision is not None
    return replace(judged, decision=replace(judged.decision, outcome=KEPT, reason="forced"))


# -- the order ----------------------------------------------------------------------------
def test_a_promoting_round_writes_in_commit_order(rig: RetrainRig, journaled_files: None) -> None:
    rig.drop("b1.csv", _batch(rig.settings, 1))
    summary = rig.round()
    assert summary["champion_moved"] and summary["version"] == "1"
    assert _commit_writes(rig) == [
        "registry.log_and_register",
        "ledger.record_lineage",
        "files.export",
        "registry.tag_version",  # the decision, before the alias and the ledger
        "registry.move_champion",
        "ledger.mark_trained",
        "ledger.assign_first_version",
        "files.history",
        "registry.log_figure",
        "events.emit",
    ]


class _WitnessRegistry(FakeRegistry):
    """Notes what is already true of the version when the alias moves to it."""

    def __init__(self, rig: RetrainRig) -> None:
        super().__init__(rig.journal)
        self.rig = rig
        self.at_alias_move: dict[str, object] = {}

    def move_champion(self, version: str, previous: str | None) -> None:
        rig = self.rig
        self.at_alias_move = {
            "decision tag": self.tags[version].get("arrivals.decision"),
            "exported": model_export(rig.context("observer"), version).exists(),
            "lineage": len(rig.ledger.files_of_version(version)),
            "file states": {r.state for r in rig.ledger.files()},
        }
        super().move_champion(version, previous)


def test_the_alias_moves_to_a_tagged_exported_version_before_its_files_are_trained(
    rig: RetrainRig,
) -> None:
    rig.registry = _WitnessRegistry(rig)
    rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.round()
    assert rig.registry.at_alias_move == {
        "decision tag": "promoted",
        "exported": True,
        "lineage": 1,
        "file states": {FileState.CLAIMED},  # not trained yet: a death here gives them back
    }
    assert rig.registry.aliases == {"champion": "1"}


# -- where the alias goes -----------------------------------------------------------------
def test_the_alias_stays_when_the_decision_keeps_the_champion(rig: RetrainRig) -> None:
    rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.round()
    second = rig.drop("b2.csv", _batch(rig.settings, 2))
    ctx = rig.context()
    judged, _accepted = rig.judged(ctx)
    before = len(rig.journal)

    summary = register_and_judge(ctx, _kept(judged), rig.registry)

    assert rig.registry.aliases == {"champion": "1"}
    assert "registry.move_champion" not in rig.journal[before:]
    assert not (summary["champion_moved"] or summary["promoted"])
    assert summary["version"] == "2" and summary["champion"] == "1"
    assert rig.registry.tags["2"]["arrivals.decision"] == KEPT
    assert rig.ledger.get(second).state == FileState.TRAINED  # kept: trained all the same
    assert [e.event for e in rig.emitter.delivered[-1:]] == [VERSION_REGISTERED]
    assert len(rig.emitter.named(CHAMPION_PROMOTED)) == 1  # the first round's only


def test_files_are_marked_trained_by_the_new_version_with_its_lineage(rig: RetrainRig) -> None:
    first = rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.round()
    second = rig.drop("b2.csv", _batch(rig.settings, 2))
    rig.round()
    record = rig.ledger.get(second)
    assert (record.state, record.model_version, record.claimed_by) == (
        FileState.TRAINED,
        "2",
        "run-2",
    )
    logged = {f["sha256"]: f for f in rig.registry.artifacts["2"]["lineage.json"]["files"]}
    assert record.rows == logged[second]["rows"] > 0
    lineage = {r.sha256: new for r, new in rig.ledger.files_of_version("2")}
    assert lineage == {first: False, second: True}  # b1 is new in v1 only
    assert {sha: f["new"] for sha, f in logged.items()} == lineage  # the registry agrees
    assert rig.ledger.get(first).model_version == "1"


# -- a failure midway ---------------------------------------------------------------------
def test_a_registry_failure_at_the_alias_move_leaves_the_files_claimed_and_the_version_discarded(
    rig: RetrainRig,
) -> None:
    sha = rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.registry.fail_on = "move_champion"
    with pytest.raises(RegistryDown):
        rig.round("run-dead")
    record = rig.ledger.get(sha)
    assert (record.state, record.model_version) == (FileState.CLAIMED, None)
    assert rig.registry.tags["1"]["arrivals.decision"] == "promoted"  # tagged, holds no alias
    assert rig.registry.aliases == {}
    assert rig.ledger.release_claims("run-dead") == 1  # what the flow does on a failure

    rig.registry.fail_on = None
    summary = rig.round("run-next")

    assert rig.registry.deleted == ["1"]  # its file came back: it would count twice
    assert rig.ledger.files_of_version("1") == []
    assert not model_export(rig.context("observer"), "1").exists()
    assert summary["version"] == "2" and rig.registry.aliases == {"champion": "2"}
    assert rig.ledger.get(sha).model_version == "2"


def test_a_registry_failure_at_registration_writes_nothing_to_the_ledger(rig: RetrainRig) -> None:
    sha = rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.registry.fail_on = "log_and_register"
    with pytest.raises(RegistryDown):
        rig.round()
    assert rig.journal[-1] == "registry.log_and_register"
    assert rig.ledger.get(sha).state == FileState.CLAIMED
    assert rig.registry.models == {} and rig.registry.aliases == {}


def test_a_round_without_a_challenger_is_not_committed(rig: RetrainRig) -> None:
    judged = Judged(None, None, None, [], {}, None)
    with pytest.raises(ValueError, match="no challenger"):
        Commit.of(rig.context(), judged, rig.registry)
