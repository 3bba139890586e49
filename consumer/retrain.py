"""The retrain, stage by stage, with no Prefect in it (the flow wraps each stage in a task).

claim -> ingest (`consumer.ingest`) -> train -> judge (`consumer.verdict`) -> register (the
commit steps, in order, here) -> publish (`consumer.publish`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext
from consumer.decision import KEPT, REPLACED_RETRACTED
from consumer.ingest import Accepted, load_accepted
from consumer.publish import (
    announce_model,
    decision_record,
    export_version,
    model_export,
    promote_export,
    round_summary,
    write_history,
)
from consumer.verdict import Judged, best_clean_version
from shared.ledger import RETRACTED, TRAINED

if TYPE_CHECKING:
    import pandas as pd

    from consumer.holdout import Holdout
    from consumer.registry import Registry
    from consumer.training import TrainResult
    from shared.ledger import FileRecord, Ledger

LARGE_ROWS = 100_000  # from this size on a retrain logs each step (reading, fitting)


def claim(ctx: RetrainContext) -> list[FileRecord]:
    """Take every announced file (and expired claims): one run trains them together."""
    return ctx.ledger.claim_pending(ctx.run_id, ttl_seconds=ctx.settings.consumer.claim_ttl_seconds)


# How long after a trigger's window a run still listens. The sensor records a file in the
# ledger before it builds the file's event, and marks it announced (claimable) as soon as
# Prefect accepts the event: about 10 ms here. A second covers a busy machine; a file later
# still is announced again by the sensor's sweep.
ANNOUNCE_MARGIN_SECONDS = 1.0
LISTEN_POLL_SECONDS = 0.2


def listen_until(announced_at: Iterable[float], window_seconds: float) -> float | None:
    """Until when (epoch seconds) a run must keep taking arrivals; None: not at all.

    The retrain automation's reactive trigger fires on an arrival, then ignores arrivals for
    up to `window_seconds` after that event (automations/retrain_on_arrival.yaml). Any
    arrival this run saw announced may have opened such a window: the event that started it,
    and every file it claimed (their own runs were cancelled by single flight, their windows
    still count). Nobody else will take what lands in those windows, so the run listens
    until the last of them has closed instead of leaving it to the sensor's sweep.
    """
    latest = max(announced_at, default=None)
    if latest is None or window_seconds <= 0:
        return None
    return latest + window_seconds + ANNOUNCE_MARGIN_SECONDS


def await_arrival(
    ledger: Ledger,
    until: float | None,
    *,
    poll_seconds: float = LISTEN_POLL_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until a file is claimable (True) or `until` has passed (False)."""
    while not ledger.has_claimable():
        remaining = (until or 0.0) - clock()
        if remaining <= 0:
            return False
        sleep(min(poll_seconds, remaining))
    return True


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


def train(ctx: RetrainContext, new: list[Accepted]) -> Trained:
    """Fit on the accepted data (all, or what the training policy keeps) plus the new files."""
    import pandas as pd

    from consumer.holdout import load_holdout

    settings = ctx.settings
    earlier = ctx.ledger.files(TRAINED)
    if settings.training.policy == "window":
        # Read only the files the window can reach: the cost stays flat as data grows.
        new_rows = sum(len(a.frame) for a in new)
        earlier = files_in_window(earlier, settings.training.max_rows - new_rows)
    earlier_count = sum(r.rows or 0 for r in earlier)
    if earlier_count >= LARGE_ROWS:  # a large retrain says what it is doing
        ctx.logger.info("Reading %d accepted file(s), %d rows", len(earlier), earlier_count)
    with ctx.timer.stage("read"):
        frames = [load_accepted(ctx, r) for r in earlier]
    earlier_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    # This round's files count: with no source their holdout rows are the holdout's newest
    # (and in the first round its only ones).
    holdout = load_holdout(settings, ctx.ledger, [a.record.sha256 for a in new])
    result = fit(ctx, earlier_rows, new, holdout)
    ctx.logger.info(
        "Trained on %d rows from %d file(s) (%d new, policy %s); holdout (%s) %s",
        result.train_rows,
        len(earlier) + len(new),
        len(new),
        settings.training.policy,
        holdout.description,
        {k: round(v, 4) for k, v in result.metrics.items()},
    )
    return Trained(result, new, earlier, earlier_rows, holdout)


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


