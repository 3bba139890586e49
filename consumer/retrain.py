"""The retrain, stage by stage, with no Prefect in it (the flow wraps each stage in a task).

Trust boundary: a file is opened only through its ledger row, and only when the recorded
path lies inside the data folder. Nothing here reads a path from event parameters.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import events
from shared.fs import atomic_write_json, is_within, move_into, read_json

if TYPE_CHECKING:
    import pandas as pd

    from shared.ledger import FileRecord, Ledger
    from shared.settings import Settings

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RetrainContext:
    """What every stage of one retrain run shares."""

    settings: Settings
    ledger: Ledger
    emitter: events.Emitter
    run_id: str
    run_name: str = ""
    trigger_event_id: str | None = None
    logger: Any = field(default=log)

    @property
    def run_url(self) -> str:
        return f"{self.settings.prefect_ui_url}/runs/flow-run/{self.run_id}"

    def run_related(self) -> dict[str, str]:
        return {
            "prefect.resource.id": f"prefect.flow-run.{self.run_id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": self.run_name,
        }


@dataclass(frozen=True)
class Accepted:
    record: FileRecord
    path: Path
    frame: pd.DataFrame


def claim(ctx: RetrainContext) -> list[FileRecord]:
    """Take every announced file (and expired claims): one run trains them together."""
    return ctx.ledger.claim_pending(ctx.run_id, ttl_seconds=ctx.settings.consumer.claim_ttl_seconds)


def _reject(ctx: RetrainContext, record: FileRecord, path: Path, reason: str) -> None:
    dirs = ctx.settings.dirs
    where = move_into(path, dirs.quarantine, record.name) if path.exists() else path
    atomic_write_json(
        where.with_name(where.name + ".reason.json"),
        {
            "file": record.name,
            "sha256": record.sha256,
            "reason": reason,
            "rejected_at": _now(),
            "run": ctx.run_url,
            "release": f"fix the file in place, then: arrivals release {where.name}",
        },
    )
    ctx.ledger.mark_rejected(record.sha256, run_id=ctx.run_id, reason=reason, path=str(where))
    ctx.logger.warning("Rejected %s: %s (moved to %s)", record.name, reason, where)
    _emit(
        ctx,
        events.file_event(
            events.FILE_REJECTED,
            sha256=record.sha256,
            file_name=record.name,
            payload={"name": record.name, "reason": reason, "quarantine_path": str(where)},
            id=events.event_id(events.FILE_REJECTED, record.sha256),
            related=[ctx.run_related()],
        ),
    )


def ingest(ctx: RetrainContext, record: FileRecord) -> Accepted | None:
    """Validate one claimed file: accepted files move to the archive, bad ones to quarantine."""
    from consumer.validate import Rejected, validate_csv

    dirs = ctx.settings.dirs
    path = Path(record.stored_path)
    if not is_within(path, dirs.data) or path.is_symlink():
        # Never open it: the path did not come from the sensor's own recording.
        _reject(ctx, record, Path("/nonexistent"), f"recorded path {path} is outside {dirs.data}")
        return None
    if not path.is_file():
        _reject(ctx, record, path, f"file vanished from {path} before it could be read")
        return None
    try:
        frame = validate_csv(path, ctx.settings.dataset)
    except Rejected as rejection:
        _reject(ctx, record, path, str(rejection))
        return None
    if not is_within(path, dirs.archive):
        path = move_into(path, dirs.archive, record.name)
        ctx.ledger.set_stored_path(record.sha256, str(path))
    return Accepted(record, path, frame)


@dataclass(frozen=True)
class Trained:
    result: Any  # consumer.training.TrainResult
    new: list[Accepted]
    earlier: list[FileRecord]


def train(ctx: RetrainContext, new: list[Accepted]) -> Trained:
    """Fit on every accepted file so far plus the new ones; score on the fixed holdout."""
    import pandas as pd

    from consumer.training import train_and_evaluate
    from consumer.validate import validate_csv
    from shared.dataset import ensure_holdout

    settings = ctx.settings
    earlier = ctx.ledger.files("trained")
    frames = [validate_csv(Path(r.stored_path), settings.dataset) for r in earlier]
    frames += [a.frame for a in new]
    holdout_path = ensure_holdout(settings.dataset, settings.holdout, settings.dirs.holdout)
    holdout = pd.read_csv(holdout_path)
    result = train_and_evaluate(
        pd.concat(frames, ignore_index=True), holdout, settings.dataset, settings.model
    )
    ctx.logger.info(
        "Trained on %d rows from %d file(s) (%d new); holdout %s",
        result.train_rows,
        len(frames),
        len(new),
        {k: round(v, 4) for k, v in result.metrics.items()},
    )
    return Trained(result, new, earlier)


def register_and_judge(ctx: RetrainContext, trained: Trained) -> dict[str, Any]:
    """Log and register the challenger, promote it only if it beats the champion."""
    from consumer.registry import MlflowRegistry, NewFile
    from consumer.training import SKOPS_TRUSTED_TYPES, decide

    settings = ctx.settings
    result = trained.result
    registry = MlflowRegistry(settings.mlflow_url, settings.model.name, settings.dataset.name)
    orphans = {a.record.previous_claimed_by for a in trained.new if a.record.previous_claimed_by}
    if orphans:
        discarded = registry.discard_versions_of(orphans)
        ctx.logger.warning(
            "Files came back from run(s) %s that died; discarded their versions %s",
            ", ".join(sorted(orphans)),
            discarded or "(none registered)",
        )
    champion = registry.champion()
    decision = decide(result.metrics, champion.metrics if champion else None, settings.promotion)

    lineage = [
        {"name": r.name, "sha256": r.sha256, "rows": r.rows, "new": False} for r in trained.earlier
    ] + [
        {"name": a.record.name, "sha256": a.record.sha256, "rows": len(a.frame), "new": True}
        for a in trained.new
    ]
    new_names = ", ".join(a.record.name for a in trained.new)
    x_example = trained.new[0].frame[settings.dataset.features.all].head(5)
    registered = registry.log_and_register(
        pipeline=result.pipeline,
        x_example=x_example,
        params={
            "model_kind": settings.model.kind,
            **{f"model.{k}": v for k, v in settings.model.params.items()},
            "train_rows": result.train_rows,
            "holdout_rows": result.holdout_rows,
            "leaked_rows_dropped": result.leaked_rows_dropped,
            "files_total": len(lineage),
            "files_new": len(trained.new),
        },
        metrics=result.metrics,
        new_files=[NewFile(a.record.name, a.record.sha256, a.path, a.frame) for a in trained.new],
        tags={
            "arrivals.run_name": f"retrain-{ctx.run_name}" if ctx.run_name else "retrain",
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": new_names[:4000],
        },
        artifacts={"lineage.json": {"files": lineage}},
        trusted_types=SKOPS_TRUSTED_TYPES[settings.model.kind],
    )
    version = registered.version
    registry.tag_version(
        version,
        {
            "arrivals.decision": "promoted" if decision.promote else "kept champion",
            "arrivals.decision_reason": decision.reason,
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.files_new": new_names[:4000],
        },
    )
    previous = champion.version if champion else None
    if decision.promote:
        registry.set_champion(version)
        _export_champion(ctx, result.pipeline, version, result.metrics, lineage)
    ctx.logger.info(
        "Registered %s v%s: %s",
        settings.model.name,
        version,
        f"PROMOTED to champion ({decision.reason})"
        if decision.promote
        else f"champion stays v{previous} ({decision.reason})",
    )

    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in trained.new}, run_id=ctx.run_id, version=version
    )
    summary = {
        "version": version,
        "promoted": decision.promote,
        "previous_champion": previous,
        "champion": version if decision.promote else previous,
        "metric": decision.metric,
        "delta": decision.delta,
        "reason": decision.reason,
        "metrics": result.metrics,
        "files": [a.record.name for a in trained.new],
        "mlflow_run_id": registered.run_id,
    }
    _write_history(ctx, summary, trained)
    _announce_model(ctx, summary, trained)
    return summary


def _export_champion(ctx, pipeline, version: str, metrics: dict, lineage: list) -> None:
    import joblib

    models = ctx.settings.dirs.models
    models.mkdir(parents=True, exist_ok=True)
    tmp = models / f".champion-v{version}.joblib.tmp"
    joblib.dump(pipeline, tmp)
    tmp.replace(models / "champion.joblib")
    atomic_write_json(
        models / "champion.json",
        {
            "model": ctx.settings.model.name,
            "version": version,
            "metrics": metrics,
            "files": lineage,
            "promoted_at": _now(),
            "flow_run": ctx.run_url,
        },
    )


def _write_history(ctx: RetrainContext, summary: dict, trained: Trained) -> None:
    """The seed's human-readable history: batch_state.json and metrics/version-N.json."""
    dirs = ctx.settings.dirs
    at = _now()
    atomic_write_json(
        dirs.metrics / f"version-{summary['version']}.json",
        {**summary, "at": at, "flow_run": ctx.run_url, "train_rows": trained.result.train_rows},
    )
    state = read_json(dirs.batch_state, {"processed": [], "champion": None})
    for accepted in trained.new:
        state["processed"].append(
            {
                "file": accepted.record.name,
                "sha256": accepted.record.sha256,
                "rows": len(accepted.frame),
                "version": summary["version"],
                "promoted": summary["promoted"],
                "metrics": summary["metrics"],
                "at": at,
            }
        )
    if summary["promoted"]:
        state["champion"] = {"version": summary["version"], "metrics": summary["metrics"]}
    atomic_write_json(dirs.batch_state, state)


