"""Fitting a challenger: the training a round judges, and the same one without some files.

Shared by `consumer.retrain` (the first fit of a round) and `consumer.verdict` (the fits
without the suspects), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consumer.context import RetrainContext
from consumer.ingest import Accepted

if TYPE_CHECKING:
    import pandas as pd

    from consumer.holdout import Holdout
    from consumer.training import TrainResult
    from shared.ledger import FileRecord

LARGE_ROWS = 100_000  # from this size on a retrain logs each step (reading, fitting)


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    new: list[Accepted]
    earlier: list[FileRecord]  # the accepted files this training read besides the new ones
    earlier_rows: pd.DataFrame  # their rows, so a retrain without a new file reads nothing
    holdout: Holdout


def files_in_window(earlier: list[FileRecord], budget: int) -> list[FileRecord]:
    """The newest earlier files whose rows fit in `budget` (the oldest one may be cut)."""
    chosen: list[FileRecord] = []
    for record in reversed(earlier):
        if budget <= 0:
            break
        chosen.append(record)
        budget -= record.rows or 0
    return chosen[::-1]


def fit(
    ctx: RetrainContext, earlier_rows: pd.DataFrame, new: list[Accepted], holdout: Holdout
) -> TrainResult:
    """Train on `earlier_rows` plus the new files' rows (the policy applied), score on holdout."""
    # pandas and scikit-learn cost seconds to import: a flow-run process loads them only when
    # it trains.
    import pandas as pd

    from consumer.training import NotTrainable, apply_policy, train_and_evaluate

    settings = ctx.settings
    frames = [f for f in [earlier_rows, *(a.frame for a in new)] if len(f)]
    if not frames:
        raise NotTrainable("no accepted data to train on")
    accepted = apply_policy(pd.concat(frames, ignore_index=True), settings.training)
    if len(accepted) >= LARGE_ROWS:
        ctx.logger.info(
            "Fitting %s on %d rows (policy %s)…",
            settings.model.kind,
            len(accepted),
            settings.training.policy,
        )
    with ctx.timer.stage("fit_and_evaluate"):
        return train_and_evaluate(accepted, holdout.frame, settings.dataset, settings.model)


def retrain_without(
    ctx: RetrainContext,
    trained: Trained,
    left_out: frozenset[str],
    holdout: Holdout | None = None,
) -> Trained:
    """The same training with some of the round's new files left out (on `holdout`, else
    the same holdout)."""
    new = [a for a in trained.new if a.record.sha256 not in left_out]
    holdout = holdout or trained.holdout
    result = fit(ctx, trained.earlier_rows, new, holdout)
    return Trained(result, new, trained.earlier, trained.earlier_rows, holdout)
