"""Commit a judged challenger: named steps, run in the order `COMMIT_STEPS` gives.

The order is the recovery story. Register the version, record its lineage, export it
locally, tag the decision, move the alias, mark the files trained, then publish (history,
events). A run that dies before its files are marked trained gives them back; the next run
discards the version it left (untagged, or tagged but holding no alias), so no file counts
twice. A run that dies after leaves a finished, tagged version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext
from consumer.decision import KEPT, REPLACED_RETRACTED, Decision
from consumer.fitting import Trained
from consumer.publish import (
    announce_model,
    decision_record,
    export_version,
    model_export,
    promote_export,
    round_summary,
    write_history,
)
from consumer.registry import ModelRun, NewFile, Registered, Registry
from consumer.verdict import Judged, best_clean_version
from shared.ledger import FileState

if TYPE_CHECKING:
    import pandas as pd

TAG_MAX_CHARS = 4000  # a registry tag value holds at most this much (MLflow's limit is 5000)


@dataclass
class Commit:
    """One judged round on its way into the registry and the ledger; each step adds its part."""

    ctx: RetrainContext
    registry: Registry
    judged: Judged
    trained: Trained
    decision: Decision  # may be replaced when the champion was trained on a retracted file
    previous: str | None  # the champion before this round
    lineage: list[dict[str, Any]]
    registered: Registered | None = None
    target: str | None = None  # where the champion alias goes; None: nowhere new
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: RetrainContext, judged: Judged, registry: Registry) -> Commit:
        trained, decision = judged.trained, judged.decision
        if trained is None or decision is None:
            raise ValueError("nothing to commit: the round has no challenger")
        previous = judged.champion.version if judged.champion else None
        return cls(ctx, registry, judged, trained, decision, previous, lineage_of(trained))

    @property
    def version(self) -> str:
        if self.registered is None:
            raise RuntimeError("the version is not registered yet")
        return self.registered.version

    @property
    def moves_champion(self) -> bool:
        return self.target is not None and self.target != self.previous

    @property
    def new_names(self) -> str:
        return ", ".join(a.record.name for a in self.trained.new)[:TAG_MAX_CHARS]

    def run_tags(self) -> dict[str, str]:
        """Which run made the version, for people (the flow run) and for recovery."""
        ctx = self.ctx
        return {
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": self.new_names,
        }


CommitStep = Callable[[Commit], None]


def lineage_of(trained: Trained) -> list[dict[str, Any]]:
    """Every file the version was trained on, and whether it is new there."""
    # An earlier file is new here when no version has it yet (kept without a model, or a
    # suspect a person accepted): every trained file is "new" in exactly one version.
    return [
        {"name": r.name, "sha256": r.sha256, "rows": r.rows, "new": r.model_version is None}
        for r in trained.earlier
    ] + [
        {"name": a.record.name, "sha256": a.record.sha256, "rows": len(a.frame), "new": True}
        for a in trained.new
    ]


def discard_dead_runs_versions(commit: Commit) -> None:
    """Files that came back from a run that died: discard the version that run left."""
    ctx, new = commit.ctx, commit.trained.new
    orphans = {a.record.previous_claimed_by for a in new if a.record.previous_claimed_by}
    if not orphans:
        return
    returned = {a.record.sha256 for a in new if a.record.previous_claimed_by}

    def came_back(version: str) -> bool:
        new_there = {r.sha256 for r, is_new in ctx.ledger.files_of_version(version) if is_new}
        return bool(returned & new_there)

    discarded = commit.registry.discard_versions_of(orphans, came_back)
    for gone in discarded:  # its lineage and local export go with it
        ctx.ledger.record_lineage(gone, {})
        model_export(ctx, gone).unlink(missing_ok=True)
    ctx.logger.warning(
        "Files came back from run(s) %s that died; discarded their versions %s",
        ", ".join(sorted(orphans)),
        discarded or "(none registered)",
    )


def register_version(commit: Commit) -> None:
    """One registry run: the model, its params, metrics, inputs, figures and decision."""
    # scikit-learn and matplotlib cost seconds to import; only a round that registers needs them.
    from consumer.plots import evaluation_figures
    from consumer.training import SKOPS_TRUSTED_TYPES, split_xy

    ctx, judged, trained, decision = commit.ctx, commit.judged, commit.trained, commit.decision
    settings, result = ctx.settings, trained.result
    x_hold, y_hold = split_xy(trained.holdout.frame, settings.dataset)
    commit.registered = commit.registry.log_and_register(
        ModelRun(
            pipeline=result.pipeline,
            x_example=_input_example(trained, x_hold)[settings.dataset.features.all].head(5),
            params={
                "model_kind": settings.model.kind,
                **{f"model.{k}": v for k, v in settings.model.params.items()},
                "train_rows": result.train_rows,
                "train_policy": settings.training.policy,
                "holdout_rows": result.holdout_rows,
                "leaked_rows_dropped": result.leaked_rows_dropped,
                "files_total": len(commit.lineage),
                "files_new": len(trained.new),
                "bootstrap_resamples": settings.promotion.resamples,
            },
            metrics={**result.metrics, **judged.prequential, **_decision_metrics(decision)},
            new_files=[
                NewFile(a.record.name, a.record.sha256, a.path, a.frame) for a in trained.new
            ],
            tags={
                "arrivals.run_name": f"retrain-{ctx.run_name}" if ctx.run_name else "retrain",
                **commit.run_tags(),
                **decision.tags(),
            },
            artifacts={
                "lineage.json": {"files": commit.lineage},
                "decision.json": decision_record(judged, judged.champion),
            },
            figures=evaluation_figures(result.pipeline, x_hold, y_hold),
            trusted_types=SKOPS_TRUSTED_TYPES[settings.model.kind],
        )
    )


def _input_example(trained: Trained, x_hold: pd.DataFrame) -> pd.DataFrame:
    """Rows showing the model's input: the holdout's, else a new file's (a first round)."""
    if len(x_hold) or not trained.new:
        return x_hold
    return trained.new[0].frame