def _lineage(trained: Trained) -> list[dict[str, Any]]:
    # An earlier file is new here when no version has it yet (kept without a model, or a
    # suspect a person accepted): every trained file is "new" in exactly one version.
    return [
        {"name": r.name, "sha256": r.sha256, "rows": r.rows, "new": r.model_version is None}
        for r in trained.earlier
    ] + [
        {"name": a.record.name, "sha256": a.record.sha256, "rows": len(a.frame), "new": True}
        for a in trained.new
    ]


def register_and_judge(ctx: RetrainContext, judged: Judged, registry: Registry) -> dict[str, Any]:
    """Commit a judged challenger: version, lineage, export, alias, trained files, decision tag.

    The steps run in this order: register, lineage, local export, decision tags, alias,
    files marked trained, then history and events. A run that dies before its files are marked
    trained gives them back; the next run discards the version it left (untagged, or tagged
    but holding no alias), so no file counts twice.
    If the champion was trained on a retracted file, the champion moves regardless: to the
    best version trained on none of the retracted files, re-scored on the current holdout.
    """
    from consumer.plots import evaluation_figures, metric_over_versions
    from consumer.registry import NewFile
    from consumer.training import SKOPS_TRUSTED_TYPES, split_xy

    settings = ctx.settings
    trained, decision, champion = judged.trained, judged.decision, judged.champion
    assert trained is not None and decision is not None  # the flow checks Judged.trained
    result = trained.result
    orphans = {a.record.previous_claimed_by for a in trained.new if a.record.previous_claimed_by}
    if orphans:
        returned = {a.record.sha256 for a in trained.new if a.record.previous_claimed_by}

        def came_back(version: str) -> bool:
            new_there = {r.sha256 for r, new in ctx.ledger.files_of_version(version) if new}
            return bool(returned & new_there)

        discarded = registry.discard_versions_of(orphans, came_back)
        for gone in discarded:  # its lineage and local export go with it
            ctx.ledger.record_lineage(gone, {})
            model_export(ctx, gone).unlink(missing_ok=True)
        ctx.logger.warning(
            "Files came back from run(s) %s that died; discarded their versions %s",
            ", ".join(sorted(orphans)),
            discarded or "(none registered)",
        )
    previous = champion.version if champion else None
    lineage = _lineage(trained)
    new_names = ", ".join(a.record.name for a in trained.new)
    x_hold, y_hold = split_xy(trained.holdout.frame, settings.dataset)
    example = x_hold if len(x_hold) else trained.new[0].frame if trained.new else x_hold
    decision_metrics = {
        f"decision_{k}": v
        for k, v in (
            ("delta", decision.delta),
            ("mde", decision.comparison and decision.comparison.mde),
        )
        if v is not None
    }
    registered = registry.log_and_register(
        pipeline=result.pipeline,
        x_example=example[settings.dataset.features.all].head(5),
        params={
            "model_kind": settings.model.kind,
            **{f"model.{k}": v for k, v in settings.model.params.items()},
            "train_rows": result.train_rows,
            "train_policy": settings.training.policy,
            "holdout_rows": result.holdout_rows,
            "leaked_rows_dropped": result.leaked_rows_dropped,
            "files_total": len(lineage),
            "files_new": len(trained.new),
            "bootstrap_resamples": settings.promotion.resamples,
        },
        metrics={**result.metrics, **judged.prequential, **decision_metrics},
        new_files=[NewFile(a.record.name, a.record.sha256, a.path, a.frame) for a in trained.new],
        tags={
            "arrivals.run_name": f"retrain-{ctx.run_name}" if ctx.run_name else "retrain",
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": new_names[:4000],
            **decision.tags(),
        },
        artifacts={
            "lineage.json": {"files": lineage},
            "decision.json": decision_record(judged, champion),
        },
        figures=evaluation_figures(result.pipeline, x_hold, y_hold),
        trusted_types=SKOPS_TRUSTED_TYPES[settings.model.kind],
    )
    version = registered.version
    ctx.ledger.record_lineage(version, {f["sha256"]: f["new"] for f in lineage})
    export_version(ctx, result.pipeline, version)

    target = version if decision.promote else None
    retracted = {record.sha256 for record in ctx.ledger.files(RETRACTED)}
    if previous is not None and retracted & _shas_of(ctx, previous):
        best, value = best_clean_version(
            ctx, registry, trained, ctx.ledger.versions_without(retracted), version
        )
        decision = replace(
            decision,
            outcome=REPLACED_RETRACTED if best == version else KEPT,
            reason=f"champion v{previous} was trained on a retracted file; v{best} is the best "
            f"version without it ({decision.metric} {value:.3f} on the current holdout); "
            f"this version: {decision.reason}",
        )
        target = best
    # The decision tags before the alias and the ledger: a run that dies after this point
    # leaves a tagged version (finished), or one whose files come back to the next run,
    # which discards it (see discard_versions_of).
    registry.tag_version(
        version,
        {
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": new_names[:4000],
            "arrivals.suspects": ", ".join(a.record.name for a, _ in judged.suspects)[:4000],
            "arrivals.prequential": judged.fresh or "",
            **decision.tags(),
            "arrivals.decision": decision.outcome,  # last
        },
    )
    if target is not None and target != previous:
        registry.move_champion(target, previous)
        promote_export(ctx, registry, target)
    moved = target is not None and target != previous
    champion_now = target if moved else previous
    ctx.logger.info(
        "Registered %s v%s: %s",
        settings.model.name,
        version,
        f"champion is now v{target} ({decision.reason})"
        if moved
        else f"champion stays {f'v{previous}' if previous else 'none'} ({decision.reason})",
    )
    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in trained.new}, run_id=ctx.run_id, version=version
    )
    ctx.ledger.assign_first_version([f["sha256"] for f in lineage if f["new"]], version)
    summary = round_summary(ctx, judged, decision, registered, previous, champion_now)
    summary["train_rows"], summary["files_total"] = result.train_rows, len(lineage)
    history = write_history(ctx, summary, trained.new)
    registry.log_figure(
        registered.run_id,
        metric_over_versions(history, settings.promotion.metric),
        "plots/metric_over_versions.png",
    )
    announce_model(ctx, summary, trained.new)
    return summary


