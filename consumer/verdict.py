"""Judge a round's challenger: score it, the champion and the prior baseline on the same
holdout rows, decide (consumer.decision), and when it lost with confidence find the new files
to blame (consumer.suspects), hold them out and judge the challenger trained without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext
from consumer.decision import Decision, decide
from consumer.ingest import Accepted, load_accepted
from consumer.judge import (
    Holdout,
    Interval,
    Scores,
    prior_scores,
    unpaired_interval,
    value_interval,
)
from consumer.publish import announce_suspects, load_version
from consumer.suspects import CannotTrain, find_culprits

if TYPE_CHECKING:
    import pandas as pd

    from consumer.registry import Champion, Registry
    from consumer.retrain import Trained

FRESH_MAX_ROWS = 50_000  # the newest rows the champion's fresh score reads


@dataclass(frozen=True)
class Judged:
    trained: Trained | None  # the challenger to register; None: every new file is suspect
    decision: Decision | None
    champion: Champion | None
    suspects: list[tuple[Accepted, str]]  # held out of training, with the evidence
    prequential: dict[str, float]  # the champion on rows that arrived after it was trained
    fresh: str | None  # the same, as a sentence for people


@dataclass(frozen=True)
class _Rows:
    x: pd.DataFrame
    labels: list[Any]
    holdout: Holdout


def _evaluation_rows(trained: Trained, ctx: RetrainContext) -> _Rows:
    """The holdout rows that have a label, their classes as indices, and their files."""
    import numpy as np

    from consumer.training import split_xy

    frame = trained.holdout.frame
    x, y = split_xy(frame, ctx.settings.dataset)
    labels = sorted(set(y.tolist()) | set(trained.result.train_labels.tolist()))
    index = {label: i for i, label in enumerate(labels)}
    groups = trained.holdout.groups
    if groups is not None:
        groups = np.asarray(groups)[frame.index.get_indexer(x.index)]
    y_index = np.array([index[v] for v in y.tolist()], dtype=int)
    return _Rows(x, labels, Holdout(y_index, [str(v) for v in labels], groups))


def _scores(model: Any, rows: _Rows) -> Scores:
    from consumer.training import class_probabilities

    return Scores(class_probabilities(model, rows.x, rows.labels))


def _decide(
    ctx: RetrainContext, trained: Trained, rows: _Rows, champion: Champion | None, model: Any
) -> tuple[Decision, Scores]:
    import numpy as np

    index = {label: i for i, label in enumerate(rows.labels)}
    train_y = np.array([index[v] for v in trained.result.train_labels.tolist()], dtype=int)
    challenger = _scores(trained.result.pipeline, rows)
    decision = decide(
        rows.holdout,
        challenger,
        None if model is None else _scores(model, rows),
        prior_scores(train_y, len(rows.labels), rows.holdout.rows),
        ctx.settings.promotion,
        champion_version=champion.version if champion else None,
        min_rows=ctx.settings.holdout.min_rows,
    )
    return decision, challenger


def judge_round(
    ctx: RetrainContext, trained: Trained, registry: Registry, *, round_no: int
) -> Judged:
    """Decide on the challenger; blame and hold out the new files that made it lose."""
    from consumer.retrain import retrain_without
    from consumer.training import NotTrainable

    promotion = ctx.settings.promotion
    champion = registry.champion()
    model = load_version(ctx, registry, champion.version) if champion else None
    rows = _evaluation_rows(trained, ctx)
    decision, with_all = _decide(ctx, trained, rows, champion, model)
    ctx.logger.info("Challenger: %s", decision.reason)
    suspects: list[tuple[Accepted, str]] = []
    if decision.blames_new_data and trained.new:
        models: dict[frozenset[str], Any] = {}  # each training once: both tests reuse it
        by_sha = {a.record.sha256: a for a in trained.new}

        def model_without(left_out: frozenset[str]) -> Any:
            if left_out not in models:
                try:
                    models[left_out] = retrain_without(ctx, trained, left_out).result.pipeline
                except NotTrainable as error:
                    raise CannotTrain(str(error)) from error
            return models[left_out]

        def disagreement(sha: str) -> Interval | None:
            own = _own_rows(ctx, by_sha[sha], rows.labels)
            if own is None:
                return None
            model = model_without(frozenset([sha]))
            metric = promotion.metric if len(set(own[1].y.tolist())) > 1 else "accuracy"
            return unpaired_interval(
                metric,
                (rows.holdout, _scores(model, rows)),
                (own[1], _scores(model, own[0])),
                confidence=promotion.confidence,
                resamples=promotion.resamples,
                seed=promotion.seed,
            )

        blamed = find_culprits(
            [a.record.sha256 for a in trained.new],
            lambda left_out: _scores(model_without(left_out), rows),
            with_all,
            rows.holdout,
            disagreement,
            metric=promotion.metric,
            confidence=promotion.confidence,
            resamples=promotion.resamples,
            seed=promotion.seed,
            leave_one_out_max=promotion.leave_one_out_max,
        )
        suspects = [
            (by_sha[b.file], f"{decision.reason}; {b.evidence(by_sha[b.file].record.name)}")
            for b in blamed
        ]
        if not suspects:
            ctx.logger.info("No single new file explains the loss: nothing held out")
    if suspects:
        left_out = frozenset(a.record.sha256 for a, _ in suspects)
        ctx.ledger.mark_suspect({a.record.sha256: r for a, r in suspects}, run_id=ctx.run_id)
        for accepted, reason in suspects:
            ctx.logger.warning("Suspect %s: %s", accepted.record.name, reason)
        announce_suspects(ctx, suspects, round_no)
        try:
            trained = retrain_without(ctx, trained, left_out)
        except NotTrainable:
            return Judged(None, None, champion, suspects, {}, None)
        if not trained.new:  # every new file is suspect: nothing new to register
            return Judged(None, None, champion, suspects, {}, None)
        rows = _evaluation_rows(trained, ctx)
        decision, _ = _decide(ctx, trained, rows, champion, model)
        ctx.logger.info("Challenger without the suspects: %s", decision.reason)
    prequential, fresh = _fresh_evidence(ctx, champion, model, trained.new)
    return Judged(trained, decision, champion, suspects, prequential, fresh)


def _own_rows(
    ctx: RetrainContext, accepted: Accepted, labels: list
) -> tuple[_Rows, Holdout] | None:
    """A new file's rows as an evaluation set (None: none has a label the model knows)."""
    import numpy as np

    from consumer.training import split_xy

    x, y = split_xy(accepted.frame, ctx.settings.dataset)
    index = {label: i for i, label in enumerate(labels)}
    known = y.isin(list(index)).to_numpy()
    if not known.any():
        return None
    x, y = x[known], y[known]
    rows = Holdout(np.array([index[v] for v in y.tolist()], dtype=int), [str(v) for v in labels])
    return _Rows(x, labels, rows), rows


