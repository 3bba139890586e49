"""A retrain round end to end in one process: ingest, train, judge, register, with a fake
registry and emitter (consumer.retrain, consumer.verdict, consumer.publish)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from producer.batches import select_batch
from shared.dataset import training_pool
from shared.events import CHAMPION_PROMOTED, FILE_SUSPECT, VERSION_REGISTERED
from shared.ledger import FileState
from shared.settings import Settings
from tests.support.contract import DECISION_TAGS
from tests.support.rigs import RetrainRig


@pytest.fixture
def rig(settings: Settings):
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


def _batch(settings: Settings, number: int) -> pd.DataFrame:
    pool = training_pool(settings.dataset, settings.holdout)
    return select_batch(pool, number, batch_size=22, seed=42, dataset_name="tips").rows


def _contradicting(settings: Settings, rows: int = 150, seed: int = 3) -> pd.DataFrame:
    """Rows whose label says the opposite of what the features say: big bills, small tips."""
    pool = training_pool(settings.dataset, settings.holdout)
    frame = pool.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    frame["tip"] = np.where(frame["total_bill"] > frame["total_bill"].median(), 1.0, 6.0)
    return frame


def test_first_round_promotes_with_all_decision_tags(rig: RetrainRig) -> None:
    rig.drop("b1.csv", _batch(rig.settings, 1))
    summary = rig.round()
    assert summary["version"] == "1" and summary["champion"] == "1"
    tags = rig.registry.tags["1"]
    assert set(DECISION_TAGS) <= set(tags)
    assert tags["arrivals.decision"] == "promoted"
    assert float(tags["arrivals.delta_ci_low"]) > 0  # beats the prior baseline with confidence
    assert "first version" in tags["arrivals.decision_reason"]
    assert rig.registry.artifacts["1"]["decision.json"]["versus_baseline"]["resamples"] == 2000
    assert [e.event for e in rig.emitter.delivered] == [VERSION_REGISTERED, CHAMPION_PROMOTED]


def test_a_contradicting_file_becomes_suspect_and_the_next_clean_one_is_judged_without_it(
    rig: RetrainRig,
) -> None:
    for number in (1, 2, 3):
        rig.drop(f"b{number}.csv", _batch(rig.settings, number))
        rig.round()
    bad = rig.drop("bad.csv", _contradicting(rig.settings))
    summary = rig.round()
    assert rig.ledger.get(bad).state == FileState.SUSPECT
    assert "without it" in rig.ledger.get(bad).reason
    (event,) = rig.emitter.named(FILE_SUSPECT)
    assert event.payload["name"] == "bad.csv" and "with bad.csv" in event.payload["reason"]
    assert summary.get("version") is None  # the only new file was the culprit: no version

    clean = rig.drop("b4.csv", _batch(rig.settings, 4))
    summary = rig.round()
    assert rig.ledger.get(clean).state == FileState.TRAINED
    version = summary["version"]
    assert bad not in {r.sha256 for r, _ in rig.ledger.files_of_version(version)}
    for v in rig.registry.tags:  # no version was ever trained on the suspect
        assert bad not in {r.sha256 for r, _ in rig.ledger.files_of_version(v)}


def test_clean_batches_raise_no_suspect(rig: RetrainRig) -> None:
    for number in range(1, 9):
        rig.drop(f"b{number}.csv", _batch(rig.settings, number))
        rig.round()
    assert rig.ledger.counts()["suspect"] == 0
    assert not rig.emitter.named(FILE_SUSPECT)
    champion = rig.registry.aliases["champion"]
    for version, tags in rig.registry.tags.items():
        assert set(DECISION_TAGS) <= set(tags), version
        if tags["arrivals.decision"] == "promoted" and version != "1":
            assert float(tags["arrivals.delta_ci_low"]) > 0
    assert float(rig.registry.metrics[champion]["roc_auc"]) >= 0.75


def test_accepting_a_suspect_makes_it_training_data_again(rig: RetrainRig) -> None:
    for number in (1, 2):
        rig.drop(f"b{number}.csv", _batch(rig.settings, number))
        rig.round()
    bad = rig.drop("bad.csv", _contradicting(rig.settings))
    rig.round()
    assert rig.ledger.accept_suspect(bad, "accepted by an operator")
    summary = rig.round()  # a rebuild: no new file
    lineage = {r.sha256: new for r, new in rig.ledger.files_of_version(summary["version"])}
    assert lineage[bad] is True  # first trained here
    assert rig.ledger.get(bad).model_version == summary["version"]


def test_a_suspect_can_be_retracted(rig: RetrainRig, tmp_path: Path) -> None:
    rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.round()
    bad = rig.drop("bad.csv", _contradicting(rig.settings))
    rig.round()
    assert rig.ledger.get(bad).state == FileState.SUSPECT
    assert rig.ledger.retract(bad, "bad labels")
    assert rig.ledger.get(bad).state == "retracted"


def test_retracting_a_file_the_champion_used_moves_the_champion_without_a_promotion(
    rig: RetrainRig,
) -> None:
    first = rig.drop("b1.csv", _batch(rig.settings, 1))
    rig.round()
    rig.drop("b2.csv", _batch(rig.settings, 2))
    rig.round()
    before = rig.registry.aliases["champion"]  # trained on b1, whichever it is
    assert first in {r.sha256 for r, _ in rig.ledger.files_of_version(before)}
    assert rig.ledger.retract(first, "wrong export")
    summary = rig.round()  # a rebuild without b1
    champion = rig.registry.aliases["champion"]
    assert first not in {r.sha256 for r, _ in rig.ledger.files_of_version(champion)}
    assert summary["champion_moved"] and rig.registry.aliases["previous_champion"] == before
    tags = rig.registry.tags[summary["version"]]
    expected = "replaced a retracted champion" if champion == summary["version"] else "kept"
    assert tags["arrivals.decision"].startswith(expected)
    assert "trained on a retracted file" in tags["arrivals.decision_reason"]
