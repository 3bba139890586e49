"""Judge a round's challenger: score it, the champion and the prior baseline on the same
holdout rows, decide (consumer.decision), and when it lost with confidence find the new files
to blame (consumer.suspects), hold them out and judge the challenger trained without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from consumer.context import RetrainContext
from consumer.decision import Decision, decide
from consumer.fitting import Trained, files_in_window, fit, retrain_without
from consumer.ingest import Accepted, load_accepted
from consumer.judge import (
    LOWER_IS_BETTER,
    METRIC_NAMES,
    LabelledRows,
    Scores,
    metric_value,
    paired_interval,
    prior_scores,
    unpaired_interval,
    value_interval,
)
from consumer.publish import announce_suspects, load_version
from consumer.suspects import Blame, CannotTrain, Disagreement, bracket, find_culprits
from shared.ledger import FileState

if TYPE_CHECKING:
    import pandas as pd

    from consumer.registry import Champion, Registry

FRESH_MAX_ROWS = 50_000  # the newest rows the champion's fresh score reads


@dataclass(frozen=True)
class Judged:
    trained: Trained | None  # the challenger to register; None: no new file left to train
    decision: Decision | None
    champion: Champion | None
    suspects: list[tuple[Accepted, str]]  # held out of training, with the evidence
    prequential: dict[str, float]  # the champion on rows that arrived after it was trained
    fresh: str | None  # the same, as a sentence for people
    champion_metrics: dict[str, float] | None = None  # the champion on today's holdout rows


@dataclass(frozen=True)
class _Rows:
    x: pd.DataFrame
    labels: list[Any]
    holdout: LabelledRows


def _evaluation_rows(trained: Trained, ctx: RetrainContext, *models: Any) -> _Rows:
    """The holdout rows that have a label, their classes as indices, and their files.

    The classes are every one the holdout, the challenger's training rows or any of `models`
    (a champion trained on a class the current data lacks) knows."""
    # scikit-learn (under consumer.training) costs a second to import: loaded when judging.
    from consumer.training import split_xy

    frame = trained.holdout.frame
    x, y = split_xy(frame, ctx.settings.dataset)
    known = set(y.tolist()) | set(trained.result.train_labels.tolist())
    labels = sorted(known.union(*(m.classes_.tolist() for m in models if m is not None)))
    groups = trained.holdout.groups
    if groups is not None:
        groups = np.asarray(groups)[frame.index.get_indexer(x.index)]
    return _Rows(x, labels, LabelledRows(_indices(y, labels), [str(v) for v in labels], groups))


def _indices(values: Any, labels: list) -> np.ndarray:
    """Each value's position in `labels` (values not in `labels` are left out)."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[v] for v in list(values) if v in index], dtype=int)


def _scores(model: Any, rows: _Rows) -> Scores:
    from consumer.training import class_probabilities  # scikit-learn: see judge_round

    return Scores(class_probabilities(model, rows.x, rows.labels))


def _decide(
    ctx: RetrainContext, trained: Trained, rows: _Rows, champion: Champion | None, model: Any
) -> tuple[Decision, Scores]:
    train_y = _indices(trained.result.train_labels, rows.labels)
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
    # pandas and scikit-learn cost seconds to import: loaded when a round is judged.
    from consumer.holdout import load_holdout
    from consumer.training import NotTrainable

    promotion = ctx.settings.promotion
    champion = registry.champion()
    model = load_version(ctx, registry, champion.version) if champion else None
    rows = _evaluation_rows(trained, ctx, model)
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

        def disagreement(sha: str) -> Disagreement | None:
            return _disagreement(ctx, trained, rows, by_sha[sha], model_without(frozenset([sha])))

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
        suspects = [(by_sha[b.file], _suspect_reason(decision, b, by_sha[b.file])) for b in blamed]
        if not suspects:
            ctx.logger.info("No single new file explains the loss: nothing held out")
    if suspects:
        left_out = frozenset(a.record.sha256 for a, _ in suspects)
        ctx.ledger.mark_suspect({a.record.sha256: r for a, r in suspects}, run_id=ctx.run_id)
        for accepted, reason in suspects:
            ctx.logger.warning("Suspect %s: %s", accepted.record.name, reason)
        announce_suspects(ctx, suspects, round_no)
        # With no source, a suspect's own holdout rows leave the holdout with it.
        remaining = [a.record.sha256 for a in trained.new if a.record.sha256 not in left_out]
        try:
            holdout = load_holdout(ctx.settings, ctx.ledger, remaining)
            trained = retrain_without(ctx, trained, left_out, holdout)
        except NotTrainable:
            return Judged(None, None, champion, suspects, {}, None)
        if not trained.new:  # every new file is suspect: nothing new to register
            return Judged(None, None, champion, suspects, {}, None)
        rows = _evaluation_rows(trained, ctx, model)
        decision, _ = _decide(ctx, trained, rows, champion, model)
        ctx.logger.info("Challenger without the suspects: %s", decision.reason)
    prequential, fresh = _fresh_evidence(ctx, champion, model, trained.new)
    return Judged(
        trained, decision, champion, suspects, prequential, fresh, _rescored(ctx, trained, model)
    )


def _suspect_reason(decision: Decision, blame: Blame, accepted: Accepted) -> str:
    """The ledger's reason for a suspect: the loss, the evidence, and its dropped rows."""
    reason = f"{decision.reason}; {blame.evidence(accepted.record.name)}"
    return f"{reason} ({accepted.rows_note})" if accepted.dropped else reason