def _fresh_evidence(
    ctx: RetrainContext, champion: Champion | None, model: Any, new: list[Accepted]
) -> tuple[dict[str, float], str | None]:
    """The champion scored on rows that arrived after it was trained: evidence no decision
    has used, next to its holdout score (a champion picked as the best of many noisy
    comparisons looks better on the holdout than it is)."""
    import numpy as np
    import pandas as pd

    from consumer.judge import METRIC_NAMES
    from consumer.training import evaluate, split_xy

    if champion is None or model is None:
        return {}, None
    later = [
        r
        for r in ctx.ledger.files("trained")
        if r.model_version is not None and int(r.model_version) > int(champion.version)
    ]
    frames = [load_accepted(ctx, r).assign(_file=r.sha256) for r in later]
    frames += [a.frame.assign(_file=a.record.sha256) for a in new]
    if not frames:
        return {}, None
    rows = pd.concat(frames, ignore_index=True).iloc[-FRESH_MAX_ROWS:]
    x, y = split_xy(rows, ctx.settings.dataset)
    if len(x) == 0:
        return {}, None
    prequential = {f"prequential_{k}": v for k, v in evaluate(model, x, y).items()}
    prequential["prequential_rows"] = float(len(x))
    metric = ctx.settings.promotion.metric
    if metric not in evaluate(model, x, y):
        return prequential, None
    labels = sorted(set(y.tolist()) | set(model.classes_.tolist()))
    index = {label: i for i, label in enumerate(labels)}
    holdout = Holdout(
        np.array([index[v] for v in y.tolist()], dtype=int),
        [str(v) for v in labels],
        rows.loc[x.index, "_file"].to_numpy(),
    )
    promotion = ctx.settings.promotion
    value, low, high = value_interval(
        metric,
        holdout,
        _scores(model, _Rows(x, labels, holdout)),
        confidence=promotion.confidence,
        resamples=promotion.resamples,
        seed=promotion.seed,
    )
    files = len(set(holdout.groups.tolist()))
    sentence = (
        f"Champion v{champion.version} on {len(x)} rows from {files} file(s) that arrived "
        f"after it was trained: {METRIC_NAMES.get(metric, metric)} {value:.3f} "
        f"[{promotion.confidence:.0%} CI {low:.3f}, {high:.3f}]"
    )
    return prequential, sentence


def best_clean_version(
    ctx: RetrainContext, registry: Registry, trained: Trained, versions: list[str], new: str
) -> tuple[str, float]:
    """The best of `versions` and the new one, each re-scored on the current holdout rows.

    Used when the champion was trained on a retracted file: it must move to a clean version
    whatever the comparison says. Ties go to the newest version (it saw the most clean data).
    """
    from consumer.judge import LOWER_IS_BETTER, metric_value

    metric = ctx.settings.promotion.metric
    rows = _evaluation_rows(trained, ctx)
    models = {v: load_version(ctx, registry, v) for v in versions if v != new}
    models[new] = trained.result.pipeline
    values = {v: metric_value(metric, rows.holdout, _scores(m, rows)) for v, m in models.items()}
    sign = -1 if metric in LOWER_IS_BETTER else 1
    best = max(values, key=lambda v: (sign * values[v], int(v)))
    return best, values[best]
