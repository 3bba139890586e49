"""Which new files made a challenger lose (consumer.suspects), and no false alarms."""

from __future__ import annotations

import logging

import numpy as np

from consumer.judge import Interval, LabelledRows, Scores
from consumer.suspects import CannotTrain, Disagreement, find_culprits
from producer.batches import select_batch
from shared.dataset import training_pool
from shared.settings import Settings
from tests.support.rigs import RetrainRig

log = logging.getLogger(__name__)
ROWS = 300
Y = np.array([0, 1] * (ROWS // 2))
HOLDOUT = LabelledRows(Y, ["0", "1"])
SEARCH = {"metric": "roc_auc", "confidence": 0.95, "resamples": 1000, "seed": 0}


def scores(skill: float, seed: int) -> Scores:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-(skill * (2 * Y - 1) + rng.normal(size=ROWS))))
    return Scores(np.c_[1 - p, p])


def disagrees(_file: str) -> Disagreement:
    """The file's own rows are predicted far worse than the holdout."""
    return Disagreement(
        Interval("roc_auc", 0.8, 0.2, 0.6, 0.4, 0.8, 0.95, 0.1, 1000), "its own rows score 0.2"
    )


def agrees(_file: str) -> Disagreement:
    return Disagreement(
        Interval("roc_auc", 0.8, 0.78, 0.02, -0.1, 0.14, 0.95, 0.06, 1000), "they score 0.78"
    )


class Trainer:
    """A fake training: poor while any culprit is in, good once all culprits are out."""

    def __init__(self, culprits: set[str]) -> None:
        self.culprits = culprits
        self.calls: list[frozenset[str]] = []

    def __call__(self, left_out: frozenset[str]) -> Scores:
        self.calls.append(left_out)
        clean = self.culprits <= left_out
        return scores(1.5 if clean else 0.2, seed=len(left_out))


def search(files, trainer, check=disagrees, most=8):
    return find_culprits(
        files, trainer, scores(0.2, 0), HOLDOUT, check, leave_one_out_max=most, **SEARCH
    )


def test_leave_one_file_out_finds_the_culprit() -> None:
    trainer = Trainer({"b"})
    blamed = search(["a", "b", "c"], trainer)
    assert [b.file for b in blamed] == ["b"]
    assert blamed[0].gain.low > 0 and blamed[0].gain.a > blamed[0].gain.b
    assert len(trainer.calls) == 3
    evidence = blamed[0].evidence("b.csv")
    assert "with b.csv" in evidence and "without it" in evidence and "own rows" in evidence


def test_a_file_whose_rows_agree_with_the_rest_is_not_blamed() -> None:
    """Removal helps on the holdout, but the file's own rows look like everyone else's: the
    champion was lucky, not the file bad."""
    assert search(["b"], Trainer({"b"}), check=agrees) == []


def test_bisection_finds_one_culprit_among_many_in_few_trainings() -> None:
    files = [f"f{i:02d}" for i in range(64)]
    trainer = Trainer({"f41"})
    assert [b.file for b in search(files, trainer, most=4)] == ["f41"]
    assert len(trainer.calls) <= 2 * 4 + 4  # two halves per level (64 -> 4), then one each


def test_files_that_cannot_be_left_out_are_not_blamed() -> None:
    def cannot(_left_out: frozenset[str]) -> Scores:
        raise CannotTrain("nothing left")

    assert search(["only"], cannot) == []


def test_a_loss_no_single_file_explains_blames_nobody() -> None:
    assert search(["a", "b"], Trainer({"a", "b"})) == []  # both must go; neither alone helps


def test_clean_rounds_raise_no_false_alarm(settings: Settings) -> None:
    """20 shuffles of the tips pool, 8 clean 22-row batches each: 160 rounds through the
    retrain's own ingest, train and judge (a fake registry). No clean file is ever blamed;
    the observed rates are logged (`make bench` runs more)."""
    pool = training_pool(settings.dataset, settings.holdout)
    rounds = lost = 0
    for shuffle in range(20):
        rig = RetrainRig(
            settings.model_copy(
                update={
                    "paths": settings.paths.model_copy(
                        update={"home": settings.home / f"shuffle-{shuffle}"}
                    )
                }
            )
        )
        try:
            for number in range(1, 9):
                batch = select_batch(pool, number, batch_size=22, seed=shuffle, dataset_name="t")
                rig.drop(batch.file_name, batch.rows)
                summary = rig.round()
                rounds += 1
                lost += summary.get("outcome") in ("worse than champion", "below floor")
            assert rig.ledger.counts()["suspect"] == 0, f"shuffle {shuffle}"
        finally:
            rig.ledger.close()
    log.warning("clean rounds %d: challenger lost with confidence %d, blamed 0", rounds, lost)
    assert rounds == 160
