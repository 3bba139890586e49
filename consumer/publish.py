"""Publish a decided round: local model exports, the history files, events and the report.

Nothing here decides anything; it shows what `consumer.commit` committed.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext, now_iso
from shared import events
from shared.alerts import suspect_alert
from shared.fs import atomic_copy, atomic_write_bytes, atomic_write_json, read_json

if TYPE_CHECKING:
    from consumer.decision import Decision
    from consumer.ingest import Accepted
    from consumer.registry import Champion, Registered, Registry
    from consumer.verdict import Judged


def model_export(ctx: RetrainContext, version: str | None = None) -> Path:
    """models/version-N.joblib, or models/champion.joblib when `version` is None."""
    models = ctx.settings.dirs.models
    return models / "champion.joblib" if version is None else models / f"version-{version}.joblib"


def export_version(ctx: RetrainContext, pipeline: Any, version: str) -> None:
    """Every version's model, kept locally so a rollback or retraction needs no download."""
    import joblib  # a fifth of a second to import: loaded when a model is saved or read

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    atomic_write_bytes(model_export(ctx, version), buffer.getvalue())


def load_version(ctx: RetrainContext, registry: Registry, version: str) -> Any:
    """A version's model: the local export, else from MLflow (then kept locally)."""
    import joblib  # see export_version

    path = model_export(ctx, version)
    if path.exists():
        return joblib.load(path)
    model = registry.load_model(version)
    export_version(ctx, model, version)
    return model


def promote_export(ctx: RetrainContext, registry: Registry, version: str) -> None:
    """models/champion.joblib + champion.json: the champion a person (or a server) loads."""
    source = model_export(ctx, version)
    if not source.exists():  # a home from before local exports: fetch it from MLflow
        export_version(ctx, registry.load_model(version), version)
    atomic_copy(source, model_export(ctx))
    atomic_write_json(
        ctx.settings.dirs.models / "champion.json",
        {
            "model": ctx.settings.model.name,
            "version": version,
            "metrics": registry.version_metrics(version),
            "files": [
                {"name": r.name, "sha256": r.sha256, "rows": r.rows}
                for r, _new in ctx.ledger.files_of_version(version)
            ],
            "promoted_at": now_iso(),
            "flow_run": ctx.run_url,
        },
    )


def write_history(ctx: RetrainContext, summary: dict, new: list[Accepted]) -> list[dict]:
    """The human-readable history: batch_state.json and metrics/version-N.json.

    Returns every version's record so far, oldest first.
    """
    dirs = ctx.settings.dirs
    at = now_iso()
    atomic_write_json(
        dirs.metrics / f"version-{summary['version']}.json",
        {**summary, "at": at, "flow_run": ctx.run_url},
    )
    state = read_json(dirs.batch_state, {"processed": [], "champion": None})
    for accepted in new:
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
    if summary["champion_moved"]:
        state["champion"] = {"version": summary["champion"], "since": at}
    atomic_write_json(dirs.batch_state, state)
    history = [read_json(path, None) for path in dirs.metrics.glob("version-*.json")]
    return sorted((h for h in history if h), key=lambda h: int(h["version"]))


def announce_suspects(ctx: RetrainContext, suspects: list[tuple[Accepted, str]], round_no: int):
    """One `inbox.file.suspect` event per blamed file, with the evidence."""
    ctx.emit(
        *(
            events.file_event(
                events.FILE_SUSPECT,
                sha256=a.record.sha256,
                file_name=a.record.name,
                payload={
                    "name": a.record.name,
                    "reason": reason,
                    "round": round_no,
                    "flow_run": ctx.run_url,
                    "accept": f"arrivals accept {a.record.name}",
                    "retract": f"arrivals retract {a.record.name}",
                },
                id=events.event_id(events.FILE_SUSPECT, a.record.sha256, ctx.run_id),
                related=[ctx.run_related()],
            )
            for a, reason in suspects
        )
    )
    for a, reason in suspects:
        ctx.notify(suspect_alert(a.record.name, reason, ctx.run_url))


def announce_model(ctx: RetrainContext, summary: dict, new: list[Accepted]) -> None:
    """`model.version.registered`, and `model.champion.promoted` when the alias moved."""
    model = ctx.settings.model.name
    version = summary["version"]

    def resource(v: str) -> dict[str, str]:
        return {
            "prefect.resource.id": events.model_resource_id(model, v),
            "prefect.resource.name": f"{model} v{v}",
        }

    related = [ctx.run_related()] + [
        {
            "prefect.resource.id": events.file_resource_id(a.record.sha256),
            "prefect.resource.role": "input-file",
            "prefect.resource.name": a.record.name,
        }
        for a in new
    ]
    decision = {k: summary.get(k) for k in ("delta", "delta_ci_low", "delta_ci_high")}
    out = [
        events.Event(
            event=events.VERSION_REGISTERED,
            resource=resource(version),
            payload={
                "metrics": summary["metrics"],
                "prequential": summary["prequential"],
                "files": summary["files"],
                "files_total": summary["files_total"],
                "suspects": summary["suspects"],
                "file_notes": summary.get("file_notes") or [],
                "decision": summary["reason"],
                "outcome": summary["outcome"],
                **decision,
                "confidence": summary["confidence"],
                "mlflow_run": summary["mlflow_run_url"],
                "host": socket.gethostname(),
            },
            id=events.event_id(events.VERSION_REGISTERED, model, version),
            related=related,
        )
    ]
    if summary["champion_moved"]:
        champion = summary["champion"]
        out.append(
            events.Event(
                event=events.CHAMPION_PROMOTED,
                resource=resource(champion),
                payload={
                    "old_version": summary["previous_champion"],
                    "new_version": champion,
                    "metric": summary["metric"],
                    **decision,
                    "confidence": summary["confidence"],
                    "reason": summary["reason"],
                },
                id=events.event_id(events.CHAMPION_PROMOTED, model, champion, version),
                related=related,
            )
        )
    ctx.emit(*out)