def _announce_model(ctx: RetrainContext, summary: dict, trained: Trained) -> None:
    model = ctx.settings.model.name
    version = summary["version"]
    resource = {
        "prefect.resource.id": events.model_resource_id(model, version),
        "prefect.resource.name": f"{model} v{version}",
    }
    related = [ctx.run_related()] + [
        {
            "prefect.resource.id": events.file_resource_id(a.record.sha256),
            "prefect.resource.role": "input-file",
            "prefect.resource.name": a.record.name,
        }
        for a in trained.new
    ]
    out = [
        events.Event(
            event=events.VERSION_REGISTERED,
            resource=resource,
            payload={
                "metrics": summary["metrics"],
                "files": summary["files"],
                "host": socket.gethostname(),
            },
            id=events.event_id(events.VERSION_REGISTERED, model, version),
            related=related,
        )
    ]
    if summary["promoted"]:
        out.append(
            events.Event(
                event=events.CHAMPION_PROMOTED,
                resource=resource,
                payload={
                    "old_version": summary["previous_champion"],
                    "new_version": version,
                    "metric": summary["metric"],
                    "delta": summary["delta"],
                    "reason": summary["reason"],
                },
                id=events.event_id(events.CHAMPION_PROMOTED, model, version),
                related=related,
            )
        )
    _emit(ctx, *out)


def _emit(ctx: RetrainContext, *out: events.Event) -> None:
    try:
        ctx.emitter.emit(out)
    except events.EventNotDelivered as error:
        # The ledger and the registry are the record; a lost notification must not undo
        # them (failing here would release the claims and train the same files twice).
        ctx.logger.error("Events %s not delivered: %s", [e.event for e in out], error)


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