def _rescored(ctx: RetrainContext, trained: Trained, model: Any) -> dict[str, float] | None:
    """Every metric of the champion on the rows the challenger was scored on."""
    from consumer.training import evaluate, split_xy  # scikit-learn: see judge_round

    if model is None:
        return None
    x, y = split_xy(trained.holdout.frame, ctx.settings.dataset)
    return evaluate(model, x, y)


def _disagreement(
    ctx: RetrainContext, trained: Trained, rows: _Rows, accepted: Accepted, without: Any
) -> Disagreement | None:
    """How much a new file disagrees with the rest, by the stronger of two checks:
    a model trained on it alone vs the prior baseline on the holdout, and the model trained
    without it on the file's own rows vs on the holdout."""
    from consumer.training import NotTrainable  # scikit-learn: see judge_round

    promotion = ctx.settings.promotion
    settings = {
        "confidence": promotion.confidence,
        "resamples": promotion.resamples,
        "seed": promotion.seed,
    }
    metric = METRIC_NAMES.get(promotion.metric, promotion.metric)
    found: list[Disagreement] = []
    try:
        alone = fit(ctx, trained.earlier_rows.iloc[0:0], [accepted], trained.holdout)
    except NotTrainable:
        alone = None
    if alone is not None:
        train_y = _indices(alone.train_labels, rows.labels)
        baseline = prior_scores(train_y, len(rows.labels), rows.holdout.rows)
        below = paired_interval(
            promotion.metric, rows.holdout, baseline, _scores(alone.pipeline, rows), **settings
        )
        found.append(
            Disagreement(
                below,
                f"a model trained on it alone scores the holdout {metric} {below.b:.3f}, "
                f"below the prior baseline's {below.a:.3f} by {bracket(below)}",
            )
        )
    own = _own_rows(ctx, accepted, rows.labels)
    if own is not None:
        own_metric = promotion.metric if len(set(own[1].y.tolist())) > 1 else "accuracy"
        worse = unpaired_interval(
            own_metric,
            (rows.holdout, _scores(without, rows)),
            (own[1], _scores(without, own[0])),
            **settings,
        )
        found.append(
            Disagreement(
                worse,
                f"a model that never saw it scores its rows "
                f"{METRIC_NAMES.get(own_metric, own_metric)} {worse.b:.3f} against "
                f"{worse.a:.3f} on the holdout ({bracket(worse)} in the holdout's favour)",
            )
        )
    usable = [d for d in found if np.isfinite(d.interval.low)]
    return max(usable, key=lambda d: d.interval.low, default=None)


def _own_rows(
    ctx: RetrainContext, accepted: Accepted, labels: list
) -> tuple[_Rows, LabelledRows] | None:
    """A new file's rows as an evaluation set (None: none has a label the model knows)."""
    from consumer.training import split_xy  # scikit-learn: see judge_round

    x, y = split_xy(accepted.frame, ctx.settings.dataset)
    known = y.isin(labels).to_numpy()
    if not known.any():
        return None
    x, y = x[known], y[known]
    rows = LabelledRows(_indices(y, labels), [str(v) for v in labels])
    return _Rows(x, labels, rows), rows


def _fresh_evidence(
    ctx: RetrainContext, champion: Champion | None, model: Any, new: list[Accepted]
) -> tuple[dict[str, float], str | None]:
    """The champion scored on rows that arrived after it was trained: evidence no decision
    has used, next to its holdout score (a champion picked as the best of many noisy
    comparisons looks better on the holdout than it is)."""
    # pandas and scikit-learn: see judge_round
    import pandas as pd

    from consumer.training import evaluate, split_xy

    if champion is None or model is None:
        return {}, None
    later = [
        r
        for r in ctx.ledger.files(FileState.TRAINED)
        if r.model_version is not None and int(r.model_version) > int(champion.version)
    ]
    # Only the newest files that fit the cap are read: the cost stays flat as files pile up.
    budget = FRESH_MAX_ROWS - sum(len(a.frame) for a in new)
    frames = [load_accepted(ctx, r).assign(_file=r.sha256) for r in files_in_window(later, budget)]
    frames += [a.frame.assign(_file=a.record.sha256) for a in new]
    if not frames:
        return {}, None
    rows = pd.concat(frames, ignore_index=True).iloc[-FRESH_MAX_ROWS:]
    x, y = split_xy(rows, ctx.settings.dataset)
    if len(x) == 0:
        return {}, None
    scored = evaluate(model, x, y)
    prequential = {f"prequential_{k}": v for k, v in scored.items()}
    prequential["prequential_rows"] = float(len(x))
    metric = ctx.settings.promotion.metric
    if metric not in scored:
        return prequential, None
    labels = sorted(set(y.tolist()) | set(model.classes_.tolist()))
    holdout = LabelledRows(
        _indices(y, labels),
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
    metric = ctx.settings.promotion.metric
    models = {v: load_version(ctx, registry, v) for v in versions if v != new}
    models[new] = trained.result.pipeline
    rows = _evaluation_rows(trained, ctx, *models.values())
    if rows.holdout.rows == 0:  # nothing to score on: the newest clean version
        return max(models, key=int), float("nan")
    values = {v: metric_value(metric, rows.holdout, _scores(m, rows)) for v, m in models.items()}
    sign = -1 if metric in LOWER_IS_BETTER else 1
    best = max(values, key=lambda v: (sign * values[v], int(v)))
    return best, values[best]