def decision_record(judged: Judged, champion: Champion | None) -> dict[str, Any]:
    """decision.json on the MLflow run: both models' scores on the same rows, the intervals."""
    d = judged.decision
    assert d is not None and judged.trained is not None

    def interval(i: Any) -> dict[str, Any] | None:
        return (
            None
            if i is None
            else {k: getattr(i, k) for k in i.__dataclass_fields__} | {"mde": i.mde}
        )

    return {
        "outcome": d.outcome,
        "reason": d.reason,
        "metric": d.metric,
        "challenger": d.challenger,
        "champion": d.champion,
        "champion_version": champion.version if champion else None,
        "holdout": judged.trained.holdout.description,
        "versus_champion": interval(d.comparison if champion else None),
        "versus_baseline": interval(d.baseline),
        "guard": interval(d.guard),
        "champion_since_trained": judged.fresh,
        "suspects": [{"name": a.record.name, "reason": r} for a, r in judged.suspects],
    }


def round_summary(
    ctx: RetrainContext,
    judged: Judged,
    decision: Decision,
    registered: Registered,
    previous: str | None,
    champion_now: str | None,
) -> dict[str, Any]:
    trained = judged.trained
    assert trained is not None
    version = registered.version
    moved = champion_now != previous
    comparison = decision.comparison
    url = ctx.settings.mlflow_url
    return {
        "version": version,
        "decision_title": f"v{version}: champion is now v{champion_now}"
        if moved
        else f"v{version}: champion stays v{previous}"
        if previous
        else f"v{version}: no champion yet",
        "promoted": decision.promote,
        "outcome": decision.outcome,
        "previous_champion": previous,
        "champion": champion_now,
        "champion_moved": moved,
        "metric": decision.metric,
        "delta": decision.delta,
        "delta_ci_low": comparison and comparison.low,
        "delta_ci_high": comparison and comparison.high,
        "confidence": comparison and comparison.confidence,
        "resamples": ctx.settings.promotion.resamples,
        "mde": comparison and comparison.mde,
        "reason": decision.reason,
        "holdout": trained.holdout.description,
        "metrics": trained.result.metrics,
        "champion_metrics": judged.champion_metrics,
        "prequential": judged.prequential,
        "fresh": judged.fresh,
        "files": [a.record.name for a in trained.new],
        "file_notes": [f"{a.record.name}: {a.rows_note}" for a in trained.new if a.dropped],
        "suspects": [{"name": a.record.name, "reason": r} for a, r in judged.suspects],
        "mlflow_run_id": registered.run_id,
        "mlflow_run_url": f"{url}/#/experiments/{registered.experiment_id}"
        f"/runs/{registered.run_id}",
    }


def render_report(summary: dict[str, Any]) -> str:
    """The retrain's report for the Prefect UI (a markdown artifact on the flow run)."""
    metrics = summary["metrics"]
    champion = summary.get("champion_metrics") or {}
    prequential = summary.get("prequential") or {}
    names = sorted(set(metrics) | set(champion))
    lines = [
        f"## {summary['decision_title']}",
        "",
        f"**Decision:** {summary['reason']}",
        "",
        f"Judged on {summary.get('holdout', 'the holdout')}, both models scored on the same "
        f"rows; {summary.get('confidence') or 0:.0%} paired bootstrap interval "
        f"({summary.get('resamples')} resamples). Smallest difference this holdout detects "
        f"(80% power): {_fmt(summary.get('mde'))}.",
        "",
        f"Version **v{summary['version']}** trained on {summary['train_rows']} rows from "
        f"{summary['files_total']} file(s); new in this run: "
        + (", ".join(f"`{name}`" for name in summary["files"]) or "none (rebuild)"),
        "",
    ]
    for note in summary.get("file_notes") or []:
        lines.append(f"- {note}")
    for suspect in summary.get("suspects") or []:
        lines.append(f"- **suspect, left out:** `{suspect['name']}`: {suspect['reason']}")
    lines += [
        "",
        "| metric (same holdout rows) | challenger | champion | champion on rows since chosen |",
        "|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {_fmt(metrics.get(name))} | {_fmt(champion.get(name))} "
            f"| {_fmt(prequential.get(f'prequential_{name}'))} |"
        )
    if summary.get("fresh"):
        lines += ["", summary["fresh"]]
    lines += ["", f"[MLflow run]({summary['mlflow_run_url']})"]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