def _decision_metrics(decision: Decision) -> dict[str, float]:
    comparison = decision.comparison
    pairs = (("delta", decision.delta), ("mde", comparison and comparison.mde))
    return {f"decision_{name}": value for name, value in pairs if value is not None}


def record_lineage(commit: Commit) -> None:
    """Which files the version was trained on, and which it is the first to use."""
    commit.ctx.ledger.record_lineage(
        commit.version, {f["sha256"]: f["new"] for f in commit.lineage}
    )


def export_locally(commit: Commit) -> None:
    """models/version-N.joblib: a rollback or a retraction needs no download."""
    export_version(commit.ctx, commit.trained.result.pipeline, commit.version)


def choose_champion(commit: Commit) -> None:
    """Where the alias goes: this version when it won; a clean one when the champion's
    training included a retracted file (the best version without it, whatever won)."""
    ctx, previous, version = commit.ctx, commit.previous, commit.version
    commit.target = version if commit.decision.promote else None
    retracted = {record.sha256 for record in ctx.ledger.files(FileState.RETRACTED)}
    if previous is None or not retracted & _shas_of(ctx, previous):
        return
    best, value = best_clean_version(
        ctx, commit.registry, commit.trained, ctx.ledger.versions_without(retracted), version
    )
    decision = commit.decision
    commit.decision = replace(
        decision,
        outcome=REPLACED_RETRACTED if best == version else KEPT,
        reason=f"champion v{previous} was trained on a retracted file; v{best} is the best "
        f"version without it ({decision.metric} {value:.3f} on the current holdout); "
        f"this version: {decision.reason}",
    )
    commit.target = best


def _shas_of(ctx: RetrainContext, version: str) -> set[str]:
    return {record.sha256 for record, _new in ctx.ledger.files_of_version(version)}


def tag_decision(commit: Commit) -> None:
    """The decision tags, `arrivals.decision` last: the mark of a finished version."""
    # Before the alias and the ledger: a run that dies after this point leaves a tagged
    # version (finished), or one whose files come back to the next run, which discards it.
    decision = commit.decision
    commit.registry.tag_version(
        commit.version,
        {
            **commit.run_tags(),
            "arrivals.suspects": ", ".join(a.record.name for a, _ in commit.judged.suspects)[
                :TAG_MAX_CHARS
            ],
            "arrivals.prequential": commit.judged.fresh or "",
            **decision.tags(),
            "arrivals.decision": decision.outcome,  # last
        },
    )


def move_champion_alias(commit: Commit) -> None:
    """Point `champion` at the chosen version (and export it) when it moves; say what happened."""
    ctx, target, previous = commit.ctx, commit.target, commit.previous
    if commit.moves_champion:
        assert target is not None  # moves_champion says so
        commit.registry.move_champion(target, previous)
        promote_export(ctx, commit.registry, target)
    ctx.logger.info(
        "Registered %s v%s: %s",
        ctx.settings.model.name,
        commit.version,
        f"champion is now v{target} ({commit.decision.reason})"
        if commit.moves_champion
        else f"champion stays {f'v{previous}' if previous else 'none'} ({commit.decision.reason})",
    )


def mark_files_trained(commit: Commit) -> None:
    """The round's files are trained, by this version; earlier files new here get it too."""
    ctx, new = commit.ctx, commit.trained.new
    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in new}, run_id=ctx.run_id, version=commit.version
    )
    ctx.ledger.assign_first_version(
        [f["sha256"] for f in commit.lineage if f["new"]], commit.version
    )


def publish_round(commit: Commit) -> None:
    """The summary, the history files, the metric-over-versions plot and the events."""
    from consumer.plots import metric_over_versions  # matplotlib: see register_version

    ctx, trained, registered = commit.ctx, commit.trained, commit.registered
    assert registered is not None  # register_version ran first
    champion_now = commit.target if commit.moves_champion else commit.previous
    summary = round_summary(
        ctx, commit.judged, commit.decision, registered, commit.previous, champion_now
    )
    summary["train_rows"], summary["files_total"] = trained.result.train_rows, len(commit.lineage)
    history = write_history(ctx, summary, trained.new)
    commit.registry.log_figure(
        registered.run_id,
        metric_over_versions(history, ctx.settings.promotion.metric),
        "plots/metric_over_versions.png",
    )
    announce_model(ctx, summary, trained.new)
    commit.summary = summary


COMMIT_STEPS: tuple[CommitStep, ...] = (
    discard_dead_runs_versions,
    register_version,
    record_lineage,
    export_locally,
    choose_champion,
    tag_decision,
    move_champion_alias,
    mark_files_trained,
    publish_round,
)


def register_and_judge(ctx: RetrainContext, judged: Judged, registry: Registry) -> dict[str, Any]:
    """Commit a judged challenger, step by step in `COMMIT_STEPS` order; the round's summary."""
    commit = Commit.of(ctx, judged, registry)
    for step in COMMIT_STEPS:
        step(commit)
    return commit.summary