def _shas_of(ctx: RetrainContext, version: str) -> set[str]:
    return {record.sha256 for record, _new in ctx.ledger.files_of_version(version)}


def keep_without_model(ctx: RetrainContext, new: list[Accepted], reason: str) -> dict[str, Any]:
    """Accepted files that cannot train a model yet stay accepted data for the next retrain."""
    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in new}, run_id=ctx.run_id, version=None
    )
    ctx.logger.warning("No model this time: %s", reason)
    return {
        "version": None,
        "promoted": False,
        "reason": reason,
        "files": [a.record.name for a in new],
    }


def only_suspects(ctx: RetrainContext, judged: Judged, new: list[Accepted]) -> dict[str, Any]:
    """No version this round: every new file is suspect, or the rest cannot train alone.

    The clean new files (if any) stay accepted data for the next retrain, as without a model.
    """
    held = {a.record.sha256 for a, _ in judged.suspects}
    clean = [a for a in new if a.record.sha256 not in held]
    names = ", ".join(a.record.name for a, _ in judged.suspects)
    if clean:
        summary = keep_without_model(ctx, clean, f"without the suspects ({names}) nothing trains")
    else:
        ctx.logger.warning("No version this round: every new file is suspect (%s)", names)
        summary = {"version": None, "promoted": False, "files": []}
        summary["reason"] = f"every new file is suspect ({names})"
    summary["suspects"] = [{"name": a.record.name, "reason": r} for a, r in judged.suspects]
    return summary
